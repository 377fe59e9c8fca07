//! A frame's colour keeping (coherence, contrast, sharpening) split into
//! what it learns from the whole moved frame and what it then does to
//! each pixel, so that a worker holding one region of the frame gives its
//! part the bits the whole frame's keeping gives it.

use super::coherence::{ColorMatch, ColorReference, match_colors};
use super::sharpen::{Contrast, contrast, sharpen_reach, unsharp_mask};
use crate::params::ColorSettings;
use crate::resample::Planar;

/// Frame `n`'s colour keeping, as learned from its whole moved frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColorAdjust {
    /// Colour coherence's histogram match, if any.
    pub matching: Option<ColorMatch>,
    /// The contrast change, if any.
    pub contrast: Option<Contrast>,
    /// The unsharp mask, if any.
    pub sharpen: Option<Sharpen>,
}

/// An unsharp mask's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sharpen {
    /// How much of the detail is added.
    pub amount: f64,
    /// The blur's standard deviation in pixels.
    pub radius_px: f64,
}

impl Sharpen {
    /// Frame `n`'s unsharp mask as `color` schedules it; none at 0.
    fn at(color: &ColorSettings, (n, frames): (u64, u32)) -> Option<Self> {
        let amount = color.sharpen.value_at(n, frames);
        (amount != 0.0).then_some(Self {
            amount,
            radius_px: color.sharpen_radius,
        })
    }
}

impl ColorAdjust {
    /// Keeps frame `n`'s (of `frames`) colours in `image`, its whole
    /// moved frame, as `color` schedules: colours pulled toward
    /// `reference`, then contrast and sharpness adjusted. Returns what it
    /// did, for the parts of the frame that regions' workers hold.
    pub fn keep(
        color: &ColorSettings,
        (n, frames): (u64, u32),
        reference: Option<&ColorReference>,
        image: &mut Planar,
    ) -> Self {
        let strength = color.strength.value_at(n, frames);
        let matching = reference.and_then(|r| match_colors(image, r, strength));
        let contrast = contrast(image, color.contrast.value_at(n, frames));
        let sharpen = Sharpen::at(color, (n, frames));
        if let Some(s) = sharpen {
            unsharp_mask(image, s.amount, s.radius_px);
        }
        Self {
            matching,
            contrast,
            sharpen,
        }
    }

