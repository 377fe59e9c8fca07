//! The tile grid of an octave image, the pixels each tile is computed on,
//! and the cross-fade that stitches the tiles' changes back together.
//!
//! The grid depends only on the image size and the tile size, never on how
//! many workers there are, so a frame is the same however it is computed.
//! Each tile is dreamed on its core plus a margin of context (plus room for
//! the jitter shift), and returns its change over the core plus a blend band;
//! neighbouring tiles' changes are cross-faded over that band with weights
//! that sum to one everywhere, so no seam shows.

use std::ops::Range;
use std::sync::Arc;

use multiversion::multiversion;

use crate::resample::Planar;

/// A rectangle in image coordinates; `x`/`y` may be negative for regions
/// that reach past the image edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rect {
    /// Left column.
    pub x: i64,
    /// Top row.
    pub y: i64,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
}

impl Rect {
    /// Grows the rectangle by `by` pixels on every side.
    pub fn grow(self, by: usize) -> Self {
        let b = by as i64;
        Self {
            x: self.x - b,
            y: self.y - b,
            width: self.width + 2 * by,
            height: self.height + 2 * by,
        }
    }

    /// The part of the rectangle inside a `width`×`height` image.
    pub fn clip(self, width: usize, height: usize) -> Self {
        let x0 = self.x.clamp(0, width as i64);
        let y0 = self.y.clamp(0, height as i64);
        let x1 = (self.x + self.width as i64).clamp(0, width as i64);
        let y1 = (self.y + self.height as i64).clamp(0, height as i64);
        Self {
            x: x0,
            y: y0,
            width: (x1 - x0) as usize,
            height: (y1 - y0) as usize,
        }
    }
}

/// Tiling parameters (see `DreamSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGeometry {
    /// Largest side of a tile's core.
    pub tile_size: usize,
    /// Context around the core that the network sees.
    pub margin: usize,
    /// Cross-fade band around the core (at most `margin`).
    pub band: usize,
    /// Largest per-step shift of the window (room added around the context).
    pub jitter: usize,
    /// Cut the image into cells of exactly one size, the last column and
    /// row taking what remains, so that the inner tiles are alike and
    /// stack into batches (`tile_batch`); otherwise nearly equal cells.
    pub equal_cells: bool,
}

/// One tile of an octave image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Index in the grid, row-major.
    pub index: usize,
    /// The cells partition the image.
    pub cell: Rect,
    /// The pixels sent to the worker: core + margin (toward neighbouring
    /// tiles only: at the image edge there is nothing to agree with, and a
    /// one-tile image costs no more than a plain dream) + jitter room
    /// (mirrored where it leaves the image).
    pub input: Rect,
    /// The pixels whose change comes back: core + band, clipped to the image.
    pub output: Rect,
}

/// The tile grid of one image size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileGrid {
    width: usize,
    height: usize,
    /// Column boundaries of the cells (`len = columns + 1`).
    xs: Vec<usize>,
    /// Row boundaries of the cells.
    ys: Vec<usize>,
    geometry: TileGeometry,
}

/// Splits `length` into `ceil(length / size)` nearly equal parts, or, if
/// `equal`, parts of one size but the last (unless that would leave the
/// last under half the others).
fn boundaries(length: usize, size: usize, equal: bool) -> Vec<usize> {
    let n = length.div_ceil(size.max(1)).max(1);
    let part = length.div_ceil(n);
    if equal && 2 * (length - (n - 1) * part).min(part) >= part {
        return (0..=n).map(|i| (i * part).min(length)).collect();
    }
    (0..=n).map(|i| i * length / n).collect()
}

impl TileGrid {
    /// The grid of a `width`×`height` image. The band is narrowed to half the
    /// smallest cell so that only two tiles ever overlap along an axis.
    pub fn new(width: usize, height: usize, geometry: TileGeometry) -> Self {
        let xs = boundaries(width, geometry.tile_size, geometry.equal_cells);
        let ys = boundaries(height, geometry.tile_size, geometry.equal_cells);
        let smallest = xs
            .windows(2)
            .chain(ys.windows(2))
            .map(|w| w[1] - w[0])
            .min()
            .unwrap_or(0);
        let band = if xs.len() > 2 || ys.len() > 2 {
            geometry.band.min(smallest / 2)
        } else {
            0
        };
        Self {
            width,
            height,
            xs,
            ys,
            geometry: TileGeometry { band, ..geometry },
        }
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        (self.xs.len() - 1) * (self.ys.len() - 1)
    }

