//! A frame's colour keeping on the wire ([`ColorAdjust`] to and from
//! `pb::ColorAdjust`), checked on arrival: a worker applies it to every
//! pixel of its region, so nonsense would spoil the frame quietly.

use dreamfarm_common::color::{
    CHANNEL_BINS, ChannelMap, ColorAdjust, ColorMatch, Contrast, Sharpen,
};
use dreamfarm_common::params::MAX_SHARPEN_RADIUS;

use crate::{WireError, pb};

/// `adjust` as sent with a frame's region leases.
pub fn to_wire(adjust: &ColorAdjust) -> pb::ColorAdjust {
    pb::ColorAdjust {
        matching: adjust.matching.as_ref().map(|m| pb::ColorMatch {
            space: m.space.as_str().to_string(),
            strength: m.strength,
            channels: m
                .channels
                .iter()
                .map(|c| match c {
                    Some(c) => pb::ChannelMap {
                        lo: c.lo,
                        scale: c.scale,
                        mapped: c.mapped.clone(),
                    },
                    None => pb::ChannelMap::default(),
                })
                .collect(),
        }),
        contrast: adjust.contrast.map(|c| pb::ContrastChange {
            mean: c.mean,
            amount: c.amount,
        }),
        sharpen: adjust.sharpen.map(|s| pb::SharpenSettings {
            amount: s.amount,
            radius_px: s.radius_px,
        }),
    }
}

/// The colour keeping of a lease, checked: a known space, finite numbers,
/// a strength in `(0, 1]`, three channels of [`CHANNEL_BINS`] bins or
/// none, and an unsharp mask no wider than a job may ask for.
pub fn from_wire(wire: pb::ColorAdjust) -> Result<ColorAdjust, WireError> {
    let bad = |what: String| WireError::Protocol(format!("colour keeping: {what}"));
    let matching = match wire.matching {
        None => None,
        Some(m) => {
            let space = m.space.parse().map_err(bad)?;
            if !(m.strength > 0.0 && m.strength <= 1.0) {
                return Err(bad(format!("strength {}", m.strength)));
            }
            let channels: [pb::ChannelMap; 3] = m
                .channels
                .try_into()
                .map_err(|c: Vec<_>| bad(format!("{} channels", c.len())))?;
            let channels = channels.map(|c| match c.mapped.len() {
                0 => Ok(None),
                CHANNEL_BINS => {
                    let numbers = [c.lo, c.scale].into_iter().chain(c.mapped.iter().copied());
                    match numbers.into_iter().all(f32::is_finite) && c.scale >= 0.0 {
                        true => Ok(Some(ChannelMap {
                            lo: c.lo,
                            scale: c.scale,
                            mapped: c.mapped,
                        })),
                        false => Err(bad("a channel map with numbers out of range".into())),
                    }
                }
                n => Err(bad(format!("a channel of {n} bins"))),
            });
            let [a, b, c] = channels;
            Some(ColorMatch {
                space,
                strength: m.strength,
                channels: [a?, b?, c?],
            })
        }
    };
    let contrast = match wire.contrast {
        Some(c) if c.mean.is_finite() && c.amount.is_finite() => Some(Contrast {
            mean: c.mean,
            amount: c.amount,
        }),
        Some(c) => return Err(bad(format!("contrast {c:?}"))),
        None => None,
    };
    let sharpen = match wire.sharpen {
        Some(s)
            if s.amount.is_finite() && s.radius_px > 0.0 && s.radius_px <= MAX_SHARPEN_RADIUS =>
        {
            Some(Sharpen {
                amount: s.amount,
                radius_px: s.radius_px,
            })
        }
        Some(s) => return Err(bad(format!("sharpening {s:?}"))),
        None => None,
    };
    Ok(ColorAdjust {
        matching,
        contrast,
        sharpen,
    })
}

#[cfg(test)]
mod tests {
    use dreamfarm_common::color::{ColorReference, ColorSpace};
    use dreamfarm_common::params::ColorSettings;
    use dreamfarm_common::resample::Planar;

    use super::*;

    /// The keeping of a small gradient frame with all three at work.
    fn adjust(space: ColorSpace) -> ColorAdjust {
        let mut frame = Planar::zeros(16, 8);
        for (i, v) in frame.data.iter_mut().enumerate() {
            *v = (i % 37) as f32 / 37.0;
        }
        let reference = ColorReference::new(&Planar::zeros(4, 4), space);
        let color = ColorSettings {
            coherence: Some(space),
            contrast: 1.3.into(),
            sharpen: 0.5.into(),
            ..ColorSettings::default()
        };
        ColorAdjust::keep(&color, (1, 3), Some(&reference), &mut frame)
    }

    #[test]
    fn colour_keeping_comes_back_as_it_went() {
        for space in [ColorSpace::Lab, ColorSpace::Hsv, ColorSpace::Rgb] {
            let adjust = adjust(space);
            assert!(adjust.matching.is_some() && adjust.sharpen.is_some());
            assert_eq!(from_wire(to_wire(&adjust)).expect("valid"), adjust);
        }
        let none = ColorAdjust::default();
        assert_eq!(from_wire(to_wire(&none)).expect("valid"), none);
    }

    /// Breaks a colour keeping on the wire.
    type Breaks = fn(&mut pb::ColorAdjust);

    #[test]
    fn colour_keeping_that_makes_no_sense_is_refused() {
        let cases: [(&str, Breaks); 7] = [
            ("unknown colour space", |w| {
                w.matching.as_mut().expect("matching").space = "cmyk".into();
            }),
            ("strength", |w| {
                w.matching.as_mut().expect("matching").strength = f32::NAN;
            }),
            ("2 channels", |w| {
                w.matching.as_mut().expect("matching").channels.pop();
            }),
            ("a channel of 4095 bins", |w| {
                w.matching.as_mut().expect("matching").channels[1]
                    .mapped
                    .pop();
            }),
            ("numbers out of range", |w| {
                w.matching.as_mut().expect("matching").channels[0].mapped[9] = f32::INFINITY;
            }),
            ("contrast", |w| {
                w.contrast.as_mut().expect("contrast").mean = f32::NAN;
            }),
            ("sharpening", |w| {
                w.sharpen.as_mut().expect("sharpen").radius_px = 1e9;
            }),
        ];
        for (want, break_it) in cases {
            let mut wire = to_wire(&adjust(ColorSpace::Lab));
            break_it(&mut wire);
            let error = from_wire(wire).expect_err(want).to_string();
            assert!(error.contains(want), "{error} (wanted {want})");
        }
    }
}
