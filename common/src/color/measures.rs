//! The drift measures: mean saturation, luminance and fine detail of a
//! frame.

use super::space::rgb_to_hsv;
use super::unit;
use crate::resample::Planar;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::test_images::*;

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