    /// Whether the grid has no tiles (never: every image has at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tiles, row-major.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        (0..self.len()).map(|i| self.tile(i))
    }

    /// Tile `index` (row-major); panics past [`len`](Self::len).
    pub fn tile(&self, index: usize) -> Tile {
        let columns = self.xs.len() - 1;
        let (r, c) = (index / columns, index % columns);
        let cell = Rect {
            x: self.xs[c] as i64,
            y: self.ys[r] as i64,
            width: self.xs[c + 1] - self.xs[c],
            height: self.ys[r + 1] - self.ys[r],
        };
        let g = self.geometry;
        Tile {
            index,
            cell,
            input: cell
                .grow(g.margin)
                .clip(self.width, self.height)
                .grow(g.jitter),
            output: cell.grow(g.band).clip(self.width, self.height),
        }
    }

    /// The job's batches of tiles, at most `most` tiles each: runs of
    /// consecutive tiles whose pixels and output regions have the same size
    /// and the same place relative to each other, so that they stack. For
    /// each batch's first tile, the index past its last; 0 for the other
    /// tiles.
    pub fn batches(&self, most: usize) -> Vec<usize> {
        let shape = |i| {
            let t = self.tile(i);
            let (i, o) = (t.input, t.output);
            (i.width, i.height, o.x - i.x, o.y - i.y, o.width, o.height)
        };
        let mut ends = vec![0; self.len()];
        let mut start = 0;
        while start < self.len() {
            let mut end = start + 1;
            while end < self.len() && end - start < most && shape(end) == shape(start) {
                end += 1;
            }
            ends[start] = end;
            start = end;
        }
        ends
    }

    /// The geometry in force (band possibly narrowed).
    pub fn geometry(&self) -> TileGeometry {
        self.geometry
    }

    /// Cross-fade weight of a tile along one axis at pixel `p`, given the
    /// tile's cell `[lo, hi)` and whether it has neighbours before/after.
    fn axis_weight(&self, p: usize, lo: usize, hi: usize, before: bool, after: bool) -> f32 {
        let band = self.geometry.band as f32;
        let centre = p as f32 + 0.5;
        let ramp = |v: f32| {
            if band == 0.0 {
                f32::from(v > 0.0)
            } else {
                (v / (2.0 * band)).clamp(0.0, 1.0)
            }
        };
        let mut w = 1.0;
        if before {
            w *= ramp(centre - (lo as f32 - band));
        }
        if after {
            w *= ramp((hi as f32 + band) - centre);
        }
        w
    }

    /// The cross-fade of the tiles' changes (`changes[i]` over tile `i`'s
    /// output region) over image `rows` × `columns`, prepared for
    /// [`Blend::add_row`]. Every tile whose output reaches into that
    /// rectangle must have its change; the others need not.
    ///
    /// # Panics
    ///
    /// If a tile over the rectangle has no change.
    pub fn blend<'a>(
        &'a self,
        changes: &'a [Option<TileChange>],
        rows: Range<usize>,
        columns: Range<usize>,
    ) -> Blend<'a> {
        let grid_columns = self.xs.len() - 1;
        let reaches = |start: i64, len: usize, over: &Range<usize>| {
            start < over.end as i64 && start + len as i64 > over.start as i64
        };
        let tiles = self
            .tiles()
            .zip(changes)
            .filter(|(tile, _)| {
                let out = tile.output;
                reaches(out.y, out.height, &rows) && reaches(out.x, out.width, &columns)
            })
            .map(|(tile, change)| {
                let c = tile.index % grid_columns;
                let out = tile.output;
                let (cx0, cx1) = (tile.cell.x as usize, tile.cell.x as usize + tile.cell.width);
                let wx = (0..out.width)
                    .map(|i| {
                        let before = c > 0;
                        self.axis_weight(out.x as usize + i, cx0, cx1, before, c + 1 < grid_columns)
                    })
                    .collect();
                let change = change
                    .as_ref()
                    .expect("the change of every tile over the rectangle");
                (tile, wx, change)
            })
            .collect();
        Blend {
            grid: self,
            tiles,
            columns,
        }
    }
}

/// A pass's changes over a rectangle with their cross-fade weights, ready
/// to be added row by row into whatever the caller writes (the frame loop
/// adds them to the image before the pass in the same sweep, with no
/// image-sized sum in between).
pub struct Blend<'a> {
    grid: &'a TileGrid,
    /// The tiles over the rectangle, in index order, with their column
    /// weights.
    tiles: Vec<(Tile, Vec<f32>, &'a TileChange)>,
    /// The rectangle's columns.
    columns: Range<usize>,
}

