//! The dream on one tile: gradient ascent on the pixels so that the chosen
//! layers' activations grow, with a jittered window and per-tile gradient
//! normalisation. All per-pixel work runs on the model's device.

use std::path::Path;

use dreamfarm_common::memory_limit::{human, memory_limit, resident_bytes};
use dreamfarm_common::objective::FrameObjective;
use dreamfarm_common::params::{NetworkPrecision, ParamError, Reduction};
use dreamfarm_common::resample::Planar;
use dreamfarm_common::seed;
use dreamfarm_common::work::TileWork;
use tch::{Device, Kind, Tensor};

use crate::models::{Model, ModelError};
use crate::torch_failure::{self, TorchFailure};
use crate::weights::{WeightStore, WeightsError};

/// One term of the objective, resolved against a loaded model.
struct Term {
    layer: usize,
    weight: f64,
    /// Channel indices on the model's device, or `None` for all channels.
    channels: Option<Tensor>,
    /// The guide's features at this layer and channels, `[C, M]`.
    guide: Option<Tensor>,
}

/// A frame's objective resolved against the model: layer indices, channel
/// tensors and the guide's features, computed once and reused by every
/// tile of the frame (and by later frames whose objective is the same).
struct Resolved {
    /// What it was resolved from.
    source: FrameObjective,
    terms: Vec<Term>,
    layers: Vec<usize>,
}

/// A loaded model and the job's seed: dreams tiles with whatever objective
/// each one carries. The model is per job; the objective is per frame, so
/// schedules never reload the model.
pub struct Dreamer {
    model: Model,
    seed: u64,
    /// The last objective resolved.
    resolved: Option<Resolved>,
    /// On a CPU, the memory a pass may take; `None` on a GPU.
    room: Option<Room>,
}

/// The memory a pass on the CPU may take: what this process may have less
/// what it uses when the pass starts. A pass past it would not fail an
/// allocation but have the kernel kill the process part way (a
/// container's limit, or the machine's memory), losing every lease the
/// worker held; it is refused before it starts instead.
#[derive(Debug, Clone, Copy)]
struct Room {
    /// What this process may have.
    limit: u64,
    /// Whose limit that is, for people.
    of: &'static str,
}

impl Room {
    /// The room on `device`: `None` on a GPU, whose memory its own
    /// allocator reports running out of.
    fn on(device: Device) -> Option<Self> {
        if device != Device::Cpu {
            return None;
        }
        let (limit, of) = memory_limit()?;
        Some(Self { limit, of })
    }

    /// What the process uses now: its resident memory less what its heap
    /// keeps free for reuse (an earlier pass's, which the next one takes
    /// again).
    fn in_use() -> u64 {
        resident_bytes()
            .unwrap_or(0)
            .saturating_sub(dreamfarm_proto::heap::free_bytes())
    }
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
    /// Memory ran out: for `what` (a tile of some size, loading a model),
    /// libtorch's words in `detail`.
    #[error("out of memory {what} ({detail}). Fix: {advice}")]
    OutOfMemory {
        /// What needed the memory.
        what: String,
        /// What libtorch said.
        detail: String,
        /// What to change.
        advice: &'static str,
    },
    /// libtorch failed otherwise, or the dream's code did.
    #[error(transparent)]
    Torch(TorchFailure),
    /// A channel index past the layer's channels.
    #[error("layer {layer} has {available} channels; channel {asked} does not exist")]
    NoSuchChannel {
        /// Layer name.
        layer: String,
        /// Largest index asked for.
        asked: u32,
        /// Channels the layer has.
        available: u32,
    },
}

