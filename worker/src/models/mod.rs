//! Pretrained networks that dream: loading them onto a device and reading
//! the activations of named layers.
//!
//! A [`Model`] is loaded once per process and shared by every tile the worker
//! computes. It takes RGB images with values in `0..=1` (NCHW, f32) and
//! applies the model's own preprocessing.

pub mod googlenet;
mod graph;
pub mod inception_v3;
mod layers;
pub mod mobilenet_v2;
mod pass_memory;
mod weights_file;

use std::path::{Path, PathBuf};

use dreamfarm_common::device::{DeviceSpec, Devices};
use dreamfarm_common::model_catalog::{BuiltinModel, CatalogError, ModelSpec, Preprocessing};
use dreamfarm_common::params::NetworkPrecision;
use tch::{CModule, Device, IValue, Kind, Tensor};

pub use graph::{Block, conv_units};
pub use layers::ConvShape;
pub use pass_memory::pass_bytes;
pub use weights_file::WeightsFile;

use crate::cuda_library::cuda_library;
use graph::Network;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The weight file is unreadable or does not fit the architecture.
    #[error("weights file {path}: {reason}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A TorchScript module could not be loaded or run.
    #[error(
        "TorchScript model {path}: {reason} (it must be saved with torch.jit.save and its forward must take one NCHW RGB tensor in 0..1 and return a tensor or a tuple/list of tensors)"
    )]
    BadTorchScript {
        /// The `.pt` file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A layer name the model does not have.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The requested CUDA device does not exist here.
    #[error("{requested} requested, but {}", device_advice(*.available))]
    NoSuchDevice {
        /// What was asked for.
        requested: DeviceSpec,
        /// How many CUDA devices libtorch sees.
        available: usize,
    },
}

/// What to do instead of asking for a CUDA device that is not there.
fn device_advice(available: usize) -> String {
    match available {
        0 => match cuda_library().advice() {
            Some(advice) => format!("libtorch sees no CUDA device: {advice}; or use --device cpu"),
            None => "libtorch sees no CUDA device on this machine (no GPU, no driver, or \
                     CUDA_VISIBLE_DEVICES hides them); use --device cpu"
                .to_string(),
        },
        n => format!(
            "this machine has {n} CUDA device(s) visible to libtorch; use cuda:0 to cuda:{} \
             or --device cpu",
            n - 1
        ),
    }
}

/// How many CUDA devices libtorch sees, its CUDA library loaded first.
/// Only a request that may use a GPU asks: the library and the CUDA
/// libraries it pulls in add about 340 MB to a process's resident memory
/// (a `--device cpu` render: 0.17 GB without, 0.51 GB with), which a CPU
/// process has no use for.
fn cuda_device_count() -> usize {
    cuda_library();
    tch::Cuda::device_count().max(0) as usize
}

/// Maps a user's device request onto a torch device that exists.
pub fn torch_device(spec: DeviceSpec) -> Result<Device, ModelError> {
    match spec {
        DeviceSpec::Auto => Ok(match cuda_device_count() {
            0 => Device::Cpu,
            _ => Device::Cuda(0),
        }),
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => {
            let available = cuda_device_count();
            if n < available {
                Ok(Device::Cuda(n))
            } else {
                Err(ModelError::NoSuchDevice {
                    requested: spec,
                    available,
                })
            }
        }
    }
}

/// Maps a user's device list onto torch devices that exist, in order:
/// `all` is every CUDA device libtorch sees, or the CPU when it sees none.
pub fn torch_devices(devices: &Devices) -> Result<Vec<Device>, ModelError> {
    match devices {
        Devices::Each(each) => each.iter().map(|&d| torch_device(d)).collect(),
        Devices::All => match cuda_device_count() {
            0 => Ok(vec![Device::Cpu]),
            n => Ok((0..n).map(Device::Cuda).collect()),
        },
    }
}

/// `devices` as a user writes them (`cpu`, `cuda:0,cuda:1`): what a
/// worker tells the coordinator it runs on.
pub fn device_names(devices: &[Device]) -> String {
    let specs = devices
        .iter()
        .map(|d| match d {
            Device::Cuda(n) => DeviceSpec::Cuda(*n),
            _ => DeviceSpec::Cpu,
        })
        .collect();
    Devices::Each(specs).to_string()
}

