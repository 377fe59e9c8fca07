//! Colour tools for long renders. Each frame of an infinite zoom is dreamed
//! from the last, so small biases compound: colours drift (often towards
//! one saturated hue) and repeated resampling softens the image. Colour
//! coherence pulls every frame's colour distribution back to a reference
//! (as Deforum does); contrast and an unsharp mask counter the softening;
//! the statistics measure the drift.
//!
//! Everything runs on one core in a fixed order, so the same frame gives
//! the same bits on every run.

use std::str::FromStr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::resample::Planar;

/// Quantiles a [`ColorReference`] keeps per channel: 4 KiB a channel, and
/// finer than 8-bit output can show for any image's distribution.
const QUANTILES: usize = 1024;

/// Bins a frame's channel is counted in when matched: samples in a bin map
/// to one value, and a bin is 1/4096 of the channel's range, far below an
/// 8-bit step. Counting keeps matching linear in the pixels: sorting each
/// channel of every frame would cost several times the whole match.
const BINS: usize = 4096;

/// The colour space in which frames are matched to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorSpace {
    /// CIELAB (D65): lightness and the two opponent colour axes, each
    /// matched on its own. Deforum's default, and the most even to the eye.
    Lab,
    /// HSV, matching saturation and value only: hue is an angle, and
    /// matching it as a number (as Deforum does) tears colours across red,
    /// where it wraps. Hue drift is left alone.
    Hsv,
    /// The sRGB channels, each matched on its own.
    Rgb,
}

impl FromStr for ColorSpace {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lab" => Ok(Self::Lab),
            "hsv" => Ok(Self::Hsv),
            "rgb" => Ok(Self::Rgb),
            _ => Err(format!("unknown colour space {s:?}: use lab, hsv or rgb")),
        }
    }
}

impl ColorSpace {
    /// Whether channel `c` of this space is matched (HSV's hue is not).
    fn matches_channel(self, c: usize) -> bool {
        !(self == Self::Hsv && c == 0)
    }

    /// Converts sRGB samples, planar, to this space in place (samples are
    /// clamped to `0..=1` first).
    fn rgb_to_space(self, data: &mut [f32]) {
        match self {
            Self::Lab => {
                let curves = &*CURVES;
                map_pixels(data, |p| curves.srgb_to_lab(p.map(unit)));
            }
            Self::Hsv => map_pixels(data, |p| rgb_to_hsv(p.map(unit))),
            Self::Rgb => data.iter_mut().for_each(|v| *v = unit(*v)),
        }
    }

    /// Converts samples of this space, planar, back to sRGB in place.
    fn space_to_rgb(self, data: &mut [f32]) {
        match self {
            Self::Lab => {
                let curves = &*CURVES;
                map_pixels(data, |p| curves.lab_to_srgb(p));
            }
            Self::Hsv => map_pixels(data, hsv_to_rgb),
            Self::Rgb => {}
        }
    }
}

/// The colour distribution that frames are matched to: per channel of its
/// space, evenly spaced quantiles of a reference image (usually the job's
/// first frame). Built once per job; 12 KiB whatever the image's size.
#[derive(Debug, Clone, PartialEq)]
pub struct ColorReference {
    /// The space the quantiles are in.
    space: ColorSpace,
    /// [`QUANTILES`] quantiles, from the minimum to the maximum, of each
    /// matched channel; empty for a channel left alone (HSV's hue) and for
    /// every channel of an empty image, which matches nothing.
    quantiles: [Vec<f32>; 3],
}

impl ColorReference {
    /// The distribution of `image`'s colours in `space`.
    pub fn new(image: &Planar, space: ColorSpace) -> Self {
        let n = image.width * image.height;
        let mut converted = image.data.clone();
        space.rgb_to_space(&mut converted);
        let quantiles = std::array::from_fn(|c| {
            if n == 0 || !space.matches_channel(c) {
                return Vec::new();
            }
            let mut sorted = converted[c * n..(c + 1) * n].to_vec();
            // A total order: equal keys are equal bits, so the result does
            // not depend on the sort's stability.
            sorted.sort_unstable_by(f32::total_cmp);
            (0..QUANTILES)
                .map(|k| at_fraction(&sorted, k as f64 / (QUANTILES - 1) as f64))
                .collect()
        });
        Self { space, quantiles }
    }
}