impl Dreamer {
    /// Loads the model `model` (a built-in name or a TorchScript path;
    /// weights from `weights` or `store`, fetched if missing) on `device`,
    /// running in `precision`.
    pub fn load(
        model: &str,
        weights: Option<&Path>,
        precision: NetworkPrecision,
        job_seed: u64,
        device: Device,
        store: &WeightStore,
    ) -> Result<Self, DreamError> {
        let spec = model.parse().map_err(ParamError::from)?;
        let weights = store.resolve(&spec, weights)?;
        let loaded = torch_failure::catch(|| -> Result<Model, DreamError> {
            let mut model = Model::load(&spec, &weights, device)?;
            model.set_precision(precision);
            Ok(model)
        });
        let model = failed_on(
            loaded,
            || format!("loading {model} on {device:?}"),
            FEWER_MODELS,
        )??;
        tracing::info!(
            model = model.name(),
            ?device,
            precision = precision.as_str(),
            "model loaded"
        );
        Ok(Self::new(model, job_seed))
    }

    /// A dreamer on `model` for the job seeded with `job_seed`.
    pub fn new(model: Model, job_seed: u64) -> Self {
        Self {
            room: Room::on(model.device()),
            model,
            seed: job_seed,
            resolved: None,
        }
    }

    /// The model this dreamer runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// One forward and backward pass: the gradient of `objective` with
    /// respect to `image` (`[N, 3, H, W]` in `0..=1`), each of the `N`
    /// images' objective its own, so that an image's gradient is what it
    /// would be alone up to the network's rounding.
    pub fn gradient(
        &mut self,
        image: &Tensor,
        objective: &FrameObjective,
    ) -> Result<Tensor, DreamError> {
        let (guide_strength, reduction) = (objective.guide_strength, objective.reduction);
        let resolved = resolve(&self.model, &mut self.resolved, objective)?;
        let x = image.detach().set_requires_grad(true);
        let acts = self.model.activations(&x, &resolved.layers)?;
        let batch = x.size()[0];
        let mut loss = Tensor::zeros([], (Kind::Float, x.device()));
        for b in 0..batch {
            for (term, act) in resolved.terms.iter().zip(&acts) {
                let own = if batch == 1 {
                    act.shallow_clone()
                } else {
                    act.narrow(0, b, 1)
                };
                let a = select(&own, term);
                let plain = match reduction {
                    Reduction::MeanSquare => a.square().mean(Kind::Float),
                    Reduction::Mean => a.mean(Kind::Float),
                };
                let value = match &term.guide {
                    Some(g) if guide_strength > 0.0 => {
                        plain * (1.0 - guide_strength) + guided(&a, g) * guide_strength
                    }
                    _ => plain,
                };
                loss += value * term.weight;
            }
        }
        Ok(Tensor::run_backward(&[loss], &[&x], false, false).remove(0))
    }

    /// Runs `work.iterations` steps on the tile and returns the change of its
    /// output region. Step `i` of frame `f`, octave `o` shifts the window by
    /// an offset drawn from `derive(seed, [f, o, i])`: the tile index is left
    /// out on purpose, so that overlapping tiles see the same shift and agree
    /// where they are cross-faded.
    ///
    /// A batch of tiles (stacked in `work.pixels`) goes through the network
    /// as one `[N, 3, H, W]` tensor; each tile keeps its own objective value
    /// and gradient normalisation, and the changes come back stacked.
    pub fn dream_tile(&mut self, work: &TileWork) -> Result<Planar, DreamError> {
        work.check().map_err(DreamError::BadWork)?;
        let what = || {
            let (width, height) = (work.pixels.width, work.tile_height());
            match work.tiles {
                1 => format!("dreaming a {width}x{height} tile"),
                n => format!("dreaming a batch of {n} tiles of {width}x{height}"),
            }
        };
        self.check_room(work, what)?;
        let dreamed = torch_failure::catch(|| self.dream_checked_tile(work));
        failed_on(dreamed, what, SMALLER_TILES)?
    }

    /// Refuses `work` whose pass on the CPU needs more than the [`Room`]
    /// there is, as memory running out `what()`.
    fn check_room(
        &mut self,
        work: &TileWork,
        what: impl FnOnce() -> String,
    ) -> Result<(), DreamError> {
        let Some(room) = self.room else {
            return Ok(());
        };
        let layers = &resolve(&self.model, &mut self.resolved, &work.objective)?.layers;
        let (height, width) = work.window_size();
        let needs = self
            .model
            .pass_bytes(layers, work.tiles as usize, height, width)
            .unwrap_or(0);
        let in_use = Room::in_use();
        if in_use + needs <= room.limit {
            return Ok(());
        }
        Err(DreamError::OutOfMemory {
            what: what(),
            detail: format!(
                "its pass through the network needs about {}, and this process uses {} of the {} it may have ({})",
                human(needs),
                human(in_use),
                human(room.limit),
                room.of
            ),
            advice: SMALLER_TILES,
        })
    }

