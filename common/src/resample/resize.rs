//! Resizing between octaves: separable Keys cubic resampling, whole, a
//! band of rows at a time, or any rectangle of the output on its own.

use super::planar::{Planar, SpareImages};
use crate::parallel;
use multiversion::multiversion;
use std::ops::Range;
use wide::f32x4;

/// The Keys cubic convolution kernel with `a = -0.5` (Catmull-Rom), support
/// `-2..2`. Exactly 1 at 0 and exactly 0 at every other integer.
fn keys(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        (1.5 * x - 2.5) * x * x + 1.0
    } else if x < 2.0 {
        ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    } else {
        0.0
    }
}

/// The resampling weights of one axis: output index `i` is the weighted sum
/// of the `taps` source samples from `starts[i]`, with weights
/// `weights[i * taps..(i + 1) * taps]`.
struct AxisWeights {
    /// Source samples per output sample (the same for all, zero-padded).
    taps: usize,
    /// First source index of each output sample; `start + taps <= src_len`.
    starts: Vec<usize>,
    /// `taps` weights per output sample, each group summing to 1.
    weights: Vec<f32>,
}

impl AxisWeights {
    /// Weights resampling `src_len` samples to `dst_len` (both non-zero),
    /// antialiased like Pillow when shrinking: the kernel is stretched by the
    /// scale factor so every source sample contributes.
    fn new(src_len: usize, dst_len: usize) -> Self {
        let scale = src_len as f64 / dst_len as f64;
        let stretch = scale.max(1.0);
        let support = 2.0 * stretch;
        let last = src_len as isize - 1;
        // Source window of output `i`, before and after clamping to the edge.
        let window = |i: usize| {
            let centre = (i as f64 + 0.5) * scale - 0.5;
            let lo = (centre - support).ceil() as isize;
            let hi = (centre + support).floor() as isize;
            (centre, lo, hi, lo.clamp(0, last), hi.clamp(0, last))
        };
        let taps = (0..dst_len)
            .map(|i| {
                let (_, _, _, lo, hi) = window(i);
                (hi - lo + 1) as usize
            })
            .max()
            .unwrap_or(1);
        let mut starts = Vec::with_capacity(dst_len);
        let mut weights = vec![0.0f32; dst_len * taps];
        let mut acc = vec![0.0f64; taps];
        for (i, out) in weights.chunks_exact_mut(taps).enumerate() {
            let (centre, lo, hi, clo, _) = window(i);
            // Shift the window left where it would run past the right edge.
            let start = clo.min(src_len as isize - taps as isize);
            acc.fill(0.0);
            for j in lo..=hi {
                // Taps beyond the edge repeat the edge sample.
                let k = (j.clamp(0, last) - start) as usize;
                acc[k] += keys((j as f64 - centre) / stretch);
            }
            let sum: f64 = acc.iter().sum();
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = (a / sum) as f32;
            }
            starts.push(start as usize);
        }
        Self {
            taps,
            starts,
            weights,
        }
    }

    /// The source samples that outputs `out` read (zero weights included);
    /// empty for none.
    fn support(&self, out: Range<usize>) -> Range<usize> {
        if out.is_empty() {
            return 0..0;
        }
        self.starts[out.start]..self.starts[out.end - 1] + self.taps
    }
}

/// The source range of one axis that outputs `out` read: `axis`'s support,
/// or `out` itself on an axis that keeps its size.
fn axis_support(axis: Option<&AxisWeights>, out: Range<usize>) -> Range<usize> {
    axis.map_or(out.clone(), |a| a.support(out))
}

/// Resizes `src` to `width`×`height` with the Keys cubic (Catmull-Rom)
/// kernel, antialiased when shrinking (as Pillow's `BICUBIC`), pixel centres
/// aligned (`(i + 0.5) * scale - 0.5`) and edges extended. Used between
/// octaves, so same-size resizes return an identical copy.
///
/// An empty source gives a black image; an empty target an empty one.
pub fn resize(src: &Planar, width: usize, height: usize) -> Planar {
    resize_with(src, width, height, &mut SpareImages::default())
}