    /// What [`keep`](Self::keep) would learn from the whole moved frame,
    /// which `moved` makes only when the keeping reads it (coherence or
    /// contrast; sharpening alone learns nothing from it). Without the
    /// work only a kept frame needs: the histogram maps from the frame
    /// converted once (matched in full only where the contrast needs the
    /// matched frame's mean), and no unsharp mask.
    pub fn learn<'a>(
        color: &ColorSettings,
        (n, frames): (u64, u32),
        reference: Option<&ColorReference>,
        moved: impl FnOnce() -> &'a Planar,
    ) -> Self {
        let strength = color.strength.value_at(n, frames);
        let amount = color.contrast.value_at(n, frames);
        let matches = reference.filter(|_| strength > 0.0);
        let (matching, contrast) = match (matches, amount != 1.0) {
            (None, false) => (None, None),
            // The contrast is learned from the matched frame's mean.
            (Some(r), true) => {
                let moved = moved();
                match ColorMatch::learn_matched(moved, r, strength) {
                    Some((matching, matched)) => {
                        (Some(matching), Contrast::learn(&matched, amount))
                    }
                    None => (None, Contrast::learn(moved, amount)),
                }
            }
            (Some(r), false) => (ColorMatch::learn(moved(), r, strength), None),
            (None, true) => (None, Contrast::learn(moved(), amount)),
        };
        Self {
            matching,
            contrast,
            sharpen: Sharpen::at(color, (n, frames)),
        }
    }

    /// Whether frame `n`'s keeping may change it (so that the frame is
    /// worth moving whole to learn it), given whether there is a reference
    /// to pull its colours toward.
    pub fn wanted(color: &ColorSettings, (n, frames): (u64, u32), has_reference: bool) -> bool {
        (has_reference && color.strength.value_at(n, frames) > 0.0)
            || color.contrast.value_at(n, frames) != 1.0
            || color.sharpen.value_at(n, frames) != 0.0
    }

    /// Whether it changes nothing.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// How many pixels of the frame around a part [`apply`](Self::apply)
    /// needs (clamped to the frame's edges) for the part's inside to come
    /// out with the whole frame's bits.
    pub fn margin(&self) -> usize {
        self.sharpen.map_or(0, |s| sharpen_reach(s.radius_px))
    }

    /// Keeps the colours of `part`, a part of the frame this was learned
    /// from, with [`margin`](Self::margin) pixels of the frame around
    /// what the caller keeps of it (fewer only at the frame's edges).
    pub fn apply(&self, part: &mut Planar) {
        if let Some(matching) = &self.matching {
            matching.apply(part);
        }
        if let Some(contrast) = &self.contrast {
            contrast.apply(part);
        }
        if let Some(s) = self.sharpen {
            unsharp_mask(part, s.amount, s.radius_px);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::ColorSpace;
    use crate::color::test_images::{kept_alone, scene};

    /// Settings that use all three: coherence, contrast and sharpening.
    fn settings(sharpen_radius: f64) -> ColorSettings {
        ColorSettings {
            coherence: Some(ColorSpace::Lab),
            strength: 0.8.into(),
            contrast: 1.2.into(),
            sharpen: 0.4.into(),
            sharpen_radius,
            ..ColorSettings::default()
        }
    }

    #[test]
    fn parts_kept_with_the_margin_have_the_whole_frames_bits() {
        let reference = scene(40, 30);
        let (w, h) = (97, 61);
        let mut moved = scene(w, h);
        for c in moved.data.iter_mut().step_by(7) {
            *c = (*c * 1.7).min(1.0);
        }
        for space in [ColorSpace::Lab, ColorSpace::Hsv, ColorSpace::Rgb] {
            for radius in [0.7, 1.0, 2.5] {
                let color = settings(radius);
                let reference = ColorReference::new(&reference, space);
                let mut whole = moved.clone();
                assert!(ColorAdjust::wanted(&color, (5, 10), true));
                let adjust = ColorAdjust::keep(&color, (5, 10), Some(&reference), &mut whole);
                let learned = ColorAdjust::learn(&color, (5, 10), Some(&reference), || &moved);
                assert_eq!(learned, adjust, "learned as kept");
                let no_contrast = ColorSettings {
                    contrast: 1.0.into(),
                    ..color.clone()
                };
                assert_eq!(
                    ColorAdjust::learn(&no_contrast, (5, 10), Some(&reference), || &moved),
                    ColorAdjust::keep(&no_contrast, (5, 10), Some(&reference), &mut moved.clone()),
                    "learned as kept, with no contrast"
                );
                assert!(adjust.matching.is_some() && adjust.contrast.is_some());
                let m = adjust.margin();
                assert_eq!(m, sharpen_reach(radius));
                // Parts inside, at each edge and at the corners.
                for (columns, rows) in [
                    (20..50usize, 10..40usize),
                    (0..13, 0..61),
                    (80..97, 50..61),
                    (0..97, 30..31),
                    (44..45, 0..9),
                ] {
                    let inside = kept_alone(&moved, &adjust, columns.clone(), rows.clone());
                    assert!(
                        inside == whole.crop(columns.clone(), rows.clone()),
                        "{space:?}, radius {radius}: part {columns:?} x {rows:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn sharpening_alone_learns_without_the_frame() {
        let sharpen = ColorSettings {
            sharpen: 0.4.into(),
            ..ColorSettings::default()
        };
        let unread = || -> &Planar { panic!("the moved frame was made") };
        let learned = ColorAdjust::learn(&sharpen, (1, 10), None, unread);
        assert_eq!(learned.sharpen.map(|s| s.amount), Some(0.4));
        assert!(learned.matching.is_none() && learned.contrast.is_none());
        // A reference pulled toward with strength 0 is not read either.
        let reference = ColorReference::new(&scene(8, 8), ColorSpace::Lab);
        let no_pull = ColorSettings {
            coherence: Some(ColorSpace::Lab),
            strength: 0.0.into(),
            ..sharpen
        };
        assert_eq!(
            ColorAdjust::learn(&no_pull, (1, 10), Some(&reference), unread),
            learned
        );
    }

    #[test]
    fn settings_that_change_nothing_learn_nothing() {
        let mut image = scene(16, 16);
        let before = image.clone();
        let color = ColorSettings::default();
        assert!(!ColorAdjust::wanted(&color, (1, 10), false));
        let adjust = ColorAdjust::keep(&color, (1, 10), None, &mut image);
        assert!(adjust.is_none() && adjust.margin() == 0);
        assert_eq!(image, before);
    }
}
