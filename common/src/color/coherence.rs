//! Colour coherence: each frame's colour distribution pulled back to a
//! reference's, channel by channel, as Deforum does.

use super::space::ColorSpace;
use super::unit;
use crate::parallel;
use crate::resample::Planar;

/// Quantiles a [`ColorReference`] keeps per channel: 4 KiB a channel, and
/// finer than 8-bit output can show for any image's distribution.
const QUANTILES: usize = 1024;

/// Bins a frame's channel is counted in when matched: samples in a bin map
/// to one value, and a bin is 1/4096 of the channel's range, far below an
/// 8-bit step. Counting keeps matching linear in the pixels: sorting each
/// channel of every frame would cost several times the whole match.
const BINS: usize = 4096;

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

/// What colour coherence learned from a whole frame: per channel, the
/// mapping of its samples' bins, which a part of the frame is matched with
/// to the same bits as the whole frame (a region's worker has only its
/// part).
#[derive(Debug, Clone, PartialEq)]
pub struct ColorMatch {
    /// The space the channels are matched in.
    pub space: ColorSpace,
    /// How far the matched colours replace the frame's, in `(0, 1]`.
    pub strength: f32,
    /// Each channel's map; none for a channel left alone.
    pub channels: [Option<ChannelMap>; 3],
}

/// One channel's histogram match, as learned from a whole frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMap {
    /// The frame's least sample in the channel.
    pub lo: f32,
    /// Bins per unit of the channel (0 for a flat channel).
    pub scale: f32,
    /// The value of each of the [`CHANNEL_BINS`] bins.
    pub mapped: Vec<f32>,
}

/// The number of bins a [`ChannelMap`] has.
pub const CHANNEL_BINS: usize = BINS;

impl ChannelMap {
    /// The bin of `v`; `as` saturates, so rounding at the top stays in
    /// range.
    fn bin(&self, v: f32) -> usize {
        (((v - self.lo) * self.scale) as usize).min(BINS - 1)
    }

    /// Maps `values` as learned.
    fn apply(&self, values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = self.mapped[self.bin(*v)];
        }
    }
}

/// Colour coherence: matches the histogram of each channel of `frame`, in
/// the reference's space, to the reference's (as skimage's
/// `match_histograms`, which Deforum uses: a sample of rank `r` among the
/// frame's takes the reference's quantile at the same rank, ties the mid
/// rank), then blends the result with the frame by `strength` (0, less or
/// NaN: the frame unchanged; 1 or more: fully matched). Samples end in
/// `0..=1`. Returns what it learned from the frame, none when it left
/// the frame alone.
pub fn match_colors(
    frame: &mut Planar,
    reference: &ColorReference,
    strength: f64,
) -> Option<ColorMatch> {
    let (learned, converted) = ColorMatch::learn_converted(frame, reference, strength)?;
    learned.finish(frame, converted);
    Some(learned)
}

impl ColorMatch {
    /// What [`match_colors`] learns from `frame`, leaving it alone.
    pub fn learn(frame: &Planar, reference: &ColorReference, strength: f64) -> Option<Self> {
        Self::learn_converted(frame, reference, strength).map(|(learned, _)| learned)
    }

    /// What [`match_colors`] learns from `frame`, and the frame's samples
    /// converted to the reference's space, from which it learned it.
    fn learn_converted(
        frame: &Planar,
        reference: &ColorReference,
        strength: f64,
    ) -> Option<(Self, Vec<f32>)> {
        let n = frame.width * frame.height;
        let nothing_to_match = reference.quantiles.iter().all(Vec::is_empty);
        if strength.is_nan() || strength <= 0.0 || n == 0 || nothing_to_match {
            return None;
        }
        let mut converted = frame.data.clone();
        reference.space.rgb_to_space(&mut converted);
        let tables = &reference.quantiles;
        let mut channels = parallel::map(3, converted.len(), |c| {
            let plane = &converted[c * n..(c + 1) * n];
            (!tables[c].is_empty()).then(|| learn_channel(plane, &tables[c]))
        })
        .into_iter();
        let learned = Self {
            space: reference.space,
            strength: strength.min(1.0) as f32,
            channels: std::array::from_fn(|_| channels.next().flatten()),
        };
        Some((learned, converted))
    }