/// Colour coherence: matches the histogram of each channel of `frame`, in
/// the reference's space, to the reference's (as skimage's
/// `match_histograms`, which Deforum uses: a sample of rank `r` among the
/// frame's takes the reference's quantile at the same rank, ties the mid
/// rank), then blends the result with the frame by `strength` (0, less or
/// NaN: the frame unchanged; 1 or more: fully matched). Samples end in
/// `0..=1`.
pub fn match_colors(frame: &mut Planar, reference: &ColorReference, strength: f64) {
    let n = frame.width * frame.height;
    let nothing_to_match = reference.quantiles.iter().all(Vec::is_empty);
    if strength.is_nan() || strength <= 0.0 || n == 0 || nothing_to_match {
        return;
    }
    let strength = strength.min(1.0) as f32;
    let mut matched = frame.data.clone();
    reference.space.rgb_to_space(&mut matched);
    for (plane, table) in matched.chunks_exact_mut(n).zip(&reference.quantiles) {
        if !table.is_empty() {
            match_channel(plane, table);
        }
    }
    reference.space.space_to_rgb(&mut matched);
    for (x, &m) in frame.data.iter_mut().zip(&matched) {
        *x = unit(*x + strength * (m - *x));
    }
}

/// Maps `values` (not empty) so their distribution follows the quantile
/// table `table`: each sample's bin takes the table's value at the bin's
/// mid rank.
fn match_channel(values: &mut [f32], table: &[f32]) {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let scale = if hi > lo {
        BINS as f32 / (hi - lo)
    } else {
        0.0
    };
    // `as` saturates, so rounding at the top stays in range.
    let bin = |v: f32| (((v - lo) * scale) as usize).min(BINS - 1);
    let mut counts = vec![0u32; BINS];
    for &v in values.iter() {
        counts[bin(v)] += 1;
    }
    let last_rank = (values.len() - 1) as f64;
    let mut below = 0u64;
    let mapped: Vec<f32> = counts
        .iter()
        .map(|&count| {
            let mid_rank = below as f64 + (f64::from(count) - 1.0) / 2.0;
            below += u64::from(count);
            let fraction = if last_rank > 0.0 {
                mid_rank / last_rank
            } else {
                0.5
            };
            at_fraction(table, fraction)
        })
        .collect();
    for v in values.iter_mut() {
        *v = mapped[bin(*v)];
    }
}

/// The value `fraction` (clamped to `0..=1`) of the way through the sorted,
/// non-empty `sorted`, interpolated linearly between neighbours (numpy's
/// default quantile).
fn at_fraction(sorted: &[f32], fraction: f64) -> f32 {
    let x = fraction.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let i = x as usize;
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + (next - sorted[i]) * (x - i as f64) as f32,
        None => sorted[i],
    }
}

/// Scales every sample's distance from the mean luminance by `amount`
/// (1: unchanged, 0: flat grey, above 1: more contrast), as PIL's
/// `ImageEnhance.Contrast`; samples end in `0..=1`.
pub fn contrast(image: &mut Planar, amount: f64) {
    if amount == 1.0 || image.data.is_empty() {
        return;
    }
    let mean = mean_luminance(image) as f32;
    let amount = amount as f32;
    for x in &mut image.data {
        *x = unit(mean + amount * (*x - mean));
    }
}

/// Sharpens: adds `amount` × (image − its Gaussian blur of standard
/// deviation `radius_px` pixels), edges extended, samples clamped to
/// `0..=1`. Restores the fine detail repeated resampling blurs away.
/// `amount` 0, or a radius that is not a positive finite number, leaves
/// the image unchanged; the blur's cost grows with the radius (6 × radius
/// taps a pass), which the caller keeps to a few pixels.
pub fn unsharp_mask(image: &mut Planar, amount: f64, radius_px: f64) {
    let no_radius = !radius_px.is_finite() || radius_px <= 0.0;
    if amount == 0.0 || no_radius || image.data.is_empty() {
        return;
    }
    let blurred = gaussian_blur(image, &gaussian_kernel(radius_px));
    let amount = amount as f32;
    for (x, &b) in image.data.iter_mut().zip(&blurred.data) {
        *x = unit(*x + amount * (*x - b));
    }
}

/// Normalised Gaussian weights of standard deviation `sigma`, out to three
/// standard deviations each side.
fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as i64;
    let weights: Vec<f64> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / sum) as f32).collect()
}

