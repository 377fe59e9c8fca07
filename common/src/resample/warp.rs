//! The infinite zoom's per-frame camera move: zoom, rotation and pan about
//! a centre, with the Keys cubic kernel.

use super::planar::{Planar, SpareImages, rgb8_sample};
use crate::parallel;
use multiversion::multiversion;
use std::ops::Range;
use wide::{f32x4, f64x4};

/// The per-frame camera move of an infinite zoom: the content of each frame
/// is the previous frame magnified by `zoom` and turned by `rotate_deg` about
/// `center`, then shifted by `pan`.
///
/// In pixel coordinates (x right, y down, pixel centres at `i + 0.5`) a
/// source point `s` appears in the output at
/// `o = center + zoom * R * (s - center) + pan`, where `R` turns
/// `rotate_deg` counter-clockwise as seen on screen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    /// Magnification, positive: above 1 zooms in (content grows), below 1
    /// zooms out.
    pub zoom: f64,
    /// Rotation in degrees, counter-clockwise on screen (like
    /// `ZoomSettings::rotate`).
    pub rotate_deg: f64,
    /// Shift in output pixels `(right, down)`: positive `pan.0` moves the
    /// content right, positive `pan.1` moves it down.
    pub pan: (f64, f64),
    /// Fixed point of zoom and rotation in absolute pixel coordinates
    /// (`(width / 2, height / 2)`: the image centre).
    pub center: (f64, f64),
}

impl Warp {
    /// Whether this warp leaves every pixel where it is (no zoom, rotation or
    /// pan; the centre then does not matter), so [`warp`] can copy.
    pub fn is_identity(&self) -> bool {
        self.zoom == 1.0 && self.rotate_deg == 0.0 && self.pan == (0.0, 0.0)
    }

    /// The move that undoes this one, `s = center + R⁻¹ (o - center) / zoom
    /// − R⁻¹ pan / zoom`: zoom `1/zoom`, the opposite turn, the same centre
    /// and the pan turned back and scaled. Cadence uses it to carry
    /// a dreamed frame back to the frames before it.
    pub fn inverse(&self) -> Self {
        let (sin, cos) = self.rotate_deg.to_radians().sin_cos();
        let (px, py) = self.pan;
        Self {
            zoom: 1.0 / self.zoom,
            rotate_deg: -self.rotate_deg,
            pan: (
                -(cos * px - sin * py) / self.zoom,
                -(sin * px + cos * py) / self.zoom,
            ),
            center: self.center,
        }
    }
}

/// Edge-extension margins of [`warp`]'s padded source: enough that the four
/// taps of any coordinate clamped to `-1..=len` stay inside.
const PAD_BEFORE: usize = 2;
/// Edge-extension margin after the last sample; see [`PAD_BEFORE`].
const PAD_AFTER: usize = 3;

/// A warp's source image, or the rectangle of it a warp reads:
/// `columns` × `rows` of the image, `pixel(p)` giving the rectangle's
/// pixel `p` (row-major). It is read as rows of one `[r, g, b, 0]` group
/// per pixel, so a bicubic tap is a single 4-lane multiply-add, with the
/// image's edge pixels repeated [`PAD_BEFORE`] times before and
/// [`PAD_AFTER`] times after on both axes, so taps need no per-tap
/// clamping. The separable warp reads it a row at a time as it goes; only
/// the general warp needs the whole padded rectangle ([`Padded`], four
/// floats a pixel: 133 MB for a whole 4K frame, a buffer kept from frame
/// to frame: a fresh one cost a fault per page to map and its unmapping,
/// a quarter of a turning camera's move).
struct Source<F> {
    /// The image's size.
    width: usize,
    height: usize,
    /// The pixels held.
    columns: Range<usize>,
    rows: Range<usize>,
    pixel: F,
}

/// The padded coordinates (pixel `i` at `i + PAD_BEFORE`) whose samples
/// come from pixels `held` of an axis of `len` pixels: the padding
/// before and after the image is included where `held` reaches the edge.
fn padded_range(held: &Range<usize>, len: usize) -> Range<usize> {
    let start = if held.start == 0 {
        0
    } else {
        held.start + PAD_BEFORE
    };
    let end = held.end + PAD_BEFORE + if held.end == len { PAD_AFTER } else { 0 };
    start..end
}

impl<F: Fn(usize) -> [f32; 3] + Sync> Source<F> {
    /// The padded columns of the pixels held.
    fn padded_columns(&self) -> Range<usize> {
        padded_range(&self.columns, self.width)
    }

    /// The padded rows of the pixels held.
    fn padded_rows(&self) -> Range<usize> {
        padded_range(&self.rows, self.height)
    }

