//! How much memory one forward and backward pass of a built-in network
//! holds, worked out from its description without running it.
//!
//! On a CPU the pass's activations share the machine's memory with the
//! frames, and for a 1024-pixel tile of InceptionV3 they are most of a
//! render's memory; a `--max-memory` that counted only the frames let a
//! render through that the kernel then killed. Autograd keeps what each
//! operation's gradient needs until the backward pass reaches it (a
//! ReLU's output, a pooling's input, a max pooling's indices; a
//! convolution whose weights need no gradient keeps nothing), so the pass
//! holds about the sum of those, plus the tensors in flight.

use dreamfarm_common::model_catalog::BuiltinModel;
use dreamfarm_common::params::NetworkPrecision;

use super::Description;
use super::graph::{Block, Op};
use super::layers::Activation;

/// Tensors beside the kept ones at the pass's peak, each the size of the
/// largest output: in the forward pass the concatenations nothing keeps,
/// in the backward pass the gradient arriving at an operation and the one
/// it makes (measured: with one, InceptionV3's estimate fell 5–14% short
/// of the memory its pass took).
const GRADIENTS_IN_FLIGHT: u64 = 2;

/// Bytes of a max pooling's index of each output's winner (int64).
const INDEX_BYTES: u64 = 8;

/// Bytes of an f32 sample: the image, its preprocessing and the objective
/// stay f32 whatever the network runs in.
const F32_BYTES: u64 = 4;

/// The memory a pass of `model` to the deepest of `layers` (catalogue
/// indices) holds for `batch` windows of `height`×`width` pixels, with the
/// network in `precision`: the outputs autograd keeps for the backward
/// pass and the gradients in flight. An estimate within tens of percent of
/// what a process's resident memory grows by (`tests/memory.rs` measures
/// it on every built-in model); the weights are not in it.
pub fn pass_bytes(
    model: BuiltinModel,
    layers: &[usize],
    batch: usize,
    height: usize,
    width: usize,
    precision: NetworkPrecision,
) -> u64 {
    let sample = match precision {
        NetworkPrecision::F32 => F32_BYTES,
        NetworkPrecision::Bf16 | NetworkPrecision::F16 => 2,
    };
    let image = Shape {
        channels: 3,
        height: height as u64,
        width: width as u64,
    };
    Walk::to_layers(model, layers, image, sample).map_or(0, |walk| {
        (walk.held + GRADIENTS_IN_FLIGHT * walk.largest) * batch as u64
    })
}

/// Channels and size of one image's tensor.
#[derive(Debug, Clone, Copy)]
struct Shape {
    channels: u64,
    height: u64,
    width: u64,
}

impl Shape {
    /// Samples in the tensor.
    fn samples(self) -> u64 {
        self.channels * self.height * self.width
    }
}

/// The walk through a network: the shape reached and the bytes held.
struct Walk {
    shape: Shape,
    /// Whether autograd keeps the tensor reached (something saved it).
    kept: bool,
    /// Bytes of one activation sample.
    sample: u64,
    /// Bytes autograd keeps for the backward pass so far.
    held: u64,
    /// Bytes of the largest tensor made, kept or not.
    largest: u64,
}

impl Walk {
    /// The walk through `model` from an `image` to the deepest of `layers`
    /// (none without layers), activations of `sample` bytes.
    fn to_layers(model: BuiltinModel, layers: &[usize], image: Shape, sample: u64) -> Option<Self> {
        let &deepest = layers.iter().max()?;
        let mut walk = Self {
            shape: image,
            kept: false,
            sample,
            held: 0,
            largest: 0,
        };
        // The window, preprocessed, in channels-last, and narrowed if the
        // network runs narrower: made, and freed once the first
        // convolution has run.
        walk.made(image, F32_BYTES);
        let mut exposed = 0;
        for block in Description::of(model).blocks {
            walk.block(&block);
            if block.layer.is_some() {
                if layers.contains(&exposed) {
                    // The objective squares the layer (widened to f32 if
                    // the network is narrower), which keeps what it
                    // squares.
                    let widened = sample != F32_BYTES;
                    if widened || !walk.kept {
                        walk.keep(walk.shape.samples() * F32_BYTES);
                    }
                    walk.made(walk.shape, F32_BYTES);
                }
                if exposed == deepest {
                    break;
                }
                exposed += 1;
            }
        }
        Some(walk)
    }

    /// Notes a tensor of `shape` made, of `sample` bytes a sample.
    fn made(&mut self, shape: Shape, sample: u64) {
        self.largest = self.largest.max(shape.samples() * sample);
    }

    /// Keeps `bytes` for the backward pass.
    fn keep(&mut self, bytes: u64) {
        self.held += bytes;
    }

