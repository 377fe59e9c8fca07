//! The colour spaces frames are matched in (CIELAB, HSV, sRGB) and the
//! conversions between them; the powers and cube roots of the Lab
//! conversions are read from tables rather than computed per sample.
//! The Lab conversions are compiled for baseline x86-64 and for AVX2,
//! picked at run time, never with FMA: the same bits on every machine, as
//! the resampling's loops (see `resample`).

use std::str::FromStr;
use std::sync::LazyLock;

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use super::unit;
use crate::parallel;

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
    /// Its name, as jobs and the wire spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lab => "lab",
            Self::Hsv => "hsv",
            Self::Rgb => "rgb",
        }
    }

    /// Whether channel `c` of this space is matched (HSV's hue is not).
    pub(super) fn matches_channel(self, c: usize) -> bool {
        !(self == Self::Hsv && c == 0)
    }

    /// Converts sRGB samples, planar, to this space in place (samples are
    /// clamped to `0..=1` first).
    pub(super) fn rgb_to_space(self, data: &mut [f32]) {
        match self {
            Self::Lab => {
                let curves = &*CURVES;
                map_pixels(data, |planes| srgb_to_lab(curves, planes));
            }
            Self::Hsv => map_pixels(data, |planes| {
                each_pixel(planes, |p| rgb_to_hsv([unit(p[0]), unit(p[1]), unit(p[2])]));
            }),
            Self::Rgb => data.iter_mut().for_each(|v| *v = unit(*v)),
        }
    }

    /// Converts samples of this space, planar, back to sRGB in place.
    pub(super) fn space_to_rgb(self, data: &mut [f32]) {
        match self {
            Self::Lab => {
                let curves = &*CURVES;
                map_pixels(data, |planes| lab_to_srgb(curves, planes));
            }
            Self::Hsv => map_pixels(data, |planes| each_pixel(planes, hsv_to_rgb)),
            Self::Rgb => {}
        }
    }
}

/// The three planes of a run of pixels.
type Planes<'a> = [&'a mut [f32]; 3];

/// Pixels a conversion takes at a time: it runs step by step (a curve on
/// each plane, then a matrix on each pixel, ...) over this many pixels,
/// which stay in the core's first cache, and each step is a loop that the
/// compiler turns into vector instructions. Each sample's arithmetic is
/// the same as pixel by pixel, so its bits are too.
const BATCH: usize = 256;

/// Applies `convert` to the planar RGB `data` in place, [`BATCH`] pixels
/// at a time, runs of pixels on the host work's threads (each pixel is
/// converted alone, so the bits do not depend on the split).
fn map_pixels(data: &mut [f32], convert: impl Fn(Planes) + Sync) {
    let n = data.len() / 3;
    let run = n.div_ceil(parallel::threads_for(data.len())).max(1);
    let (r, gb) = data.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    let runs = r
        .chunks_mut(run)
        .zip(g.chunks_mut(run))
        .zip(b.chunks_mut(run));
    let map_run = |((r, g), b): ((&mut [f32], &mut [f32]), &mut [f32])| {
        let batches = r
            .chunks_mut(BATCH)
            .zip(g.chunks_mut(BATCH))
            .zip(b.chunks_mut(BATCH));
        for ((r, g), b) in batches {
            convert([r, g, b]);
        }
    };
    if run >= n {
        runs.for_each(map_run);
        return;
    }
    std::thread::scope(|scope| {
        for pixels in runs {
            scope.spawn(|| map_run(pixels));
        }
    });
}

/// Replaces each pixel of `planes` by `f` of it.
fn each_pixel([r, g, b]: Planes, f: impl Fn([f32; 3]) -> [f32; 3]) {
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        [*r, *g, *b] = f([*r, *g, *b]);
    }
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

/// Intervals a [`Curve`] is tabulated in (a power of two).
const CURVE_STEPS: usize = 4096;