/// `image` convolved with the odd-length `kernel` along rows, then along
/// columns, with samples beyond the edge repeating the edge.
fn gaussian_blur(image: &Planar, kernel: &[f32]) -> Planar {
    let (w, h) = (image.width, image.height);
    let r = kernel.len() / 2;
    let mut out = Planar::zeros(w, h);
    let mut padded = vec![0.0f32; w + 2 * r];
    let mut rows_blurred = vec![0.0f32; w * h];
    for (src, dst) in image
        .data
        .chunks_exact(w * h)
        .zip(out.data.chunks_exact_mut(w * h))
    {
        for (row, blurred) in src.chunks_exact(w).zip(rows_blurred.chunks_exact_mut(w)) {
            padded[..r].fill(row[0]);
            padded[r..r + w].copy_from_slice(row);
            padded[r + w..].fill(row[w - 1]);
            for (b, window) in blurred.iter_mut().zip(padded.windows(kernel.len())) {
                *b = kernel.iter().zip(window).map(|(k, v)| k * v).sum();
            }
        }
        for (y, out_row) in dst.chunks_exact_mut(w).enumerate() {
            for (k, &weight) in kernel.iter().enumerate() {
                let sy = (y + k).saturating_sub(r).min(h - 1);
                let row = &rows_blurred[sy * w..(sy + 1) * w];
                for (o, &v) in out_row.iter_mut().zip(row) {
                    *o += weight * v;
                }
            }
        }
    }
    out
}

/// Mean HSV saturation (`(max - min) / max` of a pixel's sRGB samples; 0
/// for black), 0 for an empty image: colour drift tends to saturate.
pub fn mean_saturation(image: &Planar) -> f64 {
    mean_over_pixels(image, |p| f64::from(rgb_to_hsv(p.map(unit))[1]))
}

/// Mean Rec. 709 luma of the sRGB-encoded samples
/// (`0.2126 R' + 0.7152 G' + 0.0722 B'`), 0 for an empty image: the
/// brightness a viewer sees drifting.
pub fn mean_luminance(image: &Planar) -> f64 {
    mean_over_pixels(image, |[r, g, b]| {
        0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)
    })
}

/// Mean absolute difference between horizontally neighbouring samples,
/// over all channels (0 for images narrower than 2): how much fine detail
/// is left, which repeated resampling wears away.
pub fn mean_abs_horizontal_gradient(image: &Planar) -> f64 {
    if image.width < 2 || image.height == 0 {
        return 0.0;
    }
    let sum: f64 = image
        .data
        .chunks_exact(image.width)
        .flat_map(|row| row.windows(2))
        .map(|pair| f64::from((pair[1] - pair[0]).abs()))
        .sum();
    sum / (3 * image.height * (image.width - 1)) as f64
}

/// The mean of `f` over the pixels, summed in order.
fn mean_over_pixels(image: &Planar, f: impl Fn([f32; 3]) -> f64) -> f64 {
    let n = image.width * image.height;
    if n == 0 {
        return 0.0;
    }
    let (r, gb) = image.data.split_at(n);
    let (g, b) = gb.split_at(n);
    let sum: f64 = r
        .iter()
        .zip(g)
        .zip(b)
        .map(|((&r, &g), &b)| f([r, g, b]))
        .sum();
    sum / n as f64
}

/// Applies `f` to every pixel of the planar RGB `data` in place.
fn map_pixels(data: &mut [f32], f: impl Fn([f32; 3]) -> [f32; 3]) {
    let n = data.len() / 3;
    let (r, gb) = data.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    for ((r, g), b) in r.iter_mut().zip(g).zip(b) {
        [*r, *g, *b] = f([*r, *g, *b]);
    }
}

/// `v` clamped to `0..=1`, NaN to 0 (`clamp` would keep a NaN).
#[allow(clippy::manual_clamp)]
fn unit(v: f32) -> f32 {
    // `max` drops a NaN operand.
    v.max(0.0).min(1.0)
}

/// An sRGB-encoded sample in `0..=1` to linear light (IEC 61966-2-1).
fn srgb_to_linear(c: f64) -> f64 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear light in `0..=1` to an sRGB-encoded sample.
fn linear_to_srgb(l: f64) -> f64 {
    if l <= 0.003_130_8 {
        l * 12.92
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    }
}

/// CIELAB's `6/29`, where its cube-root curve turns linear near black.
const DELTA: f32 = 6.0 / 29.0;

/// CIELAB's companding of a tristimulus value relative to white: a cube
/// root, linear near black.
fn lab_f(t: f64) -> f64 {
    let delta = f64::from(DELTA);
    if t > delta.powi(3) {
        t.cbrt()
    } else {
        t / (3.0 * delta * delta) + 4.0 / 29.0
    }
}

/// The inverse of [`lab_f`].
fn lab_f_inverse(f: f32) -> f32 {
    if f > DELTA {
        f * f * f
    } else {
        3.0 * DELTA * DELTA * (f - 4.0 / 29.0)
    }
}

