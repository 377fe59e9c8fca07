//! Colour tools for long renders. Each frame of an infinite zoom is dreamed
//! from the last, so small biases compound: colours drift (often towards
//! one saturated hue) and repeated resampling softens the image. Colour
//! coherence pulls every frame's colour distribution back to a reference
//! (as Deforum does); contrast and an unsharp mask counter the softening;
//! the statistics measure the drift.
//!
//! Each sample is computed alone, its sums in a fixed order, so the same
//! frame gives the same bits on every run, however the work is split
//! across the host work's threads.
//!
//! - `space.rs`: the colour spaces and their conversions.
//! - `coherence.rs`: matching a frame's colours to a reference.
//! - `sharpen.rs`: contrast and the unsharp mask.
//! - `measures.rs`: the drift statistics.

mod adjust;
mod coherence;
mod measures;
mod sharpen;
mod space;

pub use adjust::{ColorAdjust, Sharpen};
pub use coherence::{CHANNEL_BINS, ChannelMap, ColorMatch, ColorReference, match_colors};
pub use measures::{mean_abs_horizontal_gradient, mean_luminance, mean_saturation};
pub use sharpen::{Contrast, contrast, sharpen_reach, unsharp_mask};
pub use space::ColorSpace;

/// `v` clamped to `0..=1`, NaN to 0 (`clamp` would keep a NaN).
#[allow(clippy::manual_clamp)]
fn unit(v: f32) -> f32 {
    // `max` drops a NaN operand.
    v.max(0.0).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::test_images::*;
    use crate::resample::Planar;

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
}

/// Images the tests of every part build from.
#[cfg(test)]
mod test_images;
