//! The dream itself: gradient ascent on the image so that the chosen layers'
//! activations grow, over octaves, with random jitter.
//!
//! All per-pixel work stays on the model's device; the host only draws the
//! jitter offsets.

use dreamfarm_common::seed;
use tch::{Kind, Tensor};

use crate::models::{Model, ModelError};

/// What the dream maximises.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// `(layer index, weight)` pairs.
    pub layers: Vec<(usize, f64)>,
    /// Mean of squared activations (DeepDream's usual choice) or plain mean.
    pub squared: bool,
}

impl Objective {
    /// The weighted sum over layers of mean(a²) (or mean(a)).
    fn value(&self, activations: &[Tensor]) -> Tensor {
        self.layers
            .iter()
            .zip(activations)
            .map(|((_, w), a)| {
                let m = if self.squared {
                    a.square().mean(Kind::Float)
                } else {
                    a.mean(Kind::Float)
                };
                m * *w
            })
            .reduce(|a, b| a + b)
            .expect("an objective has at least one layer")
    }

    fn indices(&self) -> Vec<usize> {
        self.layers.iter().map(|(i, _)| *i).collect()
    }
}

/// How one octave's gradient steps are taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ascent {
    /// Gradient steps.
    pub iterations: u32,
    /// Step length in image units (`0..=1` pixel range) for a gradient
    /// normalised to unit standard deviation.
    pub step_size: f64,
    /// Largest random roll, in pixels, applied before each step.
    pub jitter: u32,
}

/// Runs `ascent` on `image` (`[1, 3, H, W]`, values in `0..=1`); `seed`
/// drives the jitter, step `i` using `seed::derive(seed, [i])`.
pub fn ascend(
    model: &Model,
    objective: &Objective,
    image: &Tensor,
    ascent: Ascent,
    job_seed: u64,
) -> Result<Tensor, ModelError> {
    let layers = objective.indices();
    let mut img = image.detach().to_kind(Kind::Float);
    for i in 0..ascent.iterations {
        let s = seed::derive(job_seed, &[u64::from(i)]);
        let dy = seed::symmetric(s, ascent.jitter);
        let dx = seed::symmetric(s.rotate_left(32), ascent.jitter);
        let x = img.roll([dy, dx], [2, 3]).set_requires_grad(true);
        let acts = model.activations(&x, &layers)?;
        let loss = objective.value(&acts);
        let grad = Tensor::run_backward(&[loss], &[&x], false, false).remove(0);
        let grad = &grad / (grad.std(true) + 1e-8);
        img = tch::no_grad(|| {
            (x.detach() + grad * ascent.step_size)
                .roll([-dy, -dx], [2, 3])
                .clamp(0.0, 1.0)
        });
    }
    Ok(img)
}

/// Octave settings: how many scales and the ratio between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Octaves {
    /// Number of scales (1: a plain single-scale dream).
    pub count: u32,
    /// Size ratio between neighbouring scales (e.g. 1.4).
    pub scale: f64,
}

fn resize(t: &Tensor, h: i64, w: i64) -> Tensor {
    t.upsample_bilinear2d([h, w], false, None, None)
}

/// A whole image dreamed over octaves, smallest first, carrying the detail
/// the dream added at one scale up to the next (as in the original
/// notebook). Octave `o` seeds its jitter with `derive(seed, [o])`.
pub fn dream_octaves(
    model: &Model,
    objective: &Objective,
    image: &Tensor,
    octaves: Octaves,
    ascent: Ascent,
    job_seed: u64,
) -> Result<Tensor, ModelError> {
    let (h, w) = (image.size()[2], image.size()[3]);
    let sizes: Vec<(i64, i64)> = (0..octaves.count)
        .rev()
        .map(|o| {
            let f = octaves.scale.powi(o as i32);
            (
                ((h as f64) / f).round() as i64,
                ((w as f64) / f).round() as i64,
            )
        })
        .collect();
    let mut detail = Tensor::zeros(
        [1, 3, sizes[0].0, sizes[0].1],
        (Kind::Float, image.device()),
    );
    let mut result = image.shallow_clone();
    for (o, &(oh, ow)) in sizes.iter().enumerate() {
        let base = tch::no_grad(|| resize(image, oh, ow));
        let start = tch::no_grad(|| (&base + resize(&detail, oh, ow)).clamp(0.0, 1.0));
        result = ascend(
            model,
            objective,
            &start,
            ascent,
            seed::derive(job_seed, &[o as u64]),
        )?;
        detail = tch::no_grad(|| &result - &base);
    }
    Ok(result)
}