/// [`resize`] into buffers from `spare`, which keeps the one it needed
/// between its two passes.
pub fn resize_with(src: &Planar, width: usize, height: usize, spare: &mut SpareImages) -> Planar {
    if width == 0 || height == 0 || src.width == 0 || src.height == 0 {
        return Planar::zeros(width, height);
    }
    let resize = Resize::new(src.width, src.height, width, height);
    resize.rect(src, (0, 0), 0..width, 0..height, spare)
}

/// The weights of a resize between two non-empty sizes, for the whole
/// output or any rectangle of it: a rectangle computed on its own from
/// the source samples it reads ([`Resize::source_of`]) is the same bits
/// as that part of the whole resize, so an octave can be computed piece by
/// piece wherever its pieces are needed.
pub struct Resize {
    /// The column pass, if the width changes.
    horizontal: Option<AxisWeights>,
    /// The row pass, if the height changes.
    vertical: Option<AxisWeights>,
    /// Whether the row pass comes first: when shrinking the height, so the
    /// column pass runs on the smaller image.
    vertical_first: bool,
    src_width: usize,
    width: usize,
    height: usize,
}

impl Resize {
    /// Resizes a non-empty `src_width`×`src_height` source to a non-empty
    /// `width`×`height`.
    pub fn new(src_width: usize, src_height: usize, width: usize, height: usize) -> Self {
        Self {
            horizontal: (src_width != width).then(|| AxisWeights::new(src_width, width)),
            vertical: (src_height != height).then(|| AxisWeights::new(src_height, height)),
            vertical_first: height < src_height,
            src_width,
            width,
            height,
        }
    }

    /// The source columns and rows that output `columns` × `rows` read.
    pub fn source_of(
        &self,
        columns: Range<usize>,
        rows: Range<usize>,
    ) -> (Range<usize>, Range<usize>) {
        (
            axis_support(self.horizontal.as_ref(), columns),
            axis_support(self.vertical.as_ref(), rows),
        )
    }

    /// Output `columns` × `rows` (within the output's size) as an image
    /// of their own, from `src`: the source's samples over a rectangle
    /// from `origin` (column, row) that holds [`Resize::source_of`] them.
    /// The image and the one between the passes come from `spare`.
    ///
    /// # Panics
    ///
    /// If `src` does not hold the source samples the rectangle reads.
    pub fn rect(
        &self,
        src: &Planar,
        origin: (usize, usize),
        columns: Range<usize>,
        rows: Range<usize>,
        spare: &mut SpareImages,
    ) -> Planar {
        let (source_columns, source_rows) = self.source_of(columns.clone(), rows.clone());
        assert!(
            columns.end <= self.width
                && rows.end <= self.height
                && (source_columns.is_empty()
                    || origin.0 <= source_columns.start
                        && source_columns.end <= origin.0 + src.width)
                && (source_rows.is_empty()
                    || origin.1 <= source_rows.start && source_rows.end <= origin.1 + src.height),
            "a resize's rectangle {columns:?} x {rows:?} of {}x{} reads source {source_columns:?} x \
             {source_rows:?}, outside the {}x{} samples from {origin:?}",
            self.width,
            self.height,
            src.width,
            src.height,
        );
        let mut out = spare.take(columns.len(), rows.len());
        if out.data.is_empty() {
            return out;
        }
        let (sw, sh) = (src.width, src.height);
        let (w, h) = (columns.len(), rows.len());
        // The window's rows that the source rows read are.
        let window_rows = source_rows.start - origin.1..source_rows.end - origin.1;
        let planes_in = src.data.chunks_exact(sw * sh);
        let planes_out = out.data.chunks_exact_mut(w * h);
        let input = |samples| PlaneIn {
            samples,
            width: sw,
            origin,
        };
        match (&self.horizontal, &self.vertical) {
            (None, None) => {
                let x = columns.start - origin.0;
                for (p_in, p_out) in planes_in.zip(planes_out) {
                    for (row_out, y) in p_out.chunks_exact_mut(w).zip(window_rows.clone()) {
                        row_out.copy_from_slice(&p_in[y * sw + x..][..w]);
                    }
                }
            }
            (Some(x), None) => {
                for (p_in, p_out) in planes_in.zip(planes_out) {
                    horizontal_rows(
                        x,
                        input(p_in),
                        p_out,
                        rows.start,
                        columns.clone(),
                        rows.clone(),
                    );
                }
            }
            (None, Some(y)) => {
                for (p_in, p_out) in planes_in.zip(planes_out) {
                    vertical_rows(
                        y,
                        input(p_in),
                        p_out,
                        rows.start,
                        columns.clone(),
                        rows.clone(),
                    );
                }
            }
            (Some(x), Some(y)) => {
                // The image between the passes, over the source's columns
                // and the output's rows when the row pass comes first, and
                // the other way round when the column pass does.
                let (first, second): (Pass, Pass) = if self.vertical_first {
                    ((vertical_rows, y), (horizontal_rows, x))
                } else {
                    ((horizontal_rows, x), (vertical_rows, y))
                };
                let (mid_columns, mid_rows) = if self.vertical_first {
                    (source_columns, rows.clone())
                } else {
                    (columns.clone(), source_rows)
                };
                let (mid_width, mid_height) = (mid_columns.len(), mid_rows.len());
                let mut between = spare.take(mid_width, mid_height);
                let planes_between = between.data.chunks_exact_mut(mid_width * mid_height);
                for ((p_in, p_mid), p_out) in planes_in.zip(planes_between).zip(planes_out) {
                    let at = mid_rows.start;
                    first.0(
                        first.1,
                        input(p_in),
                        p_mid,
                        at,
                        mid_columns.clone(),
                        mid_rows.clone(),
                    );
                    let mid = PlaneIn {
                        samples: p_mid,
                        width: mid_width,
                        origin: (mid_columns.start, mid_rows.start),
                    };
                    second.0(
                        second.1,
                        mid,
                        p_out,
                        rows.start,
                        columns.clone(),
                        rows.clone(),
                    );
                }
                spare.keep(&mut between);
            }
        }
        out
    }
}