/// Intervals a [`Curve`] is tabulated in.
const CURVE_STEPS: usize = 4096;

/// A function on `0..=1` tabulated at [`CURVE_STEPS`] even intervals and
/// read by linear interpolation, within 1e-6 of the formula. The powers
/// and cube roots of the Lab conversions, called per sample, were most of
/// a frame's Lab matching; read from tables, they halve its time.
struct Curve(Vec<f32>);

impl Curve {
    /// `f`, tabulated (computed in f64).
    fn new(f: impl Fn(f64) -> f64) -> Self {
        Self(
            (0..=CURVE_STEPS)
                .map(|i| f(i as f64 / CURVE_STEPS as f64) as f32)
                .collect(),
        )
    }

    /// The function at `x`, clamped to `0..=1`.
    fn at(&self, x: f32) -> f32 {
        let x = unit(x) * CURVE_STEPS as f32;
        let i = (x as usize).min(CURVE_STEPS - 1);
        let a = self.0[i];
        a + (self.0[i + 1] - a) * (x - i as f32)
    }
}

/// The tabulated curves of the sRGB and CIELAB conversions. The encoding
/// and the cube root are steep near 0, so they are tabulated over the
/// square root of their argument, where they are smooth.
struct Curves {
    /// [`srgb_to_linear`] of `c`.
    decode: Curve,
    /// [`linear_to_srgb`] of `u²`.
    encode_of_sqrt: Curve,
    /// [`lab_f`] of `u²`.
    lab_f_of_sqrt: Curve,
}

/// Built on first use, the same on every run.
static CURVES: LazyLock<Curves> = LazyLock::new(|| Curves {
    decode: Curve::new(srgb_to_linear),
    encode_of_sqrt: Curve::new(|u| linear_to_srgb(u * u)),
    lab_f_of_sqrt: Curve::new(|u| lab_f(u * u)),
});

/// The D65 white point's XYZ, which CIELAB is relative to.
const WHITE: [f32; 3] = [0.950_47, 1.0, 1.088_83];

/// Linear sRGB to CIE XYZ (D65).
fn linear_to_xyz([r, g, b]: [f32; 3]) -> [f32; 3] {
    [
        0.412_456_4 * r + 0.357_576_1 * g + 0.180_437_5 * b,
        0.212_672_9 * r + 0.715_152_2 * g + 0.072_175 * b,
        0.019_333_9 * r + 0.119_192 * g + 0.950_304_1 * b,
    ]
}

/// CIE XYZ (D65) to linear sRGB: the inverse of [`linear_to_xyz`].
fn xyz_to_linear([x, y, z]: [f32; 3]) -> [f32; 3] {
    [
        3.240_454_2 * x - 1.537_138_5 * y - 0.498_531_4 * z,
        -0.969_266 * x + 1.876_010_8 * y + 0.041_556 * z,
        0.055_643_4 * x - 0.204_025_9 * y + 1.057_225_2 * z,
    ]
}

impl Curves {
    /// CIE XYZ (of an sRGB colour, so at most white's) to CIELAB.
    fn xyz_to_lab(&self, xyz: [f32; 3]) -> [f32; 3] {
        let [fx, fy, fz] = [0, 1, 2].map(|c| self.lab_f_of_sqrt.at((xyz[c] / WHITE[c]).sqrt()));
        [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
    }

    /// sRGB in `0..=1` to CIELAB (D65).
    fn srgb_to_lab(&self, rgb: [f32; 3]) -> [f32; 3] {
        self.xyz_to_lab(linear_to_xyz(rgb.map(|c| self.decode.at(c))))
    }

    /// CIELAB (D65) to sRGB, colours outside the sRGB gamut clamped to it.
    fn lab_to_srgb(&self, lab: [f32; 3]) -> [f32; 3] {
        xyz_to_linear(lab_to_xyz(lab)).map(|l| self.encode_of_sqrt.at(unit(l).sqrt()))
    }
}

/// CIELAB to CIE XYZ, relative to [`WHITE`].
fn lab_to_xyz([l, a, b]: [f32; 3]) -> [f32; 3] {
    let fy = (l + 16.0) / 116.0;
    let fs = [fy + a / 500.0, fy, fy - b / 200.0];
    [0, 1, 2].map(|c| WHITE[c] * lab_f_inverse(fs[c]))
}

/// RGB in `0..=1` to HSV: hue in turns (`0..1`, red at 0), saturation and
/// value in `0..=1`.
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let d = max - r.min(g).min(b);
    let s = if max > 0.0 { d / max } else { 0.0 };
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    [h / 6.0, s, max]
}

