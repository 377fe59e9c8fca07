//! Images the resampling tests build from.

use super::{Planar, SpareImages};
use std::ops::Range;

/// An image whose every sample is `f(channel, x, y)` at pixel centres
/// `x + 0.5`, `y + 0.5`.
pub(super) fn image(w: usize, h: usize, f: impl Fn(usize, f64, f64) -> f32) -> Planar {
    let mut img = Planar::zeros(w, h);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                img.data[(c * h + y) * w + x] = f(c, x as f64 + 0.5, y as f64 + 0.5);
            }
        }
    }
    img
}

/// Deterministic pseudo-random content, nothing smooth about it.
pub(super) fn noise(w: usize, h: usize) -> Planar {
    image(w, h, |c, x, y| {
        let k = (c as u64 * 7919 + x as u64 * 104_729 + y as u64 * 1_299_709)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (k >> 40) as f32 / (1u64 << 24) as f32
    })
}

/// A spent image's buffer at its worst: every sample NaN, so that a
/// sample an image kernel does not write shows in its output.
pub(super) fn nan_image(w: usize, h: usize) -> Planar {
    image(w, h, |_, _, _| f32::NAN)
}

/// Spare images holding one spent buffer full of NaN for each of
/// `sizes` (taken first, as a frame loop's are, so that they are kept).
pub(super) fn nan_spare(sizes: &[(usize, usize)]) -> SpareImages {
    let mut spare = SpareImages::default();
    let mut taken: Vec<Planar> = sizes.iter().map(|&(w, h)| spare.take(w, h)).collect();
    for image in &mut taken {
        image.data.fill(f32::NAN);
        spare.keep(image);
    }
    spare
}

pub(super) fn at(img: &Planar, c: usize, x: usize, y: usize) -> f32 {
    img.channel(c)[y * img.width + x]
}

pub(super) fn smooth(w: usize, h: usize) -> Planar {
    image(w, h, |c, x, y| {
        let (fx, fy) = (x / w as f64, y / h as f64);
        (0.5 + 0.3 * (3.0 * fx + c as f64).sin() * (2.0 * fy).cos()) as f32
    })
}

/// A small seeded pseudo-random sequence for the tests' random cases
/// (Knuth's MMIX linear congruential generator).
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    /// A number in `0..n` (`n` above 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }

    /// A non-empty rectangle of a `width`×`height` image: its columns and
    /// rows.
    pub(super) fn rect(&mut self, width: usize, height: usize) -> (Range<usize>, Range<usize>) {
        let x = self.below(width);
        let columns = x..x + self.below(width - x) + 1;
        let y = self.below(height);
        (columns, y..y + self.below(height - y) + 1)
    }
}

/// `columns` × `rows` of `img`, as an image of their own.
pub(super) fn crop(img: &Planar, columns: Range<usize>, rows: Range<usize>) -> Planar {
    let (x0, y0) = (columns.start, rows.start);
    image(columns.len(), rows.len(), |c, x, y| {
        at(img, c, x as usize + x0, y as usize + y0)
    })
}