/// A [`resize`] computed band by band as the source's rows arrive, top
/// first: the frame loop starts an octave's top tiles while the bottom of
/// the octave before is still being dreamed. Every output sample is the
/// same bits as the whole resize's, whatever the bands.
pub struct RowResize {
    /// The weights.
    resize: Resize,
    /// The image between the two passes (both axes change), in the
    /// second pass's input rows.
    between: Planar,
    /// Rows of `between` computed.
    between_rows: usize,
    /// Output rows computed.
    done: usize,
}

impl RowResize {
    /// Resizes a non-empty `src_width`×`src_height` source to a non-empty
    /// `width`×`height`, the image between its passes from `spare`.
    pub fn new(
        src_width: usize,
        src_height: usize,
        width: usize,
        height: usize,
        spare: &mut SpareImages,
    ) -> Self {
        let resize = Resize::new(src_width, src_height, width, height);
        let between = match (&resize.horizontal, &resize.vertical) {
            (Some(_), Some(_)) if resize.vertical_first => spare.take(src_width, height),
            (Some(_), Some(_)) => spare.take(width, src_height),
            _ => Planar::zeros(0, 0),
        };
        Self {
            resize,
            between,
            between_rows: 0,
            done: 0,
        }
    }

    /// Gives the image between the passes back to `spare`, once the
    /// resize is done with.
    pub fn spend(mut self, spare: &mut SpareImages) {
        spare.keep(&mut self.between);
    }

    /// Source rows that the first `rows` output rows read.
    fn source_rows(&self, rows: usize) -> usize {
        axis_support(self.resize.vertical.as_ref(), 0..rows).end
    }

