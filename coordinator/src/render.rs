//! A whole render: the input image, then frame after frame (each the dream
//! of the previous one zoomed, rotated and panned as scheduled, its colours
//! kept near frame 0's), written as they finish, resumed after the last
//! complete frame, and assembled into a video.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dreamfarm_common::color::{ColorAdjust, ColorReference};
use dreamfarm_common::objective::GUIDE_SIDE;
use dreamfarm_common::params::{JobSpec, MAX_SIDE, ParamError};
use dreamfarm_common::resample::{Planar, SpareImages, Warp, resize, warp, warp_rgb8};

use crate::frame_loop::{FramePlan, dream_frame};
use crate::frame_writer::{FrameWriter, VideoFeed};
use crate::output::{OutputDir, OutputError};
use crate::progress::FrameProgress;
use crate::region_frames;
use crate::tile_executor::{TileError, TileExecutor};
use crate::video::{VideoEncoding, VideoError, VideoOut, VideoStream, assemble};

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
    /// An image the job names (input, guide, colour reference) is
    /// missing, unreadable or too large.
    #[error("{what} {path}: {reason}")]
    Image {
        /// Which image.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The output folder.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A setting (checked before the render, so only a bug gets here).
    #[error(transparent)]
    Settings(#[from] ParamError),
    /// A tile failed.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The video could not be made.
    #[error(transparent)]
    Video(#[from] VideoError),
}

/// Reads an image file (the input, a guide, a colour reference), checking
/// its size before decoding it; `what` names it in errors.
fn read_image(path: &Path, what: &'static str) -> Result<Planar, RenderError> {
    let bad = |reason: String| RenderError::Image {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let unreadable = |e: image::ImageError| {
        bad(format!(
            "not a readable image ({e}); give a PNG or JPEG file as the {what}"
        ))
    };
    let mut decoder = image::ImageReader::open(path)
        .map_err(|e| {
            bad(format!(
                "cannot open it ({e}); check the path of the {what}"
            ))
        })?
        .with_guessed_format()
        .map_err(|e| {
            bad(format!(
                "cannot read it ({e}); give a PNG or JPEG file as the {what}"
            ))
        })?
        .into_decoder()
        .map_err(unreadable)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(format!(
            "it is {w}x{h}, larger than the {MAX_SIDE} pixels per side dreamfarm accepts; scale it down"
        )));
    }
    // A phone stores a photo as its sensor saw it and says in EXIF which
    // way is up; every viewer turns it, so the dream must too.
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    decoded.apply_orientation(orientation);
    let rgb = decoded.to_rgb8();
    Ok(Planar::from_rgb8(
        rgb.width() as usize,
        rgb.height() as usize,
        rgb.as_raw(),
    ))
}

/// Reads the job's input image, checking its size before decoding it, and
/// resizes it to the job's size if one is set. Cheap enough to run before
/// the model loads, so that a bad path fails at once.
pub fn load_input(spec: &JobSpec) -> Result<Planar, RenderError> {
    let image = read_image(&spec.input, "input image")?;
    Ok(match spec.size {
        Some([tw, th]) if (tw as usize, th as usize) != (image.width, image.height) => {
            resize(&image, tw as usize, th as usize)
        }
        _ => image,
    })
}

/// `image` shrunk to fit `side` pixels on its longer side (never
/// enlarged).
fn fit(image: Planar, side: usize) -> Planar {
    let long = image.width.max(image.height);
    if long <= side {
        return image;
    }
    let scale = side as f64 / long as f64;
    let size = |n: usize| ((n as f64 * scale).round() as usize).max(1);
    resize(&image, size(image.width), size(image.height))
}

/// The job's guide image, if it has one: fitted into [`GUIDE_SIDE`] pixels
/// and rounded to 8 bits, so that it is the same exact pixels on one
/// machine and on every cluster worker.
pub fn load_guide(spec: &JobSpec) -> Result<Option<Arc<Planar>>, RenderError> {
    let Some(path) = &spec.dream.guide else {
        return Ok(None);
    };
    let guide = fit(read_image(path, "guide image")?, GUIDE_SIDE);
    if guide.width.min(guide.height) < GUIDE_MIN_SIDE {
        return Err(RenderError::Image {
            what: "guide image",
            path: path.clone(),
            reason: format!(
                "fitted into {GUIDE_SIDE} pixels it is {}x{}, and every model needs {GUIDE_MIN_SIDE} pixels on the shorter side: crop it to less than 3:1",
                guide.width, guide.height
            ),
        });
    }
    let exact = Planar::from_rgb8(guide.width, guide.height, &guide.to_rgb8());
    Ok(Some(Arc::new(exact)))
}

/// Shortest side a guide may have once fitted: the largest of the models'
/// smallest inputs (inception-v3's).
const GUIDE_MIN_SIDE: usize = 75;

/// Longest side a colour-reference image is read at: its quantiles do not
/// need more, and a 16K reference would cost seconds per frame.
const REFERENCE_SIDE: usize = 1024;

/// The colour reference the job names, if it names one (else frame 0 is
/// the reference, once written).
pub fn load_color_reference(spec: &JobSpec) -> Result<Option<ColorReference>, RenderError> {
    match (spec.color.coherence, &spec.color.reference) {
        (Some(space), Some(path)) => Ok(Some(ColorReference::new(
            &fit(read_image(path, "colour reference")?, REFERENCE_SIDE),
            space,
        ))),
        _ => Ok(None),
    }
}

/// Refuses an input the model cannot see: smaller than `min_side` pixels on
/// a side.
pub fn check_min_side(spec: &JobSpec, input: &Planar, min_side: usize) -> Result<(), RenderError> {
    if input.width.min(input.height) < min_side {
        let (w, h) = (input.width, input.height);
        let need = format!("smaller than the {min_side} pixels per side the model needs");
        // The input is read at the job's size when it sets one.
        let reason = if spec.size.is_some() {
            format!("at the job's size it is {w}x{h}, {need}; pass a larger --size")
        } else {
            format!("it is {w}x{h}, {need}; pass a larger image, or a --size to enlarge it to")
        };
        return Err(RenderError::Input {
            path: spec.input.clone(),
            reason,
        });
    }
    Ok(())
}

/// Reads and checks every image the job names (the guide, the colour
/// reference, and the input at the job's size against the model's
/// `min_side`) as its render will, so that a job with a bad one is refused
/// before it is queued, or uploaded; returns the input at the job's size.
pub fn check_images(spec: &JobSpec, min_side: usize) -> Result<Planar, RenderError> {
    load_guide(spec)?;
    load_color_reference(spec)?;
    let input = load_input(spec)?;
    check_min_side(spec, &input, min_side)?;
    Ok(input)
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
    /// Wall-clock seconds of each frame this run rendered (dream and
    /// feedback; its PNG is written while the next frame dreams), in
    /// order; empty when every frame was already there. With a cadence, a
    /// dreamed frame's time is shared by the frames it makes.
    pub frame_seconds: Vec<f64>,
}

/// Renders every missing frame of `spec` into `out` with `executor`, and
/// the video `video` (encoded as its frames are written, or after).
/// `input` comes from [`load_input`]; `min_side` is the model's smallest
/// usable side. `on_frame(n, seconds)` hears of each frame the moment it
/// is on disk (on the thread that wrote it).
///
/// With a cadence of k, frames that are multiples of k are dreamed; each
/// frame between two of them is the earlier one carried forward by the
/// camera, cross-faded into the later one carried back (frames after the
/// last dreamed one follow the camera alone). A resumed render starts
/// again from the last dreamed frame on disk, so it continues from the
/// same pixels as an uninterrupted one.
pub fn render(
    spec: &JobSpec,
    input: &Planar,
    out: &OutputDir,
    video: VideoOut<'_>,
    min_side: usize,
    executor: &mut dyn TileExecutor,
    on_frame: &mut (dyn FnMut(u64, f64) + Send),
) -> Result<RenderReport, RenderError> {
    check_min_side(spec, input, min_side)?;
    let (w, h) = (input.width, input.height);
    let total = u64::from(spec.frames);
    let cadence = u64::from(spec.dream.cadence.max(1));
    let done = out.frames_done().min(total);
    if done > 0 {
        tracing::info!(done, total, dir = %out.dir().display(), "resuming after the last complete frame");
    }
    let guide = load_guide(spec)?;
    // The last dreamed frame as written (8-bit RGB), which the frames
    // after it follow.
    let (mut next, mut previous) = match done {
        0 => (0, None),
        d => {
            let key = (d - 1) / cadence * cadence;
            (
                key + 1,
                Some(Arc::new(out.read_frame(key, w as u32, h as u32)?)),
            )
        }
    };
    // Frame 0 as written is the colour reference unless the job names
    // one, so a resumed render matches to the same one.
    let mut reference = match (load_color_reference(spec)?, spec.color.coherence, done) {
        (Some(named), _, _) => Some(named),
        (None, Some(space), 1..) => Some(ColorReference::new(
            &Planar::from_rgb8(w, h, &out.read_frame(0, w as u32, h as u32)?),
            space,
        )),
        _ => None,
    };
    let mut progress = FrameProgress::new(total, done);
    let mut report = RenderReport::default();
    let heard = |n, seconds| {
        progress.frame_done(n, seconds);
        on_frame(n, seconds);
        report.frame_seconds.push(seconds);
    };
    // Each frame's images (the warped input, the octaves' images, the
    // frame dreamed) are the last frame's spent ones.
    let mut spare = SpareImages::default();
    let dream = |n: u64,
                 image: &Planar,
                 spare: &mut SpareImages,
                 executor: &mut dyn TileExecutor|
     -> Result<Planar, RenderError> {
        let _span = tracing::info_span!("frame", n).entered();
        Ok(dream_frame(
            &spec.dream,
            min_side,
            &FramePlan::new(spec, n, &guide)?,
            image,
            executor,
            spare,
        )?)
    };
    // A resumed render's stream is first fed the frames on disk; one with
    // every frame on disk only assembles them.
    let stream = match video.encoding {
        VideoEncoding::WhileRendering if done < total => {
            VideoStream::start(video.path, w as u32, h as u32, &spec.video, done)
                .inspect_err(|e| tracing::warn!(error = %e, "no video encoder beside the render; the video will be assembled after the last frame"))
                .ok()
                .map(|stream| VideoFeed { stream, on_disk: done })
        }
        _ => None,
    };
    let streamed = std::thread::scope(|scope| -> Result<Option<VideoStream>, RenderError> {
        let mut writer = FrameWriter::start(scope, out, (w as u32, h as u32), stream, heard);
        let dreamed = (|| -> Result<(), RenderError> {
            while next < total {
                let started = Instant::now();
                // A frame that follows the last goes by regions when the
                // executor has them now and the frame allows it, and by
                // tiles when its regions were given up.
                let regions = match (&previous, executor.regions()) {
                    (Some(prev), Some(regions)) => {
                        let plan = FramePlan::new(spec, next, &guide)?;
                        if region_frames::eligible(spec, &plan) {
                            let _span = tracing::info_span!("frame", n = next).entered();
                            // Colour keeping is learned here, from the
                            // whole moved frame, and applied by each
                            // region's worker.
                            let moved = region_frames::Move::learn(
                                spec,
                                next,
                                reference.as_ref(),
                                (prev, (w, h)),
                                camera(spec, next, w, h),
                                &mut spare,
                            );
                            region_frames::dream(
                                spec,
                                &plan,
                                (w, h),
                                min_side,
                                prev,
                                &moved,
                                regions,
                            )?
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                let to_rgb = |mut image: Planar, spare: &mut SpareImages| {
                    let rgb = image.to_rgb8();
                    spare.keep(&mut image);
                    rgb
                };
                let frames = match (&previous, regions) {
                    (_, Some(rgb)) => vec![rgb],
                    (None, None) => {
                        vec![to_rgb(dream(0, input, &mut spare, executor)?, &mut spare)]
                    }
                    (Some(prev), None) => {
                        let key = next.div_ceil(cadence) * cadence;
                        // The camera path from the last dreamed frame:
                        // `carried` holds frames next.., `moved` the last.
                        let mut carried = Vec::new();
                        let mut moved =
                            warp_rgb8(w, h, prev, &camera(spec, next, w, h), &mut spare);
                        for m in next + 1..=key.min(total - 1) {
                            let further = warp(&moved, &camera(spec, m, w, h));
                            carried.push(std::mem::replace(&mut moved, further));
                        }
                        if key < total {
                            // `moved` is frame `key`: dreamed.
                            ColorAdjust::keep(
                                &spec.color,
                                (key, spec.frames),
                                reference.as_ref(),
                                &mut moved,
                            );
                            let dreamed = dream(key, &moved, &mut spare, executor)?;
                            spare.keep(&mut moved);
                            cross_fade(spec, &mut carried, &dreamed, key, w, h);
                            carried.push(dreamed);
                        } else {
                            carried.push(moved);
                        }
                        carried
                            .into_iter()
                            .map(|image| to_rgb(image, &mut spare))
                            .collect()
                    }
                };
                let seconds = started.elapsed().as_secs_f64() / frames.len() as f64;
                for rgb in frames {
                    let n = next;
                    next += 1;
                    // What is fed back is exactly what is on disk, so a
                    // resumed render continues from the same pixels as an
                    // uninterrupted one.
                    // Shared by the writer and, for a dreamed frame, the
                    // next frame's warp: 25 MB at 4K not copied.
                    let rgb = Arc::new(rgb);
                    if n % cadence == 0 {
                        if let (Some(space), 0) = (spec.color.coherence, n) {
                            reference.get_or_insert_with(|| {
                                ColorReference::new(&Planar::from_rgb8(w, h, &rgb), space)
                            });
                        }
                        // Kept as bytes, a quarter of its samples' memory:
                        // the next frame is warped straight from them.
                        previous = Some(Arc::clone(&rgb));
                    }
                    if n >= done {
                        writer.write(n, rgb, seconds)?;
                    }
                }
            }
            Ok(())
        })();
        // Frames queued before a failure are still written and reported:
        // finished work is never lost.
        let written = writer.finish();
        dreamed?;
        Ok(written?)
    })?;
    progress.finish();
    // Every frame went to the stream, in order: the video only has to end.
    let ended = streamed.map(|stream| {
        stream.finish().inspect_err(|e| {
            tracing::warn!(error = %e, "the video encoded while rendering failed; assembling it from the frames");
        })
    });
    if !matches!(ended, Some(Ok(()))) {
        assemble(&out.frame_pattern(), video.path, &spec.video, total)?;
    }
    Ok(report)
}

/// Cross-fades the frames `carried` (the last dreamed frame carried forward
/// to the frames just before `key`) into `dreamed` (frame `key`) carried
/// back to each of them: frame `key - i` gets weight `1 - i/k` of it.
fn cross_fade(
    spec: &JobSpec,
    carried: &mut [Planar],
    dreamed: &Planar,
    key: u64,
    w: usize,
    h: usize,
) {
    let k = u64::from(spec.dream.cadence) as f32;
    let mut back: Option<Planar> = None;
    for (i, frame) in carried.iter_mut().rev().enumerate() {
        let m = key - 1 - i as u64;
        let warped = warp(
            back.as_ref().unwrap_or(dreamed),
            &camera(spec, m + 1, w, h).inverse(),
        );
        let t = 1.0 - (i as f32 + 1.0) / k;
        for (a, &b) in frame.data.iter_mut().zip(&warped.data) {
            *a += (b - *a) * t;
        }
        back = Some(warped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `jpeg` with an EXIF block saying `orientation` (1 to 8) after its
    /// start marker, as a camera writes it.
    fn with_exif_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        // One entry: tag 0x0112 (Orientation), SHORT, count 1, the value.
        tiff.extend([1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0]);
        tiff.extend([0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend([0xff, 0xe1]);
        out.extend(u16::try_from(app1.len() + 2).expect("small").to_be_bytes());
        out.extend(app1);
        out.extend(&jpeg[2..]);
        out
    }

    #[test]
    fn a_photo_is_read_the_way_up_its_exif_says() {
        let (w, h) = (48u32, 32u32);
        let original = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, ((x + y) * 3) as u8])
        });
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(original)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .expect("encode");
        let dir = tempfile::tempdir().expect("temp dir");
        let read = |orientation: u8| {
            let path = dir.path().join(format!("o{orientation}.jpg"));
            std::fs::write(&path, with_exif_orientation(&jpeg, orientation)).expect("write");
            read_image(&path, "input image").expect("readable")
        };
        let upright = read(1);
        assert_eq!((upright.width, upright.height), (w as usize, h as usize));
        // 6: the camera was turned a quarter clockwise; shown turned back.
        let turned = read(6);
        assert_eq!((turned.width, turned.height), (h as usize, w as usize));
        let plane = |p: &Planar, x: usize, y: usize| p.channel(0)[y * p.width + x];
        for (x, y) in [(0, 0), (5, 17), (47, 31), (20, 3)] {
            assert_eq!(
                plane(&turned, h as usize - 1 - y, x),
                plane(&upright, x, y),
                "pixel ({x}, {y})"
            );
        }
    }
}