impl Blend<'_> {
    /// Adds `Σ weight × change` of channel `ch` at image row `y` to `dst`
    /// (the row's samples over the blend's columns), the weights adding up
    /// to one at every pixel. Each pixel adds its tiles in index order, so
    /// a sample is the same bits whichever thread computes it and whatever
    /// rectangle the blend was prepared for: adding into a zeroed row gives
    /// the sum of tile after tile over the whole image.
    pub fn add_row(&self, ch: usize, y: usize, dst: &mut [f32]) {
        let grid = self.grid;
        let (columns, grid_rows) = (grid.xs.len() - 1, grid.ys.len() - 1);
        for (tile, wx, change) in &self.tiles {
            let out = tile.output;
            let Some(j) = y.checked_sub(out.y as usize).filter(|&j| j < out.height) else {
                continue;
            };
            let r = tile.index / columns;
            let (cy0, cy1) = (
                tile.cell.y as usize,
                tile.cell.y as usize + tile.cell.height,
            );
            let wy = grid.axis_weight(y, cy0, cy1, r > 0, r + 1 < grid_rows);
            if wy == 0.0 {
                continue;
            }
            // The tile's columns inside the blend's, relative to the tile.
            let x0 = out.x as usize;
            let from = self.columns.start.max(x0) - x0;
            let to = self.columns.end.min(x0 + out.width) - x0;
            let src = change.span(ch, j, from..to);
            let at = x0 + from - self.columns.start;
            add_weighted(&mut dst[at..at + to - from], src, &wx[from..to], wy);
        }
    }
}

/// `dst += src × wx × wy`, sample by sample: the blend's inner loop.
#[multiversion(targets("x86_64+avx2"))]
fn add_weighted(dst: &mut [f32], src: &[f32], wx: &[f32], wy: f32) {
    for ((d, s), w) in dst.iter_mut().zip(src).zip(wx) {
        *d += s * w * wy;
    }
}

/// Mirrors an out-of-range coordinate back into `0..n` (edge pixel
/// repeated: -1 → 0, n → n-1), for any distance outside.
fn mirror(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// The pixels of `rect` from `image`, mirrored where `rect` leaves it.
///
/// The columns inside the image are copied as one run per row; only those
/// past an edge go through the mirror. A lease's pixels are extracted for
/// every tile of every octave, so this is on the coordinator's hot path.
pub fn extract(image: &Planar, rect: Rect) -> Planar {
    extract_stacked(image, &[rect])
}

/// Part of an image held on its own: `samples` are the image's pixels
/// from column and row `origin`, of an image of `size`.
#[derive(Debug, Clone, Copy)]
pub struct ImagePart<'a> {
    /// The pixels held.
    pub samples: &'a Planar,
    /// The image's column and row of the first pixel held.
    pub origin: (usize, usize),
    /// The whole image's width and height.
    pub size: (usize, usize),
}

/// Appends channel `ch` of region `rect` of the image `part` is part of
/// to `data`, mirroring what lies outside the image.
fn extend_with_channel(data: &mut Vec<f32>, part: ImagePart, rect: Rect, ch: usize) {
    let ((x0, y0), (width, height), held) = (part.origin, part.size, part.samples);
    let column = |i: usize| mirror(rect.x + i as i64, width) - x0;
    // Output columns `left..right` are image columns `rect.x + i`.
    let clamp = |i: i64| i.clamp(0, rect.width as i64) as usize;
    let left = clamp(-rect.x);
    let right = clamp(width as i64 - rect.x).max(left);
    let start = (rect.x + left as i64).clamp(0, width as i64) as usize;
    for j in 0..rect.height {
        let y = mirror(rect.y + j as i64, height) - y0;
        let src = &held.data[(ch * held.height + y) * held.width..][..held.width];
        data.extend((0..left).map(|i| src[column(i)]));
        data.extend_from_slice(&src[start.saturating_sub(x0)..][..right - left]);
        data.extend((right..rect.width).map(|i| src[column(i)]));
    }
}

/// The pixels of each of `rects` (all one size) from `image`, mirrored
/// where they leave it, stacked top to bottom: a batch's tiles in one
/// lease.
pub fn extract_stacked(image: &Planar, rects: &[Rect]) -> Planar {
    let whole = ImagePart {
        samples: image,
        origin: (0, 0),
        size: (image.width, image.height),
    };
    extract_stacked_from(whole, rects)
}

