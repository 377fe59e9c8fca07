//! The coordinator's image: planar f32 RGB, its 8-bit form, and the spent
//! images a frame loop reuses.

use std::ops::Range;

use crate::parallel;
use multiversion::multiversion;
use wide::{f32x4, i32x4};

/// A planar RGB image of f32 samples (`[channel][row][column]`), the
/// coordinator's working format between octaves and frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Planar {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 * height * width` samples, channel-major.
    pub data: Vec<f32>,
}

/// Lets code that takes an image or something holding one (the wire's
/// encoder) take a plain image.
impl AsRef<Planar> for Planar {
    fn as_ref(&self) -> &Planar {
        self
    }
}

impl Planar {
    /// A black `width`×`height` image, the starting point of accumulations.
    ///
    /// Its pages are written here, once. A frame-sized buffer is freshly
    /// mapped memory, and an accumulation reads each page before writing
    /// it: the read maps the shared zero page and the write then faults
    /// again and flushes the TLB of every core the process runs on. That
    /// was a third of a 4K coordinator's CPU time.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: zeros_in_written_pages(3 * width * height),
        }
    }

    /// Its pixels `columns` × `rows` (within it) as an image of their own.
    pub fn crop(&self, columns: Range<usize>, rows: Range<usize>) -> Planar {
        let (w, h) = (self.width, self.height);
        let mut data = Vec::with_capacity(3 * columns.len() * rows.len());
        for c in 0..3 {
            for y in rows.clone() {
                let row = (c * h + y) * w;
                data.extend_from_slice(&self.data[row + columns.start..row + columns.end]);
            }
        }
        Planar {
            width: columns.len(),
            height: rows.len(),
            data,
        }
    }

    /// Whether every sample is finite (no NaN or infinity).
    pub fn is_finite(&self) -> bool {
        all_finite(&self.data)
    }

    /// The `width * height` samples of channel `c` (0: red, 1: green,
    /// 2: blue), row-major.
    ///
    /// # Panics
    ///
    /// If `c > 2`.
    pub fn channel(&self, c: usize) -> &[f32] {
        assert!(c < 3, "channel {c} of an RGB image");
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }

    /// Converts interleaved 8-bit RGB (as decoded from PNG/JPEG) to samples
    /// in `0..=1`.
    ///
    /// # Panics
    ///
    /// If `rgb` does not hold exactly `3 * width * height` bytes.
    pub fn from_rgb8(width: usize, height: usize, rgb: &[u8]) -> Self {
        let n = width * height;
        assert_eq!(
            rgb.len(),
            3 * n,
            "{width}x{height} RGB needs {} bytes",
            3 * n
        );
        let mut data = vec![0.0; 3 * n];
        parallel::for_each_piece(&mut data, width, |k, row| {
            let (c, y) = (k / height, k % height);
            let px = rgb[3 * y * width..][..3 * width].chunks_exact(3);
            for (d, px) in row.iter_mut().zip(px) {
                *d = rgb8_sample(px[c]);
            }
        });
        Self {
            width,
            height,
            data,
        }
    }

    /// Converts to interleaved 8-bit RGB for encoding: `round(x * 255)`,
    /// clamped to `0..=255` (NaN becomes 0).
    pub fn to_rgb8(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut rgb = vec![0u8; 3 * n];
        if n == 0 {
            return rgb;
        }
        let w = self.width;
        parallel::for_each_piece(&mut rgb, 3 * w, |y, row| {
            // One sweep writing whole pixels, not one per channel each
            // writing every third byte.
            let plane = |c: usize| &self.data[c * n + y * w..][..w];
            rgb8_row(row, plane(0), plane(1), plane(2));
        });
        rgb
    }
}

/// One row of [`Planar::to_rgb8`] from its three planes' rows, four
/// pixels at a time.
fn rgb8_row(row: &mut [u8], r: &[f32], g: &[f32], b: &[f32]) {
    let bytes = |samples: &[f32]| to_bytes(f32x4::from(samples) * f32x4::splat(255.0));
    let (quads, rest) = row.as_chunks_mut::<12>();
    let samples = r
        .chunks_exact(4)
        .zip(g.chunks_exact(4))
        .zip(b.chunks_exact(4));
    for (quad, ((r, g), b)) in quads.iter_mut().zip(samples) {
        let [r, g, b] = [r, g, b].map(bytes);
        *quad = std::array::from_fn(|i| [r, g, b][i % 3][i / 3]);
    }
    let first = 4 * quads.len();
    for (x, px) in (first..).zip(rest.chunks_exact_mut(3)) {
        let byte = |plane: &[f32]| to_bytes(f32x4::splat(plane[x] * 255.0))[0];
        px.copy_from_slice(&[byte(r), byte(g), byte(b)]);
    }
}