enum Net {
    /// A built-in network, and which one it is.
    Builtin(Network, BuiltinModel),
    Script(CModule),
}

/// The tensor kind the network's weights and activations are stored in
/// for `precision`.
fn kind_of(precision: NetworkPrecision) -> Kind {
    match precision {
        NetworkPrecision::F32 => Kind::Float,
        NetworkPrecision::Bf16 => Kind::BFloat16,
        NetworkPrecision::F16 => Kind::Half,
    }
}

/// A built-in network as data: its blocks, its BatchNorm epsilon, and the
/// prefixes of weights it carries but never runs (classifier heads).
struct Description {
    blocks: Vec<Block>,
    eps: f64,
    unused: &'static [&'static str],
}

impl Description {
    /// `model`'s description.
    fn of(model: BuiltinModel) -> Self {
        let (blocks, eps, unused): (_, _, &[&str]) = match model {
            BuiltinModel::InceptionV3 => (inception_v3::blocks(), inception_v3::BN_EPS, &[]),
            BuiltinModel::MobilenetV2 => (
                mobilenet_v2::blocks(),
                mobilenet_v2::BN_EPS,
                &["classifier."],
            ),
            BuiltinModel::Googlenet => (
                googlenet::blocks(),
                googlenet::BN_EPS,
                &["fc.", "aux1.", "aux2."],
            ),
        };
        Self {
            blocks,
            eps,
            unused,
        }
    }
}

/// A loaded network, ready to give activations of its named layers.
pub struct Model {
    net: Net,
    name: String,
    layers: Vec<String>,
    /// Each layer's channel count, in the order of `layers`.
    channels: Vec<u32>,
    /// `(mean, std)` as `[1, 3, 1, 1]` tensors on the model's device.
    normalise: (Tensor, Tensor),
    device: Device,
    /// What the weights and activations are stored in.
    precision: NetworkPrecision,
}

impl Model {
    /// Loads a built-in architecture with the weights in `weights`
    /// (`.safetensors`, torchvision parameter names).
    pub fn load_builtin(
        model: BuiltinModel,
        weights: &Path,
        device: Device,
    ) -> Result<Self, ModelError> {
        let info = model.info();
        let mut file = WeightsFile::read(weights, device)?;
        let Description {
            blocks,
            eps,
            unused,
        } = Description::of(model);
        let net = {
            // Guards, not `tch::no_grad`, here and below: a failure inside
            // must not leave the thread's gradients off (see
            // `torch_failure`).
            let _no_grad = tch::no_grad_guard();
            Network::load(blocks, info.layers, &mut file, eps)?
        };
        file.finish(unused)?;
        Ok(Self::new(
            Net::Builtin(net, model),
            info.name.to_string(),
            info.layers.iter().map(|l| l.to_string()).collect(),
            info.channels.to_vec(),
            info.preprocessing,
            device,
        ))
    }

