//! What keeping a frame's colours costs, on the project's own code: the
//! README's long-render recipe (Lab coherence, contrast 1.1, sharpening
//! 0.3) on a 4K frame.
//!
//!     cargo bench -p dreamfarm-tests --bench color_keep
//!
//! Three costs, each the median seconds of BENCH_ROUNDS (default 7) with a
//! digest of every sample it made (a faster build must keep the digests):
//! - keep: the whole frame's keeping, which the coordinator does for a
//!   frame dreamed by tiles and `render` for every frame;
//! - learn: what the coordinator learns from the whole moved frame for a
//!   frame dreamed by regions;
//! - apply: the keeping of the frame's twelve parts (a 4K frame's regions),
//!   each with its margin, the workers' share summed.
//!
//! The frame is the astronaut scaled to BENCH_SIZE (default 3840x2160)
//! with its red raised, so that the keeping has colours to pull back; the
//! reference is the astronaut as it is. DREAMFARM_HOST_THREADS sets the
//! threads (default: every core).

use std::time::Instant;

use dreamfarm_common::area::Area;
use dreamfarm_common::color::{ColorAdjust, ColorReference, ColorSpace};
use dreamfarm_common::params::ColorSettings;
use dreamfarm_common::resample::{Planar, SpareImages, resize_with};
use dreamfarm_common::work::{kept_in_area, moved_area};
use dreamfarm_tests::{DIGEST_START, env_or, env_size, fold_digest, median, repo};

/// The frame's parts, as a 4K frame's regions: 4 columns, 3 rows.
const PARTS: (usize, usize) = (4, 3);

fn main() {
    // As the coordinator, `render` and the workers run: freed frames kept
    // for the next, not mapped and faulted in afresh each time.
    dreamfarm_proto::heap::keep_freed_memory();
    let (width, height) = env_size("BENCH_SIZE", (3840, 2160));
    let rounds: usize = env_or("BENCH_ROUNDS", 7);
    let astronaut = image::open(repo().join("assets/astronaut.png"))
        .expect("assets/astronaut.png")
        .to_rgb8();
    let still = Planar::from_rgb8(
        astronaut.width() as usize,
        astronaut.height() as usize,
        astronaut.as_raw(),
    );
    let reference = ColorReference::new(&still, ColorSpace::Lab);
    let mut frame = resize_with(&still, width, height, &mut SpareImages::default());
    for red in &mut frame.data[..width * height] {
        *red = (*red * 1.15).min(1.0);
    }
    let color = ColorSettings {
        coherence: Some(ColorSpace::Lab),
        contrast: 1.1.into(),
        sharpen: 0.3.into(),
        ..ColorSettings::default()
    };
    let at = (5, 100);

    let [mut keep, mut learn, mut apply] = ["keep", "learn", "apply"].map(Run::new);
    for _ in 0..rounds {
        let (kept, adjust) = keep.time(|| {
            let mut kept = frame.clone();
            let adjust = ColorAdjust::keep(&color, at, Some(&reference), &mut kept);
            (kept, adjust)
        });
        keep.fold(&kept.data);

        let learned = learn.time(|| ColorAdjust::learn(&color, at, Some(&reference), || &frame));
        assert_eq!(learned, adjust, "learned as kept");
        learn.fold(&learned_samples(&learned));

        let parts = part_ranges(width, height);
        let kept_parts = apply.time(|| {
            parts
                .iter()
                .map(|area| {
                    // As a region's worker: its part and the margin the
                    // keeping reads around it.
                    let (columns, rows) = moved_area(area, Some(&learned), (width, height));
                    let part = frame.crop(columns.clone(), rows.clone());
                    kept_in_area(&learned, part, (&columns, &rows), area)
                })
                .collect::<Vec<_>>()
        });
        for (part, Area { columns, rows }) in kept_parts.iter().zip(parts) {
            let whole = kept.crop(columns.clone(), rows.clone());
            assert!(
                *part == whole,
                "part {columns:?} x {rows:?} kept as in the whole frame"
            );
            apply.fold(&part.data);
        }
    }
    for run in [keep, learn, apply] {
        println!(
            "{width}x{height}, Lab coherence, contrast 1.1, sharpen 0.3: {} {:.4} s (median of {rounds}), digest {:016x}",
            run.name,
            median(run.seconds),
            run.digest
        );
    }
}

/// One cost's timings and the digest of what it made.
struct Run {
    /// What is timed.
    name: &'static str,
    /// Seconds, a round each.
    seconds: Vec<f64>,
    /// The digest of every sample made.
    digest: u64,
}

impl Run {
    /// A cost not yet timed.
    fn new(name: &'static str) -> Self {
        Self {
            name,
            seconds: Vec::new(),
            digest: DIGEST_START,
        }
    }

    /// `f`'s result, its time recorded.
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = f();
        self.seconds.push(started.elapsed().as_secs_f64());
        result
    }

    /// Folds `samples` into the digest.
    fn fold(&mut self, samples: &[f32]) {
        self.digest = fold_digest(self.digest, samples);
    }
}

/// The areas of the frame's [`PARTS`].
fn part_ranges(width: usize, height: usize) -> Vec<Area> {
    (0..PARTS.0 * PARTS.1)
        .map(|i| {
            let (column, row) = (i % PARTS.0, i / PARTS.0);
            Area {
                columns: column * width / PARTS.0..(column + 1) * width / PARTS.0,
                rows: row * height / PARTS.1..(row + 1) * height / PARTS.1,
            }
        })
        .collect()
}

/// Every number `adjust` holds, for the digest.
fn learned_samples(adjust: &ColorAdjust) -> Vec<f32> {
    let mut samples = Vec::new();
    if let Some(matching) = &adjust.matching {
        for map in matching.channels.iter().flatten() {
            samples.extend([map.lo, map.scale]);
            samples.extend(&map.mapped);
        }
    }
    if let Some(contrast) = adjust.contrast {
        samples.extend([contrast.mean, contrast.amount]);
    }
    samples
}
