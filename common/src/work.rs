//! The unit of work a worker computes: gradient steps on one tile of one
//! octave of one frame, and what it returns.

use std::ops::Range;
use std::sync::Arc;

use crate::color::ColorAdjust;
use crate::objective::FrameObjective;
use crate::params::{DreamSettings, MAX_TILE_BATCH};
use crate::region_plan::{Area, RegionPlan};
use crate::resample::{Planar, Rgb8Rect, SpareImages, Warp, warp_rgb8_rect};
use crate::tiling::Rect;

/// Gradient steps on one tile.
#[derive(Debug, Clone, PartialEq)]
pub struct TileWork {
    /// Frame number.
    pub frame: u64,
    /// Octave, 0 the smallest.
    pub octave: u32,
    /// Tile index in the octave's grid.
    pub tile: u32,
    /// What the frame's dream maximises (shared by its tiles).
    pub objective: Arc<FrameObjective>,
    /// Index of this lease's first step within the octave's steps.
    pub first_iteration: u32,
    /// Steps to run in this lease.
    pub iterations: u32,
    /// Largest window shift: `pixels` has this much room on each side.
    pub jitter: u32,
    /// The tile's core, context margin and jitter room; for a batch, each
    /// tile's in turn, stacked top to bottom.
    pub pixels: Planar,
    /// Where the returned change lies within a tile's pixels.
    pub output: Rect,
    /// Tiles in the batch (at least 1): consecutive in the grid from
    /// `tile`, equal in size, their changes returned stacked the same way.
    pub tiles: u32,
}

impl TileWork {
    /// Rows of one tile's pixels.
    pub fn tile_height(&self) -> usize {
        self.pixels.height / self.tiles.max(1) as usize
    }

    /// Width and height of the change that comes back: each tile's output
    /// region, stacked.
    pub fn change_size(&self) -> (usize, usize) {
        (
            self.output.width,
            self.output.height * self.tiles.max(1) as usize,
        )
    }

    /// Checks that the geometry is self-consistent, so that a worker never
    /// indexes outside the pixels it was given.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_TILE_BATCH).contains(&self.tiles)
            || !self.pixels.height.is_multiple_of(self.tiles as usize)
        {
            return Err(format!(
                "{} tiles cannot be stacked in {} rows (1 to {MAX_TILE_BATCH} tiles of equal height)",
                self.tiles, self.pixels.height
            ));
        }
        let (w, h) = (self.pixels.width as i64, self.tile_height() as i64);
        let j = 2 * i64::from(self.jitter);
        let o = self.output;
        if self.pixels.data.len() != 3 * self.pixels.width * self.pixels.height {
            return Err(format!(
                "{} samples for {}x{} pixels",
                self.pixels.data.len(),
                self.pixels.width,
                self.pixels.height
            ));
        }
        if w <= j || h <= j {
            return Err(format!(
                "a {w}x{h} tile has no room for jitter {}",
                self.jitter
            ));
        }
        if o.x < 0
            || o.y < 0
            || o.x + o.width as i64 > w
            || o.y + o.height as i64 > h
            || o.width == 0
            || o.height == 0
        {
            return Err(format!("output {o:?} lies outside the {w}x{h} tile"));
        }
        Ok(())
    }
}

/// One region of one frame as a worker is given it
/// (docs/frame-loop-on-workers.md): what makes the frame's region plan, and
/// the last frame's 8-bit pixels over the part of it the region reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionLease {
    /// Frame number.
    pub frame: u64,
    /// The region.
    pub region: u32,
    /// The job's settings as far as the plan reads them (octaves, their
    /// scale, the tiles' size, parallelism, margin, band and batches, the
    /// steps a pass); the rest are the defaults.
    pub settings: DreamSettings,
    /// The frame's width and height.
    pub size: (usize, usize),
    /// The model's smallest octave side.
    pub min_side: usize,
    /// The frame's largest window shift.
    pub jitter: u32,
    /// What the frame's dream maximises.
    pub objective: Arc<FrameObjective>,
    /// The camera move from the last frame to this one.
    pub camera: Warp,
    /// The colour keeping learned from the whole moved frame, applied to
    /// the region's moved part (none: no colour keeping).
    pub color: Option<Arc<ColorAdjust>>,
    /// The last frame's column and row where `rgb` starts.
    pub origin: (usize, usize),
    /// Width and height of the part `rgb` holds.
    pub part: (usize, usize),
    /// The last frame's 8-bit RGB over the part, interleaved, row-major.
    pub rgb: Vec<u8>,
}

impl RegionLease {
    /// The frame's region plan, as the coordinator made it.
    pub fn plan(&self) -> RegionPlan {
        let (w, h) = self.size;
        let sizes = self.settings.octave_sizes(w, h, self.min_side);
        RegionPlan::new(
            &self.settings,
            self.jitter,
            self.objective.iterations,
            &sizes,
        )
    }

    /// The frame to dream over the region's input area: the last frame's
    /// part moved by the camera, its colours kept. None when the part does
    /// not hold what the region reads.
    pub fn input(&self, plan: &RegionPlan) -> Option<Planar> {
        let area = &plan.regions.get(self.region as usize)?.input;
        let (columns, rows) = moved_area(area, self.color.as_deref(), self.size);
        let (w, h) = self.size;
        let (read_x, read_y) = self.camera.source_of(w, h, columns.clone(), rows.clone());
        let ((x, y), (pw, ph)) = (self.origin, self.part);
        let holds = |read: &Range<usize>, at: usize, len: usize| {
            read.is_empty() || at <= read.start && read.end <= at + len
        };
        if !holds(&read_x, x, pw) || !holds(&read_y, y, ph) || self.rgb.len() != 3 * pw * ph {
            return None;
        }
        let part = Rgb8Rect {
            bytes: &self.rgb,
            image: self.size,
            origin: self.origin,
            size: self.part,
        };
        let spare = &mut SpareImages::default();
        let moved = warp_rgb8_rect(&part, &self.camera, columns.clone(), rows.clone(), spare);
        Some(match &self.color {
            Some(color) => kept_in_area(color, moved, (&columns, &rows), area),
            None => moved,
        })
    }
}

/// `moved`, the pixels `wide` of the moved frame (a region's `area` and
/// the margin around it that `color` reads: [`moved_area`]), its colours
/// kept as the whole frame's are, cropped to `area`.
pub fn kept_in_area(
    color: &ColorAdjust,
    mut moved: Planar,
    (columns, rows): (&Range<usize>, &Range<usize>),
    area: &Area,
) -> Planar {
    color.apply(&mut moved);
    let inside =
        |of: &Range<usize>, within: &Range<usize>| of.start - within.start..of.end - within.start;
    moved.crop(inside(&area.columns, columns), inside(&area.rows, rows))
}

/// The pixels of the moved frame that a region whose input is `area`
/// makes its input from: the area, and around it the margin that `color`
/// reads (within the frame of `size`).
pub fn moved_area(
    area: &Area,
    color: Option<&ColorAdjust>,
    (width, height): (usize, usize),
) -> (Range<usize>, Range<usize>) {
    let margin = color.map_or(0, ColorAdjust::margin);
    let widen =
        |r: &Range<usize>, side: usize| r.start.saturating_sub(margin)..(r.end + margin).min(side);
    (widen(&area.columns, width), widen(&area.rows, height))
}