/// HSV (hue in turns) to RGB: the inverse of [`rgb_to_hsv`].
fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let sector = h6.floor();
    let f = h6 - sector;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    // `h6` may round up to 6.0, which is sector 0 again.
    match sector as u8 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACES: [ColorSpace; 3] = [ColorSpace::Lab, ColorSpace::Hsv, ColorSpace::Rgb];

    /// An image whose every sample is `f(channel, x, y)`.
    fn image(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> f32) -> Planar {
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
    fn noise(c: usize, x: usize, y: usize) -> f32 {
        let k = (c as u64 * 7919 + x as u64 * 104_729 + y as u64 * 1_299_709)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (k >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A scene with a photograph's correlated channels: light and shade,
    /// a slowly changing tint and a little grain.
    fn scene(w: usize, h: usize) -> Planar {
        image(w, h, |c, x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let light = 0.45 + 0.3 * (5.0 * fx).sin() * (4.0 * fy).cos();
            let tint = 0.15 * (3.0 * fx + 2.1 * c as f32).sin() * (2.0 * fy + 1.3 * c as f32).cos();
            unit(light + tint + 0.06 * (noise(c, x, y) - 0.5))
        })
    }

    fn max_difference(a: &Planar, b: &Planar) -> f32 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn mean_difference(a: &Planar, b: &Planar) -> f64 {
        let sum: f64 = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum();
        sum / a.data.len() as f64
    }

    fn bits(img: &Planar) -> Vec<u32> {
        img.data.iter().map(|v| v.to_bits()).collect()
    }

    /// Every colour on a 0..=1 grid of `steps` values a channel.
    fn rgb_grid(steps: usize) -> impl Iterator<Item = [f32; 3]> {
        let v = move |i: usize| i as f32 / (steps - 1) as f32;
        (0..steps.pow(3)).map(move |i| [v(i % steps), v(i / steps % steps), v(i / steps / steps)])
    }

    fn close(a: [f32; 3], b: [f32; 3], tolerance: f32) -> bool {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tolerance)
    }

    #[test]
    fn conversions_round_trip() {
        let curves = &*CURVES;
        for rgb in rgb_grid(21) {
            let linear = rgb.map(|c| curves.decode.at(c));
            let back = linear.map(|l| curves.encode_of_sqrt.at(l.sqrt()));
            assert!(close(back, rgb, 1e-4), "{rgb:?} via linear");
            let xyz = linear_to_xyz(linear);
            assert!(close(xyz_to_linear(xyz), linear, 1e-4), "{rgb:?} via XYZ");
            let lab = curves.xyz_to_lab(xyz);
            assert!(close(lab_to_xyz(lab), xyz, 1e-4), "{rgb:?} via Lab");
            assert!(close(curves.lab_to_srgb(lab), rgb, 1e-4), "{rgb:?} Lab");
            assert!(close(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, 1e-4), "{rgb:?} HSV");
        }
    }

    #[test]
    fn tabulated_curves_follow_the_formulas() {
        let curves = &*CURVES;
        for i in 0..=100_000 {
            let x = i as f64 / 100_000.0;
            let xf = x as f32;
            let decode = f64::from(curves.decode.at(xf));
            assert!((decode - srgb_to_linear(x)).abs() < 1e-6, "decode {x}");
            let encode = f64::from(curves.encode_of_sqrt.at(xf.sqrt()));
            assert!((encode - linear_to_srgb(x)).abs() < 1e-6, "encode {x}");
            let f = f64::from(curves.lab_f_of_sqrt.at(xf.sqrt()));
            assert!((f - lab_f(x)).abs() < 1e-6, "lab_f {x}");
            assert!((linear_to_srgb(srgb_to_linear(x)) - x).abs() < 1e-6);
            assert!((f64::from(lab_f_inverse(lab_f(x) as f32)) - x).abs() < 1e-6);
        }
    }

    #[test]
    fn conversions_match_reference_values() {
        // CIELAB D65 of the sRGB primaries and white (e.g. Bruce Lindbloom's
        // calculator).
        let cases = [
            ([1.0, 1.0, 1.0], [100.0, 0.0, 0.0]),
            ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            ([1.0, 0.0, 0.0], [53.2408, 80.0925, 67.2032]),
            ([0.0, 1.0, 0.0], [87.7347, -86.1827, 83.1793]),
            ([0.0, 0.0, 1.0], [32.2970, 79.1875, -107.8602]),
        ];
        for (rgb, lab) in cases {
            let got = CURVES.srgb_to_lab(rgb);
            assert!(close(got, lab, 0.01), "{rgb:?}: {got:?}, not {lab:?}");
        }
        assert_eq!(rgb_to_hsv([1.0, 0.0, 0.0]), [0.0, 1.0, 1.0]);
        assert_eq!(rgb_to_hsv([0.0, 0.5, 0.5]), [0.5, 1.0, 0.5]);
        assert_eq!(rgb_to_hsv([0.5, 0.5, 0.5]), [0.0, 0.0, 0.5]);
        assert_eq!(rgb_to_hsv([1.0, 0.0, 1.0])[0], 5.0 / 6.0);
    }

    #[test]
    fn color_space_names() {
        assert_eq!("lab".parse(), Ok(ColorSpace::Lab));
        assert_eq!("hsv".parse(), Ok(ColorSpace::Hsv));
        assert_eq!("rgb".parse(), Ok(ColorSpace::Rgb));
        assert_eq!(
            "off".parse::<ColorSpace>(),
            Err("unknown colour space \"off\": use lab, hsv or rgb".into())
        );
        let json = serde_json::to_string(&ColorSpace::Hsv).expect("serialises");
        assert_eq!(json, "\"hsv\"");
        assert_eq!(
            serde_json::from_str::<ColorSpace>("\"lab\"").ok(),
            Some(ColorSpace::Lab)
        );
    }

    #[test]
    fn matching_a_frame_to_itself_changes_almost_nothing() {
        let frame = scene(96, 64);
        for space in SPACES {
            let mut matched = frame.clone();
            match_colors(&mut matched, &ColorReference::new(&frame, space), 1.0);
            let (max, mean) = (
                max_difference(&matched, &frame),
                mean_difference(&matched, &frame),
            );
            assert!(
                max < 2.0 / 255.0 && mean < 0.05 / 255.0,
                "{space:?}: max {max}, mean {mean}"
            );
        }
    }

    /// The scene with red pushed up and green and blue down.
    fn red_shifted(img: &Planar) -> Planar {
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

    /// Mean L* and mean chroma (`sqrt(a*² + b*²)`) of an image.
    fn lab_means(img: &Planar) -> (f64, f64) {
        let (mut lightness, mut chroma) = (0.0, 0.0);
        let n = img.width * img.height;
        for i in 0..n {
            let [l, a, b] = CURVES.srgb_to_lab([0, 1, 2].map(|c| img.data[c * n + i]));
            lightness += f64::from(l);
            chroma += f64::from(a.hypot(b));
        }
        (lightness / n as f64, chroma / n as f64)
    }

    #[test]
    fn matching_undoes_a_colour_cast() {
        let original = scene(96, 64);
        let shifted = red_shifted(&original);
        let (sat, luma) = (mean_saturation(&original), mean_luminance(&original));
        let off = |a: f64, b: f64| (a - b).abs() / b;
        assert!(off(mean_saturation(&shifted), sat) > 1.0);
        assert!(off(mean_luminance(&shifted), luma) > 0.1);
        // RGB undoes a per-channel cast exactly; HSV restores saturation
        // exactly and luminance through value.
        for space in [ColorSpace::Rgb, ColorSpace::Hsv] {
            let mut matched = shifted.clone();
            match_colors(&mut matched, &ColorReference::new(&original, space), 1.0);
            let (s, l) = (mean_saturation(&matched), mean_luminance(&matched));
            assert!(off(s, sat) < 0.02, "{space:?}: saturation {s} vs {sat}");
            assert!(off(l, luma) < 0.02, "{space:?}: luminance {l} vs {luma}");
        }
        // Lab restores lightness and chroma. HSV saturation, which weighs
        // dark pixels' colour heavily, comes back within 5% only: matching
        // each channel on its own restores each one's distribution, not how
        // chroma goes with lightness.
        let mut matched = shifted.clone();
        match_colors(
            &mut matched,
            &ColorReference::new(&original, ColorSpace::Lab),
            1.0,
        );
        let (lightness, chroma) = lab_means(&original);
        let (l, c) = lab_means(&matched);
        assert!(off(l, lightness) < 0.02, "L* {l} vs {lightness}");
        assert!(off(c, chroma) < 0.02, "chroma {c} vs {chroma}");
        let (s, l) = (mean_saturation(&matched), mean_luminance(&matched));
        assert!(off(l, luma) < 0.02, "Lab: luminance {l} vs {luma}");
        assert!(off(s, sat) < 0.05, "Lab: saturation {s} vs {sat}");
        // Half strength lands about half way.
        let mut half = shifted.clone();
        match_colors(
            &mut half,
            &ColorReference::new(&original, ColorSpace::Rgb),
            0.5,
        );
        let expected = (mean_saturation(&shifted) + sat) / 2.0;
        assert!(off(mean_saturation(&half), expected) < 0.05);
    }

    #[test]
    fn strength_zero_leaves_the_frame_alone() {
        let original = scene(40, 30);
        let reference = ColorReference::new(&red_shifted(&original), ColorSpace::Lab);
        for strength in [0.0, -1.0, f64::NAN] {
            let mut frame = original.clone();
            match_colors(&mut frame, &reference, strength);
            assert!(bits(&frame) == bits(&original), "strength {strength}");
        }
    }

    #[test]
    fn constant_images() {
        let grey = image(16, 8, |_, _, _| 0.5);
        let orange = image(16, 8, |c, _, _| [0.9, 0.5, 0.1][c]);
        for space in [ColorSpace::Lab, ColorSpace::Rgb] {
            // A constant frame takes a constant reference's colour...
            let mut frame = grey.clone();
            match_colors(&mut frame, &ColorReference::new(&orange, space), 1.0);
            assert!(max_difference(&frame, &orange) < 1e-4, "{space:?}");
            // ...and any frame does.
            let mut frame = scene(16, 8);
            match_colors(&mut frame, &ColorReference::new(&orange, space), 1.0);
            assert!(max_difference(&frame, &orange) < 1e-4, "{space:?}");
        }
        // A constant frame matched to a varied reference stays constant.
        let mut frame = grey.clone();
        match_colors(
            &mut frame,
            &ColorReference::new(&scene(16, 8), ColorSpace::Lab),
            1.0,
        );
        for c in 0..3 {
            let plane = frame.channel(c);
            assert!(plane.iter().all(|&v| v == plane[0]));
        }
        // HSV takes saturation and value, and keeps the hue.
        let blue = image(16, 8, |c, _, _| [0.4, 0.5, 0.6][c]);
        let mut frame = blue.clone();
        match_colors(
            &mut frame,
            &ColorReference::new(&orange, ColorSpace::Hsv),
            1.0,
        );
        let [h, s, v] = rgb_to_hsv([0, 1, 2].map(|c| frame.channel(c)[0]));
        let [blue_hue, _, _] = rgb_to_hsv([0.4, 0.5, 0.6]);
        let [_, orange_s, orange_v] = rgb_to_hsv([0.9, 0.5, 0.1]);
        assert!(close([h, s, v], [blue_hue, orange_s, orange_v], 1e-4));
    }

    #[test]
    fn one_pixel_and_empty_images() {
        let pixel = image(1, 1, |c, _, _| [0.2, 0.6, 0.4][c]);
        for space in SPACES {
            let mut frame = pixel.clone();
            match_colors(&mut frame, &ColorReference::new(&pixel, space), 1.0);
            assert!(max_difference(&frame, &pixel) < 1e-4, "{space:?}");
            let mut frame = pixel.clone();
            match_colors(&mut frame, &ColorReference::new(&scene(8, 8), space), 1.0);
            assert!(frame.data.iter().all(|v| (0.0..=1.0).contains(v)));

            let empty = Planar::zeros(0, 0);
            let mut frame = pixel.clone();
            match_colors(&mut frame, &ColorReference::new(&empty, space), 1.0);
            assert_eq!(frame, pixel);
            let mut nothing = empty.clone();
            match_colors(&mut nothing, &ColorReference::new(&pixel, space), 1.0);
            assert_eq!(nothing, empty);
        }
        let mut tiny = pixel.clone();
        contrast(&mut tiny, 2.0);
        unsharp_mask(&mut tiny, 1.0, 2.0);
        let mut empty = Planar::zeros(0, 0);
        contrast(&mut empty, 2.0);
        unsharp_mask(&mut empty, 1.0, 2.0);
        assert_eq!(mean_saturation(&empty), 0.0);
        assert_eq!(mean_luminance(&empty), 0.0);
        assert_eq!(mean_abs_horizontal_gradient(&empty), 0.0);
        assert_eq!(mean_abs_horizontal_gradient(&pixel), 0.0);
    }

    #[test]
    fn results_are_the_same_bits_every_run() {
        let original = scene(64, 48);
        let shifted = red_shifted(&original);
        for space in SPACES {
            let run = || {
                let mut frame = shifted.clone();
                match_colors(&mut frame, &ColorReference::new(&original, space), 0.8);
                unsharp_mask(&mut frame, 0.5, 1.5);
                contrast(&mut frame, 1.1);
                bits(&frame)
            };
            assert!(run() == run(), "{space:?}");
        }
    }

    #[test]
    fn contrast_scales_around_the_mean_luminance() {
        let original = scene(32, 24);
        let mut same = original.clone();
        contrast(&mut same, 1.0);
        assert!(bits(&same) == bits(&original));
        let mean = mean_luminance(&original) as f32;
        let mut flat = original.clone();
        contrast(&mut flat, 0.0);
        assert!(flat.data.iter().all(|&v| v == mean));
        let mut soft = original.clone();
        contrast(&mut soft, 0.5);
        for (s, o) in soft.data.iter().zip(&original.data) {
            assert!((s - (mean + 0.5 * (o - mean))).abs() < 1e-6);
        }
        let mut strong = original.clone();
        contrast(&mut strong, 3.0);
        assert!(strong.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(mean_abs_horizontal_gradient(&strong) > mean_abs_horizontal_gradient(&original));
    }

    #[test]
    fn unsharp_mask_restores_detail_and_keeps_flat_areas() {
        let flat = image(20, 10, |c, _, _| 0.2 + 0.3 * c as f32);
        let mut sharpened = flat.clone();
        unsharp_mask(&mut sharpened, 2.0, 1.5);
        assert!(max_difference(&sharpened, &flat) < 1e-6);

        // Stripes 6 pixels apart: a blur of 1 pixel keeps exp(-2π²/36) of
        // their contrast, and an unsharp mask of amount 1 multiplies what
        // is left by 1 + (1 - that).
        let stripes = image(120, 8, |_, x, _| {
            0.5 + 0.3 * (std::f32::consts::TAU * x as f32 / 6.0).sin()
        });
        let kept = (-2.0 * std::f64::consts::PI.powi(2) / 36.0).exp();
        let blurred = gaussian_blur(&stripes, &gaussian_kernel(1.0));
        let before = mean_abs_horizontal_gradient(&blurred);
        let ratio = before / mean_abs_horizontal_gradient(&stripes);
        assert!((ratio - kept).abs() < 0.02, "blur kept {ratio}, not {kept}");
        let mut sharpened = blurred.clone();
        unsharp_mask(&mut sharpened, 1.0, 1.0);
        assert!(sharpened.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let gain = mean_abs_horizontal_gradient(&sharpened) / before;
        assert!((gain - (2.0 - kept)).abs() < 0.03, "gain {gain}");

        let detailed = scene(64, 48);
        let mut unchanged = detailed.clone();
        unsharp_mask(&mut unchanged, 0.0, 1.0);
        unsharp_mask(&mut unchanged, 1.0, 0.0);
        unsharp_mask(&mut unchanged, 1.0, f64::INFINITY);
        assert!(bits(&unchanged) == bits(&detailed));
    }

    #[test]
    fn the_blur_is_normalised_and_extends_edges() {
        let kernel = gaussian_kernel(1.0);
        assert_eq!(kernel.len(), 7);
        assert!((kernel.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // A step: the blur is symmetric about it and flat far from it.
        let step = image(20, 5, |_, x, _| if x < 10 { 0.0 } else { 1.0 });
        let blurred = gaussian_blur(&step, &kernel);
        let row = &blurred.channel(0)[..20];
        assert!(row[0].abs() < 1e-6 && (row[19] - 1.0).abs() < 1e-6);
        for x in 0..10 {
            assert!((row[x] + row[19 - x] - 1.0).abs() < 1e-6);
        }
        // Columns are blurred too.
        let rows = image(5, 20, |_, _, y| if y < 10 { 0.0 } else { 1.0 });
        let blurred = gaussian_blur(&rows, &kernel);
        assert!((blurred.channel(1)[9 * 5] - row[9]).abs() < 1e-6);
    }

    #[test]
    fn statistics_of_known_images() {
        let red = image(4, 3, |c, _, _| if c == 0 { 1.0 } else { 0.0 });
        assert_eq!(mean_saturation(&red), 1.0);
        assert!((mean_luminance(&red) - 0.2126).abs() < 1e-9);
        assert_eq!(mean_abs_horizontal_gradient(&red), 0.0);
        let grey = image(4, 3, |_, _, _| 0.25);
        assert_eq!(mean_saturation(&grey), 0.0);
        assert!((mean_luminance(&grey) - 0.25).abs() < 1e-6);
        let ramp = image(5, 2, |_, x, _| x as f32 * 0.125);
        assert_eq!(mean_abs_horizontal_gradient(&ramp), 0.125);
    }
}
