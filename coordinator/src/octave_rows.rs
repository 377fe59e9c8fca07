//! One frame's octave images as they fill in, top rows first, and the
//! tiles each new band of rows lets start: the frame loop's bookkeeping, so
//! that no octave waits for the whole of the one before it.
//!
//! A frame is a chain of images: each octave starts from the previous
//! octave's detail resized plus the frame resized to its size, and each
//! pass of tiles adds its cross-faded changes. A row of an image is known
//! once the rows it is computed from are, and, after a pass, once every
//! tile whose change reaches the row is back. A tile starts once the rows
//! of its input (margin, jitter room and mirrored edges included) are
//! known. Every sample is computed by the same arithmetic from the same
//! samples, whatever the order the tiles come back in, so a frame does not
//! depend on how, or how fast, it was computed.

use dreamfarm_common::objective::FrameObjective;
use dreamfarm_common::parallel;
use dreamfarm_common::params::DreamSettings;
use dreamfarm_common::resample::{Planar, RowResize, SpareImages, add_clamped_row, resize_with};
use dreamfarm_common::tiling::{Rect, TileChange, TileGrid, extract_stacked};
use dreamfarm_common::work::TileWork;
use std::sync::Arc;

use crate::frame_loop::FramePlan;
use crate::tile_executor::TileKey;

/// An image whose top `done` rows are known.
struct Rows {
    /// Empty until its first rows are computed, and again once spent.
    image: Planar,
    width: usize,
    height: usize,
    done: usize,
}

impl Rows {
    /// A `width`×`height` image with no row known yet.
    fn empty(width: usize, height: usize) -> Self {
        Self {
            image: Planar::zeros(0, 0),
            width,
            height,
            done: 0,
        }
    }

    /// Whether every row is known.
    fn is_complete(&self) -> bool {
        self.done == self.height
    }

    /// The image, taken from `spare` if it has none yet: rows are written
    /// before they are read, so a spent image's samples do.
    fn image_from(&mut self, spare: &mut SpareImages) -> &mut Planar {
        if self.image.data.is_empty() {
            self.image = spare.take(self.width, self.height);
        }
        &mut self.image
    }
}

/// One pass of tiles over an octave.
struct Pass {
    first_iteration: u32,
    iterations: u32,
    /// Tiles handed out so far, in index order (the rows a tile reads grow
    /// with its index).
    started: usize,
    /// Each tile's change, once back.
    changes: Vec<Option<TileChange>>,
    /// The first tile not back: rows above its output have all theirs.
    first_missing: usize,
}

/// One octave of the frame.
struct Octave {
    grid: TileGrid,
    /// For each batch's first tile, the index past its last (0 for the
    /// other tiles): see [`TileGrid::batches`].
    batch_ends: Vec<usize>,
    /// The frame resized to this octave (computed when the octave's first
    /// rows are, not before: the first octave's tiles wait for nothing
    /// else); its rows become the detail (last image minus base) as the
    /// last image's rows are known. Never made for the last octave, whose
    /// base is the frame itself.
    base: Planar,
    /// Rows of `base` that hold the detail.
    detail_done: usize,
    /// `images[p]` is what pass `p` reads; the last one the octave's result.
    images: Vec<Rows>,
    passes: Vec<Pass>,
    /// The previous octave's detail resized to this one (none for the
    /// first octave), computed into `images[0]`.
    from_previous: Option<RowResize>,
}

/// The rows a tile's input reads: its rows inside the image, and those
/// its mirrored edges reflect back in.
fn rows_read(input: Rect, height: usize) -> usize {
    let bottom = input.y + input.height as i64;
    bottom.max(-input.y).clamp(0, height as i64) as usize
}

/// `dst = clamp(dst + b, 0, 1)` over same-sized runs of `width`-sample
/// rows, in parallel.
fn add_clamped(dst: &mut [f32], b: &[f32], width: usize) {
    parallel::for_each_piece(dst, width, |row, piece| {
        add_clamped_row(piece, &b[row * width..]);
    });
}

/// Samples `rows` of every channel of a `width`×`height` image.
fn channel_rows(
    height: usize,
    width: usize,
    rows: std::ops::Range<usize>,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..3).map(move |c| (c * height + rows.start) * width..(c * height + rows.end) * width)
}

/// A frame being dreamed.
pub struct FrameRows<'a> {
    /// The frame being dreamed, which each octave's base is resized from.
    input: &'a Planar,
    frame: u64,
    objective: Arc<FrameObjective>,
    jitter: u32,
    /// Steps per pass.
    per_pass: u32,
    octaves: Vec<Octave>,
    /// Tiles handed out and not back.
    outstanding: usize,
    /// Where the frame's images come from and spent ones go.
    spare: &'a mut SpareImages,
}