    /// Writes the held columns of padded row `r` into `row`.
    fn fill_row(&self, r: usize, row: &mut [[f32; 4]]) {
        let (w, h) = (self.width, self.height);
        let y = r.saturating_sub(PAD_BEFORE).min(h - 1);
        let first = (y - self.rows.start) * self.columns.len();
        for (x, px) in self.padded_columns().zip(row) {
            let x = x.saturating_sub(PAD_BEFORE).min(w - 1) - self.columns.start;
            let [r, g, b] = (self.pixel)(first + x);
            *px = [r, g, b, 0.0];
        }
    }

    /// The whole padded rectangle held, in a buffer from `spare` (every
    /// sample is written), its rows shared out across threads.
    fn padded(&self, spare: &mut SpareImages) -> Padded {
        let (columns, rows) = (self.padded_columns(), self.padded_rows());
        let padded_width = columns.len();
        let mut pixels = spare.take_samples(4 * padded_width * rows.len());
        parallel::for_each_piece(&mut pixels, 4 * padded_width, |k, row| {
            self.fill_row(rows.start + k, row.as_chunks_mut().0);
        });
        Padded {
            pixels,
            padded_width,
            origin: (columns.start, rows.start),
            width: self.width,
            height: self.height,
        }
    }
}

/// The non-empty image `src` as a warp's source.
fn of_planar(src: &Planar) -> Source<impl Fn(usize) -> [f32; 3] + Sync + '_> {
    let planes = [src.channel(0), src.channel(1), src.channel(2)];
    Source {
        width: src.width,
        height: src.height,
        columns: 0..src.width,
        rows: 0..src.height,
        pixel: move |p| planes.map(|c| c[p]),
    }
}

/// A [`Source`]'s padded rectangle, for the general warp's random access.
struct Padded {
    /// Four samples a pixel, row after row.
    pixels: Vec<f32>,
    /// Width of a padded row.
    padded_width: usize,
    /// The padded column and row of the first pixel.
    origin: (usize, usize),
    /// The image's own size.
    width: usize,
    height: usize,
}

impl Padded {
    /// The four pixels of padded row `r` from padded column `x0`.
    fn taps(&self, r: usize, x0: usize) -> &[[f32; 4]] {
        let (c0, r0) = self.origin;
        &self.pixels.as_chunks().0[(r - r0) * self.padded_width + x0 - c0..][..4]
    }
}

/// Output pixels whose taps are worked out together, as vectors: the
/// coordinates and weights were two thirds of a turning camera's time
/// when worked out one pixel at a time.
const LANES: usize = 4;

/// Bicubic taps for four continuous indices `u` (sample `i` at `u = i`)
/// on an axis of `len` samples, in the padded coordinates of [`Padded`]:
/// for each, the first of four consecutive samples and their Keys weights.
///
/// Clamping `u` to `-1..=len` first gives the same result as clamping each
/// tap's index, since every tap outside the image reads the edge sample.
fn cubic_taps(u: f64x4, len: usize) -> [(usize, [f32; 4]); LANES] {
    let (low, high) = (f64x4::splat(-1.0), f64x4::splat(len as f64));
    // `f64::clamp`'s steps, which leave a NaN a NaN.
    let u = u.simd_lt(low).select(low, u);
    let u = u.simd_gt(high).select(high, u);
    let shifted = (u + f64x4::splat((PAD_BEFORE - 1) as f64)).to_array();
    // `u + 1 >= 0`, so truncation is `floor(u) + 1`, the padded index of tap
    // `floor(u) - 1`; `as` maps a NaN coordinate to 0, still in range.
    let first = shifted.map(|s| s as usize);
    let t = f32x4::new(std::array::from_fn(|k| {
        (shifted[k] - first[k] as f64) as f32
    }));
    let c = f32x4::splat;
    // keys(t + 1), keys(t), keys(1 - t), keys(2 - t) for t in 0..1, expanded.
    let w = [
        c(0.5) * t * (t * (c(2.0) - t) - c(1.0)),
        c(0.5) * (t * t * (c(3.0) * t - c(5.0)) + c(2.0)),
        c(0.5) * t * (t * (c(4.0) - c(3.0) * t) + c(1.0)),
        c(0.5) * t * t * (t - c(1.0)),
    ]
    .map(f32x4::to_array);
    std::array::from_fn(|k| (first[k], w.map(|w| w[k])))
}

/// Applies the camera move `warp` to `src` (see [`Warp`] for the geometry):
/// the next frame's input in an infinite zoom. Same size as `src`, bicubic
/// (Keys, `a = -0.5`), edges extended so zooming in never shows a border.
/// An identity warp returns an exact copy.
pub fn warp(src: &Planar, warp: &Warp) -> Planar {
    if warp.is_identity() || src.width == 0 || src.height == 0 {
        return src.clone();
    }
    let whole = (0..src.width, 0..src.height);
    warp_source(&of_planar(src), warp, whole, &mut SpareImages::default())
}

