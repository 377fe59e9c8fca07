//! A long zoom's drift and flicker, for each way of keeping it: colour
//! coherence off, LAB, HSV and RGB; LAB with a sharpening schedule; and
//! LAB with a cadence of 2 and 4 (dreaming every k-th frame). Targets: LAB
//! coherence keeps every frame's mean saturation within 15% and mean
//! luminance within 10% of frame 0's over 300 frames, while the last frame
//! keeps at least 0.8× frame 0's texture (mean absolute horizontal
//! gradient). Flicker: the mean absolute difference between consecutive
//! frames once the camera move is undone, in 8-bit levels.
//!
//!     cargo bench -p dreamfarm-tests --bench color_drift
//!
//! The recipe is tests/support/drift.rs's STILL and CAMERA (astronaut,
//! 160×160, zoom 1.03, rotate 0.3, 2 octaves × 4 steps). BENCH_FRAMES
//! (default 300) and BENCH_RUNS (default every run, by name:
//! "off,lab,hsv,rgb,lab-sharpen,lab-cadence2,lab-cadence4") choose the
//! runs; they run one after another on the same machine.

use std::time::Instant;

use dreamfarm_tests::drift::render_and_measure;
use dreamfarm_tests::env_or;

/// Every run: its name and its flags beyond the recipe.
const RUNS: &[(&str, &[&str])] = &[
    ("off", &["--color-coherence", "off"]),
    ("lab", &["--color-coherence", "lab"]),
    ("hsv", &["--color-coherence", "hsv"]),
    ("rgb", &["--color-coherence", "rgb"]),
    (
        "lab-sharpen",
        &["--color-coherence", "lab", "--sharpen", "0.4"],
    ),
    (
        "lab-cadence2",
        &["--color-coherence", "lab", "--cadence", "2"],
    ),
    (
        "lab-cadence4",
        &["--color-coherence", "lab", "--cadence", "4"],
    ),
];

fn main() {
    let frames: u32 = env_or("BENCH_FRAMES", 300);
    let all: Vec<&str> = RUNS.iter().map(|(name, _)| *name).collect();
    let wanted: String = env_or("BENCH_RUNS", all.join(","));
    println!(
        "run          | frames | max saturation drift | max luminance drift | last/first texture | flicker (levels) | s/frame"
    );
    for name in wanted.split(',') {
        let Some((_, flags)) = RUNS.iter().find(|(n, _)| *n == name) else {
            eprintln!("unknown run {name:?}: use some of {}", all.join(","));
            std::process::exit(2);
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let d = render_and_measure(dir.path(), frames, flags);
        let per_frame = started.elapsed().as_secs_f64() / f64::from(frames);
        println!(
            "{name:12} | {frames:6} | {:19.1}% | {:18.1}% | {:18.2} | {:16.2} | {per_frame:7.3}",
            d.saturation * 100.0,
            d.luminance * 100.0,
            d.texture,
            d.flicker
        );
    }
}