/// Most spent buffers [`SpareImages`] keeps: more than one frame's images
/// (four or five per octave: its images, its base and the resizes'
/// intermediate images), so a frame loop's are all kept, and a bound should
/// sizes ever stop repeating.
const MAX_SPARE_IMAGES: usize = 32;

/// Sample buffers of spent images, kept for the next image of their size.
///
/// A frame loop makes the same images every frame, and a new buffer must
/// be zeroed before it is handed out (safe Rust has no other way to make
/// one) where a spent one need not be, for an image every sample of which
/// is written before it is read: at 4K that zeroing was a sixth of the
/// coordinator's CPU time. Kept buffers stand in for the ones the next
/// frame would allocate, so the memory held between frames is what one
/// frame's images take.
///
/// Of each size it keeps no more than were taken and not yet kept: so it
/// never holds more images of a size than its user had out at once,
/// whatever images made elsewhere it is handed (a frame carried between
/// dreamed ones, an unwarped copy).
#[derive(Debug, Default)]
pub struct SpareImages {
    buffers: Vec<Vec<f32>>,
    /// For each buffer length taken, how many are out.
    out: Vec<(usize, usize)>,
}

impl SpareImages {
    /// A `width`×`height` image whose samples are whatever they are: a
    /// spent image's, or zeros when none of its size is kept. Only for an
    /// image each sample of which is written before it is read.
    pub fn take(&mut self, width: usize, height: usize) -> Planar {
        Planar {
            width,
            height,
            data: self.take_samples(3 * width * height),
        }
    }

    /// Keeps `image`'s samples for a later image of its size, if one of
    /// its size is out, leaving it empty.
    pub fn keep(&mut self, image: &mut Planar) {
        (image.width, image.height) = (0, 0);
        self.keep_samples(std::mem::take(&mut image.data));
    }

    /// [`take`](Self::take) of a buffer of `len` samples that is not an
    /// image's (a warp's padded source).
    pub(super) fn take_samples(&mut self, len: usize) -> Vec<f32> {
        match self.out.iter_mut().find(|(l, _)| *l == len) {
            Some((_, n)) => *n += 1,
            None => self.out.push((len, 1)),
        }
        match self.buffers.iter().rposition(|b| b.len() == len) {
            Some(i) => self.buffers.swap_remove(i),
            None => zeros_in_written_pages(len),
        }
    }

    /// [`keep`](Self::keep) of a buffer from
    /// [`take_samples`](Self::take_samples).
    pub(super) fn keep_samples(&mut self, data: Vec<f32>) {
        let Some((_, out)) = self.out.iter_mut().find(|(l, _)| *l == data.len()) else {
            return;
        };
        if *out == 0 {
            return;
        }
        *out -= 1;
        if self.buffers.len() < MAX_SPARE_IMAGES {
            self.buffers.push(data);
        }
    }
}

/// `len` zeros, every page of them written once (see [`Planar::zeros`]).
fn zeros_in_written_pages(len: usize) -> Vec<f32> {
    /// Samples per 4 KiB page.
    const PAGE: usize = 1024;
    let mut data = vec![0.0; len];
    // `black_box` keeps the compiler from dropping stores it can see are
    // zeros into zeroed memory.
    for page in data.chunks_mut(PAGE) {
        *std::hint::black_box(&mut page[0]) = 0.0;
    }
    data
}

/// `dst = clamp(dst + b, 0, 1)` sample by sample, over `dst`'s length:
/// how the frame loop adds a detail to a base, or a pass's changes to
/// the image before it.
#[multiversion(targets("x86_64+avx2"))]
pub fn add_clamped_row(dst: &mut [f32], b: &[f32]) {
    for (d, &y) in dst.iter_mut().zip(b) {
        *d = (*d + y).clamp(0.0, 1.0);
    }
}

/// Whether every sample of `samples` is finite. Every change that comes
/// back is checked (a NaN would pass the clamp and come out black): a
/// short-circuiting `any` tests one sample at a time, so blocks are tested
/// whole, which vectorises, and only the verdict short-circuits.
#[multiversion(targets("x86_64+avx2"))]
pub fn all_finite(samples: &[f32]) -> bool {
    samples
        .chunks(1024)
        .all(|block| block.iter().fold(true, |ok, v| ok & v.is_finite()))
}

/// The sample an 8-bit value stands for, in `0..=1`: one definition, so
/// that a warp of 8-bit pixels reads what [`Planar::from_rgb8`] makes.
pub(super) fn rgb8_sample(byte: u8) -> f32 {
    RGB8_SAMPLES[usize::from(byte)]
}

