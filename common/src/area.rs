//! Rectangles of an image by their columns and rows: what a region reads
//! and delivers, what of a region's input a worker already holds, and
//! 8-bit pixels over one.

use std::ops::Range;
use std::sync::Arc;

use crate::tiling::Rect;

/// A rectangle of an image by its columns and rows; empty when either is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Area {
    /// The columns.
    pub columns: Range<usize>,
    /// The rows.
    pub rows: Range<usize>,
}

impl Area {
    /// Whether it holds no pixel.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() || self.rows.is_empty()
    }

    /// Its pixels.
    pub fn pixels(&self) -> usize {
        self.columns.len() * self.rows.len()
    }

    /// The smallest area holding both.
    pub fn union(&self, other: &Area) -> Area {
        if self.is_empty() {
            return other.clone();
        }
        if other.is_empty() {
            return self.clone();
        }
        let span = |a: &Range<usize>, b: &Range<usize>| a.start.min(b.start)..a.end.max(b.end);
        Area {
            columns: span(&self.columns, &other.columns),
            rows: span(&self.rows, &other.rows),
        }
    }

    /// The pixels in both (empty when they do not meet).
    pub fn intersection(&self, other: &Area) -> Area {
        let clip = |a: &Range<usize>, b: &Range<usize>| a.start.max(b.start)..a.end.min(b.end);
        Area {
            columns: clip(&self.columns, &other.columns),
            rows: clip(&self.rows, &other.rows),
        }
    }

    /// Whether it shares a pixel with `rect`.
    pub fn overlaps(&self, rect: Rect) -> bool {
        let meets = |start: i64, len: usize, span: &Range<usize>| {
            start < span.end as i64 && start + len as i64 > span.start as i64 && !span.is_empty()
        };
        meets(rect.x, rect.width, &self.columns) && meets(rect.y, rect.height, &self.rows)
    }

    /// Whether it holds every pixel of `other`.
    pub fn holds(&self, other: &Area) -> bool {
        let within = |inner: &Range<usize>, outer: &Range<usize>| {
            inner.is_empty() || outer.start <= inner.start && inner.end <= outer.end
        };
        other.is_empty() || within(&other.columns, &self.columns) && within(&other.rows, &self.rows)
    }

    /// The image pixels of `rect`, which lies inside a `width`×`height`
    /// image.
    pub(crate) fn of(rect: Rect) -> Area {
        let (x, y) = (rect.x.max(0) as usize, rect.y.max(0) as usize);
        Area {
            columns: x..x + rect.width,
            rows: y..y + rect.height,
        }
    }
}

/// 8-bit RGB, interleaved and row-major, over an area of a frame: the
/// whole last frame at the coordinator, shared by the frame's region
/// leases, and a region's part at its worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb8Area {
    /// The frame's pixels it holds.
    pub area: Area,
    /// Their bytes.
    pub rgb: Arc<Vec<u8>>,
}

impl Rgb8Area {
    /// Whether its bytes are its area's and the area holds `part`.
    pub fn holds(&self, part: &Area) -> bool {
        self.rgb.len() == 3 * self.area.pixels() && self.area.holds(part)
    }

    /// The bytes of `pieces` (inside its area), in order, each row-major.
    pub fn cut(&self, pieces: &[Area]) -> Vec<u8> {
        let mut bytes = vec![0u8; 3 * pieces.iter().map(Area::pixels).sum::<usize>()];
        let mut at = 0;
        for piece in pieces {
            let n = 3 * piece.pixels();
            copy_rgb8(
                (&self.area, &self.rgb),
                (piece, &mut bytes[at..at + n]),
                piece,
            );
            at += n;
        }
        bytes
    }
}

/// Copies the pixels `over` of `from`, 8-bit RGB over its area, into the
/// same pixels of `to`, 8-bit RGB over its own; `over` lies in both areas.
pub fn copy_rgb8(
    (from_area, from): (&Area, &[u8]),
    (to_area, to): (&Area, &mut [u8]),
    over: &Area,
) {
    let n = 3 * over.columns.len();
    for y in over.rows.clone() {
        let at = |a: &Area| {
            3 * ((y - a.rows.start) * a.columns.len() + over.columns.start - a.columns.start)
        };
        let (f, t) = (at(from_area), at(to_area));
        to[t..t + n].copy_from_slice(&from[f..f + n]);
    }
}