    /// Loads a TorchScript module; its outputs are named `out0`, `out1`, …
    /// in the order its `forward` returns them.
    pub fn load_torchscript(path: &Path, device: Device) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::BadTorchScript {
            path: path.to_path_buf(),
            reason,
        };
        let mut module = CModule::load_on_device(path, device).map_err(|e| bad(torch_reason(e)))?;
        module.set_eval();
        let probe = Tensor::zeros([1, 3, 224, 224], (Kind::Float, device));
        let outputs = {
            let _no_grad = tch::no_grad_guard();
            script_outputs(&module, &probe).map_err(bad)?
        };
        let layers = (0..outputs.len()).map(|i| format!("out{i}")).collect();
        let channels = outputs
            .iter()
            .enumerate()
            .map(|(i, t)| match t.size().as_slice() {
                [_, c, ..] => {
                    u32::try_from(*c).map_err(|_| bad(format!("output out{i} has {c} channels")))
                }
                shape => Err(bad(format!(
                    "output out{i} has shape {shape:?}, without channels to dream on"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::new(
            Net::Script(module),
            path.display().to_string(),
            layers,
            channels,
            Preprocessing::IDENTITY,
            device,
        ))
    }

    /// Loads whatever `spec` names: `weights` is the weight file of a
    /// built-in model (ignored for TorchScript).
    pub fn load(spec: &ModelSpec, weights: &Path, device: Device) -> Result<Self, ModelError> {
        match spec {
            ModelSpec::Builtin(m) => Self::load_builtin(*m, weights, device),
            ModelSpec::TorchScript(path) => Self::load_torchscript(path, device),
        }
    }

    fn new(
        net: Net,
        name: String,
        layers: Vec<String>,
        channels: Vec<u32>,
        pre: Preprocessing,
        device: Device,
    ) -> Self {
        let channel = |v: [f32; 3]| Tensor::from_slice(&v).view([1, 3, 1, 1]).to_device(device);
        Self {
            net,
            name,
            layers,
            channels,
            normalise: (channel(pre.mean), channel(pre.std)),
            device,
            precision: NetworkPrecision::F32,
        }
    }

    /// Runs the network in `precision` from now on: its weights are
    /// converted once, its input is narrowed on the way in (a
    /// differentiable cast, so gradients come back to the f32 image) and its
    /// activations widened to f32 on the way out, so the objective's
    /// reductions and everything after them stay f32.
    pub fn set_precision(&mut self, precision: NetworkPrecision) {
        let kind = kind_of(precision);
        match &mut self.net {
            Net::Builtin(net, _) => {
                let _no_grad = tch::no_grad_guard();
                net.convert(kind);
            }
            Net::Script(module) => module.to(self.device, kind, false),
        }
        self.precision = precision;
    }

    /// The memory one pass to the deepest of `layers` holds for `batch`
    /// windows of `height`×`width` (see [`pass_bytes`]); `None` for a
    /// TorchScript module, whose graph is not known.
    pub fn pass_bytes(
        &self,
        layers: &[usize],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Option<u64> {
        match self.net {
            Net::Builtin(_, model) => Some(pass_bytes(
                model,
                layers,
                batch,
                height,
                width,
                self.precision,
            )),
            Net::Script(_) => None,
        }
    }

    /// The model's name (`inception-v3`, or the TorchScript path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Layer names, shallow to deep.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// Each layer's channel count, in the order of [`Model::layers`].
    pub fn channels(&self) -> &[u32] {
        &self.channels
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Index of `layer` in [`layers`](Self::layers).
    pub fn layer_index(&self, layer: &str) -> Result<usize, ModelError> {
        self.layers.iter().position(|l| l == layer).ok_or_else(|| {
            CatalogError::UnknownLayer {
                model: self.name.clone(),
                layer: layer.to_string(),
                known: self.layers.join(", "),
            }
            .into()
        })
    }

    /// The network input for an RGB image in `0..=1`.
    pub fn preprocess(&self, image: &Tensor) -> Tensor {
        (image - &self.normalise.0) / &self.normalise.1
    }

    /// Activations of the layers with the given indices for an RGB image in
    /// `0..=1`, in the order asked. Differentiable with respect to `image`.
    pub fn activations(&self, image: &Tensor, layers: &[usize]) -> Result<Vec<Tensor>, ModelError> {
        let input = self.preprocess(image);
        self.activations_of_input(&input, layers)
    }

    /// Like [`activations`](Self::activations) for an already preprocessed
    /// input: what the reference tests compare against other frameworks.
    pub fn activations_of_input(
        &self,
        input: &Tensor,
        layers: &[usize],
    ) -> Result<Vec<Tensor>, ModelError> {
        let input = input.to_kind(kind_of(self.precision));
        let widened = |acts: Vec<Tensor>| acts.iter().map(|a| a.to_kind(Kind::Float)).collect();
        match &self.net {
            Net::Builtin(net, _) => Ok(widened(net.activations(&input, layers))),
            Net::Script(module) => {
                let outputs = script_outputs(module, &input).map_err(|reason| {
                    ModelError::BadTorchScript {
                        path: PathBuf::from(&self.name),
                        reason,
                    }
                })?;
                layers
                    .iter()
                    .map(|&i| {
                        outputs
                            .get(i)
                            .map(|a| a.to_kind(Kind::Float))
                            .ok_or_else(|| ModelError::BadTorchScript {
                                path: PathBuf::from(&self.name),
                                reason: format!(
                                    "returned {} outputs this time, fewer than when it was loaded",
                                    outputs.len()
                                ),
                            })
                    })
                    .collect()
            }
        }
    }
}

/// What libtorch said, on one line a user can act on: without the C++
/// stack it appends ("Exception raised from …", one line per frame) and,
/// for a TorchScript module that failed while running, only the Python
/// exception its interpreter ends with, not the traceback of its code.
fn torch_reason(error: tch::TchError) -> String {
    let text = match error {
        tch::TchError::Torch(text) => text,
        other => return other.to_string(),
    };
    let text = text
        .split("\nException raised from")
        .next()
        .unwrap_or_default()
        .trim();
    if text.contains("Traceback of TorchScript") {
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        if let Some(last) = last {
            return last
                .split_once("Error: ")
                .map_or(last, |(_, message)| message)
                .trim()
                .to_string();
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn script_outputs(module: &CModule, input: &Tensor) -> Result<Vec<Tensor>, String> {
    let out = module
        .forward_is(&[IValue::Tensor(input.shallow_clone())])
        .map_err(torch_reason)?;
    let items = match out {
        IValue::Tensor(t) => return Ok(vec![t]),
        IValue::Tuple(items) | IValue::GenericList(items) => items,
        IValue::TensorList(ts) => return Ok(ts),
        other => return Err(format!("forward returned {other:?}, not tensors")),
    };
    items
        .into_iter()
        .map(|v| match v {
            IValue::Tensor(t) => Ok(t),
            other => Err(format!("forward returned a non-tensor item {other:?}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_errors_lose_their_cpp_stack_and_script_traceback() {
        let corrupt = "PytorchStreamReader failed reading zip archive: failed finding central \
                       directory. This can happen if the checkpoint was not saved properly.\n\
                       Exception raised from valid at inline_container.cc:242 (most recent call first):\n\
                       frame #0: c10::Error::Error(c10::SourceLocation) + 0x9d (0x7f in libc10.so)\n";
        assert_eq!(
            torch_reason(tch::TchError::Torch(corrupt.into())),
            "PytorchStreamReader failed reading zip archive: failed finding central directory. \
             This can happen if the checkpoint was not saved properly."
        );
        let failed_forward = "The following operation failed in the TorchScript interpreter.\n\
                              Traceback of TorchScript, serialized code (most recent call last):\n\
                              \x20 File \"code/__torch__.py\", line 10, in forward\n\
                              \x20   return torch.relu((a).forward(x, ))\n\
                              \x20                      ~~~~~~~~~~ <--- HERE\n\
                              <string>(9): <module>\n\
                              RuntimeError: Given groups=1, weight of size [8, 1, 3, 3], expected \
                              input[1, 3, 224, 224] to have 1 channels, but got 3 channels instead\n";
        assert_eq!(
            torch_reason(tch::TchError::Torch(failed_forward.into())),
            "Given groups=1, weight of size [8, 1, 3, 3], expected input[1, 3, 224, 224] to \
             have 1 channels, but got 3 channels instead"
        );
    }

    #[test]
    fn a_missing_cuda_device_is_refused_with_advice_that_fits_the_machine() {
        let missing = |available| {
            ModelError::NoSuchDevice {
                requested: DeviceSpec::Cuda(3),
                available,
            }
            .to_string()
        };
        assert_eq!(
            missing(0),
            "cuda:3 requested, but libtorch sees no CUDA device on this machine (no GPU, \
             no driver, or CUDA_VISIBLE_DEVICES hides them); use --device cpu"
        );
        assert_eq!(
            missing(2),
            "cuda:3 requested, but this machine has 2 CUDA device(s) visible to libtorch; \
             use cuda:0 to cuda:1 or --device cpu"
        );
    }
}