impl<'a> FrameRows<'a> {
    /// Starts dreaming `input` at `sizes` (smallest first, the last being
    /// the frame's own) as `plan` says, its images taken from `spare` as
    /// they are needed and given back as they are spent.
    pub fn new(
        settings: &DreamSettings,
        plan: &FramePlan,
        input: &'a Planar,
        sizes: &[(usize, usize)],
        spare: &'a mut SpareImages,
    ) -> Self {
        let steps = plan.objective.iterations;
        let (per_pass, passes) = settings.passes(steps);
        let octaves = sizes
            .iter()
            .enumerate()
            .map(|(o, &(w, h))| {
                let grid = TileGrid::new(w, h, settings.tile_geometry(plan.jitter, w, h));
                let tiles = grid.len();
                Octave {
                    batch_ends: grid.batches(settings.tile_batch.max(1) as usize),
                    grid,
                    base: Planar::zeros(0, 0),
                    detail_done: 0,
                    images: (0..=passes).map(|_| Rows::empty(w, h)).collect(),
                    passes: (0..passes)
                        .map(|p| Pass {
                            first_iteration: p * per_pass,
                            iterations: per_pass.min(steps - p * per_pass),
                            started: 0,
                            changes: vec![None; tiles],
                            first_missing: 0,
                        })
                        .collect(),
                    from_previous: (o > 0).then(|| {
                        let (pw, ph) = sizes[o - 1];
                        RowResize::new(pw, ph, w, h, spare)
                    }),
                }
            })
            .collect();
        Self {
            input,
            frame: plan.frame,
            objective: plan.objective.clone(),
            jitter: plan.jitter,
            per_pass: per_pass.max(1),
            octaves,
            outstanding: 0,
            spare,
        }
    }

    /// Tiles handed out and not yet back.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Computes every row the known rows and changes determine and returns
    /// the tiles that can now start, in order.
    pub fn advance(&mut self) -> Vec<TileWork> {
        let mut ready = Vec::new();
        let last = self.octaves.len() - 1;
        for o in 0..=last {
            let (before, rest) = self.octaves.split_at_mut(o);
            let octave = &mut rest[0];
            octave.start_rows(before.last(), self.input, o == last, self.spare);
            if let Some(previous) = before.last_mut()
                && octave.images[0].is_complete()
                && previous.detail_done == previous.base.height
                && let Some(resize) = octave.from_previous.take()
            {
                // The previous octave's detail is spent.
                resize.spend(self.spare);
                self.spare.keep(&mut previous.base);
            }
            for p in 0..octave.passes.len() {
                let work =
                    octave.ready_tiles(p, self.frame, o as u32, &self.objective, self.jitter);
                self.outstanding += work.len();
                ready.extend(work);
                octave.blend_rows(p, self.spare);
            }
            octave.detail_rows(o == last, self.spare);
        }
        ready
    }

    /// Takes a change back (a batch's, stacked, under its first tile's
    /// key); false for one that is not out or does not split into its
    /// batch's tiles.
    pub fn complete(&mut self, key: TileKey, change: Planar) -> bool {
        let Some(octave) = self.octaves.get_mut(key.octave as usize) else {
            return false;
        };
        let tile = key.tile as usize;
        let end = octave.batch_ends.get(tile).copied().unwrap_or(0);
        let Some(pass) = octave
            .passes
            .get_mut((key.first_iteration / self.per_pass) as usize)
            .filter(|p| p.first_iteration == key.first_iteration)
        else {
            return false;
        };
        if end <= tile || tile >= pass.started || pass.changes[tile].is_some() {
            return false;
        }
        let Some(parts) = TileChange::split(change, end - tile) else {
            return false;
        };
        for (slot, part) in pass.changes[tile..end].iter_mut().zip(parts) {
            *slot = Some(part);
        }
        self.outstanding -= 1;
        true
    }

    /// The dreamed frame, once every row of the last octave is known.
    pub fn finished(&mut self) -> Option<Planar> {
        let last = self.octaves.last_mut()?.images.last_mut()?;
        if !last.is_complete() {
            return None;
        }
        Some(std::mem::replace(&mut last.image, Planar::zeros(0, 0)))
    }
}

