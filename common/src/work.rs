//! The unit of work a worker computes: gradient steps on one tile of one
//! octave of one frame, and what it returns.

use std::ops::Range;
use std::sync::Arc;

use crate::area::{Area, Rgb8Area};
use crate::color::ColorAdjust;
use crate::objective::FrameObjective;
use crate::params::{DreamSettings, MAX_TILE_BATCH};
use crate::region_plan::RegionPlan;
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

    /// Height and width of the window the network sees on each step: a
    /// tile's pixels less the jitter's padding on every side.
    pub fn window_size(&self) -> (usize, usize) {
        let padding = 2 * self.jitter as usize;
        (
            self.tile_height().saturating_sub(padding),
            self.pixels.width.saturating_sub(padding),
        )
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
    /// The part of the last frame the region reads
    /// ([`last_frame_area`]).
    pub part: Area,
    /// The last frame's 8-bit RGB over an area holding the part: the
    /// whole frame at the coordinator (one for all the frame's regions,
    /// which its sessions cut pieces from), the part at the worker.
    pub pixels: Rgb8Area,
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
        let read = Area {
            columns: read_x,
            rows: read_y,
        };
        if !self.part.holds(&read) || !self.pixels.holds(&self.part) {
            return None;
        }
        let held = &self.pixels.area;
        let part = Rgb8Rect {
            bytes: &self.pixels.rgb,
            image: self.size,
            origin: (held.columns.start, held.rows.start),
            size: (held.columns.len(), held.rows.len()),
        };
        let spare = &mut SpareImages::default();
        let moved = warp_rgb8_rect(&part, &self.camera, columns.clone(), rows.clone(), spare);
        Some(match &self.color {
            Some(color) => kept_in_area(color, moved, (&columns, &rows), area),
            None => moved,
        })
    }
}

/// The part of the last frame (`width`×`height`) a region whose input is
/// `area` reads: the columns and rows its input reads once moved by
/// `camera` and kept by `color` ([`moved_area`] taken back through the
/// camera).
pub fn last_frame_area(
    (width, height): (usize, usize),
    area: &Area,
    camera: &Warp,
    color: Option<&ColorAdjust>,
) -> Area {
    let (columns, rows) = moved_area(area, color, (width, height));
    let (columns, rows) = camera.source_of(width, height, columns, rows);
    Area { columns, rows }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::{ColorReference, ColorSpace};
    use crate::params::ColorSettings;
    use crate::resample::warp_rgb8;

    #[test]
    fn a_regions_input_is_the_whole_moved_and_kept_frame_over_its_area() {
        // Random frames, region plans, camera moves (in, out, turned,
        // panned, about other centres) and colour keeping (each space,
        // contrast, unsharp masks of every reach, none): each region's
        // input, made from exactly the part of the last frame the
        // coordinator sends it, is the whole frame's moved and kept pixels
        // over the region's area.
        for case in 0..150 {
            let mut draw = (0..).map(|k| crate::seed::derive(0xa7ea, &[case, k]));
            let mut below = |n: usize| draw.next().map_or(0, |v| (v % n as u64) as usize);
            let (w, h) = (8 + below(200), 8 + below(200));
            let margin = below(20) as u32;
            let settings = DreamSettings {
                octaves: 1 + below(4) as u32,
                octave_scale: 1.1 + below(150) as f64 / 100.0,
                iterations: ((1 + below(3)) as f64).into(),
                iterations_per_lease: below(3) as u32,
                tile_batch: 1 + below(3) as u32,
                tile_size: 16 + below(120) as u32,
                tile_margin: margin,
                blend_band: below(margin as usize + 1) as u32,
                parallelism: [0, 2, 5, 16][below(4)],
                ..Default::default()
            };
            let camera = Warp {
                zoom: [1.0, 1.02, 1.3, 0.97, 0.6, 2.5][below(6)],
                rotate_deg: [0.0, 0.0, 1.0, -7.5, 90.0, 179.3][below(6)],
                pan: (
                    [0.0, 1.5, -3.25, 40.0][below(4)],
                    [0.0, -0.5, 30.7][below(3)],
                ),
                center: (
                    [w as f64 / 2.0, 0.0, 13.7][below(3)],
                    [h as f64 / 2.0, 5.5][below(2)],
                ),
            };
            let space = [ColorSpace::Lab, ColorSpace::Hsv, ColorSpace::Rgb][below(3)];
            let color = (below(4) > 0).then(|| ColorSettings {
                coherence: (below(4) > 0).then_some(space),
                strength: (below(11) as f64 / 10.0).into(),
                contrast: [1.0, 1.1, 0.8][below(3)].into(),
                sharpen: [0.0, 0.3, 1.0][below(3)].into(),
                sharpen_radius: [0.5, 1.0, 2.5, 7.0][below(4)],
                ..ColorSettings::default()
            });
            let mut bytes = |n: usize| (0..n).map(|_| below(256) as u8).collect::<Vec<u8>>();
            let (last, reference) = (bytes(3 * w * h), bytes(3 * 20 * 15));
            let reference = ColorReference::new(&Planar::from_rgb8(20, 15, &reference), space);
            let mut whole = warp_rgb8(w, h, &last, &camera, &mut SpareImages::default());
            let color = color
                .map(|c| Arc::new(ColorAdjust::keep(&c, (3, 10), Some(&reference), &mut whole)));
            let (jitter, min_side) = (below(6) as u32, 8 + below(40));
            let objective =
                Arc::new(FrameObjective::at(&settings, 3, 10, 0, None).expect("objective"));
            let plan = RegionPlan::new(
                &settings,
                jitter,
                objective.iterations,
                &settings.octave_sizes(w, h, min_side),
            );
            let frame = Rgb8Area {
                area: Area {
                    columns: 0..w,
                    rows: 0..h,
                },
                rgb: Arc::new(last.clone()),
            };
            for (r, region) in plan.regions.iter().enumerate() {
                let part = last_frame_area((w, h), &region.input, &camera, color.as_deref());
                let rgb = Arc::new(frame.cut(std::slice::from_ref(&part)));
                let lease = RegionLease {
                    frame: 3,
                    region: r as u32,
                    settings: settings.clone(),
                    size: (w, h),
                    min_side,
                    jitter,
                    objective: objective.clone(),
                    camera,
                    color: color.clone(),
                    pixels: Rgb8Area {
                        area: part.clone(),
                        rgb,
                    },
                    part,
                };
                let input = lease
                    .input(&lease.plan())
                    .expect("the part holds the input's reads");
                let (columns, rows) = (region.input.columns.clone(), region.input.rows.clone());
                assert!(
                    input == whole.crop(columns, rows),
                    "case {case}: {w}x{h}, region {r}, {camera:?}, {color:?}, {settings:?}"
                );
            }
        }
    }
}