    /// Computes every output row into `out` (`width`×`height`) that the
    /// first `src_rows` rows of `src` determine, and returns how many rows
    /// are now done.
    pub fn advance(&mut self, src: &Planar, src_rows: usize, out: &mut Planar) -> usize {
        let from = self.done;
        let Resize {
            horizontal,
            vertical,
            vertical_first,
            src_width: sw,
            width: w,
            height: h,
            ..
        } = &self.resize;
        let (sw, w, h) = (*sw, *w, *h);
        let mut to = from;
        while to < h && self.source_rows(to + 1) <= src_rows {
            to += 1;
        }
        if to == from {
            return from;
        }
        let sh = src.height;
        let planes_in = src.data.chunks_exact(sw * sh);
        let planes_out = out.data.chunks_exact_mut(w * h);
        let whole = |samples, width| PlaneIn {
            samples,
            width,
            origin: (0, 0),
        };
        match (horizontal, vertical) {
            (None, None) => {
                for (p_in, p_out) in planes_in.zip(planes_out) {
                    p_out[from * w..to * w].copy_from_slice(&p_in[from * w..to * w]);
                }
            }
            (Some(x), None) => {
                for (p_in, p_out) in planes_in.zip(planes_out) {
                    horizontal_rows(x, whole(p_in, sw), p_out, 0, 0..w, from..to);
                }
            }
            (None, Some(y)) => {
                for (p_in, p_out) in planes_in.zip(planes_out) {
                    vertical_rows(y, whole(p_in, w), p_out, 0, 0..w, from..to);
                }
            }
            (Some(x), Some(y)) if *vertical_first => {
                let planes_between = self.between.data.chunks_exact_mut(sw * h);
                for ((p_in, p_mid), p_out) in planes_in.zip(planes_between).zip(planes_out) {
                    vertical_rows(y, whole(p_in, sw), p_mid, 0, 0..sw, from..to);
                    horizontal_rows(x, whole(p_mid, sw), p_out, 0, 0..w, from..to);
                }
            }
            (Some(x), Some(y)) => {
                let (mid_from, mid_to) = (self.between_rows, self.source_rows(to));
                let planes_between = self.between.data.chunks_exact_mut(w * sh);
                for ((p_in, p_mid), p_out) in planes_in.zip(planes_between).zip(planes_out) {
                    horizontal_rows(x, whole(p_in, sw), p_mid, 0, 0..w, mid_from..mid_to);
                    vertical_rows(y, whole(p_mid, w), p_out, 0, 0..w, from..to);
                }
                self.between_rows = mid_to;
            }
        }
        self.done = to;
        to
    }
}

/// Rows [`horizontal_rows`] resamples together: their samples are laid
/// side by side so that one tap is a single multiply-add across them, which
/// vectorises where a tap-by-tap sum along one row cannot (it must add in
/// order).
const ROWS_AT_ONCE: usize = 8;

/// A pass of a resize ([`horizontal_rows`] or [`vertical_rows`]) with its
/// axis's weights.
type Pass<'a> = (
    fn(&AxisWeights, PlaneIn, &mut [f32], usize, Range<usize>, Range<usize>),
    &'a AxisWeights,
);

/// One plane of a pass's input: rows of `width` samples, the first
/// sample being the image's column and row `origin`.
#[derive(Clone, Copy)]
struct PlaneIn<'a> {
    samples: &'a [f32],
    width: usize,
    origin: (usize, usize),
}

/// Resamples image `rows` of `input` to output `columns` in the same rows
/// of `plane_out` (`columns.len()` wide, its first row image row
/// `out_row`), strips of [`ROWS_AT_ONCE`] rows shared out across threads.
/// Each output sample adds its taps in order from 0, as one row at a time
/// would.
#[multiversion(targets("x86_64+avx2"))]
fn horizontal_rows(
    axis: &AxisWeights,
    input: PlaneIn,
    plane_out: &mut [f32],
    out_row: usize,
    columns: Range<usize>,
    rows: Range<usize>,
) {
    let (taps, width, src_width) = (axis.taps, columns.len(), input.width);
    let (src_x, first) = (input.origin.0, rows.start - input.origin.1);
    let out = &mut plane_out[(rows.start - out_row) * width..(rows.end - out_row) * width];
    parallel::for_each_piece(out, ROWS_AT_ONCE * width, |strip, rows_out| {
        let row = first + strip * ROWS_AT_ONCE;
        let rows_in = &input.samples[row * src_width..][..rows_out.len() / width * src_width];
        let strip_rows = rows_in.len() / src_width;
        let side = side_by_side(rows_in, src_width, strip_rows);
        let side = side.as_flattened();
        let starts = &axis.starts[columns.clone()];
        let weights = axis.weights[columns.start * taps..columns.end * taps].chunks_exact(taps);
        for (x, (&start, w)) in starts.iter().zip(weights).enumerate() {
            let mut acc = [0.0f32; ROWS_AT_ONCE];
            for (column, &w) in side[start - src_x..][..taps].iter().zip(w) {
                for (a, &v) in acc.iter_mut().zip(column) {
                    *a += w * v;
                }
            }
            for (row_out, &a) in rows_out.chunks_exact_mut(width).zip(&acc) {
                row_out[x] = a;
            }
        }
    });
}

