//! One frame of the dream: octaves from small to large, each split into
//! tiles that an executor computes, stitched back with the tile grid's
//! cross-fade, with the detail the dream added carried from one octave to
//! the next (as in the original DeepDream notebook).

use std::sync::Arc;

use dreamfarm_common::objective::{FrameObjective, jitter_at};
use dreamfarm_common::parallel;
use dreamfarm_common::params::{DreamSettings, JobSpec, ParamError};
use dreamfarm_common::resample::{Planar, resize};
use dreamfarm_common::tiling::{Rect, TileGeometry, TileGrid, extract};
use dreamfarm_common::work::TileWork;

use crate::tile_executor::{TileError, TileExecutor};

/// Sizes of the octaves of a `width`×`height` frame, smallest first, the
/// last being the frame itself. Octaves smaller than `min_side` on either
/// side are dropped: the network cannot see them.
pub fn octave_sizes(
    width: usize,
    height: usize,
    settings: &DreamSettings,
    min_side: usize,
) -> Vec<(usize, usize)> {
    (0..settings.octaves)
        .rev()
        .map(|o| {
            let f = settings.octave_scale.powi(o as i32);
            (
                ((width as f64) / f).round() as usize,
                ((height as f64) / f).round() as usize,
            )
        })
        .filter(|&(w, h)| w.min(h) >= min_side || (w, h) == (width, height))
        .collect()
}

/// The tile geometry of a job on a `width`×`height` octave of a frame
/// whose jitter is `jitter`.
pub fn geometry(
    settings: &DreamSettings,
    jitter: u32,
    width: usize,
    height: usize,
) -> TileGeometry {
    TileGeometry {
        tile_size: settings.tile_side(width, height),
        margin: settings.tile_margin as usize,
        band: settings.blend_band as usize,
        jitter: jitter as usize,
    }
}

/// One frame to dream: its number, its objective and its jitter (the
/// job's schedules evaluated there).
#[derive(Debug, Clone)]
pub struct FramePlan {
    /// Frame number.
    pub frame: u64,
    /// What its dream maximises, shared by all its tiles.
    pub objective: Arc<FrameObjective>,
    /// Largest window shift.
    pub jitter: u32,
}

impl FramePlan {
    /// Frame `frame` of `spec`, whose guide image is `guide`.
    pub fn new(
        spec: &JobSpec,
        frame: u64,
        guide: &Option<Arc<Planar>>,
    ) -> Result<Self, ParamError> {
        let objective =
            FrameObjective::at(&spec.dream, frame, spec.frames, spec.seed, guide.clone())?;
        Ok(Self {
            frame,
            objective: Arc::new(objective),
            jitter: jitter_at(&spec.dream, frame, spec.frames),
        })
    }
}