impl Octave {
    /// The rows of the octave's first image: the previous octave's detail
    /// resized plus the base, clamped (the base alone for the first). The
    /// `last` octave is the frame's own size, so its base is `input` itself
    /// (a resize to the same size is an exact copy), read where it is.
    fn start_rows(
        &mut self,
        previous: Option<&Octave>,
        input: &Planar,
        last: bool,
        spare: &mut SpareImages,
    ) {
        let first = &mut self.images[0];
        if first.is_complete() {
            return;
        }
        let from = first.done;
        let to = match (&mut self.from_previous, previous) {
            (Some(resize), Some(previous)) => {
                let image = first.image_from(spare);
                resize.advance(&previous.base, previous.detail_done, image)
            }
            _ => {
                // The first octave: no detail yet.
                first.image_from(spare).data.fill(0.0);
                first.height
            }
        };
        if to == from {
            return;
        }
        let (w, h) = (first.width, first.height);
        let base = if last {
            debug_assert_eq!((w, h), (input.width, input.height));
            input
        } else {
            if from == 0 {
                self.base = resize_with(input, w, h, spare);
            }
            &self.base
        };
        for range in channel_rows(h, w, from..to) {
            // The image holds the resized detail (zero for the first
            // octave): image = clamp(detail + base).
            add_clamped(&mut first.image.data[range.clone()], &base.data[range], w);
        }
        first.done = to;
    }

    /// The batches of tiles of pass `p` whose input rows are now known.
    fn ready_tiles(
        &mut self,
        p: usize,
        frame: u64,
        octave: u32,
        objective: &Arc<FrameObjective>,
        jitter: u32,
    ) -> Vec<TileWork> {
        let (image, pass) = (&self.images[p], &mut self.passes[p]);
        let height = image.height;
        let (grid, ends) = (&self.grid, &self.batch_ends);
        let from = pass.started;
        let mut starts = Vec::new();
        let mut to = from;
        while to < grid.len()
            && (to..ends[to]).all(|i| rows_read(grid.tile(i).input, height) <= image.done)
        {
            starts.push(to);
            to = ends[to];
        }
        pass.started = to;
        let (first_iteration, iterations) = (pass.first_iteration, pass.iterations);
        let samples: usize = (from..to)
            .map(|i| {
                let input = grid.tile(i).input;
                input.width * input.height
            })
            .sum();
        parallel::map(starts.len(), 3 * samples, |k| {
            let start = starts[k];
            let t = grid.tile(start);
            let inputs: Vec<Rect> = (start..ends[start]).map(|i| grid.tile(i).input).collect();
            TileWork {
                frame,
                octave,
                tile: t.index as u32,
                objective: objective.clone(),
                first_iteration,
                iterations,
                jitter,
                pixels: extract_stacked(&image.image, &inputs),
                output: Rect {
                    x: t.output.x - t.input.x,
                    y: t.output.y - t.input.y,
                    ..t.output
                },
                tiles: inputs.len() as u32,
            }
        })
    }

    /// The rows of the image after pass `p` that its changes back so far
    /// complete: the image before plus the cross-faded changes, clamped.
    fn blend_rows(&mut self, p: usize, spare: &mut SpareImages) {
        let pass = &mut self.passes[p];
        while pass
            .changes
            .get(pass.first_missing)
            .is_some_and(Option::is_some)
        {
            pass.first_missing += 1;
        }
        let (before, after) = self.images.split_at_mut(p + 1);
        let (before, after) = (&before[p], &mut after[0]);
        let height = after.height;
        let covered = if pass.first_missing == self.grid.len() {
            height
        } else {
            self.grid.tile(pass.first_missing).output.y.max(0) as usize
        };
        let to = covered.min(before.done);
        let from = after.done;
        if to <= from {
            return;
        }
        let width = after.width;
        let blend = self.grid.blend(&pass.changes, from..to, 0..width);
        let image = after.image_from(spare);
        for (c, range) in channel_rows(height, width, from..to).enumerate() {
            // after = clamp(before + Σ weight × change), row by row: the
            // sum is built in the row it is written to, while in cache.
            let before = &before.image.data[range.clone()];
            parallel::for_each_piece(&mut image.data[range], width, |row, dst| {
                dst.fill(0.0);
                blend.add_row(c, from + row, dst);
                add_clamped_row(dst, &before[row * width..]);
            });
        }
        after.done = to;
        if after.is_complete() {
            // Every tile of the pass is back: its changes and the image
            // it read are spent.
            pass.changes = Vec::new();
            spare.keep(&mut self.images[p].image);
        }
    }

    /// Turns the base's rows into the detail as the octave's last image
    /// knows them (not for the last octave, whose image is the frame).
    fn detail_rows(&mut self, last_octave: bool, spare: &mut SpareImages) {
        let Some(result) = self.images.last() else {
            return;
        };
        if last_octave || result.done == self.detail_done {
            return;
        }
        let (w, h) = (self.base.width, self.base.height);
        for range in channel_rows(h, w, self.detail_done..result.done) {
            let image = &result.image.data[range.clone()];
            parallel::for_each_piece(&mut self.base.data[range], w, |row, piece| {
                for (b, &x) in piece.iter_mut().zip(&image[row * w..]) {
                    *b = x - *b;
                }
            });
        }
        self.detail_done = result.done;
        if self.detail_done == h
            && let Some(result) = self.images.last_mut()
        {
            // The next octave reads the detail, not the image.
            spare.keep(&mut result.image);
        }
    }
}