    /// Runs `block`: each branch from the block's input, their
    /// concatenation, and the residual sum.
    fn block(&mut self, block: &Block) {
        let input = self.shape;
        let mut input_kept = self.kept;
        let mut channels = 0;
        let (mut out, mut kept) = (input, input_kept);
        for branch in &block.branches {
            let mut reached: Option<(Shape, bool)> = None;
            for op in branch {
                let (shape, kept_in) = match &mut reached {
                    Some((shape, kept)) => (*shape, kept),
                    None => (input, &mut input_kept),
                };
                reached = Some(self.op(shape, kept_in, op));
            }
            (out, kept) = reached.unwrap_or((input, input_kept));
            channels += out.channels;
        }
        let out = Shape { channels, ..out };
        if block.branches.len() > 1 || block.residual {
            // A concatenation or a sum: a new tensor nothing saves, unless
            // a pooling after it does.
            self.made(out, self.sample);
            kept = false;
        }
        self.shape = out;
        self.kept = kept;
    }

    /// The output of `op` on `input` and whether autograd keeps it; keeps
    /// what `op` saves. A convolution (whose weights need no gradient)
    /// saves nothing, the ReLU after it its output; a pooling saves its
    /// input, and a max pooling its winners' indices too.
    fn op(&mut self, input: Shape, input_kept: &mut bool, op: &Op) -> (Shape, bool) {
        let mut keep_input = |walk: &mut Self| {
            if !*input_kept {
                walk.keep(input.samples() * walk.sample);
                *input_kept = true;
            }
        };
        let (out, kept) = match op {
            Op::Conv {
                shape, activation, ..
            } => {
                let size = |n: u64, k: i64, p: i64| {
                    (n + 2 * p as u64).saturating_sub(k as u64) / shape.stride as u64 + 1
                };
                let out = Shape {
                    channels: shape.cout as u64,
                    height: size(input.height, shape.kernel[0], shape.padding[0]),
                    width: size(input.width, shape.kernel[1], shape.padding[1]),
                };
                let kept = !matches!(activation, Activation::Linear);
                if kept {
                    self.keep(out.samples() * self.sample);
                }
                (out, kept)
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
                ceil,
            } => {
                let (k, s, p) = (*kernel as u64, *stride as u64, *padding as u64);
                // PyTorch's rule: rounding up may not start a window in
                // the padding past the input.
                let size = |n: u64| {
                    let span = (n + 2 * p).saturating_sub(k);
                    let out = if *ceil { span.div_ceil(s) } else { span / s } + 1;
                    if *ceil && (out - 1) * s >= n + p {
                        out - 1
                    } else {
                        out
                    }
                };
                let out = Shape {
                    height: size(input.height),
                    width: size(input.width),
                    ..input
                };
                keep_input(self);
                self.keep(out.samples() * INDEX_BYTES);
                (out, false)
            }
            Op::AvgPool3Same => {
                keep_input(self);
                (input, false)
            }
        };
        self.made(out, self.sample);
        (out, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk reaches every layer of every built-in model with the
    /// catalogue's channels, and the networks' sizes: InceptionV3's
    /// `mixed5` is 17×17 at 299×299, GoogLeNet's `inception4c` (its max
    /// poolings rounding up) 14×14 at 224×224.
    #[test]
    fn the_walk_reaches_the_networks_shapes() {
        let side = |model: BuiltinModel, layer: &str, side: u64| {
            let index = model.layer_index(layer).expect("a layer");
            let image = Shape {
                channels: 3,
                height: side,
                width: side,
            };
            let walk = Walk::to_layers(model, &[index], image, 4).expect("a walk");
            (walk.shape.height, walk.shape.width)
        };
        assert_eq!(side(BuiltinModel::InceptionV3, "mixed5", 299), (17, 17));
        assert_eq!(side(BuiltinModel::Googlenet, "inception4c", 224), (14, 14));
        for model in BuiltinModel::ALL {
            let info = model.info();
            for (index, &channels) in info.channels.iter().enumerate() {
                let image = Shape {
                    channels: 3,
                    height: 256,
                    width: 256,
                };
                let walk = Walk::to_layers(model, &[index], image, 4).expect("a walk");
                assert_eq!(
                    walk.shape.channels,
                    u64::from(channels),
                    "{}",
                    info.layers[index]
                );
            }
        }
    }

    /// Memory grows with the window's pixels, the batch and the depth, and
    /// narrows with the precision.
    #[test]
    fn a_pass_holds_more_for_more_pixels_and_deeper_layers() {
        let m = BuiltinModel::InceptionV3;
        let f32 = NetworkPrecision::F32;
        let small = pass_bytes(m, &[3], 1, 256, 256, f32);
        let large = pass_bytes(m, &[3], 1, 512, 512, f32);
        let ratio = large as f64 / small as f64;
        assert!((3.6..4.4).contains(&ratio), "{ratio}");
        assert_eq!(pass_bytes(m, &[3], 3, 256, 256, f32), 3 * small);
        assert!(pass_bytes(m, &[5], 1, 256, 256, f32) > small);
        assert!(pass_bytes(m, &[3], 1, 256, 256, NetworkPrecision::Bf16) < small);
        assert_eq!(pass_bytes(m, &[], 1, 256, 256, f32), 0);
    }
}