    /// [`Self::dream_tile`] on work already checked; libtorch's failures
    /// panic out of it.
    fn dream_checked_tile(&mut self, work: &TileWork) -> Result<Planar, DreamError> {
        let objective = &*work.objective;
        let device = self.model.device();
        let p = &work.pixels;
        let n = i64::from(work.tiles);
        let (h, w) = (work.tile_height() as i64, p.width as i64);
        let j = i64::from(work.jitter);
        // The stacked planar layout to [N, 3, h, w] (for one tile a view:
        // `contiguous` copies nothing).
        let buf = Tensor::from_slice(&p.data)
            .view([3, n, h, w])
            .permute([1, 0, 2, 3])
            .contiguous()
            .to_device(device);
        let o = work.output;
        let region = |t: &Tensor| {
            t.narrow(2, o.y, o.height as i64)
                .narrow(3, o.x, o.width as i64)
        };
        let original = region(&buf).copy();
        let (wh, ww) = work.window_size();
        let (wh, ww) = (wh as i64, ww as i64);
        for i in work.first_iteration..work.first_iteration + work.iterations {
            let s = seed::derive(
                self.seed,
                &[work.frame, u64::from(work.octave), u64::from(i)],
            );
            let dy = seed::symmetric(s, work.jitter);
            let dx = seed::symmetric(s.rotate_left(32), work.jitter);
            let window = buf.narrow(2, j + dy, wh).narrow(3, j + dx, ww);
            let grad = self.gradient(&window, objective)?;
            {
                // A guard, not `tch::no_grad`: it restores gradients even
                // when a step fails (see `torch_failure`).
                let _no_grad = tch::no_grad_guard();
                for b in 0..n {
                    let grad = grad.narrow(0, b, 1);
                    let mut g = &grad / (grad.std(true) + 1e-8);
                    if objective.smoothing {
                        g = smooth(&g, i, objective.iterations);
                    }
                    let _ = window
                        .narrow(0, b, 1)
                        .g_add_(&(g * objective.step_size))
                        .clamp_(0.0, 1.0);
                }
            }
        }
        // [N, 3, h, w] to the stacked planar layout, channel by channel.
        let delta = (region(&buf) - original)
            .permute([1, 0, 2, 3])
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]);
        let data = Vec::<f32>::try_from(&delta).map_err(|e| DreamError::BadWork(e.to_string()))?;
        let (width, height) = work.change_size();
        Ok(Planar {
            width,
            height,
            data,
        })
    }
}

/// What to change when a tile does not fit in memory.
const SMALLER_TILES: &str = "dream smaller tiles (a lower --tile-size, or --tile-batch 1), \
     free memory on the machine or GPU, or run a cluster worker with a lower --concurrency";

/// What to change when a model does not fit in memory.
const FEWER_MODELS: &str = "free memory on the machine or GPU, or run a cluster worker with a lower \
     --concurrency (each tile computed at once holds its own copy of the model)";

/// `result` of a [`torch_failure::catch`], memory running out told as
/// such: out of memory `what()`, and `advice` on what to change.
fn failed_on<T>(
    result: Result<T, TorchFailure>,
    what: impl FnOnce() -> String,
    advice: &'static str,
) -> Result<T, DreamError> {
    result.map_err(|failure| match failure {
        TorchFailure::OutOfMemory(detail) => DreamError::OutOfMemory {
            what: what(),
            detail,
            advice,
        },
        other => DreamError::Torch(other),
    })
}

