//! What the region plan of a frame costs, by the plan's own arithmetic:
//! the bytes the coordinator sends each region (its input part as the
//! 8-bit frame) and takes back (its cell), the changes the regions fetch
//! from each other, and the octave samples they compute between them
//! against the whole frame loop's (docs/frame-loop-on-workers.md).
//!
//!     cargo run --release -p dreamfarm-common --example region_figures
//!
//! For the default recipe at 1080p and 4K, with its own tiles and with
//! `--parallelism 32`, one pass an octave, jitter 32.

use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::region_plan::{Area, RegionPlan};

/// Pixels of `area` that `rect` (an output, inside the image) covers.
fn overlap(area: &Area, rect: dreamfarm_common::tiling::Rect) -> usize {
    let (x, y) = (rect.x as usize, rect.y as usize);
    let span = |at: usize, len: usize, over: &std::ops::Range<usize>| {
        (at + len).min(over.end).saturating_sub(at.max(over.start))
    };
    span(x, rect.width, &area.columns) * span(y, rect.height, &area.rows)
}

fn main() {
    println!(
        "| frame, tiles | regions | coordinator out: input parts, 8-bit MB | in: cells, 8-bit MB | changes fetched between workers: Mpx, f32 MB | octave samples computed: regions / frame loop |"
    );
    println!("|---|---|---|---|---|---|");
    for (w, h) in [(1920, 1080), (3840, 2160)] {
        for parallelism in [0, 32] {
            let settings = DreamSettings {
                parallelism,
                ..Default::default()
            };
            let sizes = settings.octave_sizes(w, h, 75);
            let plan = RegionPlan::new(&settings, 32, 10, &sizes);
            let mut input = 0;
            let mut fetched = 0;
            let mut computed = 0;
            for (r, region) in plan.regions.iter().enumerate() {
                input += region.input.pixels();
                for (o, octave) in region.octaves.iter().enumerate() {
                    computed += octave.images.iter().map(Area::pixels).sum::<usize>();
                    for (p, blends) in octave.blends.iter().enumerate() {
                        let next = &octave.images[p + 1];
                        fetched += blends
                            .iter()
                            .filter(|&&t| plan.owners[o][t] != r)
                            .map(|&t| overlap(next, plan.grids[o].tile(t).output))
                            .sum::<usize>();
                    }
                }
            }
            let whole: usize = sizes.iter().map(|&(w, h)| w * h * (plan.passes + 1)).sum();
            let tiles = if parallelism == 0 {
                "default".to_string()
            } else {
                format!("--parallelism {parallelism}")
            };
            println!(
                "| {w}x{h}, {tiles} | {} | {:.0} | {:.0} | {:.1}, {:.0} | {:.1} / {:.1} Mpx ({:.2}×) |",
                plan.regions.len(),
                3.0 * input as f64 / 1e6,
                3.0 * (w * h) as f64 / 1e6,
                fetched as f64 / 1e6,
                12.0 * fetched as f64 / 1e6,
                computed as f64 / 1e6,
                whole as f64 / 1e6,
                computed as f64 / whole as f64,
            );
        }
    }
}