/// `byte / 255` for every byte, worked out once (at compile time, by the
/// same IEEE division): a division per sample was most of a camera move's
/// reading of an 8-bit frame, 25 million of them per 4K frame.
const RGB8_SAMPLES: [f32; 256] = {
    let mut samples = [0.0; 256];
    let mut byte = 0;
    while byte < 256 {
        samples[byte] = byte as f32 / 255.0;
        byte += 1;
    }
    samples
};

/// `x.round().clamp(0.0, 255.0) as u8` (NaN to 0) lane by lane, four
/// lanes at a time: the baseline x86-64 target cannot inline `roundf`
/// (25 million samples per 4K frame), and a cast of a float that may be
/// anything to a byte went one sample at a time. Rounds half away from
/// zero like `round`: `x - t` is exact for the truncation `t` of a clamped
/// `x`.
fn to_bytes(x: f32x4) -> [u8; 4] {
    // `max` with a number maps NaN to that number; in `0..=255` the
    // truncation is exact.
    let x = x.max(f32x4::ZERO).min(f32x4::splat(255.0));
    let t = x.fast_trunc_int();
    // All ones (-1) where the fraction is half or more.
    let up: i32x4 = bytemuck::cast((x - t.round_float()).simd_ge(f32x4::splat(0.5)));
    (t - up).to_array().map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::test_images::*;

    #[test]
    fn the_table_of_8_bit_samples_is_the_division() {
        for byte in 0..=255u8 {
            let divided = f32::from(std::hint::black_box(byte)) / 255.0;
            assert_eq!(rgb8_sample(byte).to_bits(), divided.to_bits(), "{byte}");
        }
    }

    #[test]
    fn rgb8_round_trips() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 14) as u8).collect();
        let img = Planar::from_rgb8(3, 2, &rgb);
        assert_eq!(at(&img, 1, 0, 0), 14.0 / 255.0);
        assert_eq!(at(&img, 0, 1, 0), 42.0 / 255.0);
        assert_eq!(img.to_rgb8(), rgb);
        // Rows of whole quads of pixels, of a few left over, and of both.
        for width in 1..=9 {
            let rgb: Vec<u8> = (0..width * 2 * 3).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(Planar::from_rgb8(width, 2, &rgb).to_rgb8(), rgb, "{width}");
        }
        let out_of_range = Planar {
            width: 1,
            height: 1,
            data: vec![-0.5, 1.5, f32::NAN],
        };
        assert_eq!(out_of_range.to_rgb8(), vec![0, 255, 0]);
    }

    #[test]
    fn a_single_non_finite_sample_anywhere_is_found() {
        let mut samples = vec![0.5f32; 5000];
        assert!(all_finite(&samples));
        for at in [0, 1023, 1024, 4999] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                samples[at] = bad;
                assert!(!all_finite(&samples), "{bad} at {at}");
            }
            samples[at] = f32::MAX;
        }
        assert!(all_finite(&samples) && all_finite(&[]));
    }

    #[test]
    fn rounding_to_bytes_matches_round_then_clamp() {
        let reference = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        let edges = [
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -0.5,
            -0.0,
            0.0,
            0.49999997,
            0.5,
            1.5,
            2.5,
            254.49998,
            254.5,
            255.0,
            255.49998,
            300.0,
        ];
        let sweep = (0..=2_600_000).map(|i| i as f32 * 1e-4 - 1.0);
        let samples: Vec<f32> = edges.into_iter().chain(sweep).collect();
        for four in samples.chunks(4) {
            let mut lanes = [0.5; 4];
            lanes[..four.len()].copy_from_slice(four);
            let bytes = to_bytes(f32x4::from(lanes));
            for (&x, byte) in four.iter().zip(bytes) {
                assert_eq!(byte, reference(x), "{x}");
            }
        }
    }

    #[test]
    fn spare_images_hold_no_more_of_a_size_than_were_out_at_once() {
        let mut spare = SpareImages::default();
        // Nothing of this size was taken: a stray image is not kept.
        spare.keep(&mut noise(4, 3));
        assert_eq!(spare.buffers.len(), 0);
        let (mut a, mut b) = (spare.take(4, 3), spare.take(4, 3));
        // Returned, and one made elsewhere on top: two are kept.
        spare.keep(&mut a);
        spare.keep(&mut noise(4, 3));
        spare.keep(&mut b);
        assert_eq!(spare.buffers.len(), 2);
        assert!(
            a.data.is_empty() && b.data.is_empty(),
            "kept images are left empty"
        );
        // Taken again, they are the kept ones: spent samples, not zeros.
        let again = spare.take(4, 3);
        assert_ne!(again, Planar::zeros(4, 3));
        assert_eq!(spare.buffers.len(), 1);
    }
}