/// Column `x` of `rows` rows (`width` wide, at most [`ROWS_AT_ONCE`]),
/// side by side, in blocks of four columns (`x / 4`, then `x % 4`), made in
/// one write each (no zeroed buffer to fill first); rows past `rows` and
/// columns past `width` are 0. A whole block of a whole strip is two 4×4
/// transposes of vectors read along its rows: gathered one sample at a
/// time, the columns were a quarter of a resize's time.
fn side_by_side(samples: &[f32], width: usize, rows: usize) -> Vec<[[f32; ROWS_AT_ONCE]; 4]> {
    (0..width.div_ceil(4))
        .map(|block| {
            let x = 4 * block;
            if rows < ROWS_AT_ONCE || x + 4 > width {
                return std::array::from_fn(|c| {
                    std::array::from_fn(|r| {
                        if r < rows && x + c < width {
                            samples[r * width + x + c]
                        } else {
                            0.0
                        }
                    })
                });
            }
            let four = |r: usize| {
                let run = &samples[r * width + x..][..4];
                f32x4::new(std::array::from_fn(|i| run[i]))
            };
            let top = f32x4::transpose([four(0), four(1), four(2), four(3)]);
            let bottom = f32x4::transpose([four(4), four(5), four(6), four(7)]);
            bytemuck::cast([
                top[0], bottom[0], top[1], bottom[1], top[2], bottom[2], top[3], bottom[3],
            ])
        })
        .collect()
}

/// Columns of one output row summed at once in the vertical pass: few
/// enough that their sums stay in registers across every tap, so a tap
/// costs one load per sample instead of a load and a store of the row too.
const COLUMNS_AT_ONCE: usize = 32;

