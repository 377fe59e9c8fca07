//! The dream on one tile: gradient ascent on the pixels so that the chosen
//! layers' activations grow, with a jittered window and per-tile gradient
//! normalisation. All per-pixel work runs on the model's device.

use dreamfarm_common::params::{DreamSettings, ParamError, Reduction};
use dreamfarm_common::resample::Planar;
use dreamfarm_common::seed;
use dreamfarm_common::work::TileWork;
use tch::{Device, Kind, Tensor};

use crate::models::{Model, ModelError};
use crate::weights::{WeightStore, WeightsError};

/// One term of the objective, resolved against a loaded model.
struct Term {
    layer: usize,
    weight: f64,
    /// Channel indices on the model's device, or `None` for all channels.
    channels: Option<Tensor>,
}

/// A loaded model and the job's dream settings: computes tiles.
pub struct Dreamer {
    model: Model,
    terms: Vec<Term>,
    layers: Vec<usize>,
    reduction: Reduction,
    step_size: f64,
    smoothing: bool,
    total_iterations: u32,
    seed: u64,
}

/// Why a tile could not be dreamed.
#[derive(Debug, thiserror::Error)]
pub enum DreamError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The work unit is inconsistent (never trust geometry from the wire).
    #[error("malformed tile work: {0}")]
    BadWork(String),
    /// The job's model or layers are not valid.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The weights are missing or bad.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A channel index past the layer's channels.
    #[error("layer {layer} has {available} channels; channel {asked} does not exist")]
    NoSuchChannel {
        /// Layer name.
        layer: String,
        /// Largest index asked for.
        asked: u32,
        /// Channels the layer has.
        available: i64,
    },
}

impl Dreamer {
    /// Loads the settings' model (weights from `store`, fetched if
    /// missing) on `device` and resolves its layers.
    pub fn load(
        settings: &DreamSettings,
        job_seed: u64,
        device: Device,
        store: &WeightStore,
    ) -> Result<Self, DreamError> {
        let spec = settings.model_spec()?;
        let weights = store.resolve(&spec, settings.weights.as_deref())?;
        let model = Model::load(&spec, &weights, device)?;
        tracing::info!(model = model.name(), ?device, "model loaded");
        Self::new(model, settings, job_seed)
    }

