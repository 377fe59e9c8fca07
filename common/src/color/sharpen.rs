//! Contrast and an unsharp mask, which counter the softening of repeated
//! resampling.

use super::measures::mean_luminance;
use super::unit;
use crate::parallel;
use crate::resample::Planar;

/// Scales every sample's distance from the mean luminance by `amount`
/// (1: unchanged, 0: flat grey, above 1: more contrast), as PIL's
/// `ImageEnhance.Contrast`; samples end in `0..=1`.
/// Returns what it learned from the image, none when it left it alone.
pub fn contrast(image: &mut Planar, amount: f64) -> Option<Contrast> {
    let learned = Contrast::learn(image, amount)?;
    learned.apply(image);
    Some(learned)
}

/// What [`contrast`] learned from a whole frame (its mean luminance), with
/// which a part of the frame is given the same bits as the whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contrast {
    /// The frame's mean luminance.
    pub mean: f32,
    /// The contrast factor.
    pub amount: f32,
}

impl Contrast {
    /// What [`contrast`] learns from `image`, leaving it alone.
    pub fn learn(image: &Planar, amount: f64) -> Option<Self> {
        (amount != 1.0 && !image.data.is_empty()).then(|| Self {
            mean: mean_luminance(image) as f32,
            amount: amount as f32,
        })
    }

    /// Scales `part`'s samples' distances from the frame's mean.
    pub fn apply(&self, part: &mut Planar) {
        for x in &mut part.data {
            *x = unit(self.mean + self.amount * (*x - self.mean));
        }
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
    parallel::for_each_piece(&mut image.data, BAND * image.width, |i, piece| {
        let start = i * BAND * image.width;
        for (x, &b) in piece.iter_mut().zip(&blurred.data[start..]) {
            *x = unit(*x + amount * (*x - b));
        }
    });
}

/// How far [`unsharp_mask`] of `radius_px` reads beyond a pixel, in
/// pixels: a part of a frame sharpened with this margin of the frame
/// around it has the whole frame's bits.
pub fn sharpen_reach(radius_px: f64) -> usize {
    (3.0 * radius_px).ceil() as usize
}

/// Normalised Gaussian weights of standard deviation `sigma`, out to three
/// standard deviations each side.
fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let radius = sharpen_reach(sigma) as i64;
    let weights: Vec<f64> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / sum) as f32).collect()
}

/// Rows the blur's passes give a thread at a time.
const BAND: usize = 16;

/// `image` convolved with the odd-length `kernel` along rows, then along
/// columns, with samples beyond the edge repeating the edge. Bands of rows
/// run on the host work's threads; each sample's sum is the same whichever
/// thread computes it.
fn gaussian_blur(image: &Planar, kernel: &[f32]) -> Planar {
    let (w, h) = (image.width, image.height);
    let r = kernel.len() / 2;
    let mut rows_blurred = vec![0.0f32; image.data.len()];
    parallel::for_each_piece(&mut rows_blurred, BAND * w, |i, band| {
        let mut padded = vec![0.0f32; w + 2 * r];
        let rows = image.data[i * BAND * w..].chunks_exact(w);
        for (row, blurred) in rows.zip(band.chunks_exact_mut(w)) {
            padded[..r].fill(row[0]);
            padded[r..r + w].copy_from_slice(row);
            padded[r + w..].fill(row[w - 1]);
            for (b, window) in blurred.iter_mut().zip(padded.windows(kernel.len())) {
                *b = kernel.iter().zip(window).map(|(k, v)| k * v).sum();
            }
        }
    });
    let mut out = Planar::zeros(w, h);
    parallel::for_each_piece(&mut out.data, BAND * w, |i, band| {
        for (j, out_row) in band.chunks_exact_mut(w).enumerate() {
            // Rows of all three channels are numbered on: this one's
            // channel and row in it.
            let (c, y) = ((i * BAND + j) / h, (i * BAND + j) % h);
            let plane = &rows_blurred[c * w * h..(c + 1) * w * h];
            for (k, &weight) in kernel.iter().enumerate() {
                let sy = (y + k).saturating_sub(r).min(h - 1);
                let row = &plane[sy * w..(sy + 1) * w];
                for (o, &v) in out_row.iter_mut().zip(row) {
                    *o += weight * v;
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::test_images::*;
    use crate::color::*;

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
    fn a_frame_split_across_threads_is_sharpened_as_its_parts_are() {
        // Enough samples to be split, rows in no whole number of bands;
        // the parts are small enough for one thread.
        let (w, h) = (331, 287);
        assert!(3 * w * h >= 1 << 18);
        let frame = scene(w, h);
        let mut whole = frame.clone();
        unsharp_mask(&mut whole, 0.6, 1.5);
        let adjust = ColorAdjust {
            sharpen: Some(Sharpen {
                amount: 0.6,
                radius_px: 1.5,
            }),
            ..ColorAdjust::default()
        };
        for (columns, rows) in [(0..40, 0..30), (100..180, 140..200), (300..331, 250..287)] {
            let inside = kept_alone(&frame, &adjust, columns.clone(), rows.clone());
            assert!(
                inside == whole.crop(columns.clone(), rows.clone()),
                "{columns:?} x {rows:?}"
            );
        }
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
}