/// The pixels of `part` outside every area of `taken`, as disjoint areas
/// in row-band order (each band's areas left to right; a band as tall as
/// its uncovered columns stay the same). What of a region's input a
/// worker's session has not carried yet, so the pieces to send.
pub fn uncovered<'a>(part: &Area, taken: impl IntoIterator<Item = &'a Area>) -> Vec<Area> {
    if part.is_empty() {
        return Vec::new();
    }
    let taken: Vec<Area> = taken
        .into_iter()
        .map(|a| a.intersection(part))
        .filter(|a| !a.is_empty())
        .collect();
    // Row bands between the taken areas' top and bottom edges.
    let mut edges: Vec<usize> = taken
        .iter()
        .flat_map(|a| [a.rows.start, a.rows.end])
        .chain([part.rows.start, part.rows.end])
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let mut pieces: Vec<Area> = Vec::new();
    // The pieces of the band above, still open downwards.
    let mut open: Vec<usize> = Vec::new();
    for band in edges.windows(2) {
        let rows = band[0]..band[1];
        let mut spans: Vec<Range<usize>> = taken
            .iter()
            .filter(|a| a.rows.start <= rows.start && rows.end <= a.rows.end)
            .map(|a| a.columns.clone())
            .collect();
        spans.sort_unstable_by_key(|s| s.start);
        let mut free = Vec::new();
        let mut x = part.columns.start;
        for span in spans {
            if span.start > x {
                free.push(x..span.start);
            }
            x = x.max(span.end);
        }
        if x < part.columns.end {
            free.push(x..part.columns.end);
        }
        let same = free.len() == open.len()
            && free
                .iter()
                .zip(&open)
                .all(|(f, &p)| pieces[p].columns == *f);
        if same {
            for &p in &open {
                pieces[p].rows.end = rows.end;
            }
        } else {
            open = (pieces.len()..pieces.len() + free.len()).collect();
            pieces.extend(free.into_iter().map(|columns| Area {
                columns,
                rows: rows.clone(),
            }));
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::derive;

    /// A random area of a `side`×`side` image, possibly empty.
    fn random_area(seed: u64, side: usize) -> Area {
        let n = |k| derive(seed, &[k]) as usize % (side + 1);
        let (x0, x1, y0, y1) = (n(0), n(1), n(2), n(3));
        Area {
            columns: x0.min(x1)..x0.max(x1),
            rows: y0.min(y1)..y0.max(y1),
        }
    }

    #[test]
    fn the_uncovered_pieces_are_exactly_the_parts_pixels_no_area_takes() {
        let side = 24;
        for case in 0..2000u64 {
            let part = random_area(case, side);
            let taken: Vec<Area> = (0..derive(case, &[9]) % 6)
                .map(|k| random_area(derive(case, &[10, k]), side))
                .collect();
            let pieces = uncovered(&part, &taken);
            let mut count = vec![0u32; side * side];
            for piece in &pieces {
                assert!(
                    !piece.is_empty() && part.holds(piece),
                    "{piece:?} of {part:?}"
                );
                for y in piece.rows.clone() {
                    for x in piece.columns.clone() {
                        count[y * side + x] += 1;
                    }
                }
            }
            for y in 0..side {
                for x in 0..side {
                    let inside = |a: &Area| a.columns.contains(&x) && a.rows.contains(&y);
                    let want = u32::from(inside(&part) && !taken.iter().any(inside));
                    assert_eq!(
                        count[y * side + x],
                        want,
                        "case {case}: pixel ({x}, {y}) of {part:?} less {taken:?}: {pieces:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_band_with_the_same_free_columns_grows_the_pieces_above_it() {
        let area = |x: Range<usize>, y: Range<usize>| Area {
            columns: x,
            rows: y,
        };
        let part = area(0..10, 0..10);
        // A hole in the middle: a band above, two beside it, a band below.
        let pieces = uncovered(&part, &[area(3..6, 2..5)]);
        assert_eq!(
            pieces,
            [
                area(0..10, 0..2),
                area(0..3, 2..5),
                area(6..10, 2..5),
                area(0..10, 5..10)
            ]
        );
        // Taken side by side, the rest of the part is one piece.
        let pieces = uncovered(&part, &[area(0..4, 0..6), area(4..10, 0..6)]);
        assert_eq!(pieces, [area(0..10, 6..10)]);
        assert!(uncovered(&part, &[area(0..20, 0..20)]).is_empty());
        assert_eq!(uncovered(&part, []), [part]);
    }
}