/// `objective` resolved against `model`, reusing the last resolution in
/// `cache` when it is the same, and the guide's features when the guide
/// and layers are.
fn resolve<'a>(
    model: &Model,
    cache: &'a mut Option<Resolved>,
    objective: &FrameObjective,
) -> Result<&'a Resolved, DreamError> {
    let fresh = match cache.take() {
        Some(r) if r.source == *objective => r,
        previous => resolve_new(model, objective, previous)?,
    };
    Ok(cache.insert(fresh))
}

/// Resolves `objective` from scratch, but for the guide's features, which
/// come from `previous` when it had the same guide and layers.
fn resolve_new(
    model: &Model,
    objective: &FrameObjective,
    previous: Option<Resolved>,
) -> Result<Resolved, DreamError> {
    let device = model.device();
    let mut terms = objective
        .layers
        .iter()
        .map(|t| {
            let layer = model.layer_index(&t.name)?;
            check_channels(model, layer, &t.channels)?;
            let channels = (!t.channels.is_empty()).then(|| {
                let idx: Vec<i64> = t.channels.iter().map(|&c| i64::from(c)).collect();
                Tensor::from_slice(&idx).to_device(device)
            });
            Ok(Term {
                layer,
                weight: t.weight,
                channels,
                guide: None,
            })
        })
        .collect::<Result<Vec<_>, DreamError>>()?;
    let layers: Vec<usize> = terms.iter().map(|t| t.layer).collect();
    if let Some(guide) = &objective.guide {
        let same_guide = previous.filter(|p| {
            p.source.guide == objective.guide
                && p.source
                    .layers
                    .iter()
                    .map(|l| (&l.name, &l.channels))
                    .eq(objective.layers.iter().map(|l| (&l.name, &l.channels)))
        });
        match same_guide {
            Some(p) => {
                for (t, old) in terms.iter_mut().zip(p.terms) {
                    t.guide = old.guide;
                }
            }
            None => guide_features(model, guide, &layers, &mut terms)?,
        }
    }
    Ok(Resolved {
        source: objective.clone(),
        terms,
        layers,
    })
}

/// Sets each term's guide features: the guide's activations at the term's
/// layer and channels, `[C, M]`.
fn guide_features(
    model: &Model,
    guide: &Planar,
    layers: &[usize],
    terms: &mut [Term],
) -> Result<(), DreamError> {
    let (h, w) = (guide.height as i64, guide.width as i64);
    let image = Tensor::from_slice(&guide.data)
        .view([1, 3, h, w])
        .to_device(model.device());
    let acts = {
        let _no_grad = tch::no_grad_guard();
        model.activations(&image, layers)?
    };
    for (term, act) in terms.iter_mut().zip(&acts) {
        let act = select(act, term);
        let c = act.size()[1];
        term.guide = Some(act.reshape([c, -1]).detach());
    }
    Ok(())
}

/// Refuses a pick of `channels` past the channels of the model's layer
/// `layer`: once, as the objective is resolved, before any pass through the
/// network.
fn check_channels(model: &Model, layer: usize, channels: &[u32]) -> Result<(), DreamError> {
    let available = model.channels()[layer];
    match channels.iter().max() {
        Some(&asked) if asked >= available => Err(DreamError::NoSuchChannel {
            layer: model.layers()[layer].clone(),
            asked,
            available,
        }),
        _ => Ok(()),
    }
}

/// The term's channels of `act`.
fn select(act: &Tensor, term: &Term) -> Tensor {
    match &term.channels {
        Some(ch) => act.index_select(1, ch),
        None => act.shallow_clone(),
    }
}

/// The guided objective (the original notebook's): each position's
/// feature vector dotted with the guide feature it matches best, averaged
/// like the plain objective. Its gradient pushes every position toward its
/// best-matching guide feature.
fn guided(act: &Tensor, guide: &Tensor) -> Tensor {
    let c = act.size()[1];
    let x = act.reshape([c, -1]);
    let best = {
        let _no_grad = tch::no_grad_guard();
        x.transpose(0, 1).matmul(guide).argmax(1, false)
    };
    let target = guide.index_select(1, &best);
    (x * target).mean(Kind::Float)
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
