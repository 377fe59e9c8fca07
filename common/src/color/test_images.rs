//! Images and comparisons the colour tests build from.

use std::ops::Range;

use super::{ColorAdjust, ColorSpace, unit};
use crate::area::Area;
use crate::resample::Planar;
use crate::work::{kept_in_area, moved_area};

pub(super) const SPACES: [ColorSpace; 3] = [ColorSpace::Lab, ColorSpace::Hsv, ColorSpace::Rgb];

/// An image whose every sample is `f(channel, x, y)`.
pub(super) fn image(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> f32) -> Planar {
    let mut img = Planar::zeros(w, h);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                img.data[(c * h + y) * w + x] = f(c, x, y);
            }
        }
    }
    img
}

/// Deterministic noise in `0..1`.
pub(super) fn noise(c: usize, x: usize, y: usize) -> f32 {
    let k = (c as u64 * 7919 + x as u64 * 104_729 + y as u64 * 1_299_709)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (k >> 40) as f32 / (1u64 << 24) as f32
}

/// A scene with a photograph's correlated channels: light and shade,
/// a slowly changing tint and a little grain.
pub(super) fn scene(w: usize, h: usize) -> Planar {
    image(w, h, |c, x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let light = 0.45 + 0.3 * (5.0 * fx).sin() * (4.0 * fy).cos();
        let tint = 0.15 * (3.0 * fx + 2.1 * c as f32).sin() * (2.0 * fy + 1.3 * c as f32).cos();
        unit(light + tint + 0.06 * (noise(c, x, y) - 0.5))
    })
}

pub(super) fn max_difference(a: &Planar, b: &Planar) -> f32 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub(super) fn mean_difference(a: &Planar, b: &Planar) -> f64 {
    let sum: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum();
    sum / a.data.len() as f64
}

pub(super) fn bits(img: &Planar) -> Vec<u32> {
    img.data.iter().map(|v| v.to_bits()).collect()
}

/// Every colour on a 0..=1 grid of `steps` values a channel.
pub(super) fn rgb_grid(steps: usize) -> impl Iterator<Item = [f32; 3]> {
    let v = move |i: usize| i as f32 / (steps - 1) as f32;
    (0..steps.pow(3)).map(move |i| [v(i % steps), v(i / steps % steps), v(i / steps / steps)])
}

pub(super) fn close(a: [f32; 3], b: [f32; 3], tolerance: f32) -> bool {
    a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tolerance)
}

/// The scene with red pushed up and green and blue down.
pub(super) fn red_shifted(img: &Planar) -> Planar {
    let n = img.width * img.height;
    let mut out = img.clone();
    for (i, v) in out.data.iter_mut().enumerate() {
        *v = match i / n {
            0 => 0.35 + 0.65 * *v,
            1 => 0.75 * *v,
            _ => 0.6 * *v,
        };
    }
    out
}

/// `frame`'s part `columns` × `rows` as a region's worker keeps it with
/// `adjust`: alone, from the frame's pixels around it that the keeping
/// reads.
pub(super) fn kept_alone(
    frame: &Planar,
    adjust: &ColorAdjust,
    columns: Range<usize>,
    rows: Range<usize>,
) -> Planar {
    let area = Area { columns, rows };
    let (wide_columns, wide_rows) = moved_area(&area, Some(adjust), (frame.width, frame.height));
    let part = frame.crop(wide_columns.clone(), wide_rows.clone());
    kept_in_area(adjust, part, (&wide_columns, &wide_rows), &area)
}