/// [`extract_stacked`] from the image `part` is part of, which holds
/// every pixel the rectangles read.
pub fn extract_stacked_from(part: ImagePart, rects: &[Rect]) -> Planar {
    let (width, height) = rects.first().map_or((0, 0), |r| (r.width, r.height));
    let mut data = Vec::with_capacity(3 * width * height * rects.len());
    for ch in 0..3 {
        for &rect in rects {
            extend_with_channel(&mut data, part, rect, ch);
        }
    }
    Planar {
        width,
        height: height * rects.len(),
        data,
    }
}

/// One tile's change, for [`TileGrid::blend`]: the tile's own
/// image, its place among a batch's changes stacked top to bottom
/// (shared, not copied apart), or only the part of it a blend reads (a
/// part a region fetched from a neighbour: the rest is never held).
#[derive(Debug, Clone)]
pub struct TileChange {
    stack: Arc<Planar>,
    /// Which of the stack's tiles.
    index: usize,
    /// Tiles in the stack.
    count: usize,
    /// Where the held samples start in the tile's change (column, row):
    /// (0, 0) unless only a part is held.
    origin: (usize, usize),
    /// The tile's change's width and height, held or not.
    size: (usize, usize),
}

impl TileChange {
    /// The changes of the `count` tiles stacked in `stack` (as by
    /// [`extract_stacked`]), in order; `None` when its rows do not split
    /// so.
    pub fn split(stack: impl Into<Arc<Planar>>, count: usize) -> Option<Vec<Self>> {
        let stack = stack.into();
        if count == 0 || !stack.height.is_multiple_of(count) {
            return None;
        }
        let size = (stack.width, stack.height / count);
        Some(
            (0..count)
                .map(|index| Self {
                    stack: stack.clone(),
                    index,
                    count,
                    origin: (0, 0),
                    size,
                })
                .collect(),
        )
    }

    /// The part of a `size` tile change whose top left sample is
    /// `origin`, the rest of it not held (and never to be read); `None`
    /// when the part leaves the tile.
    pub fn part(part: Planar, origin: (usize, usize), size: (usize, usize)) -> Option<Self> {
        let fits = |at: usize, len: usize, of: usize| at.checked_add(len).is_some_and(|e| e <= of);
        (fits(origin.0, part.width, size.0) && fits(origin.1, part.height, size.1)).then(|| Self {
            stack: Arc::new(part),
            index: 0,
            count: 1,
            origin,
            size,
        })
    }

    /// Width of the tile's change.
    pub fn width(&self) -> usize {
        self.size.0
    }

    /// Height of the tile's change.
    pub fn height(&self) -> usize {
        self.size.1
    }

