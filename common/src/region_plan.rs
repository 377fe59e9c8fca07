//! A frame cut into regions that can each be computed apart: which tiles
//! each region dreams, and which part of every image of the frame loop it
//! needs, so that a region's worker computes exactly the samples the whole
//! frame loop would there (`docs/frame-loop-on-workers.md`).
//!
//! The regions are the top octave's tiles: region `r` delivers the frame's
//! pixels in the cell of top-octave tile `r`. Every tile of every octave
//! belongs to the region whose cell holds its own cell's centre, mapped to
//! the frame (a batch's tiles to its first tile's region). Working down
//! from its cell, a region needs each octave image over what its own
//! tiles read and what the next image it needs is computed from: the
//! changes of the tiles over it (its own and its neighbours') and, between
//! octaves, the resize's support. The plan depends on the job's settings
//! and the frame's size and jitter alone, never on the workers.

use std::ops::Range;

use crate::area::Area;
use crate::params::DreamSettings;
use crate::resample::Resize;
use crate::tiling::{Rect, TileGrid};

/// The pixels of an axis of `len` that the coordinates `start..start +
/// count` read when those outside it are mirrored back in (as tile
/// extraction does).
fn mirrored_reads(start: i64, count: usize, len: usize) -> Range<usize> {
    let end = start + count as i64;
    if start >= 0 && end <= len as i64 {
        return start as usize..end as usize;
    }
    let n = len as i64;
    let mirror = |i: i64| {
        let m = i.rem_euclid(2 * n);
        if m < n { m } else { 2 * n - 1 - m }
    };
    let (lo, hi) = (start..end)
        .map(mirror)
        .fold((n, 0), |(lo, hi), m| (lo.min(m), hi.max(m + 1)));
    lo as usize..hi as usize
}

/// The pixels of a `width`×`height` image that the tile input `rect`
/// reads, mirrored where it leaves the image.
pub fn input_reads(rect: Rect, width: usize, height: usize) -> Area {
    Area {
        columns: mirrored_reads(rect.x, rect.width, width),
        rows: mirrored_reads(rect.y, rect.height, height),
    }
}

/// One octave of a region's share of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOctave {
    /// The part of the octave's image before each pass and after the last
    /// (one more than the passes) the region computes: before a pass, what
    /// its own tiles read and the next image's part is computed from.
    pub images: Vec<Area>,
    /// For each pass, the tiles whose changes the region cross-fades into
    /// the next image's part: its own and its neighbours', in index order.
    pub blends: Vec<Vec<usize>>,
}

/// One region's share of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// The frame's pixels it delivers: its top-octave tile's cell.
    pub cell: Area,
    /// The pixels of the frame to dream (the camera-moved last frame)
    /// that it reads: the top octave's first image's part and each lower
    /// octave's base's support.
    pub input: Area,
    /// Its share of each octave, smallest first.
    pub octaves: Vec<RegionOctave>,
}

/// A frame's regions, the tiles each dreams and the parts of the frame
/// loop's images each computes.
#[derive(Debug, Clone)]
pub struct RegionPlan {
    /// The octaves' sizes, smallest first, the last the frame's.
    pub sizes: Vec<(usize, usize)>,
    /// Each octave's tile grid.
    pub grids: Vec<TileGrid>,
    /// Each octave's batches, as [`TileGrid::batches`] gives them.
    pub batches: Vec<Vec<usize>>,
    /// Each octave's tiles' regions (a batch's tiles all its first's).
    pub owners: Vec<Vec<usize>>,
    /// Gradient steps an octave.
    pub steps: u32,
    /// Steps per pass of tiles.
    pub per_pass: u32,
    /// Passes of tiles per octave.
    pub passes: usize,
    /// The tiles' largest window shift.
    pub jitter: u32,
    /// The regions, one per tile of the top octave, in its order.
    pub regions: Vec<Region>,
}

impl RegionPlan {
    /// The plan of a frame of `settings` with octaves of `sizes` (as
    /// [`DreamSettings::octave_sizes`] gives them), tiles shifted by up to
    /// `jitter` and `steps` gradient steps an octave.
    pub fn new(
        settings: &DreamSettings,
        jitter: u32,
        steps: u32,
        sizes: &[(usize, usize)],
    ) -> Self {
        let (per_pass, passes) = settings.passes(steps);
        let grids: Vec<TileGrid> = sizes
            .iter()
            .map(|&(w, h)| TileGrid::new(w, h, settings.tile_geometry(jitter, w, h)))
            .collect();
        let most = settings.tile_batch.max(1) as usize;
        let batches: Vec<Vec<usize>> = grids.iter().map(|g| g.batches(most)).collect();
        let frame = sizes.last().copied().unwrap_or((0, 0));
        let top = grids.last().expect("a frame has an octave");
        let owners = grids
            .iter()
            .zip(&batches)
            .zip(sizes)
            .map(|((grid, ends), &size)| owners(grid, ends, size, top, frame))
            .collect();
        let regions = top.len();
        let mut plan = Self {
            sizes: sizes.to_vec(),
            grids,
            batches,
            owners,
            steps,
            per_pass: per_pass.max(1),
            passes: passes as usize,
            jitter,
            regions: Vec::new(),
        };
        plan.regions = (0..regions).map(|r| plan.region(r)).collect();
        plan
    }

