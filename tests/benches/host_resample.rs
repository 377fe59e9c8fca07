//! The frame loop's resampling, the largest share of its host work, and
//! then the whole of that work: one frame's worth at 4K, on the
//! coordinator's own code.
//!
//!     cargo bench -p dreamfarm-tests --bench host_resample
//!
//! Each round of the resizes scales a noise frame down to every smaller
//! octave (the octaves' bases) and each octave up to the next (the
//! details carried between them), with the default recipe's octaves and
//! scale; each round of the warps moves the camera from the frame as
//! written (8-bit) into the next, by the default zoom (1.02), and by that
//! zoom with a 1° turn (the general, unseparable warp). Each prints the
//! median seconds per round with a digest of every sample made: a change
//! to the resampling should keep the digest (frames must not change) and
//! lower the time. Environment: BENCH_SIZE (default 3840x2160),
//! BENCH_ROUNDS (default 15); DREAMFARM_HOST_THREADS sets the threads
//! (default: every core).

use std::sync::Arc;
use std::time::Instant;

use dreamfarm_common::objective::{FrameObjective, jitter_at};
use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::resample::{Planar, SpareImages, Warp, resize_with, warp_rgb8};
use dreamfarm_coordinator::frame_loop::{FramePlan, dream_frame};
use dreamfarm_coordinator::tile_executor::Unchanged;
use dreamfarm_tests::{DIGEST_START, env_or, env_size, fold_digest, median};

/// A `width`×`height` frame of reproducible noise in `0..1`.
fn noise(width: usize, height: usize) -> Planar {
    let mut state = 0x2545_f491_u32;
    let data = (0..3 * width * height)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    Planar {
        width,
        height,
        data,
    }
}

fn main() {
    // The coordinator reuses its big buffers (`perf stat` on a 4K job: 2
    // page faults in 10 s); this single loop would hand them back to the
    // kernel at each free and fault them in, zeroed, at the next
    // allocation, a third of the frame loop's time that the coordinator
    // does not spend. Keep them, as the coordinator's allocator does.
    // SAFETY: `mallopt` sets two of glibc's thresholds under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    let (width, height) = env_size("BENCH_SIZE", (3840, 2160));
    let rounds: usize = env_or("BENCH_ROUNDS", 15);
    let frame = noise(width, height);
    // Smallest octave first, as the frame loop dreams them (a 4K frame's
    // octaves are all large enough for the network).
    let recipe = DreamSettings::default();
    let sizes = recipe.octave_sizes(width, height, 0);
    let mut spare = SpareImages::default();
    let mut digest = DIGEST_START;
    let mut seconds = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut made = Vec::new();
        for pair in sizes.windows(2) {
            let ((w0, h0), (w1, h1)) = (pair[0], pair[1]);
            let base = resize_with(&frame, w0, h0, &mut spare);
            made.push(resize_with(&base, w1, h1, &mut spare));
            made.push(base);
        }
        seconds.push(started.elapsed().as_secs_f64());
        for mut image in made {
            digest = fold_digest(digest, &image.data);
            spare.keep(&mut image);
        }
    }
    println!(
        "{width}x{height}, {} octaves of {}: {:.4} s per frame's resizes (median of {rounds}), digest {digest:016x}",
        recipe.octaves,
        recipe.octave_scale,
        median(seconds)
    );
    let written = frame.to_rgb8();
    for rotate_deg in [0.0, 1.0] {
        let camera = Warp {
            zoom: 1.02,
            rotate_deg,
            pan: (0.0, 0.0),
            center: (width as f64 / 2.0, height as f64 / 2.0),
        };
        let mut digest = DIGEST_START;
        let mut seconds = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let mut moved = warp_rgb8(width, height, &written, &camera, &mut spare);
            seconds.push(started.elapsed().as_secs_f64());
            digest = fold_digest(digest, &moved.data);
            spare.keep(&mut moved);
        }
        println!(
            "{width}x{height}, zoom 1.02, turn {rotate_deg}°: {:.4} s per frame's camera move (median of {rounds}), digest {digest:016x}",
            median(seconds)
        );
    }
    let plan = FramePlan {
        frame: 0,
        objective: Arc::new(
            FrameObjective::at(&recipe, 0, 1, 0, None).expect("the default recipe"),
        ),
        jitter: jitter_at(&recipe, 0, 1),
    };
    let mut digest = DIGEST_START;
    let mut seconds = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut dreamed = dream_frame(
            &recipe,
            0,
            &plan,
            &frame,
            &mut Unchanged::default(),
            &mut spare,
        )
        .expect("a frame with no change");
        seconds.push(started.elapsed().as_secs_f64());
        digest = fold_digest(digest, &dreamed.data);
        spare.keep(&mut dreamed);
    }
    println!(
        "{width}x{height}, default recipe, no change: {:.4} s per frame's frame loop (median of {rounds}), digest {digest:016x}",
        median(seconds)
    );
}
