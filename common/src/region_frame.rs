//! One region's share of a frame's dream, computed apart from the rest of
//! the frame: from the frame to dream over the region's input area and the
//! changes of the neighbouring regions' tiles, the frame's pixels over the
//! region's cell, the same bits as the whole frame loop gives there
//! (`docs/frame-loop-on-workers.md`).
//!
//! The octaves and passes go in lockstep stages: at each, the region
//! dreams its own tiles (or has them dreamed), takes the changes of every
//! tile over the next image's part, its own and its neighbours', and
//! cross-fades them in. Every sample is computed by the frame loop's
//! arithmetic from the same samples: the rectangle-exact resizes, the
//! clamped sums and the cross-fade over a rectangle.

use std::sync::Arc;

use crate::area::Area;
use crate::objective::FrameObjective;
use crate::region_plan::RegionPlan;
use crate::resample::{Planar, Resize, SpareImages, add_clamped_row};
use crate::tiling::{ImagePart, Rect, TileChange, extract_stacked_from};
use crate::work::TileWork;

/// A part of an octave's image: its samples over `area`.
struct Part {
    samples: Planar,
    area: Area,
}

impl Part {
    /// The image part's column and row of its first sample.
    fn origin(&self) -> (usize, usize) {
        (self.area.columns.start, self.area.rows.start)
    }

    /// Channel `c`'s samples of image row `y` over `area`'s columns.
    fn row(&self, c: usize, y: usize, area: &Area) -> &[f32] {
        let (w, h) = (self.samples.width, self.samples.height);
        let x = area.columns.start - self.area.columns.start;
        let row = (c * h + y - self.area.rows.start) * w;
        &self.samples.data[row + x..][..area.columns.len()]
    }

    /// `area` (within this part's) as a part of its own.
    fn crop(&self, area: &Area) -> Part {
        let (x, y) = self.origin();
        let columns = area.columns.start - x..area.columns.end - x;
        let rows = area.rows.start - y..area.rows.end - y;
        Part {
            samples: self.samples.crop(columns, rows),
            area: area.clone(),
        }
    }
}

/// One region's share of one frame, stage by stage.
pub struct RegionFrame<'p> {
    plan: &'p RegionPlan,
    region: usize,
    frame: u64,
    objective: Arc<FrameObjective>,
    /// The frame to dream over the region's input area.
    input: Part,
    /// The stage: octave and pass.
    octave: usize,
    pass: usize,
    /// The octave's base over its first image's part (not kept on the
    /// top octave, whose base is the input).
    base: Option<Part>,
    /// The image the pass reads, over its part.
    image: Part,
    /// The changes of the pass's tiles, by index, as they come.
    changes: Vec<Option<TileChange>>,
    /// The frame's pixels over the cell, once the last stage is done.
    finished: Option<Planar>,
}

impl<'p> RegionFrame<'p> {
    /// Starts region `region` of `plan` on frame `frame`, whose objective
    /// is `objective`, from `input`: the frame to dream over the region's
    /// input area.
    ///
    /// # Panics
    ///
    /// If `input` is not the size of the region's input area, or the
    /// objective's steps are not those the plan was made for.
    pub fn new(
        plan: &'p RegionPlan,
        region: usize,
        frame: u64,
        objective: Arc<FrameObjective>,
        input: Planar,
    ) -> Self {
        let area = plan.regions[region].input.clone();
        assert_eq!(
            (input.width, input.height),
            (area.columns.len(), area.rows.len()),
            "region {region}'s input"
        );
        assert_eq!(
            objective.iterations, plan.steps,
            "the steps the plan was made for"
        );
        let mut this = Self {
            plan,
            region,
            frame,
            objective,
            input: Part {
                samples: input,
                area,
            },
            octave: 0,
            pass: 0,
            base: None,
            image: Part {
                samples: Planar::zeros(0, 0),
                area: Area::default(),
            },
            changes: Vec::new(),
            finished: None,
        };
        this.start_octave(0, None);
        this
    }

    /// The stage to compute, octave and pass; none once finished.
    pub fn stage(&self) -> Option<(usize, usize)> {
        self.finished.is_none().then_some((self.octave, self.pass))
    }