    /// Columns `columns` of row `j` of channel `ch` of the tile's change,
    /// which must be held.
    pub fn span(&self, ch: usize, j: usize, columns: Range<usize>) -> &[f32] {
        let (x0, y0) = self.origin;
        let (w, h) = (self.stack.width, self.stack.height / self.count);
        let row = &self.stack.data[((ch * self.count + self.index) * h + j - y0) * w..][..w];
        &row[columns.start - x0..columns.end - x0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_part_reads_as_the_whole_change_over_its_area() {
        let mut whole = Planar::zeros(6, 4);
        for (i, v) in whole.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let all = TileChange::split(whole.clone(), 1)
            .and_then(|mut v| v.pop())
            .expect("one change");
        let held = TileChange::part(whole.crop(2..5, 1..3), (2, 1), (6, 4)).expect("it fits");
        assert_eq!((held.width(), held.height()), (6, 4));
        for ch in 0..3 {
            for j in 1..3 {
                assert_eq!(held.span(ch, j, 2..5), all.span(ch, j, 2..5));
                assert_eq!(held.span(ch, j, 3..4), all.span(ch, j, 3..4));
            }
        }
        assert!(
            TileChange::part(whole.crop(2..5, 1..3), (4, 1), (6, 4)).is_none(),
            "a part past the tile's right side"
        );
        assert!(
            TileChange::part(whole.crop(0..6, 0..4), (0, 1), (6, 4)).is_none(),
            "a part past its bottom"
        );
    }

    #[test]
    fn stacked_regions_split_into_the_regions() {
        let mut image = Planar::zeros(30, 20);
        for (i, v) in image.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let rects = [(-3, -2), (5, 4), (20, 11)].map(|(x, y)| Rect {
            x,
            y,
            width: 12,
            height: 9,
        });
        let stacked = extract_stacked(&image, &rects);
        assert_eq!((stacked.width, stacked.height), (12, 27));
        let parts = TileChange::split(stacked, 3).expect("27 rows split in 3");
        for (part, &rect) in parts.iter().zip(&rects) {
            let alone = extract(&image, rect);
            assert_eq!((part.width(), part.height()), (12, 9));
            for (ch, j) in (0..3).flat_map(|ch| (0..9).map(move |j| (ch, j))) {
                assert_eq!(
                    part.span(ch, j, 0..12),
                    &alone.data[(ch * 9 + j) * 12..][..12]
                );
            }
        }
        assert!(TileChange::split(extract(&image, rects[0]), 2).is_none());
    }

    /// A change of all ones on each tile of `grid`.
    fn ones(grid: &TileGrid) -> Vec<Option<Planar>> {
        grid.tiles()
            .map(|t| {
                let mut ones = Planar::zeros(t.output.width, t.output.height);
                ones.data.fill(1.0);
                Some(ones)
            })
            .collect()
    }

    /// Each tile's own change, for `blend_rows`.
    fn changes(of: &[Option<Planar>]) -> Vec<Option<TileChange>> {
        of.iter()
            .map(|c| {
                let c = c.clone()?;
                TileChange::split(c, 1)?.pop()
            })
            .collect()
    }

    /// The cross-fade of `changes` over image rows `rows`, a
    /// `width`×`rows.len()` image.
    fn blend_rows(grid: &TileGrid, changes: &[Option<TileChange>], rows: Range<usize>) -> Planar {
        blend_rect(grid, changes, rows, 0..grid.width)
    }

    /// The cross-fade of `changes` over image `rows` × `columns`, an
    /// image of that size.
    fn blend_rect(
        grid: &TileGrid,
        changes: &[Option<TileChange>],
        rows: Range<usize>,
        columns: Range<usize>,
    ) -> Planar {
        let blend = grid.blend(changes, rows.clone(), columns.clone());
        let mut sum = Planar::zeros(columns.len(), rows.len());
        for (k, row) in sum.data.chunks_mut(columns.len()).enumerate() {
            blend.add_row(k / rows.len(), rows.start + k % rows.len(), row);
        }
        sum
    }

    fn geometry(tile_size: usize) -> TileGeometry {
        TileGeometry {
            tile_size,
            margin: 16,
            band: 8,
            jitter: 4,
            equal_cells: false,
        }
    }

    #[test]
    fn grid_depends_only_on_sizes_and_covers_the_image_once() {
        let grid = TileGrid::new(100, 70, geometry(32));
        assert_eq!(grid.len(), 4 * 3);
        let area: usize = grid.tiles().map(|t| t.cell.width * t.cell.height).sum();
        assert_eq!(area, 100 * 70);
        assert_eq!(grid, TileGrid::new(100, 70, geometry(32)));
        let t = grid.tile(5);
        assert_eq!(t.input, t.cell.grow(20));
        let corner = grid.tile(0);
        assert_eq!(
            corner.input,
            Rect {
                x: -4,
                y: -4,
                width: 25 + 16 + 8,
                height: 23 + 16 + 8
            }
        );
        assert_eq!(t.output, t.cell.grow(8).clip(100, 70));
    }

    #[test]
    fn equal_cells_are_one_size_but_the_last() {
        assert_eq!(boundaries(100, 30, true), [0, 25, 50, 75, 100]);
        assert_eq!(boundaries(107, 32, true), [0, 27, 54, 81, 107]);
        assert_eq!(boundaries(107, 32, false), [0, 26, 53, 80, 107]);
        let cells: Vec<usize> = boundaries(2743, 391, true)
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert_eq!(cells, [343, 343, 343, 343, 343, 343, 343, 342]);
        // A last cell under half the others: nearly equal cells instead.
        assert_eq!(boundaries(10, 3, true), [0, 2, 5, 7, 10]);
        let grid = TileGrid::new(
            107,
            70,
            TileGeometry {
                equal_cells: true,
                ..geometry(32)
            },
        );
        let inner: Vec<_> = (1..3).map(|i| grid.tile(4 + i)).collect();
        assert_eq!(inner[0].input.width, inner[1].input.width);
        let area: usize = grid.tiles().map(|t| t.cell.width * t.cell.height).sum();
        assert_eq!(area, 107 * 70);
        let ones = ones(&grid);
        let sum = blend_rows(&grid, &changes(&ones), 0..70);
        assert!(sum.data.iter().all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn blend_weights_sum_to_one_everywhere() {
        let grid = TileGrid::new(100, 70, geometry(32));
        let ones = ones(&grid);
        let sum = blend_rows(&grid, &changes(&ones), 0..70);
        assert!(
            sum.data.iter().all(|v| (v - 1.0).abs() < 1e-6),
            "weights do not partition unity"
        );
        // Any band of rows is those rows of the whole, bit for bit.
        let noisy: Vec<Option<Planar>> = ones
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut p = o.clone()?;
                for (k, v) in p.data.iter_mut().enumerate() {
                    *v = ((k * 7919 + i * 104_729) % 1000) as f32 / 999.0;
                }
                Some(p)
            })
            .collect();
        let whole = blend_rows(&grid, &changes(&noisy), 0..70);
        let band = blend_rows(&grid, &changes(&noisy), 23..41);
        for c in 0..3 {
            assert_eq!(band.channel(c), &whole.channel(c)[23 * 100..41 * 100]);
        }
        // Only the tiles over the rows are needed.
        let mut top = noisy.clone();
        let last_row = grid.tiles().filter(|t| t.output.y > 10).map(|t| t.index);
        for i in last_row {
            top[i] = None;
        }
        let top_band = blend_rows(&grid, &changes(&top), 0..10);
        assert_eq!(top_band.channel(0), &whole.channel(0)[..10 * 100]);
        // Any rectangle is that part of the whole, bit for bit, from the
        // changes of the tiles over it alone.
        for (rows, columns) in [
            (23..41, 31..67),
            (0..70, 0..1),
            (69..70, 99..100),
            (5..6, 40..90),
        ] {
            let mut over = noisy.clone();
            for t in grid.tiles() {
                let (o, r, c) = (t.output, &rows, &columns);
                let off = |a: i64, n: usize, s: &Range<usize>| {
                    a + n as i64 <= s.start as i64 || a >= s.end as i64
                };
                if off(o.y, o.height, r) || off(o.x, o.width, c) {
                    over[t.index] = None;
                }
            }
            let part = blend_rect(&grid, &changes(&over), rows.clone(), columns.clone());
            for (c, y) in (0..3).flat_map(|c| rows.clone().map(move |y| (c, y))) {
                assert_eq!(
                    &part.channel(c)[(y - rows.start) * columns.len()..][..columns.len()],
                    &whole.channel(c)[y * 100 + columns.start..y * 100 + columns.end],
                    "{rows:?} x {columns:?}"
                );
            }
        }
    }

    #[test]
    fn a_single_tile_needs_no_band() {
        let grid = TileGrid::new(50, 40, geometry(64));
        assert_eq!(grid.len(), 1);
        assert_eq!(grid.geometry().band, 0);
        assert_eq!(
            grid.tile(0).output,
            Rect {
                x: 0,
                y: 0,
                width: 50,
                height: 40
            }
        );
    }

    #[test]
    fn extract_mirrors_outside_the_image() {
        let mut img = Planar::zeros(3, 1);
        img.data[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
        let row = extract(
            &img,
            Rect {
                x: -2,
                y: 0,
                width: 7,
                height: 1,
            },
        );
        assert_eq!(&row.data[..7], &[2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 2.0]);
    }

    #[test]
    fn extract_is_the_mirror_of_every_pixel() {
        let (w, h) = (9, 5);
        let img = Planar {
            width: w,
            height: h,
            data: (0..3 * w * h).map(|i| i as f32).collect(),
        };
        let rects = [
            (-3, -2, 15, 9),
            (2, 1, 4, 3),
            (-20, 0, 5, 2),
            (7, 4, 30, 6),
            (9, 0, 3, 1),
            (20, -7, 3, 1),
        ];
        for (x, y, width, height) in rects {
            let rect = Rect {
                x,
                y,
                width,
                height,
            };
            let got = extract(&img, rect);
            let mut want = Vec::new();
            for ch in 0..3 {
                for j in 0..height {
                    let yy = mirror(y + j as i64, h);
                    for i in 0..width {
                        want.push(img.data[(ch * h + yy) * w + mirror(x + i as i64, w)]);
                    }
                }
            }
            assert_eq!(got.data, want, "{rect:?}");
        }
    }
}