    /// Resolves the settings' layers against `model`.
    pub fn new(model: Model, settings: &DreamSettings, job_seed: u64) -> Result<Self, DreamError> {
        let terms = settings
            .layer_terms()
            .map_err(|e| DreamError::BadWork(e.to_string()))?
            .into_iter()
            .map(|t| {
                let layer = model.layer_index(&t.name)?;
                let channels = (!t.channels.is_empty()).then(|| {
                    let idx: Vec<i64> = t.channels.iter().map(|&c| i64::from(c)).collect();
                    Tensor::from_slice(&idx).to_device(model.device())
                });
                Ok(Term {
                    layer,
                    weight: t.weight,
                    channels,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let layers = terms.iter().map(|t| t.layer).collect();
        let dreamer = Self {
            model,
            terms,
            layers,
            reduction: settings.objective,
            step_size: settings.step_size,
            smoothing: settings.smoothing,
            total_iterations: settings.iterations,
            seed: job_seed,
        };
        dreamer.check_channels()?;
        Ok(dreamer)
    }

    /// Runs the model once on a small image to check channel subsets.
    fn check_channels(&self) -> Result<(), DreamError> {
        let side = 128;
        let probe = Tensor::full([1, 3, side, side], 0.5, (Kind::Float, self.model.device()));
        let acts = tch::no_grad(|| self.model.activations(&probe, &self.layers))?;
        for (term, act) in self.terms.iter().zip(&acts) {
            if let Some(ch) = &term.channels {
                let asked = ch.max().int64_value(&[]);
                let available = act.size()[1];
                if asked >= available {
                    return Err(DreamError::NoSuchChannel {
                        layer: self.model.layers()[term.layer].clone(),
                        asked: asked as u32,
                        available,
                    });
                }
            }
        }
        Ok(())
    }

    /// The model this dreamer runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The objective on the activations of `self.layers`.
    fn objective(&self, acts: &[Tensor]) -> Tensor {
        self.terms
            .iter()
            .zip(acts)
            .map(|(term, a)| {
                let a = match &term.channels {
                    Some(ch) => a.index_select(1, ch),
                    None => a.shallow_clone(),
                };
                let r = match self.reduction {
                    Reduction::MeanSquare => a.square().mean(Kind::Float),
                    Reduction::Mean => a.mean(Kind::Float),
                };
                r * term.weight
            })
            .reduce(|a, b| a + b)
            .expect("settings always yield at least one layer")
    }

    /// One forward and backward pass: the gradient of the objective with
    /// respect to `image` (`[1, 3, H, W]` in `0..=1`).
    pub fn gradient(&self, image: &Tensor) -> Result<Tensor, DreamError> {
        let x = image.detach().set_requires_grad(true);
        let acts = self.model.activations(&x, &self.layers)?;
        let loss = self.objective(&acts);
        Ok(Tensor::run_backward(&[loss], &[&x], false, false).remove(0))
    }

    /// Runs `work.iterations` steps on the tile and returns the change of its
    /// output region. Step `i` of frame `f`, octave `o` shifts the window by
    /// an offset drawn from `derive(seed, [f, o, i])`: the tile index is left
    /// out on purpose, so that overlapping tiles see the same shift and agree
    /// where they are cross-faded.
    pub fn dream_tile(&self, work: &TileWork) -> Result<Planar, DreamError> {
        work.check().map_err(DreamError::BadWork)?;
        let device = self.model.device();
        let p = &work.pixels;
        let (h, w) = (p.height as i64, p.width as i64);
        let j = i64::from(work.jitter);
        let buf = Tensor::from_slice(&p.data)
            .view([1, 3, h, w])
            .to_device(device);
        let o = work.output;
        let region = |t: &Tensor| {
            t.narrow(2, o.y, o.height as i64)
                .narrow(3, o.x, o.width as i64)
        };
        let original = region(&buf).copy();
        let (wh, ww) = (h - 2 * j, w - 2 * j);
        for i in work.first_iteration..work.first_iteration + work.iterations {
            let s = seed::derive(
                self.seed,
                &[work.frame, u64::from(work.octave), u64::from(i)],
            );
            let dy = seed::symmetric(s, work.jitter);
            let dx = seed::symmetric(s.rotate_left(32), work.jitter);
            let mut window = buf.narrow(2, j + dy, wh).narrow(3, j + dx, ww);
            let grad = self.gradient(&window)?;
            tch::no_grad(|| {
                let mut g = &grad / (grad.std(true) + 1e-8);
                if self.smoothing {
                    g = smooth(&g, i, self.total_iterations);
                }
                let _ = window.g_add_(&(g * self.step_size)).clamp_(0.0, 1.0);
            });
        }
        let delta = (region(&buf) - original)
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]);
        let data = Vec::<f32>::try_from(&delta).map_err(|e| DreamError::BadWork(e.to_string()))?;
        Ok(Planar {
            width: o.width,
            height: o.height,
            data,
        })
    }
}

/// The seed program's gradient smoothing: the sum of three Gaussian blurs
/// (σ/2, σ, 2σ), σ growing from 0.5 to 4.1 over the octave's steps,
/// renormalised to unit standard deviation.
fn smooth(g: &Tensor, step: u32, total: u32) -> Tensor {
    let sigma = 0.5 + 3.6 * f64::from(step) / f64::from(total.saturating_sub(1).max(1));
    let blurred = [0.5, 1.0, 2.0]
        .iter()
        .map(|k| gaussian_blur(g, sigma * k))
        .reduce(|a, b| a + b)
        .expect("three blurs");
    &blurred / (blurred.std(true) + 1e-8)
}

/// Separable Gaussian blur per channel with mirrored edges.
fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    let size = x.size();
    let max_radius = (size[2].min(size[3]) - 1).max(0);
    let radius = ((3.0 * sigma).ceil() as i64).min(max_radius);
    if radius == 0 {
        return x.shallow_clone();
    }
    let taps: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let sum: f32 = taps.iter().sum();
    let k = Tensor::from_slice(&taps).to_device(x.device()) / f64::from(sum);
    let n = 2 * radius + 1;
    let horizontal = k.view([1, 1, 1, n]).repeat([3, 1, 1, 1]);
    let vertical = k.view([1, 1, n, 1]).repeat([3, 1, 1, 1]);
    let padded = x.reflection_pad2d([radius, radius, radius, radius]);
    padded
        .conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)
        .conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)
}