/// A function on `0..=1` tabulated at [`CURVE_STEPS`] even intervals and
/// read by linear interpolation, within 1e-6 of the formula. The powers
/// and cube roots of the Lab conversions, called per sample, were most of
/// a frame's Lab matching; read from tables, they halve its time. A fixed
/// length, so that reading it needs no bounds checks.
struct Curve(Box<[f32; CURVE_STEPS + 1]>);

impl Curve {
    /// `f`, tabulated (computed in f64).
    fn new(f: impl Fn(f64) -> f64) -> Self {
        let mut table = Box::new([0.0; CURVE_STEPS + 1]);
        for (i, v) in table.iter_mut().enumerate() {
            *v = f(i as f64 / CURVE_STEPS as f64) as f32;
        }
        Self(table)
    }

    /// The function at `x`, clamped to `0..=1`.
    fn at(&self, x: f32) -> f32 {
        let x = unit(x) * CURVE_STEPS as f32;
        // The interval `x` is in, the last for `x == CURVE_STEPS`. The
        // mask changes no index (all are below CURVE_STEPS, a power of
        // two) but tells the compiler so: no bounds checks, no branches.
        let i = (x.min((CURVE_STEPS - 1) as f32) as i32 as usize) & (CURVE_STEPS - 1);
        let a = self.0[i];
        a + (self.0[i + 1] - a) * (x - i as f32)
    }

    /// Replaces each of `values` by the function at it.
    fn apply(&self, values: &mut [f32]) {
        for v in values {
            *v = self.at(*v);
        }
    }
}

/// The tabulated curves of the sRGB and CIELAB conversions. The encoding
/// and the cube root are steep near 0, so they are tabulated over the
/// square root of their argument, where they are smooth.
pub(super) struct Curves {
    /// [`srgb_to_linear`] of `c`.
    decode: Curve,
    /// [`linear_to_srgb`] of `u²`.
    encode_of_sqrt: Curve,
    /// [`lab_f`] of `u²`.
    lab_f_of_sqrt: Curve,
}

/// Built on first use, the same on every run.
pub(super) static CURVES: LazyLock<Curves> = LazyLock::new(|| Curves {
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

/// sRGB (clamped to `0..=1`) to CIELAB (D65), pixel by pixel, step by
/// step over all of `planes`.
#[multiversion(targets("x86_64+avx2"))]
fn srgb_to_lab(curves: &Curves, [r, g, b]: Planes) {
    for plane in [&mut *r, &mut *g, &mut *b] {
        curves.decode.apply(plane);
    }
    // CIE XYZ relative to white, under the square root that the Lab
    // curve is tabulated over (at most 1: the colours are sRGB's).
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let [x, y, z] = linear_to_xyz([*r, *g, *b]);
        *r = (x / WHITE[0]).sqrt();
        *g = (y / WHITE[1]).sqrt();
        *b = (z / WHITE[2]).sqrt();
    }
    for plane in [&mut *r, &mut *g, &mut *b] {
        curves.lab_f_of_sqrt.apply(plane);
    }
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let [fx, fy, fz] = [*r, *g, *b];
        *r = 116.0 * fy - 16.0;
        *g = 500.0 * (fx - fy);
        *b = 200.0 * (fy - fz);
    }
}

/// CIELAB (D65) to sRGB, colours outside the sRGB gamut clamped to it,
/// pixel by pixel, step by step over all of `planes`.
#[multiversion(targets("x86_64+avx2"))]
fn lab_to_srgb(curves: &Curves, [r, g, b]: Planes) {
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let [lr, lg, lb] = xyz_to_linear(lab_to_xyz([*r, *g, *b]));
        *r = unit(lr).sqrt();
        *g = unit(lg).sqrt();
        *b = unit(lb).sqrt();
    }
    for plane in [r, g, b] {
        curves.encode_of_sqrt.apply(plane);
    }
}