    /// The tiles region `region` dreams on octave `octave` (each pass):
    /// the first tile of each of its batches.
    pub fn own_batches(&self, region: usize, octave: usize) -> impl Iterator<Item = usize> + '_ {
        let (owners, ends) = (&self.owners[octave], &self.batches[octave]);
        (0..owners.len()).filter(move |&t| ends[t] > t && owners[t] == region)
    }

    /// The first tile of the batch that holds tile `tile` of octave
    /// `octave`.
    pub fn batch_of(&self, octave: usize, tile: usize) -> usize {
        let ends = &self.batches[octave];
        (0..=tile)
            .rev()
            .find(|&t| ends[t] > t)
            .expect("tile 0 starts a batch")
    }

    /// The part of tile `tile`'s change that region `region` cross-fades
    /// into its next image at pass `pass` of octave `octave`, within the
    /// tile's change (from its top-left corner).
    pub fn read_of(&self, region: usize, octave: usize, pass: usize, tile: usize) -> Area {
        let next = &self.regions[region].octaves[octave].images[pass + 1];
        let out = self.grids[octave].tile(tile).output;
        let (x, y) = (out.x as usize, out.y as usize);
        let span = |at: usize, len: usize, over: &Range<usize>| {
            at.max(over.start) - at..(at + len).min(over.end) - at
        };
        Area {
            columns: span(x, out.width, &next.columns),
            rows: span(y, out.height, &next.rows),
        }
    }

    /// The other regions whose changes region `region` reads over a
    /// frame, each with the pixels it reads of them (every octave and
    /// pass), in region order: what crosses the network between two
    /// workers holding them, so what keeping them on one worker saves.
    pub fn reads_from(&self, region: usize) -> Vec<(usize, u64)> {
        let mut pixels = vec![0u64; self.regions.len()];
        for (o, octave) in self.regions[region].octaves.iter().enumerate() {
            for (p, blends) in octave.blends.iter().enumerate() {
                for &t in blends {
                    let owner = self.owners[o][t];
                    if owner != region {
                        pixels[owner] += self.read_of(region, o, p, t).pixels() as u64;
                    }
                }
            }
        }
        pixels
            .into_iter()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Region `r`'s share, worked out from its cell down.
    fn region(&self, r: usize) -> Region {
        let last = self.sizes.len() - 1;
        let cell = Area::of(self.grids[last].tile(r).cell);
        let frame = self.sizes[last];
        let mut wanted = cell.clone();
        let mut input = Area::default();
        let mut octaves = Vec::with_capacity(self.sizes.len());
        for o in (0..=last).rev() {
            let (grid, (w, h)) = (&self.grids[o], self.sizes[o]);
            let reads = self
                .own_batches(r, o)
                .flat_map(|t| t..self.batches[o][t])
                .map(|t| input_reads(grid.tile(t).input, w, h))
                .fold(Area::default(), |a, b| a.union(&b));
            let mut images = vec![wanted.clone(); self.passes + 1];
            let mut blends = vec![Vec::new(); self.passes];
            for p in (0..self.passes).rev() {
                blends[p] = grid
                    .tiles()
                    .filter(|t| images[p + 1].overlaps(t.output))
                    .map(|t| t.index)
                    .collect();
                images[p] = images[p + 1].union(&reads);
            }
            let first = images[0].clone();
            // The octave's base is the frame resized (the frame itself on
            // the top octave), its first image the previous octave's
            // detail resized onto it.
            let base = if o == last {
                first.clone()
            } else {
                resized_support(frame, (w, h), &first)
            };
            input = input.union(&base);
            if o > 0 {
                wanted = resized_support(self.sizes[o - 1], (w, h), &first);
            }
            octaves.push(RegionOctave { images, blends });
        }
        octaves.reverse();
        Region {
            cell,
            input,
            octaves,
        }
    }
}

/// The part of a `from`-sized image that the part `area` of its resize to
/// `to` reads.
fn resized_support(from: (usize, usize), to: (usize, usize), area: &Area) -> Area {
    if area.is_empty() {
        return Area::default();
    }
    let resize = Resize::new(from.0, from.1, to.0, to.1);
    let (columns, rows) = resize.source_of(area.columns.clone(), area.rows.clone());
    Area { columns, rows }
}

