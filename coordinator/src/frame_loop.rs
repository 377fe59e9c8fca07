//! One frame of the dream: octaves from small to large, each split into
//! tiles that an executor computes, stitched back with the tile grid's
//! cross-fade, with the detail the dream added carried from one octave to
//! the next (as in the original DeepDream notebook).

use std::sync::Arc;

use dreamfarm_common::objective::{FrameObjective, jitter_at};
use dreamfarm_common::params::{DreamSettings, JobSpec, ParamError};
use dreamfarm_common::resample::{Planar, SpareImages};

use crate::octave_rows::FrameRows;
use crate::tile_executor::{TileError, TileExecutor};

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

/// Dreams `input` as `plan` says and returns the dreamed frame. Its
/// images come from `spare` (the last frame's spent ones, when one frame
/// follows another) and go back there as they are spent.
///
/// Tiles go to `executor` as soon as the rows they read are known, and
/// each change that comes back completes what rows it can (see
/// [`FrameRows`]): an octave's top tiles start while the bottom of the
/// octave before is still out.
pub fn dream_frame(
    settings: &DreamSettings,
    min_side: usize,
    plan: &FramePlan,
    input: &Planar,
    executor: &mut dyn TileExecutor,
    spare: &mut SpareImages,
) -> Result<Planar, TileError> {
    let frame = plan.frame;
    if plan.objective.layers.is_empty() {
        // Every layer weighted 0 on this frame: nothing to dream.
        return Ok(input.clone());
    }
    let sizes = settings.octave_sizes(input.width, input.height, min_side);
    let mut rows = FrameRows::new(settings, plan, input, &sizes, spare);
    loop {
        let ready = rows.advance();
        if let Some(dreamed) = rows.finished() {
            return Ok(dreamed);
        }
        if !ready.is_empty() {
            executor.submit(ready)?;
        }
        if rows.outstanding() == 0 {
            return Err(TileError {
                frame,
                octave: 0,
                tile: 0,
                reason: "the frame stalled with no tile out (a frame loop bug)".into(),
            });
        }
        let (key, change) = executor.next()?;
        // A NaN would pass the clamp and come out a black frame.
        if !executor.changes_are_finite() && !change.is_finite() {
            return Err(TileError {
                frame,
                octave: key.octave,
                tile: key.tile,
                reason: "the dream went non-finite (NaN or infinity): lower --step-size or the layer weights".into(),
            });
        }
        if !rows.complete(key, change) {
            tracing::warn!(frame, ?key, "dropped a change for a tile that was not out");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use dreamfarm_common::region_frame::RegionFrame;
    use dreamfarm_common::region_plan::RegionPlan;
    use dreamfarm_common::tiling::{ImagePart, Rect, extract_stacked_from};
    use dreamfarm_common::work::TileWork;

    use super::*;
    use crate::tile_executor::{InOrder, TileKey};

    /// Returns changes full of `value`.
    struct Constant(f32, InOrder);

    impl TileExecutor for Constant {
        fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
            self.1.submit(work);
            Ok(())
        }

        fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
            let value = self.0;
            self.1.next(|w| {
                let (width, height) = w.change_size();
                let mut p = Planar::zeros(width, height);
                p.data.fill(value);
                Ok(p)
            })
        }
    }

    /// Holds every tile handed in and returns the oldest (FIFO) or the
    /// newest (LIFO) first. Each change is computed from the tile's own
    /// pixels (each tile of a batch from its own), so a tile that read
    /// rows not yet known changes the frame.
    struct Holding {
        lifo: bool,
        out: Vec<TileWork>,
        /// Whether tiles of two octaves were ever out at once.
        octaves_overlapped: bool,
        /// The most tiles in one batch.
        largest_batch: u32,
    }

    impl Holding {
        fn new(lifo: bool) -> Self {
            Self {
                lifo,
                out: Vec::new(),
                octaves_overlapped: false,
                largest_batch: 0,
            }
        }
    }

    impl TileExecutor for Holding {
        fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
            self.out.extend(work);
            let first = self.out[0].octave;
            self.octaves_overlapped |= self.out.iter().any(|w| w.octave != first);
            self.largest_batch = self
                .out
                .iter()
                .fold(self.largest_batch, |m, w| m.max(w.tiles));
            Ok(())
        }

        fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
            let w = if self.lifo {
                self.out.pop()
            } else {
                (!self.out.is_empty()).then(|| self.out.remove(0))
            }
            .expect("a tile is out");
            Ok((TileKey::of(&w), change_at_output(&w)))
        }
    }

    /// A change computed from each tile's own pixels under its output
    /// (each tile of a batch from its own), plus `spread` times the mean of
    /// all its pixels, margins and jitter room included, less a half: a
    /// tile that read a wrong pixel anywhere changes the frame.
    fn change_of(w: &TileWork, spread: f32) -> Planar {
        let (o, p) = (w.output, &w.pixels);
        let (tile_rows, (width, height)) = (w.tile_height(), w.change_size());
        let mut change = Planar::zeros(width, height);
        for k in 0..w.tiles as usize {
            let rows = (0..3).flat_map(|c| {
                let first = c * p.height + k * tile_rows;
                p.data[first * p.width..(first + tile_rows) * p.width].iter()
            });
            let mean = rows.sum::<f32>() / (3 * tile_rows * p.width) as f32;
            for c in 0..3 {
                for y in 0..o.height {
                    let row = c * p.height + k * tile_rows + y + o.y as usize;
                    for x in 0..o.width {
                        let v = p.data[row * p.width + x + o.x as usize];
                        change.data[(c * height + k * o.height + y) * width + x] =
                            0.3 * (0.5 - v) + spread * (mean - 0.5);
                    }
                }
            }
        }
        change
    }

    /// [`change_of`] from the pixels under the output alone (the frames
    /// the pinned digests hold).
    fn change_at_output(w: &TileWork) -> Planar {
        change_of(w, 0.0)
    }

    /// [`change_of`] from every pixel of each tile.
    fn change_from_whole_input(w: &TileWork) -> Planar {
        change_of(w, 0.05)
    }

    /// Computes each tile with a function of its work, in order.
    struct Computed(fn(&TileWork) -> Planar, InOrder);

    impl TileExecutor for Computed {
        fn submit(&mut self, work: Vec<TileWork>) -> Result<(), TileError> {
            self.1.submit(work);
            Ok(())
        }

        fn next(&mut self) -> Result<(TileKey, Planar), TileError> {
            let f = self.0;
            self.1.next(|w| Ok(f(&w)))
        }
    }

    /// The frame [`dream_frame`] gives, computed region by region instead
    /// (each region from its part of `input` alone, the regions' stages in
    /// lockstep, the changes of each stage passed between them), the tiles
    /// dreamed by `change`.
    fn dream_by_regions(
        s: &DreamSettings,
        min_side: usize,
        plan: &FramePlan,
        input: &Planar,
        change: fn(&TileWork) -> Planar,
    ) -> Planar {
        let (w, h) = (input.width, input.height);
        let sizes = s.octave_sizes(w, h, min_side);
        let regions = RegionPlan::new(s, plan.jitter, plan.objective.iterations, &sizes);
        let whole = ImagePart {
            samples: input,
            origin: (0, 0),
            size: (w, h),
        };
        let mut frames: Vec<RegionFrame> = regions
            .regions
            .iter()
            .enumerate()
            .map(|(r, region)| {
                let (columns, rows) = (region.input.columns.clone(), region.input.rows.clone());
                let rect = Rect {
                    x: columns.start as i64,
                    y: rows.start as i64,
                    width: columns.len(),
                    height: rows.len(),
                };
                let part = extract_stacked_from(whole, &[rect]);
                RegionFrame::new(&regions, r, plan.frame, plan.objective.clone(), part)
            })
            .collect();
        // The pixels each region fetches from each other one, which the
        // plan says beforehand for the scheduler to keep them together.
        let mut fetched = vec![vec![0u64; frames.len()]; frames.len()];
        while frames.iter().any(|f| f.stage().is_some()) {
            let changes: HashMap<usize, Planar> = frames
                .iter()
                .flat_map(RegionFrame::own_work)
                .map(|w| (w.tile as usize, change(&w)))
                .collect();
            for (r, f) in frames.iter_mut().enumerate() {
                if let Some((o, _)) = f.stage() {
                    for (t, area) in f.needs() {
                        fetched[r][regions.owners[o][t]] += area.pixels() as u64;
                    }
                }
                for first in f.missing() {
                    assert!(
                        f.take_change(first, changes[&first].clone()),
                        "batch {first}"
                    );
                }
                assert!(f.advance(), "every change of the stage was in");
            }
        }
        for (r, fetched) in fetched.iter().enumerate() {
            let named: Vec<(usize, u64)> = (0..fetched.len())
                .filter(|&n| fetched[n] > 0)
                .map(|n| (n, fetched[n]))
                .collect();
            assert_eq!(regions.reads_from(r), named, "region {r}'s reads");
        }
        let mut out = Planar::zeros(w, h);
        for (f, region) in frames.iter_mut().zip(&regions.regions) {
            let cell = f.finished().expect("every stage done");
            let (columns, rows) = (&region.cell.columns, &region.cell.rows);
            for c in 0..3 {
                for (k, y) in rows.clone().enumerate() {
                    let from = &cell.data[(c * rows.len() + k) * columns.len()..][..columns.len()];
                    out.data[(c * h + y) * w + columns.start..][..columns.len()]
                        .copy_from_slice(from);
                }
            }
        }
        out
    }

    /// Asserts that [`dream_by_regions`] gives [`dream_frame`]'s frame,
    /// with tiles dreamed from their output pixels and from all of them.
    fn regions_give_the_whole_frame(
        s: &DreamSettings,
        min_side: usize,
        plan: &FramePlan,
        input: &Planar,
        what: &str,
    ) {
        for change in [change_at_output, change_from_whole_input] {
            let mut executor = Computed(change, InOrder::default());
            let spare = &mut SpareImages::default();
            let whole =
                dream_frame(s, min_side, plan, input, &mut executor, spare).expect("dreamed");
            assert!(
                dream_by_regions(s, min_side, plan, input, change) == whole,
                "{what}"
            );
        }
    }

    /// Three octaves `scale` apart of two one-step passes on tiles of 24,
    /// the plan of frame 0 and a `width`×`height` noise input.
    fn small_frame(scale: f64, width: usize, height: usize) -> (DreamSettings, FramePlan, Planar) {
        let s = DreamSettings {
            octaves: 3,
            octave_scale: scale,
            iterations: 2.0.into(),
            iterations_per_lease: 1,
            tile_size: 24,
            tile_margin: 8,
            blend_band: 4,
            ..Default::default()
        };
        let plan = FramePlan {
            frame: 0,
            objective: Arc::new(FrameObjective::at(&s, 0, 1, 0, None).expect("objective")),
            jitter: 2,
        };
        let mut input = Planar::zeros(width, height);
        for (i, v) in input.data.iter_mut().enumerate() {
            *v = ((i * 7919) % 1000) as f32 / 999.0;
        }
        (s, plan, input)
    }

    #[test]
    fn octaves_overlap_and_the_order_tiles_come_back_in_changes_nothing() {
        let (s, plan, input) = small_frame(1.4, 160, 120);
        let run = |lifo| {
            let mut executor = Holding::new(lifo);
            let frame = dream_frame(
                &s,
                32,
                &plan,
                &input,
                &mut executor,
                &mut SpareImages::default(),
            )
            .expect("dreamed");
            (frame, executor.octaves_overlapped)
        };
        let (fifo, overlapped) = run(false);
        let (lifo, _) = run(true);
        assert!(
            overlapped,
            "the next octave's top tiles start before the last tiles of the one before are back"
        );
        assert!(
            fifo == lifo,
            "the frame depends on the order tiles came back in"
        );
        assert!(fifo != input, "the changes reached the frame");
    }

    #[test]
    fn the_frame_loops_arithmetic_is_pinned() {
        // Frames must stay the same bits from one version to the next (a
        // job resumed by a newer coordinator, a golden render): these are
        // the samples' SHA-256 of small frames of one and of two passes an
        // octave, as 97211c2 dreamed them.
        let (s, plan, input) = small_frame(1.4, 160, 120);
        let digest = |iterations_per_lease| {
            let s = DreamSettings {
                iterations_per_lease,
                ..s.clone()
            };
            let frame = dream_frame(
                &s,
                32,
                &plan,
                &input,
                &mut Holding::new(false),
                &mut SpareImages::default(),
            )
            .expect("dreamed");
            let bytes: Vec<u8> = frame.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            dreamfarm_common::digest::sha256_hex(&bytes[..]).expect("in memory")
        };
        assert_eq!(
            digest(1),
            "a1f6951f8e87e5c6170424f78f314c6cbf26b3829a768cf2c22dd8dca9d28888"
        );
        assert_eq!(
            digest(0),
            "9ef25fa4140af3dd3974d1fc5c52e85562f03cd84c3fc8067626f89b3cec7eed"
        );
    }

    #[test]
    fn batches_of_tiles_give_the_frame_that_single_tiles_do() {
        // Octaves of 48x24, 96x48 and 192x96: cells of 24 either way, so
        // batching (which asks for equal cells) keeps the grid.
        let (s, plan, input) = small_frame(2.0, 192, 96);
        let run = |tile_batch, lifo| {
            let s = DreamSettings {
                tile_batch,
                ..s.clone()
            };
            let mut executor = Holding::new(lifo);
            let frame = dream_frame(
                &s,
                16,
                &plan,
                &input,
                &mut executor,
                &mut SpareImages::default(),
            )
            .expect("dreamed");
            (frame, executor.largest_batch)
        };
        let (single, largest) = run(1, false);
        assert_eq!(largest, 1);
        for lifo in [false, true] {
            let (batched, largest) = run(3, lifo);
            assert_eq!(largest, 3, "the 8 columns' 6 inner tiles stack");
            assert!(
                batched == single,
                "batches of tiles changed the frame (lifo: {lifo})"
            );
        }
    }

    #[test]
    fn regions_computed_apart_give_the_whole_frames_bits() {
        // Octave scales that do and do not divide evenly, one pass and
        // several, batches of tiles, frames of one region and of many, and
        // tiles that read every pixel of their input.
        for (scale, w, h, per_lease, batch, tile, min_side) in [
            (1.4, 160, 120, 1, 1, 24, 32),
            (1.4, 160, 120, 0, 1, 24, 32),
            (2.0, 192, 96, 1, 3, 24, 16),
            (1.3, 150, 101, 0, 1, 40, 24),
            (1.5, 90, 60, 1, 1, 200, 16),
        ] {
            let (s, plan, input) = small_frame(scale, w, h);
            let s = DreamSettings {
                iterations_per_lease: per_lease,
                tile_batch: batch,
                tile_size: tile,
                ..s
            };
            let what = format!(
                "{w}x{h} by {scale}, {per_lease} steps a lease, batches of {batch}, tiles of {tile}"
            );
            regions_give_the_whole_frame(&s, min_side, &plan, &input, &what);
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
        assert!(
            dream_frame(
                &s,
                75,
                &plan(0),
                &input,
                &mut Constant(0.01, InOrder::default()),
                &mut SpareImages::default(),
            )
            .is_ok()
        );
        let e = dream_frame(
            &s,
            75,
            &plan(3),
            &input,
            &mut Constant(f32::NAN, InOrder::default()),
            &mut SpareImages::default(),
        )
        .expect_err("a NaN dream is refused")
        .to_string();
        assert!(
            e.starts_with("tile 0 of frame 3, octave 0: the dream went non-finite"),
            "{e}"
        );
    }

    #[test]
    fn regions_give_the_whole_frames_bits_under_random_settings() {
        // Frame sizes, octaves and their scale, tiles, margins, bands,
        // parallelism, batches, passes, jitter and smallest sides drawn at
        // random (within what a job's settings allow, tiles smaller): any
        // region that reads a pixel its part lacks, or a neighbour's change
        // it was not given, changes the frame.
        for case in 0..120 {
            let mut draw = (0..).map(|k| dreamfarm_common::seed::derive(0x5eed, &[case, k]));
            let mut below = |n: u64| draw.next().map_or(0, |v| v % n);
            let (w, h) = (16 + below(240) as usize, 16 + below(240) as usize);
            let margin = below(20) as u32;
            let (s, _, input) = small_frame(1.1 + below(150) as f64 / 100.0, w, h);
            let s = DreamSettings {
                octaves: 1 + below(5) as u32,
                iterations: ((1 + below(3)) as f64).into(),
                iterations_per_lease: below(3) as u32,
                tile_batch: 1 + below(3) as u32,
                tile_size: 16 + below(120) as u32,
                tile_margin: margin,
                blend_band: below(u64::from(margin) + 1) as u32,
                parallelism: [0, 2, 5, 16][below(4) as usize],
                ..s
            };
            let plan = FramePlan {
                frame: 0,
                objective: Arc::new(FrameObjective::at(&s, 0, 1, 0, None).expect("objective")),
                jitter: below(6) as u32,
            };
            let min_side = 8 + below(40) as usize;
            let what = format!(
                "case {case}: {w}x{h}, jitter {}, smallest side {min_side}, {s:?}",
                plan.jitter
            );
            regions_give_the_whole_frame(&s, min_side, &plan, &input, &what);
        }
    }
}