    /// The work of the region's own batches at this stage, for whoever
    /// dreams them; their changes come back through
    /// [`take_change`](Self::take_change).
    pub fn own_work(&self) -> Vec<TileWork> {
        if self.finished.is_some() {
            return Vec::new();
        }
        let (o, p) = (self.octave, self.pass);
        let (grid, ends) = (&self.plan.grids[o], &self.plan.batches[o]);
        let part = ImagePart {
            samples: &self.image.samples,
            origin: self.image.origin(),
            size: self.plan.sizes[o],
        };
        let steps = self.objective.iterations;
        let first_iteration = p as u32 * self.plan.per_pass;
        self.plan
            .own_batches(self.region, o)
            .map(|first| {
                let t = grid.tile(first);
                let inputs: Vec<Rect> = (first..ends[first]).map(|i| grid.tile(i).input).collect();
                TileWork {
                    frame: self.frame,
                    octave: o as u32,
                    tile: first as u32,
                    objective: self.objective.clone(),
                    first_iteration,
                    iterations: self.plan.per_pass.min(steps - first_iteration),
                    jitter: self.plan.jitter,
                    pixels: extract_stacked_from(part, &inputs),
                    output: Rect {
                        x: t.output.x - t.input.x,
                        y: t.output.y - t.input.y,
                        ..t.output
                    },
                    tiles: inputs.len() as u32,
                }
            })
            .collect()
    }

    /// The batches (by first tile) whose changes this stage cross-fades and
    /// has not got yet, its own among them.
    pub fn missing(&self) -> Vec<usize> {
        let Some((o, p)) = self.stage() else {
            return Vec::new();
        };
        let blends = &self.plan.regions[self.region].octaves[o].blends[p];
        let mut firsts: Vec<usize> = blends
            .iter()
            .filter(|&&t| self.changes.get(t).is_none_or(Option::is_none))
            .map(|&t| self.plan.batch_of(o, t))
            .collect();
        firsts.dedup();
        firsts
    }

    /// The tiles of other regions' batches whose changes this stage
    /// cross-fades and has not got yet, each with the part of its change
    /// it reads (within the tile's change, from its top-left corner): what
    /// a worker fetches from its neighbours.
    pub fn needs(&self) -> Vec<(usize, Area)> {
        let Some((o, p)) = self.stage() else {
            return Vec::new();
        };
        let plan = self.plan;
        plan.regions[self.region].octaves[o].blends[p]
            .iter()
            .filter(|&&t| {
                plan.owners[o][t] != self.region && self.changes.get(t).is_none_or(Option::is_none)
            })
            .map(|&t| (t, plan.read_of(self.region, o, p, t)))
            .collect()
    }

    /// Takes part `area` of tile `tile`'s change at this stage, as
    /// [`needs`](Self::needs) named it (the rest of the change is never
    /// read, so never held); false for a tile this stage does not blend,
    /// another area, or a part that is not the area's size.
    pub fn take_tile_part(&mut self, tile: usize, area: &Area, part: Planar) -> bool {
        let Some((o, p)) = self.stage() else {
            return false;
        };
        let blends = &self.plan.regions[self.region].octaves[o].blends[p];
        if !blends.contains(&tile)
            || *area != self.plan.read_of(self.region, o, p, tile)
            || (part.width, part.height) != (area.columns.len(), area.rows.len())
        {
            return false;
        }
        let out = self.plan.grids[o].tile(tile).output;
        let origin = (area.columns.start, area.rows.start);
        let Some(change) = TileChange::part(part, origin, (out.width, out.height)) else {
            return false;
        };
        self.changes.resize(self.plan.grids[o].len(), None);
        self.changes[tile] = Some(change);
        true
    }

    /// Takes the change of the batch from tile `first` at this stage
    /// (stacked as a lease returns it); false for a batch this stage does
    /// not blend or a change that does not split into its tiles.
    pub fn take_change(&mut self, first: usize, change: impl Into<Arc<Planar>>) -> bool {
        let Some((o, _)) = self.stage() else {
            return false;
        };
        let end = self.plan.batches[o].get(first).copied().unwrap_or(0);
        if end <= first {
            return false;
        }
        let Some(parts) = TileChange::split(change, end - first) else {
            return false;
        };
        self.changes.resize(self.plan.grids[o].len(), None);
        for (slot, part) in self.changes[first..end].iter_mut().zip(parts) {
            *slot = Some(part);
        }
        true
    }

    /// Cross-fades the stage's changes into the next image's part and
    /// moves to the next stage, once every change it blends is in; false
    /// while one is missing.
    pub fn advance(&mut self) -> bool {
        if self.stage().is_none() || !self.missing().is_empty() {
            return false;
        }
        let (o, p) = (self.octave, self.pass);
        let octave = &self.plan.regions[self.region].octaves[o];
        let next = octave.images[p + 1].clone();
        let blend =
            self.plan.grids[o].blend(&self.changes, next.rows.clone(), next.columns.clone());
        let (w, h) = (next.columns.len(), next.rows.len());
        let mut samples = Planar::zeros(w, h);
        for (k, dst) in samples.data.chunks_exact_mut(w.max(1)).enumerate() {
            let (c, y) = (k / h, next.rows.start + k % h);
            // after = clamp(Σ weight × change + before), as the frame
            // loop adds them.
            blend.add_row(c, y, dst);
            add_clamped_row(dst, self.image.row(c, y, &next));
        }
        self.image = Part {
            samples,
            area: next,
        };
        self.changes.clear();
        if p + 1 < self.plan.passes {
            self.pass += 1;
        } else {
            self.finish_octave();
        }
        true
    }

