//! The coordinator's memory budget: running jobs hold frame-sized buffers
//! (the frame, its octaves, the tiles in flight, the stitched changes, the
//! PNG) and an ffmpeg encoding their video, so each running job is charged
//! an estimate from its frame size, and a job that does not fit waits in
//! the queue instead of running the coordinator out of memory.

pub use dreamfarm_common::memory_limit::{human, memory_limit, parse_size};
use dreamfarm_common::params::JobSpec;

use crate::video::ENCODER_THREADS;

/// Bytes charged per pixel of a running job's frame: about fifteen
/// frame-sized f32 RGB buffers (12 bytes a pixel each) at the frame loop's
/// peak (octaves overlap, so each keeps its images until the next is
/// whole, and the last frame's spent images wait for the next frame's),
/// plus the 8-bit copies for the PNG. Fitted to the coordinator's measured
/// peak RSS with one job of 32 workers at 1080p (+0.42 GiB) and 4K
/// (+1.50 GiB; +0.41 and +1.43 GiB since); see the README.
pub const BYTES_PER_PIXEL: u64 = 192;

/// Bytes charged per running job whatever its size (tiles in flight and
/// their wire buffers, the job's thread).
pub const BYTES_PER_JOB: u64 = 80 << 20;

/// Share of the machine's (or container's) memory the budget takes by
/// default: the rest is the process itself, gRPC buffers and the page cache.
const DEFAULT_SHARE: f64 = 0.75;

/// Bytes per pixel of each frame a cadence holds beyond the usual ones:
/// the frames between two dreamed ones wait, in f32 RGB, for the second.
pub const BYTES_PER_CADENCE_PIXEL: u64 = 12;

/// Bytes an ffmpeg encoding a video holds whatever its size (its code,
/// x264's tables).
pub const ENCODER_BYTES: u64 = 96 << 20;

/// Bytes an ffmpeg encoding a video holds per pixel of it: x264's 40
/// frames of lookahead at the default preset, its reference frames and
/// ffmpeg's queue of input frames.
pub const ENCODER_BYTES_PER_PIXEL: u64 = 170;

/// Bytes per pixel for each of x264's threads: little, since they share
/// out the slices of one frame rather than hold a frame each.
pub const ENCODER_BYTES_PER_PIXEL_PER_THREAD: u64 = 5;

/// The memory an ffmpeg encoding `width`×`height` frames with `threads`
/// x264 threads holds at its peak: 3–36% above its peak RSS measured from
/// 640×360 to 4K with 1 to 8 threads (see the README).
pub fn encoder_bytes(width: u32, height: u32, threads: usize) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let per_pixel = ENCODER_BYTES_PER_PIXEL + ENCODER_BYTES_PER_PIXEL_PER_THREAD * threads as u64;
    ENCODER_BYTES + per_pixel * pixels
}

/// What every job is charged before its pixels: a budget below it runs
/// nothing (a size given without its unit is bytes: `6` for `6GiB`).
pub const SMALLEST_JOB_BYTES: u64 = BYTES_PER_JOB + ENCODER_BYTES;

/// Bytes per pixel a camera that turns holds beyond the usual ones: the
/// warp's padded source (four floats a pixel), kept from frame to frame.
pub const TURNING_BYTES_PER_PIXEL: u64 = 16;

/// The memory a running job `spec` of `width`×`height` frames is charged:
/// its frame loop's and its video encoder's. Both, whenever the video is
/// encoded: the heap keeps the frame loop's memory after the last frame
/// ([`dreamfarm_proto::heap`]), so an ffmpeg that assembles the video then needs as
/// much room beside it as one that encodes while the job renders.
pub fn job_bytes(width: u32, height: u32, spec: &JobSpec) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let waiting = u64::from(spec.dream.cadence.max(1) - 1);
    let turning = match spec.zoom.rotate.constant() {
        Some(0.0) => 0,
        _ => TURNING_BYTES_PER_PIXEL,
    };
    let per_pixel = BYTES_PER_PIXEL + BYTES_PER_CADENCE_PIXEL * waiting + turning;
    per_pixel * pixels + BYTES_PER_JOB + encoder_bytes(width, height, ENCODER_THREADS)
}

/// The memory the frame loop holds dreaming one `width`×`height` still
/// (`dreamfarm dream`): a job's frame buffers, without a video or a next
/// frame's.
pub fn still_bytes(width: u32, height: u32) -> u64 {
    BYTES_PER_PIXEL * u64::from(width) * u64::from(height) + BYTES_PER_JOB
}

/// The default budget: a share of the container's cgroup memory limit if it
/// has one, else of the machine's memory.
pub fn default_budget() -> u64 {
    let limit = memory_limit().map_or(4 << 30, |(bytes, _)| bytes);
    (limit as f64 * DEFAULT_SHARE) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use dreamfarm_common::schedule::Schedule;

    #[test]
    fn the_default_budget_is_a_share_of_the_limit() {
        assert!(default_budget() > 0);
    }

    #[test]
    fn a_camera_that_turns_is_charged_its_padded_source() {
        let schedule = |text| Schedule::parse("rotate", text).expect("a schedule");
        let charged = |rotate| {
            let mut spec = JobSpec::new("in.png".into(), 10);
            spec.zoom.rotate = rotate;
            job_bytes(3840, 2160, &spec)
        };
        let still = charged(0.0.into());
        assert_eq!(charged(schedule("0:(0), 5:(0)")), still);
        for turning in [0.5.into(), schedule("0:(0), 5:(1)"), schedule("0:(sin(t))")] {
            assert_eq!(
                charged(turning) - still,
                TURNING_BYTES_PER_PIXEL * 3840 * 2160
            );
        }
    }
}