/// The 8-bit RGB pixels of a rectangle of an image (a frame as written,
/// or the part of it a warp of a rectangle reads).
#[derive(Debug, Clone, Copy)]
pub struct Rgb8Rect<'a> {
    /// Three bytes a pixel, row after row.
    pub bytes: &'a [u8],
    /// The image's width and height.
    pub image: (usize, usize),
    /// The image's column and row of the first pixel.
    pub origin: (usize, usize),
    /// The rectangle's width and height.
    pub size: (usize, usize),
}

impl Rgb8Rect<'_> {
    /// The rectangle's columns and rows of the image.
    fn extent(&self) -> (Range<usize>, Range<usize>) {
        let ((x, y), (w, h)) = (self.origin, self.size);
        (x..x + w, y..y + h)
    }
}

/// [`warp`] of the 8-bit RGB image `rgb` (a frame as written), read as
/// [`Planar::from_rgb8`] reads it but without making that image: the
/// frame fed back is warped straight from its bytes, a quarter of the
/// memory of its samples.
///
/// The warped image's buffer comes from `spare` (every sample is written):
/// a frame loop warps one frame-sized image a frame.
///
/// # Panics
///
/// If `rgb` does not hold exactly `3 * width * height` bytes.
pub fn warp_rgb8(
    width: usize,
    height: usize,
    rgb: &[u8],
    warp: &Warp,
    spare: &mut SpareImages,
) -> Planar {
    if warp.is_identity() || width == 0 || height == 0 {
        return Planar::from_rgb8(width, height, rgb);
    }
    let whole = Rgb8Rect {
        bytes: rgb,
        image: (width, height),
        origin: (0, 0),
        size: (width, height),
    };
    warp_rgb8_rect(&whole, warp, 0..width, 0..height, spare)
}

/// The pixels `columns` × `rows` of [`warp_rgb8`] of the image `src` is a
/// rectangle of, from those pixels alone: the same bits as that part of the
/// whole image's warp, for as long as `src` holds the pixels
/// [`Warp::source_of`] the rectangle.
///
/// # Panics
///
/// If `src`'s bytes are not its size's, or it does not hold the pixels
/// the rectangle reads, or the rectangle is not inside the image.
pub fn warp_rgb8_rect(
    src: &Rgb8Rect,
    warp: &Warp,
    columns: Range<usize>,
    rows: Range<usize>,
    spare: &mut SpareImages,
) -> Planar {
    let (width, height) = src.image;
    let (w, h) = src.size;
    assert_eq!(src.bytes.len(), 3 * w * h, "{w}x{h} RGB");
    let (held_columns, held_rows) = src.extent();
    let (read_columns, read_rows) = warp.source_of(width, height, columns.clone(), rows.clone());
    let holds = |held: &Range<usize>, read: &Range<usize>| {
        read.is_empty() || held.start <= read.start && read.end <= held.end
    };
    assert!(
        columns.end <= width
            && rows.end <= height
            && holds(&held_columns, &read_columns)
            && holds(&held_rows, &read_rows),
        "a warp's rectangle {columns:?} x {rows:?} of {width}x{height} reads pixels \
         {read_columns:?} x {read_rows:?}, outside those held: {held_columns:?} x {held_rows:?}"
    );
    let ((x0, y0), bytes) = (src.origin, src.bytes);
    let pixel = move |p: usize| std::array::from_fn(|c| rgb8_sample(bytes[3 * p + c]));
    if warp.is_identity() || columns.is_empty() || rows.is_empty() {
        let mut out = spare.take(columns.len(), rows.len());
        let plane = columns.len() * rows.len();
        for (i, (y, x)) in rows
            .flat_map(|y| columns.clone().map(move |x| (y, x)))
            .enumerate()
        {
            let [r, g, b] = pixel((y - y0) * w + x - x0);
            (out.data[i], out.data[plane + i], out.data[2 * plane + i]) = (r, g, b);
        }
        return out;
    }
    let source = Source {
        width,
        height,
        columns: held_columns,
        rows: held_rows,
        pixel,
    };
    warp_source(&source, warp, (columns, rows), spare)
}

