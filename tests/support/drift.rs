//! How far a long render's colours and texture drift from frame 0: the
//! measures of the colour-coherence target, for the drift test and bench.

use std::path::Path;

use dreamfarm_common::color::{mean_abs_horizontal_gradient, mean_luminance, mean_saturation};
use dreamfarm_common::resample::{Planar, Warp, warp};

use crate::{dreamfarm, frames, run_ok};

/// The recipe a new user tried, without its camera move: the astronaut
/// at 160×160, 2 octaves of 4 steps.
pub const STILL: &[&str] = &[
    "--input",
    "assets/astronaut.png",
    "--size",
    "160x160",
    "--octaves",
    "2",
    "--iterations",
    "4",
];

/// The recipe's camera move: 3% closer and 0.3° a frame.
pub const CAMERA: &[&str] = &["--zoom-factor", "1.03", "--rotate", "0.3"];

/// [`CAMERA`] as a warp of a `width`×`height` frame.
fn camera(width: usize, height: usize) -> Warp {
    Warp {
        zoom: 1.03,
        rotate_deg: 0.3,
        pan: (0.0, 0.0),
        center: (width as f64 / 2.0, height as f64 / 2.0),
    }
}

/// Drift of a render's frames from its frame 0.
#[derive(Debug, Clone, Copy)]
pub struct Drift {
    /// Largest |mean saturation / frame 0's − 1| over the frames.
    pub saturation: f64,
    /// Largest |mean luminance / frame 0's − 1| over the frames.
    pub luminance: f64,
    /// Mean absolute horizontal gradient of the last frame over frame 0's
    /// (texture kept: near 1; washed out: near 0).
    pub texture: f64,
    /// Mean absolute difference between consecutive frames after undoing
    /// the camera move (each frame moved as the next one was), in 8-bit
    /// levels over the middle 80% of the frame: what changes that the
    /// camera does not explain.
    pub flicker: f64,
}

/// Renders the recipe for `frames` frames into `out` with `extra` flags
/// (e.g. `--color-coherence lab`) and measures its drift.
pub fn render_and_measure(out: &Path, frames: u32, extra: &[&str]) -> Drift {
    let n = frames.to_string();
    let mut args = vec![
        "render",
        "--device",
        "cpu",
        "--output",
        out.to_str().expect("UTF-8 path"),
        "--frames",
        &n,
    ];
    args.extend_from_slice(STILL);
    args.extend_from_slice(CAMERA);
    args.extend_from_slice(extra);
    run_ok(dreamfarm(&args));
    measure(out)
}

/// The drift of the frames in `dir`.
pub fn measure(dir: &Path) -> Drift {
    let images: Vec<Planar> = frames(dir)
        .iter()
        .map(|p| {
            let rgb = image::open(p).expect("a frame").to_rgb8();
            Planar::from_rgb8(rgb.width() as usize, rgb.height() as usize, rgb.as_raw())
        })
        .collect();
    let (first, last) = (&images[0], &images[images.len() - 1]);
    let (s0, l0) = (mean_saturation(first), mean_luminance(first));
    let worst = |f: &dyn Fn(&Planar) -> f64, base: f64| {
        images
            .iter()
            .map(|im| (f(im) / base - 1.0).abs())
            .fold(0.0, f64::max)
    };
    Drift {
        saturation: worst(&mean_saturation, s0),
        luminance: worst(&mean_luminance, l0),
        texture: mean_abs_horizontal_gradient(last) / mean_abs_horizontal_gradient(first),
        flicker: flicker(&images),
    }
}

/// The mean of [`Drift::flicker`] over consecutive pairs of `images`.
fn flicker(images: &[Planar]) -> f64 {
    let pairs = images.windows(2).map(|pair| {
        let (w, h) = (pair[0].width, pair[0].height);
        let moved = warp(&pair[0], &camera(w, h));
        let (x0, y0) = (w / 10, h / 10);
        let mut sum = 0.0;
        let mut count = 0usize;
        for c in 0..3 {
            for y in y0..h - y0 {
                for x in x0..w - x0 {
                    let i = c * w * h + y * w + x;
                    sum += f64::from((moved.data[i] - pair[1].data[i]).abs());
                    count += 1;
                }
            }
        }
        255.0 * sum / count as f64
    });
    let n = images.len().saturating_sub(1).max(1);
    pairs.sum::<f64>() / n as f64
}
