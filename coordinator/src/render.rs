//! A whole render: the input image, then frame after frame (each the dream
//! of the previous one zoomed, rotated and panned as scheduled, its colours
//! kept near frame 0's), written as they finish, resumed after the last
//! complete frame, and assembled into a video.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dreamfarm_common::color::{ColorReference, contrast, match_colors, unsharp_mask};
use dreamfarm_common::params::{ColorSettings, JobSpec, MAX_SIDE};
use dreamfarm_common::resample::{Planar, Warp, resize, warp};

use crate::frame_loop::dream_frame;
use crate::output::{OutputDir, OutputError};
use crate::progress::FrameProgress;
use crate::tile_executor::{TileError, TileExecutor};
use crate::video::{VideoError, assemble};

/// Why a render stopped. Frames already written stay.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input image is missing, unreadable or of an unusable size.
    #[error("input image {path}: {reason}")]
    Input {
        /// The image.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The output folder.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A tile failed.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The video could not be made.
    #[error(transparent)]
    Video(#[from] VideoError),
}

/// Reads the job's input image, checking its size before decoding it, and
/// resizes it to the job's size if one is set. Cheap enough to run before
/// the model loads, so that a bad path fails at once.
pub fn load_input(spec: &JobSpec) -> Result<Planar, RenderError> {
    let path = &spec.input;
    let bad = |reason: String| RenderError::Input {
        path: path.clone(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| {
            bad(format!(
                "cannot open it ({e}); check the path of the input image"
            ))
        })?
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| {
        bad(format!(
            "not a readable image ({e}); give a PNG or JPEG file"
        ))
    })?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(format!(
            "it is {w}x{h}, larger than the {MAX_SIDE} pixels per side dreamfarm accepts; pass --size WxH to scale it down"
        )));
    }
    let rgb = image::open(path)
        .map_err(|e| {
            bad(format!(
                "not a readable image ({e}); give a PNG or JPEG file"
            ))
        })?
        .to_rgb8();
    let image = Planar::from_rgb8(w as usize, h as usize, rgb.as_raw());
    Ok(match spec.size {
        Some([tw, th]) if (tw, th) != (w, h) => resize(&image, tw as usize, th as usize),
        _ => image,
    })
}

/// Refuses an input the model cannot see: smaller than `min_side` pixels on
/// a side.
pub fn check_min_side(spec: &JobSpec, input: &Planar, min_side: usize) -> Result<(), RenderError> {
    if input.width.min(input.height) < min_side {
        return Err(RenderError::Input {
            path: spec.input.clone(),
            reason: format!(
                "it is {}x{}, smaller than the {min_side} pixels per side the model needs; pass a larger --size",
                input.width, input.height
            ),
        });
    }
    Ok(())
}

/// The camera move of `spec` into frame `frame` of a `width`×`height`
/// render.
pub fn camera(spec: &JobSpec, frame: u64, width: usize, height: usize) -> Warp {
    let m = spec.zoom.at(frame, spec.frames);
    Warp {
        zoom: m.zoom,
        rotate_deg: m.rotate,
        pan: (m.pan[0], m.pan[1]),
        center: (m.center[0] * width as f64, m.center[1] * height as f64),
    }
}

/// What a render did.
#[derive(Debug, Clone, Default)]
pub struct RenderReport {
    /// Wall-clock seconds of each frame this run rendered (dream, feedback
    /// and PNG), in order; empty when every frame was already there.
    pub frame_seconds: Vec<f64>,
}

/// Renders every missing frame of `spec` into `out` with `executor`, then
/// the video `video`. `input` comes from [`load_input`]; `min_side` is the
/// model's smallest usable side. `on_frame(n, seconds)` hears of each frame
/// once it is on disk.
pub fn render(
    spec: &JobSpec,
    input: &Planar,
    out: &OutputDir,
    video: &Path,
    min_side: usize,
    executor: &mut dyn TileExecutor,
    on_frame: &mut dyn FnMut(u64, f64),
) -> Result<RenderReport, RenderError> {
    check_min_side(spec, input, min_side)?;
    let (w, h) = (input.width, input.height);
    let total = u64::from(spec.frames);
    let done = out.frames_done().min(total);
    if done > 0 {
        tracing::info!(done, total, dir = %out.dir().display(), "resuming after the last complete frame");
    }
    let mut previous = match done {
        0 => None,
        n => Some(read_frame(&out.frame_path(n - 1), w, h)?),
    };
    // Frame 0 as written is the colour reference, so a resumed render
    // matches to the same one.
    let mut reference = match (spec.color.coherence, done) {
        (Some(space), 1..) => Some(ColorReference::new(
            &read_frame(&out.frame_path(0), w, h)?,
            space,
        )),
        _ => None,
    };
    let mut progress = FrameProgress::new(total, done);
    let mut report = RenderReport::default();
    for n in done..total {
        let _span = tracing::info_span!("frame", n).entered();
        let started = Instant::now();
        let frame_input = match &previous {
            None => input.clone(),
            Some(prev) => {
                let mut moved = warp(prev, &camera(spec, n, w, h));
                keep_colors(&spec.color, n, spec.frames, reference.as_ref(), &mut moved);
                moved
            }
        };
        let dreamed = dream_frame(&spec.dream, min_side, n, &frame_input, executor)?;
        // What is fed back is exactly what is on disk, so a resumed render
        // continues from the same pixels as an uninterrupted one.
        let rgb = dreamed.to_rgb8();
        out.write_frame(n, w as u32, h as u32, rgb.clone())?;
        let written = Planar::from_rgb8(w, h, &rgb);
        if let (Some(space), 0) = (spec.color.coherence, n) {
            reference = Some(ColorReference::new(&written, space));
        }
        previous = Some(written);
        let seconds = started.elapsed().as_secs_f64();
        progress.frame_done(n, seconds);
        on_frame(n, seconds);
        report.frame_seconds.push(seconds);
    }
    progress.finish();
    assemble(&out.frame_pattern(), video, &spec.video)?;
    Ok(report)
}

/// Frame `n`'s input after the camera move: its colours pulled toward the
/// reference, then its contrast and sharpness adjusted, as scheduled.
fn keep_colors(
    color: &ColorSettings,
    n: u64,
    frames: u32,
    reference: Option<&ColorReference>,
    image: &mut Planar,
) {
    if let Some(reference) = reference {
        match_colors(image, reference, color.strength.value_at(n, frames));
    }
    let amount = color.contrast.value_at(n, frames);
    if amount != 1.0 {
        contrast(image, amount);
    }
    let sharpen = color.sharpen.value_at(n, frames);
    if sharpen != 0.0 {
        unsharp_mask(image, sharpen, color.sharpen_radius);
    }
}

fn read_frame(path: &Path, w: usize, h: usize) -> Result<Planar, RenderError> {
    let bad = |reason: String| RenderError::Input {
        path: path.to_path_buf(),
        reason,
    };
    let rgb = image::open(path)
        .map_err(|e| bad(format!("cannot read the last frame to resume from ({e})")))?
        .to_rgb8();
    if rgb.dimensions() != (w as u32, h as u32) {
        return Err(bad(format!(
            "frame is {:?}, the job's frames are {w}x{h}",
            rgb.dimensions()
        )));
    }
    Ok(Planar::from_rgb8(w, h, rgb.as_raw()))
}