    /// What [`match_colors`] learns from `frame`, and the frame it would
    /// make of it, leaving `frame` alone: the matched frame is made in
    /// the buffer the frame was converted into, not in a copy.
    pub fn learn_matched(
        frame: &Planar,
        reference: &ColorReference,
        strength: f64,
    ) -> Option<(Self, Planar)> {
        let (learned, mut matched) = Self::learn_converted(frame, reference, strength)?;
        let n = frame.width * frame.height;
        learned.back_to_rgb(n, &mut matched);
        parallel::for_each_piece(&mut matched, n, |c, plane| {
            for (m, &x) in plane.iter_mut().zip(&frame.data[c * n..]) {
                *m = learned.blend(x, *m);
            }
        });
        let matched = Planar {
            width: frame.width,
            height: frame.height,
            data: matched,
        };
        Some((learned, matched))
    }

    /// Matches `part`, any part of the frame this was learned from, as
    /// [`match_colors`] matched the whole frame.
    pub fn apply(&self, part: &mut Planar) {
        let mut matched = part.data.clone();
        self.space.rgb_to_space(&mut matched);
        self.finish(part, matched);
    }

    /// Maps `matched`, `frame`'s samples in the space, channel by channel,
    /// back to sRGB, and blends `frame` toward it.
    fn finish(&self, frame: &mut Planar, mut matched: Vec<f32>) {
        let n = frame.width * frame.height;
        if n == 0 {
            return;
        }
        self.back_to_rgb(n, &mut matched);
        parallel::for_each_piece(&mut frame.data, n, |c, plane| {
            for (x, &m) in plane.iter_mut().zip(&matched[c * n..]) {
                *x = self.blend(*x, m);
            }
        });
    }

    /// Maps `converted`, a frame of `n` pixels in the space, channel by
    /// channel, and converts it back to sRGB: the fully matched frame.
    fn back_to_rgb(&self, n: usize, converted: &mut [f32]) {
        parallel::for_each_piece(converted, n, |c, plane| {
            if let Some(map) = &self.channels[c] {
                map.apply(plane);
            }
        });
        self.space.space_to_rgb(converted);
    }

    /// A sample `x` of the frame blended toward its fully matched `m`.
    fn blend(&self, x: f32, m: f32) -> f32 {
        unit(x + self.strength * (m - x))
    }
}

/// How `values` (not empty) map so their distribution follows the
/// quantile table `table`: each sample's bin takes the table's value at
/// the bin's mid rank.
fn learn_channel(values: &[f32], table: &[f32]) -> ChannelMap {
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
    let mut map = ChannelMap {
        lo,
        scale,
        mapped: Vec::new(),
    };
    // Counted in four interleaved histograms: a run of samples in one bin
    // (most of a smooth image) then adds to four counters in turn instead
    // of waiting on one.
    let mut lanes = vec![[0u32; 4]; BINS];
    for four in values.chunks(4) {
        for (lane, &v) in four.iter().enumerate() {
            lanes[map.bin(v)][lane] += 1;
        }
    }
    let counts = lanes.iter().map(|lane| lane.iter().sum::<u32>());
    let last_rank = (values.len() - 1) as f64;
    let mut below = 0u64;
    map.mapped = counts
        .map(|count| {
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
    map
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::space::{rgb_to_hsv, srgb_to_lab_pixel};
    use crate::color::test_images::*;
    use crate::color::*;

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

    /// Mean L* and mean chroma (`sqrt(a*² + b*²)`) of an image.
    fn lab_means(img: &Planar) -> (f64, f64) {
        let (mut lightness, mut chroma) = (0.0, 0.0);
        let n = img.width * img.height;
        for i in 0..n {
            let [l, a, b] = srgb_to_lab_pixel([0, 1, 2].map(|c| img.data[c * n + i]));
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
    fn learning_the_matched_frame_gives_the_match_without_touching_the_frame() {
        let original = scene(96, 64);
        let shifted = red_shifted(&original);
        for space in SPACES {
            let reference = ColorReference::new(&original, space);
            let mut kept = shifted.clone();
            let matched_in_place = match_colors(&mut kept, &reference, 0.7);
            let (learned, matched) =
                ColorMatch::learn_matched(&shifted, &reference, 0.7).expect("a match");
            assert_eq!(Some(learned), matched_in_place, "{space:?}");
            assert!(bits(&matched) == bits(&kept), "{space:?}");
        }
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
}
