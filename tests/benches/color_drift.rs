//! Colour drift of a long zoom, with and without colour coherence: the
//! target is LAB coherence keeping every frame's mean saturation within
//! 15% and mean luminance within 10% of frame 0's over 300 frames, while
//! the last frame keeps at least 0.8× frame 0's texture (mean absolute
//! horizontal gradient).
//!
//!     cargo bench -p dreamfarm-tests --bench color_drift
//!
//! The recipe is tests/support/drift.rs's STILL and CAMERA (astronaut,
//! 160×160, zoom 1.03, rotate 0.3, 2 octaves × 4 steps). BENCH_FRAMES
//! (default 300) and
//! BENCH_MODES (default "off,lab,hsv,rgb") choose the runs.

use std::time::Instant;

use dreamfarm_tests::drift::render_and_measure;
use dreamfarm_tests::env_or;

fn main() {
    let frames: u32 = env_or("BENCH_FRAMES", 300);
    let modes: String = env_or("BENCH_MODES", "off,lab,hsv,rgb".into());
    println!(
        "coherence | frames | max saturation drift | max luminance drift | last/first texture | s/frame"
    );
    for mode in modes.split(',') {
        let dir = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let d = render_and_measure(dir.path(), frames, &["--color-coherence", mode]);
        let per_frame = started.elapsed().as_secs_f64() / f64::from(frames);
        println!(
            "{mode:9} | {frames:6} | {:19.1}% | {:18.1}% | {:18.2} | {per_frame:7.3}",
            d.saturation * 100.0,
            d.luminance * 100.0,
            d.texture
        );
    }
}