    /// The frame's pixels over the region's cell, once every stage is
    /// done.
    pub fn finished(&mut self) -> Option<Planar> {
        self.finished.take()
    }

    /// Starts octave `o`: its base over its first image's part (the frame
    /// resized, the frame itself on the top octave) and that first image,
    /// the previous octave's `detail` resized onto the base, clamped.
    fn start_octave(&mut self, o: usize, detail: Option<Part>) {
        let plan = self.plan;
        let last = plan.sizes.len() - 1;
        let area = plan.regions[self.region].octaves[o].images[0].clone();
        let (w, h) = plan.sizes[o];
        let mut spare = SpareImages::default();
        let base = if o == last {
            self.input.crop(&area)
        } else {
            let (fw, fh) = plan.sizes[last];
            let resize = Resize::new(fw, fh, w, h);
            let (columns, rows) = (area.columns.clone(), area.rows.clone());
            let samples = resize.rect(
                &self.input.samples,
                self.input.origin(),
                columns,
                rows,
                &mut spare,
            );
            Part {
                samples,
                area: area.clone(),
            }
        };
        let mut first = match detail {
            Some(detail) => {
                let (pw, ph) = plan.sizes[o - 1];
                let resize = Resize::new(pw, ph, w, h);
                let (columns, rows) = (area.columns.clone(), area.rows.clone());
                resize.rect(&detail.samples, detail.origin(), columns, rows, &mut spare)
            }
            // The first octave: no detail yet.
            None => Planar::zeros(area.columns.len(), area.rows.len()),
        };
        // image = clamp(detail + base).
        add_clamped_row(&mut first.data, &base.samples.data);
        self.octave = o;
        self.pass = 0;
        self.image = Part {
            samples: first,
            area,
        };
        self.base = (o < last).then_some(base);
        if plan.passes == 0 {
            self.finish_octave();
        }
    }

    /// Ends the octave: the frame's pixels on the top octave, else the
    /// detail the dream added over the part the next octave reads, and the
    /// next octave started.
    fn finish_octave(&mut self) {
        let Some(base) = self.base.take() else {
            let image = std::mem::replace(&mut self.image.samples, Planar::zeros(0, 0));
            self.finished = Some(image);
            return;
        };
        let area = self.image.area.clone();
        let mut detail = base.crop(&area);
        // detail = image - base.
        for (b, &x) in detail.samples.data.iter_mut().zip(&self.image.samples.data) {
            *b = x - *b;
        }
        self.start_octave(self.octave + 1, Some(detail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::DreamSettings;

    #[test]
    fn a_neighbours_part_is_taken_only_as_needs_named_it() {
        let settings = DreamSettings {
            octaves: 2,
            octave_scale: 1.3,
            iterations: 2.0.into(),
            tile_size: 32,
            tile_margin: 10,
            blend_band: 5,
            ..Default::default()
        };
        let sizes = settings.octave_sizes(150, 101, 32);
        let plan = RegionPlan::new(&settings, 3, 2, &sizes);
        let objective = Arc::new(FrameObjective::at(&settings, 0, 1, 0, None).expect("objective"));
        let area = &plan.regions[0].input;
        let input = Planar::zeros(area.columns.len(), area.rows.len());
        let mut region = RegionFrame::new(&plan, 0, 0, objective, input);
        let (tile, area) = region
            .needs()
            .into_iter()
            .next()
            .expect("a neighbour's tile");
        let part = |a: &Area| Planar::zeros(a.columns.len(), a.rows.len());
        let narrower = Area {
            columns: area.columns.start..area.columns.end - 1,
            ..area.clone()
        };
        assert!(
            !region.take_tile_part(tile, &narrower, part(&narrower)),
            "an area other than the one named"
        );
        assert!(
            !region.take_tile_part(tile, &area, part(&narrower)),
            "a part not the area's size"
        );
        assert!(
            !region.take_tile_part(usize::MAX, &area, part(&area)),
            "a tile the stage does not blend"
        );
        assert!(region.take_tile_part(tile, &area, part(&area)));
        assert!(
            region.needs().iter().all(|(t, _)| *t != tile),
            "a part taken is no longer needed"
        );
    }
}