impl Warp {
    /// The pixels of a `width`×`height` image (non-empty) that the pixels
    /// `columns` × `rows` of its warp read: every tap of every pixel, the
    /// image's edge pixels for taps beyond it.
    pub fn source_of(
        &self,
        width: usize,
        height: usize,
        columns: Range<usize>,
        rows: Range<usize>,
    ) -> (Range<usize>, Range<usize>) {
        if self.is_identity() || columns.is_empty() || rows.is_empty() {
            return (columns, rows);
        }
        // A source coordinate only grows, or only falls, along each axis
        // of the output, rounding included: its extremes, and so its
        // taps', are at the rectangle's corners.
        let map = InverseMap::new(self);
        let corners = [columns.start, columns.end - 1]
            .into_iter()
            .flat_map(|x| [rows.start, rows.end - 1].map(|y| map.sources(x, y)));
        let (mut first_x, mut first_y) = ((usize::MAX, 0), (usize::MAX, 0));
        for (u, v) in corners {
            let (x, _) = cubic_taps(u, width)[0];
            let (y, _) = cubic_taps(v, height)[0];
            first_x = (first_x.0.min(x), first_x.1.max(x));
            first_y = (first_y.0.min(y), first_y.1.max(y));
        }
        // Taps from each first padded index to three past it, clamped
        // back into the image.
        let pixels = |(lo, hi): (usize, usize), len: usize| {
            let pixel = |p: usize| p.saturating_sub(PAD_BEFORE).min(len - 1);
            pixel(lo)..pixel(hi + 3) + 1
        };
        (pixels(first_x, width), pixels(first_y, height))
    }
}

/// The pixels `columns` × `rows` (non-empty) of the warp of the non-empty
/// image `src` is a rectangle of, into an image from `spare`.
fn warp_source<F: Fn(usize) -> [f32; 3] + Sync>(
    src: &Source<F>,
    warp: &Warp,
    (columns, rows): (Range<usize>, Range<usize>),
    spare: &mut SpareImages,
) -> Planar {
    let map = InverseMap::new(warp);
    let out = spare.take(columns.len(), rows.len());
    let at = (columns.start, rows.start);
    if map.sin == 0.0 {
        warp_separable(src, &map, out, at)
    } else {
        let padded = src.padded(spare);
        let out = warp_per_pixel(&padded, &map, out, at);
        spare.keep_samples(padded.pixels);
        out
    }
}

/// Calls `f(first_row, rows)` for bands of consecutive rows of `out`,
/// `rows` yielding each row's red, green and blue samples together; the
/// bands are shared out across threads.
fn for_each_band(
    out: &mut Planar,
    f: impl Fn(usize, &mut dyn Iterator<Item = (&mut [f32], &mut [f32], &mut [f32])>) + Sync,
) {
    let (w, h) = (out.width, out.height);
    let band = h.div_ceil(parallel::threads_for(3 * w * h)).max(1);
    let (r, gb) = out.data.split_at_mut(w * h);
    let (g, b) = gb.split_at_mut(w * h);
    let bands = r
        .chunks_mut(band * w)
        .zip(g.chunks_mut(band * w))
        .zip(b.chunks_mut(band * w))
        .enumerate();
    std::thread::scope(|scope| {
        for (i, ((r, g), b)) in bands {
            let f = &f;
            let mut run = move || {
                let mut rows = r
                    .chunks_exact_mut(w)
                    .zip(g.chunks_exact_mut(w))
                    .zip(b.chunks_exact_mut(w))
                    .map(|((r, g), b)| (r, g, b));
                f(i * band, &mut rows);
            };
            if band >= h {
                run();
            } else {
                scope.spawn(run);
            }
        }
    });
}

/// The general warp: each output pixel's 4×4 taps on its own (their
/// coordinates and weights worked out [`LANES`] pixels at a time),
/// written into `out`, the output's pixels from column and row `at`
/// (every sample is written).
#[multiversion(targets("x86_64+avx2"))]
fn warp_per_pixel(src: &Padded, map: &InverseMap, mut out: Planar, at: (usize, usize)) -> Planar {
    let (w, h) = (src.width, src.height);
    for_each_band(&mut out, |first, rows| {
        for (y, (r_row, g_row, b_row)) in rows.enumerate() {
            let y = at.1 + first + y;
            let pixels = r_row.chunks_mut(LANES).zip(g_row.chunks_mut(LANES));
            for (i, ((r, g), b)) in pixels.zip(b_row.chunks_mut(LANES)).enumerate() {
                let (u, v) = map.sources(at.0 + i * LANES, y);
                let taps = cubic_taps(u, w).into_iter().zip(cubic_taps(v, h));
                for (((r, g), b), ((x0, wx), (y0, wy))) in r.iter_mut().zip(g).zip(b).zip(taps) {
                    let filtered: [[f32; 4]; 4] =
                        std::array::from_fn(|k| weighted_sum(src.taps(y0 + k, x0), &wx));
                    let acc = weighted_sum(&filtered, &wy);
                    (*r, *g, *b) = (acc[0], acc[1], acc[2]);
                }
            }
        }
    });
    out
}

