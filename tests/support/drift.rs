//! How far a long render's colours and texture drift from frame 0: the
//! measures of the colour-coherence target, for the drift test and bench.

use std::path::Path;

use dreamfarm_common::color::{mean_abs_horizontal_gradient, mean_luminance, mean_saturation};
use dreamfarm_common::resample::Planar;

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
    }
}