/// Dreams `input` as `plan` says and returns the dreamed frame.
pub fn dream_frame(
    settings: &DreamSettings,
    min_side: usize,
    plan: &FramePlan,
    input: &Planar,
    executor: &mut dyn TileExecutor,
) -> Result<Planar, TileError> {
    let frame = plan.frame;
    if plan.objective.layers.is_empty() {
        // Every layer weighted 0 on this frame: nothing to dream.
        return Ok(input.clone());
    }
    let sizes = octave_sizes(input.width, input.height, settings, min_side);
    let (w0, h0) = sizes[0];
    let mut detail = Planar::zeros(w0, h0);
    // Each octave starts from the input at its size plus the detail so far.
    let mut image = Planar::zeros(0, 0);
    let steps = plan.objective.iterations;
    let per_lease = match settings.iterations_per_lease {
        0 => steps,
        k => k.min(steps),
    };
    for (octave, &(w, h)) in sizes.iter().enumerate() {
        let _span = tracing::debug_span!("octave", octave, w, h).entered();
        let mut base = resize(input, w, h);
        image = resize(&detail, w, h);
        add_into(&mut image, &base);
        let grid = TileGrid::new(w, h, geometry(settings, plan.jitter, w, h));
        for first in (0..steps).step_by(per_lease as usize) {
            let iterations = per_lease.min(steps - first);
            let work = parallel::map(grid.len(), 3 * w * h, |i| {
                let t = grid.tile(i);
                TileWork {
                    frame,
                    octave: octave as u32,
                    tile: t.index as u32,
                    objective: plan.objective.clone(),
                    first_iteration: first,
                    iterations,
                    jitter: plan.jitter,
                    pixels: extract(&image, t.input),
                    output: Rect {
                        x: t.output.x - t.input.x,
                        y: t.output.y - t.input.y,
                        ..t.output
                    },
                }
            });
            let changes = executor.run(work)?;
            // A NaN would pass the clamp below and come out a black frame.
            if let Some(bad) = changes
                .iter()
                .position(|c| c.data.iter().any(|v| !v.is_finite()))
            {
                return Err(TileError {
                    frame,
                    octave: octave as u32,
                    tile: bad as u32,
                    reason: "the dream went non-finite (NaN or infinity): lower --step-size or the layer weights".into(),
                });
            }
            add_into(&mut image, &grid.blend(&changes));
        }
        // The detail is `image - base`, computed in `base`'s buffer.
        zip_pieces(&mut base, &image, |b, x| *b = x - *b);
        detail = base;
    }
    Ok(image)
}

/// `a += b`, clamped to the valid range. In place: these are frame-sized
/// buffers, and a fresh one costs a page fault per 4 KiB.
fn add_into(a: &mut Planar, b: &Planar) {
    zip_pieces(a, b, |x, y| *x = (*x + y).clamp(0.0, 1.0));
}

/// `f(a, b)` for every sample of same-sized `a` and `b`, in parallel.
fn zip_pieces(a: &mut Planar, b: &Planar, f: impl Fn(&mut f32, f32) + Sync) {
    debug_assert_eq!((a.width, a.height), (b.width, b.height));
    let width = a.width;
    parallel::for_each_piece(&mut a.data, width, |row, piece| {
        for (x, &y) in piece.iter_mut().zip(&b.data[row * width..]) {
            f(x, y);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octaves_end_at_the_frame_and_skip_what_the_net_cannot_see() {
        let s = DreamSettings {
            octaves: 4,
            octave_scale: 2.0,
            ..Default::default()
        };
        assert_eq!(
            octave_sizes(800, 400, &s, 75),
            vec![(200, 100), (400, 200), (800, 400)]
        );
        let s = DreamSettings {
            octaves: 1,
            ..Default::default()
        };
        assert_eq!(octave_sizes(64, 64, &s, 75), vec![(64, 64)]);
    }

    /// Returns changes full of `value`.
    struct Constant(f32);

    impl TileExecutor for Constant {
        fn run(&mut self, work: Vec<TileWork>) -> Result<Vec<Planar>, TileError> {
            Ok(work
                .iter()
                .map(|w| {
                    let mut p = Planar::zeros(w.output.width, w.output.height);
                    p.data.fill(self.0);
                    p
                })
                .collect())
        }
    }

    #[test]
    fn a_non_finite_dream_fails_the_frame_instead_of_writing_black() {
        let s = DreamSettings {
            octaves: 1,
            iterations: 1.0.into(),
            ..Default::default()
        };
        let plan = |frame| FramePlan {
            frame,
            objective: Arc::new(FrameObjective::at(&s, frame, 4, 0, None).expect("objective")),
            jitter: 32,
        };
        let input = Planar::zeros(96, 96);
        assert!(dream_frame(&s, 75, &plan(0), &input, &mut Constant(0.01)).is_ok());
        let e = dream_frame(&s, 75, &plan(3), &input, &mut Constant(f32::NAN))
            .expect_err("a NaN dream is refused")
            .to_string();
        assert!(
            e.starts_with("tile 0 of frame 3, octave 0: the dream went non-finite"),
            "{e}"
        );
    }
}