/// A warp without rotation: a column's taps depend only on x and a row's
/// only on y, so each source row is filtered horizontally once (kept for
/// the four output rows that read it) instead of once per output pixel,
/// and read padded a row at a time rather than from a padded copy of the
/// whole image. The sums are [`warp_per_pixel`]'s, in the same order: the
/// same bits, with about 8 four-lane multiply-adds a pixel instead of 20
/// and no padded copy of the frame. `out` is the output's pixels from
/// column and row `at`.
#[multiversion(targets("x86_64+avx2"))]
fn warp_separable<F: Fn(usize) -> [f32; 3] + Sync>(
    src: &Source<F>,
    map: &InverseMap,
    mut out: Planar,
    at: (usize, usize),
) -> Planar {
    let (w, h) = (src.width, src.height);
    let columns: Vec<_> = (at.0..at.0 + out.width)
        .step_by(LANES)
        .flat_map(|x| cubic_taps(map.sources(x, 0).0, w))
        .take(out.width)
        .collect();
    let (held, width) = (src.padded_columns(), out.width);
    for_each_band(&mut out, |first, rows| {
        let mut source_row = vec![[0.0; 4]; held.len()];
        // Padded row r lives in slot r % 4, tagged with r.
        let mut filtered: [(usize, Vec<[f32; 4]>); 4] =
            std::array::from_fn(|_| (usize::MAX, vec![[0.0; 4]; width]));
        for (y, (r_row, g_row, b_row)) in rows.enumerate() {
            let [(y0, wy), ..] = cubic_taps(map.sources(0, at.1 + first + y).1, h);
            for r in y0..y0 + 4 {
                let (tag, row) = &mut filtered[r % 4];
                if *tag != r {
                    src.fill_row(r, &mut source_row);
                    for (f, &(x0, wx)) in row.iter_mut().zip(&columns) {
                        *f = weighted_sum(&source_row[x0 - held.start..][..4], &wx);
                    }
                    *tag = r;
                }
            }
            for (x, ((r, g), b)) in r_row.iter_mut().zip(g_row).zip(b_row).enumerate() {
                let acc = weighted_sum((0..4).map(|k| &filtered[(y0 + k) % 4].1[x]), &wy);
                (*r, *g, *b) = (acc[0], acc[1], acc[2]);
            }
        }
    });
    out
}

/// `Σ weights[k] · samples[k]`, lane by lane, accumulated in order from 0.
/// Written as four-lane vectors: left to itself the compiler did each
/// colour's multiply-add apart, three scalar lanes of a turning camera's
/// sixteen taps a pixel (the same multiplies and adds either way).
fn weighted_sum<'a>(
    samples: impl IntoIterator<Item = &'a [f32; 4]>,
    weights: &[f32; 4],
) -> [f32; 4] {
    let mut acc = f32x4::ZERO;
    for (s, &w) in samples.into_iter().zip(weights) {
        acc += f32x4::splat(w) * f32x4::new(*s);
    }
    acc.to_array()
}

/// Where an output pixel of a [`Warp`] comes from.
struct InverseMap {
    /// `sin(angle) / zoom`.
    sin: f64,
    /// `cos(angle) / zoom`.
    cos: f64,
    center: (f64, f64),
    pan: (f64, f64),
}

impl InverseMap {
    fn new(warp: &Warp) -> Self {
        let (sin, cos) = warp.rotate_deg.to_radians().sin_cos();
        Self {
            sin: sin / warp.zoom,
            cos: cos / warp.zoom,
            center: warp.center,
            pan: warp.pan,
        }
    }