/// One pixel's [`srgb_to_lab`].
#[cfg(test)]
pub(super) fn srgb_to_lab_pixel(rgb: [f32; 3]) -> [f32; 3] {
    one_pixel(srgb_to_lab, rgb)
}

/// One pixel's [`lab_to_srgb`].
#[cfg(test)]
fn lab_to_srgb_pixel(lab: [f32; 3]) -> [f32; 3] {
    one_pixel(lab_to_srgb, lab)
}

/// `convert` of the one pixel `p`.
#[cfg(test)]
fn one_pixel(convert: fn(&Curves, Planes), p: [f32; 3]) -> [f32; 3] {
    let mut planes = p.map(|v| [v]);
    let [a, b, c] = &mut planes;
    convert(&CURVES, [a, b, c]);
    planes.map(|[v]| v)
}

/// CIELAB to CIE XYZ, relative to [`WHITE`].
fn lab_to_xyz([l, a, b]: [f32; 3]) -> [f32; 3] {
    let fy = (l + 16.0) / 116.0;
    [
        WHITE[0] * lab_f_inverse(fy + a / 500.0),
        WHITE[1] * lab_f_inverse(fy),
        WHITE[2] * lab_f_inverse(fy - b / 200.0),
    ]
}

/// RGB in `0..=1` to HSV: hue in turns (`0..1`, red at 0), saturation and
/// value in `0..=1`.
pub(super) fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
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
    use crate::color::test_images::*;

    #[test]
    fn conversions_round_trip() {
        let curves = &*CURVES;
        for rgb in rgb_grid(21) {
            let linear = rgb.map(|c| curves.decode.at(c));
            let back = linear.map(|l| curves.encode_of_sqrt.at(l.sqrt()));
            assert!(close(back, rgb, 1e-4), "{rgb:?} via linear");
            let xyz = linear_to_xyz(linear);
            assert!(close(xyz_to_linear(xyz), linear, 1e-4), "{rgb:?} via XYZ");
            let lab = srgb_to_lab_pixel(rgb);
            assert!(close(lab_to_xyz(lab), xyz, 1e-4), "{rgb:?} via Lab");
            assert!(close(lab_to_srgb_pixel(lab), rgb, 1e-4), "{rgb:?} Lab");
            assert!(close(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, 1e-4), "{rgb:?} HSV");
        }
    }

    #[test]
    fn converting_planes_gives_each_pixel_the_bits_it_has_alone() {
        // More pixels than a batch, a count no batch divides, samples
        // outside 0..=1 and a NaN among them.
        let n = 3 * BATCH + 77;
        let mut data: Vec<f32> = (0..3 * n)
            .map(|i| noise(i % 3, i / 3, 7) * 1.2 - 0.1)
            .collect();
        data[5] = f32::NAN;
        let pixel = |data: &[f32], i: usize| [data[i], data[n + i], data[2 * n + i]];
        let mut lab = data.clone();
        ColorSpace::Lab.rgb_to_space(&mut lab);
        let mut back = lab.clone();
        ColorSpace::Lab.space_to_rgb(&mut back);
        let mut hsv = data.clone();
        ColorSpace::Hsv.rgb_to_space(&mut hsv);
        for i in 0..n {
            let alone = srgb_to_lab_pixel(pixel(&data, i));
            assert_eq!(
                pixel(&lab, i).map(f32::to_bits),
                alone.map(f32::to_bits),
                "{i}"
            );
            let alone = lab_to_srgb_pixel(pixel(&lab, i));
            assert_eq!(
                pixel(&back, i).map(f32::to_bits),
                alone.map(f32::to_bits),
                "{i}"
            );
            let alone = rgb_to_hsv(pixel(&data, i).map(unit));
            assert_eq!(
                pixel(&hsv, i).map(f32::to_bits),
                alone.map(f32::to_bits),
                "{i}"
            );
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
            let got = srgb_to_lab_pixel(rgb);
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
}