/// Each tile's region on `grid` (of an octave of `size`, batches `ends`):
/// the tile of `top` (the frame's grid, `frame` its size) whose cell
/// holds the centre of the batch's first cell, mapped to the frame.
fn owners(
    grid: &TileGrid,
    ends: &[usize],
    size: (usize, usize),
    top: &TileGrid,
    frame: (usize, usize),
) -> Vec<usize> {
    let mut owners = vec![0; grid.len()];
    for (first, &end) in ends.iter().enumerate().filter(|&(t, &e)| e > t) {
        let cell = grid.tile(first).cell;
        let centre = |at: i64, len: usize, from: usize, to: usize| {
            (((at as f64 + len as f64 / 2.0) * to as f64 / from as f64) as usize).min(to - 1)
        };
        let x = centre(cell.x, cell.width, size.0, frame.0);
        let y = centre(cell.y, cell.height, size.1, frame.1);
        let region = top
            .tiles()
            .position(|t| {
                Area::of(t.cell).holds(&Area {
                    columns: x..x + 1,
                    rows: y..y + 1,
                })
            })
            .expect("the top octave's cells cover the frame");
        owners[first..end].fill(region);
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default recipe's settings with `tile` tiles and `batch` tiles
    /// a batch.
    fn settings(tile: u32, batch: u32, per_lease: u32) -> DreamSettings {
        DreamSettings {
            tile_size: tile,
            tile_batch: batch,
            iterations_per_lease: per_lease,
            ..Default::default()
        }
    }

    /// Plans of a few shapes: 4K default tiles, small tiles in batches,
    /// several passes, a frame of one tile.
    fn plans() -> Vec<RegionPlan> {
        [
            (settings(1024, 1, 0), 3840, 2160),
            (settings(128, 3, 0), 700, 420),
            (settings(200, 1, 4), 640, 480),
            (settings(1024, 1, 0), 300, 200),
        ]
        .into_iter()
        .map(|(s, w, h)| {
            let sizes = s.octave_sizes(w, h, 64);
            RegionPlan::new(&s, 4, 10, &sizes)
        })
        .collect()
    }

    #[test]
    fn every_tile_is_dreamed_by_one_region_and_cells_cover_the_frame() {
        for plan in plans() {
            for (o, grid) in plan.grids.iter().enumerate() {
                let mut dreamed = vec![0; grid.len()];
                for r in 0..plan.regions.len() {
                    for t in plan.own_batches(r, o).flat_map(|t| t..plan.batches[o][t]) {
                        dreamed[t] += 1;
                    }
                }
                assert!(dreamed.iter().all(|&n| n == 1), "octave {o}: {dreamed:?}");
            }
            let frame = *plan.sizes.last().expect("octaves");
            let cells: usize = plan.regions.iter().map(|r| r.cell.pixels()).sum();
            assert_eq!(cells, frame.0 * frame.1);
        }
    }

    #[test]
    fn a_region_computes_what_its_tiles_read_and_its_next_images_need() {
        for plan in plans() {
            let last = plan.sizes.len() - 1;
            for (r, region) in plan.regions.iter().enumerate() {
                for (o, octave) in region.octaves.iter().enumerate() {
                    let (grid, (w, h)) = (&plan.grids[o], plan.sizes[o]);
                    for p in 0..plan.passes {
                        let before = &octave.images[p];
                        for t in plan.own_batches(r, o).flat_map(|t| t..plan.batches[o][t]) {
                            let reads = input_reads(grid.tile(t).input, w, h);
                            assert!(before.holds(&reads), "octave {o} pass {p} tile {t}");
                        }
                        assert!(before.holds(&octave.images[p + 1]));
                        // Every tile whose change reaches the next part is
                        // blended, and no other.
                        for tile in grid.tiles() {
                            let reaches = octave.images[p + 1].overlaps(tile.output);
                            assert_eq!(octave.blends[p].contains(&tile.index), reaches);
                        }
                    }
                    let first = &octave.images[0];
                    let base = if o == last {
                        first.clone()
                    } else {
                        resized_support(plan.sizes[last], (w, h), first)
                    };
                    assert!(region.input.holds(&base), "octave {o}'s base");
                    if o < last {
                        let next = &region.octaves[o + 1].images[0];
                        let detail = resized_support((w, h), plan.sizes[o + 1], next);
                        assert!(
                            octave.images[plan.passes].holds(&detail),
                            "octave {o}'s detail"
                        );
                    }
                }
                assert_eq!(region.octaves[last].images[plan.passes], region.cell);
            }
        }
    }

    #[test]
    fn mirrored_reads_are_the_pixels_extraction_reads() {
        for (start, count, len) in [
            (-3, 10, 20),
            (15, 10, 20),
            (-4, 12, 5),
            (2, 3, 9),
            (-30, 4, 7),
        ] {
            let reads = mirrored_reads(start, count, len);
            let mut want: Vec<usize> = (start..start + count as i64)
                .map(|i| {
                    let image = crate::tiling::extract(
                        &crate::resample::Planar {
                            width: len,
                            height: 1,
                            data: (0..3 * len).map(|v| v as f32).collect(),
                        },
                        Rect {
                            x: i,
                            y: 0,
                            width: 1,
                            height: 1,
                        },
                    );
                    image.data[0] as usize
                })
                .collect();
            want.sort_unstable();
            assert_eq!(
                reads,
                want[0]..want[want.len() - 1] + 1,
                "{start}+{count} in {len}"
            );
        }
    }
}