    /// Source positions in index space (sample i at i, not i + 0.5) of
    /// output pixels (x, y) to (x + 3, y), u and v: s = center + R⁻¹ (o -
    /// center - pan) / zoom, with R⁻¹ the y-down matrix [[cos, -sin], [sin,
    /// cos]].
    fn sources(&self, x: usize, y: usize) -> (f64x4, f64x4) {
        let c = f64x4::splat;
        let (cx, cy) = self.center;
        let columns = f64x4::new(std::array::from_fn(|k| (x + k) as f64));
        let dx = columns + c(0.5) - c(cx) - c(self.pan.0);
        let dy = y as f64 + 0.5 - cy - self.pan.1;
        (
            c(cx) + c(self.cos) * dx - c(self.sin * dy) - c(0.5),
            c(cy) + c(self.sin) * dx + c(self.cos * dy) - c(0.5),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::test_images::*;
    use crate::resample::*;

    #[test]
    fn identity_resize_and_warp_are_exact() {
        let img = noise(17, 11);
        assert_eq!(resize(&img, 17, 11), img);
        let still = Warp {
            zoom: 1.0,
            rotate_deg: 0.0,
            pan: (0.0, 0.0),
            center: (8.3, 5.1),
        };
        assert!(still.is_identity());
        assert_eq!(warp(&img, &still), img);
    }

    #[test]
    fn zoom_two_halves_distances_from_the_centre() {
        // Odd size: the centre (16.5, 16.5) is pixel 16's centre.
        let img = noise(33, 33);
        let zoom = Warp {
            zoom: 2.0,
            rotate_deg: 0.0,
            pan: (0.0, 0.0),
            center: (16.5, 16.5),
        };
        assert!(!zoom.is_identity());
        let out = warp(&img, &zoom);
        for c in 0..3 {
            assert_eq!(at(&out, c, 16, 16), at(&img, c, 16, 16));
            // Output at distance d = 2k from the centre shows the source at k.
            for k in [-8isize, -3, 1, 5, 8] {
                let (o, s) = ((16 + 2 * k) as usize, (16 + k) as usize);
                assert_eq!(at(&out, c, o, 16), at(&img, c, s, 16));
                assert_eq!(at(&out, c, 16, o), at(&img, c, 16, s));
                assert_eq!(at(&out, c, o, o), at(&img, c, s, s));
            }
        }
        // Between samples: cubic reproduces a ramp exactly, so odd distances
        // land on the half-way value.
        let ramp = |_: usize, x: f64, y: f64| (0.02 * x + 0.01 * y) as f32;
        let out = warp(&image(33, 33, ramp), &zoom);
        for d in [-7isize, -1, 3, 7] {
            let o = (16 + d) as usize;
            let want = ramp(0, 16.5 + d as f64 / 2.0, 16.5);
            assert!((at(&out, 0, o, 16) - want).abs() < 1e-5);
        }
    }

    #[test]
    fn the_separable_warp_gives_the_general_warps_bits() {
        let img = noise(67, 45);
        for (zoom, pan) in [(1.02, (0.0, 0.0)), (0.7, (3.5, -2.25)), (1.9, (-11.0, 4.0))] {
            let map = InverseMap::new(&Warp {
                zoom,
                rotate_deg: 0.0,
                pan,
                center: (30.0, 20.0),
            });
            let source = of_planar(&img);
            // Spent buffers full of NaN: a sample not written would show.
            assert_eq!(
                warp_separable(&source, &map, nan_image(67, 45), (0, 0)),
                warp_per_pixel(
                    &source.padded(&mut SpareImages::default()),
                    &map,
                    nan_image(67, 45),
                    (0, 0)
                )
            );
        }
    }

    #[test]
    fn a_warp_of_8_bit_pixels_is_the_warp_of_their_samples() {
        let rgb = noise(67, 45).to_rgb8();
        let samples = Planar::from_rgb8(67, 45, &rgb);
        for (zoom, rotate_deg) in [(1.0, 0.0), (1.02, 0.0), (0.8, 3.0)] {
            let w = Warp {
                zoom,
                rotate_deg,
                pan: (1.5, -2.0),
                center: (30.0, 20.0),
            };
            // Into a spent buffer full of NaN: every sample is written.
            let warped = warp_rgb8(67, 45, &rgb, &w, &mut nan_spare(&[(67, 45)]));
            assert_eq!(warped, warp(&samples, &w), "{w:?}");
        }
        let still = Warp {
            zoom: 1.0,
            rotate_deg: 0.0,
            pan: (0.0, 0.0),
            center: (30.0, 20.0),
        };
        let warped = warp_rgb8(67, 45, &rgb, &still, &mut nan_spare(&[(67, 45)]));
        assert_eq!(warped, samples);
    }

    #[test]
    fn a_rectangle_warped_on_its_own_is_that_part_of_the_whole_warp() {
        // Zooms in and out, turns and pans (the frame's own centre and
        // others), random rectangles, each warped from exactly the pixels
        // `source_of` names (a read outside them fails the index) or a
        // random larger window, into spent buffers full of NaN.
        let mut random = Lcg(11);
        for case in 0..150 {
            let (w, h) = (random.below(70) + 1, random.below(70) + 1);
            let rgb = noise(w, h).to_rgb8();
            let pick = |random: &mut Lcg, options: &[f64]| options[random.below(options.len())];
            let turn = Warp {
                zoom: pick(&mut random, &[1.0, 1.02, 1.3, 0.97, 0.6, 2.5]),
                rotate_deg: pick(&mut random, &[0.0, 0.0, 1.0, -7.5, 90.0]),
                pan: (
                    pick(&mut random, &[0.0, 1.5, -3.25, 40.0]),
                    pick(&mut random, &[0.0, -0.5, 2.0]),
                ),
                center: (
                    pick(&mut random, &[w as f64 / 2.0, 0.0, 13.7]),
                    pick(&mut random, &[h as f64 / 2.0, 5.5]),
                ),
            };
            let whole = warp_rgb8(w, h, &rgb, &turn, &mut SpareImages::default());
            let (columns, rows) = random.rect(w, h);
            let (sx, sy) = turn.source_of(w, h, columns.clone(), rows.clone());
            assert!(
                sx.end <= w && sy.end <= h,
                "case {case}: {sx:?} x {sy:?} in {w}x{h}"
            );
            let (held_x, held_y) = if random.below(2) == 0 {
                (sx, sy)
            } else {
                let grow = |random: &mut Lcg, r: Range<usize>, len: usize| {
                    r.start - random.below(r.start + 1)..r.end + random.below(len - r.end + 1)
                };
                (grow(&mut random, sx, w), grow(&mut random, sy, h))
            };
            let bytes: Vec<u8> = held_y
                .clone()
                .flat_map(|y| held_x.clone().map(move |x| y * w + x))
                .flat_map(|p| rgb[3 * p..3 * p + 3].to_vec())
                .collect();
            let held = Rgb8Rect {
                bytes: &bytes,
                image: (w, h),
                origin: (held_x.start, held_y.start),
                size: (held_x.len(), held_y.len()),
            };
            let (cw, ch) = (columns.len(), rows.len());
            let mut spare = nan_spare(&[(cw, ch)]);
            let part = warp_rgb8_rect(&held, &turn, columns.clone(), rows.clone(), &mut spare);
            let want = crop(&whole, columns.clone(), rows.clone());
            assert_eq!(
                part, want,
                "case {case}: {w}x{h} {turn:?}, {columns:?} x {rows:?} from {held_x:?} x {held_y:?}"
            );
        }
    }

    #[test]
    fn taps_worked_out_four_at_a_time_are_each_coordinates_own() {
        // One coordinate's taps worked out alone, in scalar arithmetic.
        let alone = |u: f64, len: usize| {
            let shifted = u.clamp(-1.0, len as f64) + (PAD_BEFORE - 1) as f64;
            let first = shifted as usize;
            let t = (shifted - first as f64) as f32;
            let weights = [
                0.5 * t * (t * (2.0 - t) - 1.0),
                0.5 * (t * t * (3.0 * t - 5.0) + 2.0),
                0.5 * t * (t * (4.0 - 3.0 * t) + 1.0),
                0.5 * t * t * (t - 1.0),
            ];
            (first, weights.map(f32::to_bits))
        };
        let edges = [
            -7.5,
            -1.0,
            -0.25,
            0.0,
            0.5,
            3.999,
            9.0,
            9.75,
            10.0,
            12.5,
            f64::NAN,
            1e300,
        ];
        let inside = (0..400).map(|i| f64::from(i) * 0.027_37 - 1.3);
        let coordinates: Vec<f64> = edges.into_iter().chain(inside).collect();
        for four in coordinates.chunks_exact(LANES) {
            let taps = cubic_taps(f64x4::new(four.try_into().expect("four")), 10);
            for (&u, (first, weights)) in four.iter().zip(taps) {
                assert_eq!((first, weights.map(f32::to_bits)), alone(u, 10), "{u}");
            }
        }
    }

    #[test]
    fn a_turning_warp_fills_the_padded_source_it_is_lent_and_keeps_it() {
        let rgb = noise(67, 45).to_rgb8();
        let turn = Warp {
            zoom: 0.8,
            rotate_deg: 3.0,
            pan: (1.5, -2.0),
            center: (30.0, 20.0),
        };
        let fresh = warp_rgb8(67, 45, &rgb, &turn, &mut SpareImages::default());
        // The padded source a previous frame left, full of NaN: a sample
        // not written again would show.
        let mut spare = nan_spare(&[(67, 45)]);
        let padded = 4 * (67 + PAD_BEFORE + PAD_AFTER) * (45 + PAD_BEFORE + PAD_AFTER);
        let mut left = spare.take_samples(padded);
        left.fill(f32::NAN);
        spare.keep_samples(left);
        assert_eq!(warp_rgb8(67, 45, &rgb, &turn, &mut spare), fresh);
        // Kept again, filled: neither NaN nor a fresh buffer's zeros.
        let kept = spare.take_samples(padded);
        assert!(
            all_finite(&kept) && kept.iter().any(|&v| v != 0.0),
            "the padded source was not taken from the spares and kept again"
        );
    }

    #[test]
    fn positive_rotation_turns_counter_clockwise() {
        let (n, img) = (6, noise(6, 6));
        let turn = Warp {
            zoom: 1.0,
            rotate_deg: 90.0,
            pan: (0.0, 0.0),
            center: (3.0, 3.0),
        };
        let out = warp(&img, &turn);
        // The source's top row becomes the output's left column, read upwards.
        for c in 0..3 {
            for y in 0..n {
                for x in 0..n {
                    let want = at(&img, c, n - 1 - y, x);
                    let got = at(&out, c, x, y);
                    assert!((got - want).abs() < 1e-5, "({x}, {y}) {c}: {got} vs {want}");
                }
            }
        }
        // The top-left corner of the source lands bottom-left.
        assert!((at(&out, 0, 0, n - 1) - at(&img, 0, 0, 0)).abs() < 1e-5);
    }

    #[test]
    fn combined_move_follows_the_documented_forward_map() {
        // Cubic interpolation reproduces a ramp exactly, so interior pixels
        // must show the ramp at the source point `s` solving
        // `o = center + zoom * R * (s - center) + pan`.
        let (w, h) = (48, 40);
        let ramp = |s: (f64, f64)| 0.1 + 0.013 * s.0 - 0.007 * s.1;
        let img = image(w, h, |_, x, y| ramp((x, y)) as f32);
        let mv = Warp {
            zoom: 1.3,
            rotate_deg: 30.0,
            pan: (2.5, -1.25),
            center: (20.0, 22.5),
        };
        let out = warp(&img, &mv);
        let (sin, cos) = mv.rotate_deg.to_radians().sin_cos();
        // Counter-clockwise on screen with y pointing down.
        let m = [
            [mv.zoom * cos, mv.zoom * sin],
            [-mv.zoom * sin, mv.zoom * cos],
        ];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        for y in 12..28 {
            for x in 12..36 {
                let d0 = x as f64 + 0.5 - mv.center.0 - mv.pan.0;
                let d1 = y as f64 + 0.5 - mv.center.1 - mv.pan.1;
                let s = (
                    mv.center.0 + (m[1][1] * d0 - m[0][1] * d1) / det,
                    mv.center.1 + (m[0][0] * d1 - m[1][0] * d0) / det,
                );
                let (got, want) = (at(&out, 0, x, y), ramp(s) as f32);
                assert!((got - want).abs() < 1e-5, "({x}, {y}): {got} vs {want}");
            }
        }
    }

    #[test]
    fn pan_moves_content_right_and_down() {
        let img = noise(20, 12);
        let pan = Warp {
            zoom: 1.0,
            rotate_deg: 0.0,
            pan: (3.0, -2.0),
            center: (10.0, 6.0),
        };
        let out = warp(&img, &pan);
        for c in 0..3 {
            for y in 0..10 {
                for x in 3..20 {
                    assert_eq!(at(&out, c, x, y), at(&img, c, x - 3, y + 2));
                }
            }
        }
        // Uncovered pixels repeat the edge rather than going black.
        assert_eq!(at(&out, 0, 0, 0), at(&img, 0, 0, 2));
    }

    #[test]
    fn empty_images_do_not_panic() {
        let empty = Planar::zeros(0, 0);
        assert_eq!(resize(&empty, 4, 3), Planar::zeros(4, 3));
        assert_eq!(resize(&noise(4, 3), 0, 5), Planar::zeros(0, 5));
        let spin = Warp {
            zoom: 1.5,
            rotate_deg: 10.0,
            pan: (1.0, 1.0),
            center: (0.0, 0.0),
        };
        assert_eq!(warp(&empty, &spin), empty);
        assert!(empty.to_rgb8().is_empty());
    }

    #[test]
    fn a_warp_then_its_inverse_gives_the_image_back_inside() {
        let img = image(96, 80, |c, x, y| {
            0.5 + 0.4 * ((x * 0.11 + c as f64).sin() * (y * 0.07).cos()) as f32
        });
        let m = Warp {
            zoom: 1.07,
            rotate_deg: 3.0,
            pan: (2.5, -1.5),
            center: (40.0, 44.0),
        };
        let back = warp(&warp(&img, &m), &m.inverse());
        let mut worst = 0.0f32;
        for c in 0..3 {
            for y in 20..60 {
                for x in 20..76 {
                    let i = c * 96 * 80 + y * 96 + x;
                    worst = worst.max((back.data[i] - img.data[i]).abs());
                }
            }
        }
        assert!(worst < 0.02, "worst {worst}");
        let turned = Warp {
            pan: (0.0, 0.0),
            ..m
        };
        assert!(warp(&img, &turned).data != warp(&img, &turned.inverse()).data);
    }
}