/// Resamples the columns of `input` into image `rows` of `plane_out`
/// over `columns` (`plane_out` is `columns.len()` wide, its first row
/// image row `out_row`), a row at a time in blocks of
/// [`COLUMNS_AT_ONCE`] columns, rows shared out across threads. Each
/// output sample adds its taps in order from 0, skipping zero weights, as
/// one sweep of the row per tap would.
#[multiversion(targets("x86_64+avx2"))]
fn vertical_rows(
    axis: &AxisWeights,
    input: PlaneIn,
    plane_out: &mut [f32],
    out_row: usize,
    columns: Range<usize>,
    rows: Range<usize>,
) {
    let (taps, width, src_width) = (axis.taps, columns.len(), input.width);
    let first = rows.start;
    let out = &mut plane_out[(rows.start - out_row) * width..(rows.end - out_row) * width];
    let column = columns.start - input.origin.0;
    parallel::for_each_piece(out, width, |k, row_out| {
        let row = first + k;
        let start = axis.starts[row] - input.origin.1;
        let weights = &axis.weights[row * taps..][..taps];
        // The rows read and their weights, once for every block.
        let rows_in: Vec<(&[f32], f32)> = input.samples
            [start * src_width..(start + taps) * src_width]
            .chunks_exact(src_width)
            .zip(weights)
            .filter(|&(_, &w)| w != 0.0)
            .map(|(row_in, &w)| (&row_in[column..column + width], w))
            .collect();
        // The row may hold a spent image's samples: every sum starts from
        // zero (`0.0 + w * v` is its first step, bit for bit).
        let mut blocks = row_out.chunks_exact_mut(COLUMNS_AT_ONCE);
        for (b, block) in blocks.by_ref().enumerate() {
            let x = b * COLUMNS_AT_ONCE;
            let mut acc = [0.0f32; COLUMNS_AT_ONCE];
            for &(row_in, w) in &rows_in {
                for (a, &v) in acc.iter_mut().zip(&row_in[x..x + COLUMNS_AT_ONCE]) {
                    *a += w * v;
                }
            }
            block.copy_from_slice(&acc);
        }
        let rest = blocks.into_remainder();
        let x = width - rest.len();
        rest.fill(0.0);
        for &(row_in, w) in &rows_in {
            for (o, &v) in rest.iter_mut().zip(&row_in[x..]) {
                *o += w * v;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::test_images::*;

    #[test]
    fn kernel_is_exact_at_integers() {
        assert_eq!(keys(0.0), 1.0);
        for x in [-2.0, -1.0, 1.0, 2.0, 3.0] {
            assert_eq!(keys(x), 0.0);
        }
    }

    #[test]
    fn row_strips_resample_as_one_row_at_a_time() {
        // The per-row sum, tap by tap from 0, that the strips must match.
        let one_row = |src: &Planar, width: usize| {
            let axis = AxisWeights::new(src.width, width);
            let rows = src.data.chunks_exact(src.width);
            let data = rows
                .flat_map(|row| {
                    axis.starts
                        .iter()
                        .zip(axis.weights.chunks_exact(axis.taps))
                        .map(|(&s, w)| {
                            let taps = row[s..s + axis.taps].iter().zip(w);
                            taps.fold(0.0f32, |acc, (&v, &w)| acc + w * v)
                        })
                })
                .collect();
            Planar {
                width,
                height: src.height,
                data,
            }
        };
        // Heights that leave a short last strip; sizes both ways.
        for (w, h, to) in [(97, 13, 41), (41, 13, 97), (700, 301, 255), (255, 3, 700)] {
            let src = noise(w, h);
            assert_eq!(resize(&src, to, h), one_row(&src, to), "{w}x{h} to {to}");
        }
    }

    #[test]
    fn column_blocks_resample_as_one_column_at_a_time() {
        // The per-sample sum down a column, tap by tap from 0, skipping zero
        // weights, that the blocks of columns must match.
        let one_column = |src: &Planar, height: usize| {
            let axis = AxisWeights::new(src.height, height);
            let width = src.width;
            let mut data = Vec::new();
            for plane in src.data.chunks_exact(width * src.height) {
                for (&s, weights) in axis.starts.iter().zip(axis.weights.chunks_exact(axis.taps)) {
                    for x in 0..width {
                        let taps = weights.iter().enumerate().filter(|&(_, &w)| w != 0.0);
                        data.push(
                            taps.fold(0.0f32, |acc, (k, &w)| acc + w * plane[(s + k) * width + x]),
                        );
                    }
                }
            }
            Planar {
                width,
                height,
                data,
            }
        };
        // Widths under one block, of whole blocks, and with a short last
        // block; sizes both ways.
        for (w, h, to) in [(13, 41, 97), (64, 97, 41), (97, 301, 255), (700, 255, 301)] {
            let src = noise(w, h);
            assert_eq!(
                resize(&src, w, to),
                one_column(&src, to),
                "{w}x{h} to height {to}"
            );
        }
    }

    #[test]
    fn a_resize_in_bands_of_rows_is_the_whole_resize() {
        let src = noise(131, 97);
        for (w, h) in [
            (190, 140),
            (60, 40),
            (131, 140),
            (190, 97),
            (131, 97),
            (60, 140),
        ] {
            let whole = resize(&src, w, h);
            // Spent buffers full of NaN for the output and the image
            // between the passes: a sample not written would show.
            let mut spare = nan_spare(&[(w, h), (131, h), (w, 97), (w, h)]);
            let mut rows = RowResize::new(131, 97, w, h, &mut spare);
            let mut out = spare.take(w, h);
            let mut seen = 0;
            for available in (0..=97).step_by(13).chain([97]) {
                let done = rows.advance(&src, available, &mut out);
                assert!(done >= seen, "rows never go back");
                seen = done;
            }
            assert_eq!(seen, h, "{w}x{h}: every row once the source is all there");
            assert_eq!(out, whole, "{w}x{h}");
            assert_eq!(resize_with(&src, w, h, &mut spare), whole, "{w}x{h}");
        }
        let mut rows = RowResize::new(131, 97, 190, 140, &mut SpareImages::default());
        let mut out = Planar::zeros(190, 140);
        assert_eq!(rows.advance(&src, 0, &mut out), 0, "no source, no rows");
        let part = rows.advance(&src, 40, &mut out);
        assert!(
            part > 0 && part < 140 * 40 / 97,
            "{part} rows from 40 of 97"
        );
    }

    #[test]
    fn a_rectangle_resized_on_its_own_is_that_part_of_the_whole_resize() {
        // Sizes that keep, grow and shrink each axis, random rectangles of
        // their outputs, each from a window of the source that holds what
        // it reads and NaN around that, into spent buffers full of NaN: a
        // sample read outside `source_of`, or not written, would show.
        let mut random = Lcg(7);
        for case in 0..200 {
            let (sw, sh) = (random.below(60) + 1, random.below(60) + 1);
            let size = |random: &mut Lcg, s: usize| match random.below(3) {
                0 => s,
                1 => s + random.below(50) + 1,
                _ => random.below(s) + 1,
            };
            let (w, h) = (size(&mut random, sw), size(&mut random, sh));
            let src = noise(sw, sh);
            let whole = resize(&src, w, h);
            let resize = Resize::new(sw, sh, w, h);
            let (columns, rows) = random.rect(w, h);
            let (sx, sy) = resize.source_of(columns.clone(), rows.clone());
            assert!(
                sx.end <= sw && sy.end <= sh,
                "case {case}: {sx:?} x {sy:?} in {sw}x{sh}"
            );
            let origin = (
                sx.start - random.below(sx.start + 1),
                sy.start - random.below(sy.start + 1),
            );
            let (ww, wh) = (
                sx.end - origin.0 + random.below(sw - sx.end + 1),
                sy.end - origin.1 + random.below(sh - sy.end + 1),
            );
            let window = image(ww, wh, |c, x, y| {
                let (x, y) = (x as usize + origin.0, y as usize + origin.1);
                if sx.contains(&x) && sy.contains(&y) {
                    at(&src, c, x, y)
                } else {
                    f32::NAN
                }
            });
            let (cw, ch) = (columns.len(), rows.len());
            let mut spare = nan_spare(&[(cw, ch), (sx.len(), ch), (cw, sy.len())]);
            let part = resize.rect(&window, origin, columns.clone(), rows.clone(), &mut spare);
            let want = crop(&whole, columns.clone(), rows.clone());
            assert_eq!(
                part, want,
                "case {case}: {sw}x{sh} to {w}x{h}, {columns:?} x {rows:?} from {origin:?}"
            );
        }
    }

    #[test]
    fn one_axis_resize_leaves_the_other_alone() {
        let img = noise(9, 6);
        let wide = resize(&img, 18, 6);
        // Each row resizes on its own, exactly as a one-row image would.
        for y in 0..6 {
            let row = image(9, 1, |c, x, _| at(&img, c, x as usize, y));
            let row_wide = resize(&row, 18, 1);
            for c in 0..3 {
                assert_eq!(row_wide.channel(c), &wide.channel(c)[y * 18..(y + 1) * 18]);
            }
        }
        let tall = resize(&img, 9, 13);
        assert_eq!((tall.width, tall.height), (9, 13));
    }

    #[test]
    fn constant_stays_constant() {
        let img = image(40, 30, |c, _, _| 0.25 + 0.25 * c as f32);
        for (w, h) in [(13, 7), (40, 31), (97, 64), (3, 2), (1, 1), (120, 10)] {
            let out = resize(&img, w, h);
            assert_eq!((out.width, out.height), (w, h));
            for c in 0..3 {
                let want = 0.25 + 0.25 * c as f32;
                for &v in out.channel(c) {
                    assert!((v - want).abs() < 1e-6, "{w}x{h} channel {c}: {v}");
                }
            }
        }
    }

    #[test]
    fn halving_a_gradient_samples_it_at_the_new_centres() {
        let (w, h) = (64, 48);
        let f = |c: usize, x: f64, y: f64| (0.1 + 0.01 * x + 0.005 * y + 0.1 * c as f64) as f32;
        let img = image(w, h, f);
        let out = resize(&img, w / 2, h / 2);
        // Output pixel centre x' + 0.5 covers source x = 2 (x' + 0.5).
        let want = image(w / 2, h / 2, |c, x, y| f(c, 2.0 * x, 2.0 * y));
        for c in 0..3 {
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    let (got, exp) = (at(&out, c, x, y), at(&want, c, x, y));
                    // Edge extension bends the ramp within the kernel's reach.
                    let interior = (2..w / 2 - 2).contains(&x) && (2..h / 2 - 2).contains(&y);
                    let tol = if interior { 1e-5 } else { 0.02 };
                    assert!((got - exp).abs() < tol, "({x}, {y}) {c}: {got} vs {exp}");
                }
            }
        }
    }

    #[test]
    fn up_then_down_returns_a_smooth_image() {
        let img = smooth(50, 36);
        for (w, h) in [(100, 72), (137, 91)] {
            let back = resize(&resize(&img, w, h), 50, 36);
            let err = back
                .data
                .iter()
                .zip(&img.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 2e-3, "via {w}x{h}: max error {err}");
        }
    }
}
