//! The built-in networks written as data (blocks of parallel branches of
//! operations) and one small interpreter that runs them.
//!
//! Describing InceptionV3, MobileNetV2 and GoogLeNet as data keeps each
//! architecture in one readable table, lets the TF.js converter walk the same
//! description the network is built from, and lets a dream stop at the
//! deepest layer it needs instead of running the whole network. Loading
//! also rewrites what is the same arithmetic done cheaper: the leading 1×1
//! convolutions of an Inception block's branches become one (see
//! [`SharedConv`]).

use tch::{Kind, Tensor};

use super::ModelError;
use super::layers::{Activation, ConvBn, ConvBnNames, ConvShape, channels_last};
use super::weights_file::WeightsFile;

/// One operation inside a branch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Convolution + BatchNorm + activation.
    Conv {
        /// Name of the OIHW kernel tensor in the weight file.
        weight: String,
        /// Prefix of the BatchNorm tensors.
        bn: String,
        /// Geometry of the convolution.
        shape: ConvShape,
        /// Nonlinearity after the BatchNorm.
        activation: Activation,
    },
    /// Max pooling over a square window.
    MaxPool {
        /// Window side.
        kernel: i64,
        /// Stride.
        stride: i64,
        /// Zero padding on every side (ignored values, as in PyTorch).
        padding: i64,
        /// Round the output size up (Caffe-style, GoogLeNet).
        ceil: bool,
    },
    /// 3×3 average pooling, stride 1, padding 1, averaging over real pixels
    /// only (Keras' `padding="same"`).
    AvgPool3Same,
}

impl Op {
    /// A conv unit stored as torchvision's `BasicConv2d`: `{name}.conv.weight`
    /// and `{name}.bn.*`.
    pub fn basic_conv(name: &str, shape: ConvShape) -> Self {
        Self::Conv {
            weight: format!("{name}.conv.weight"),
            bn: format!("{name}.bn"),
            shape,
            activation: Activation::Relu,
        }
    }
}

/// A block: branches run on the same input and are concatenated along
/// channels (one branch: a plain sequence), optionally added to the input.
#[derive(Debug, Clone)]
pub struct Block {
    /// The exposed layer this block's output is, if any.
    pub layer: Option<&'static str>,
    /// Parallel branches, each a sequence of operations.
    pub branches: Vec<Vec<Op>>,
    /// Add the block's input to its output (MobileNetV2's skip connection).
    pub residual: bool,
}

impl Block {
    /// A single-branch block.
    pub fn sequence(layer: Option<&'static str>, ops: Vec<Op>) -> Self {
        Self {
            layer,
            branches: vec![ops],
            residual: false,
        }
    }

    /// A multi-branch (Inception) block.
    pub fn branches(layer: &'static str, branches: Vec<Vec<Op>>) -> Self {
        Self {
            layer: Some(layer),
            branches,
            residual: false,
        }
    }
}

/// Every conv of `blocks` in the order the blocks describe them: the order in
/// which Keras created them, for the InceptionV3 description.
pub fn conv_units(blocks: &[Block]) -> impl Iterator<Item = (&str, &str, &ConvShape)> {
    blocks
        .iter()
        .flat_map(|b| b.branches.iter().flatten())
        .filter_map(|op| match op {
            Op::Conv {
                weight, bn, shape, ..
            } => Some((weight.as_str(), bn.as_str(), shape)),
            _ => None,
        })
}

enum LoadedOp {
    Conv(ConvBn),
    MaxPool {
        kernel: i64,
        stride: i64,
        padding: i64,
        ceil: bool,
    },
    AvgPool3Same,
    /// The activation of a convolution that a [`SharedConv`] computed.
    Activate(Activation),
}

impl LoadedOp {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Conv(c) => c.forward(x),
            Self::Activate(a) => a.apply(x.shallow_clone()),
            Self::MaxPool {
                kernel,
                stride,
                padding,
                ceil,
            } => x.max_pool2d(
                [*kernel, *kernel],
                [*stride, *stride],
                [*padding, *padding],
                [1, 1],
                *ceil,
            ),
            Self::AvgPool3Same => x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None),
        }
    }
}

/// The leading 1×1 convolutions of a block's branches, computed as one:
/// one pass over the block's input instead of one per branch, a bigger
/// matrix product, and in the backward pass one gradient for the input
/// where there was one per branch to sum (those sums were a sixth of the
/// pass's element-wise work). The same arithmetic up to rounding.
struct SharedConv {
    conv: ConvBn,
    /// Output channels of each branch that starts from it, in order.
    sizes: Vec<i64>,
}

/// A branch of a loaded block.
struct LoadedBranch {
    /// Whether it starts from its slice of the block's [`SharedConv`]
    /// rather than from the block's input.
    shared: bool,
    ops: Vec<LoadedOp>,
}

struct LoadedBlock {
    shared: Option<SharedConv>,
    branches: Vec<LoadedBranch>,
    residual: bool,
}

impl LoadedBlock {
    /// The block with the leading 1×1 convolutions of its branches shared,
    /// where two or more branches start with one. A branch that pools first
    /// (`AvgPool3Same`, then a 1×1 convolution) shares its convolution too,
    /// its pooling moved after it: that pooling averages real pixels with
    /// weights summing to one, so it commutes with a per-pixel affine map
    /// (the same result up to rounding), and it then runs on the
    /// convolution's fewer channels.
    fn new(branches: Vec<Vec<LoadedOp>>, residual: bool) -> Self {
        // Where a branch's shareable convolution is, if it has one.
        let shareable = |ops: &[LoadedOp]| match ops {
            [LoadedOp::Conv(c), ..] if c.is_pointwise() => Some(0),
            [LoadedOp::AvgPool3Same, LoadedOp::Conv(c), ..] if c.is_pointwise() => Some(1),
            _ => None,
        };
        let share = branches
            .iter()
            .filter(|ops| shareable(ops).is_some())
            .count()
            >= 2;
        let mut convs = Vec::new();
        let branches = branches
            .into_iter()
            .map(|mut ops| match shareable(&ops).filter(|_| share) {
                Some(at) => {
                    let LoadedOp::Conv(conv) = ops.remove(at) else {
                        unreachable!("a shareable branch has its convolution at {at}");
                    };
                    // The convolution joins the shared one; its activation
                    // stays where it was, after the pooling if any.
                    let (conv, activation) = conv.split_activation();
                    convs.push(conv);
                    ops.insert(at, LoadedOp::Activate(activation));
                    LoadedBranch { shared: true, ops }
                }
                None => LoadedBranch { shared: false, ops },
            })
            .collect();
        Self {
            shared: share.then(|| {
                let (conv, sizes) = ConvBn::concat(&convs);
                SharedConv { conv, sizes }
            }),
            branches,
            residual,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut slices = self
            .shared
            .as_ref()
            .map(|s| s.conv.forward(x).split_with_sizes(&s.sizes, 1))
            .unwrap_or_default()
            .into_iter();
        let mut run = |branch: &LoadedBranch| {
            let start = if branch.shared {
                slices.next().expect("a slice for every sharing branch")
            } else {
                x.shallow_clone()
            };
            branch.ops.iter().fold(start, |h, op| op.forward(&h))
        };
        let y = match self.branches.as_slice() {
            [single] => run(single),
            many => Tensor::cat(&many.iter().map(&mut run).collect::<Vec<_>>(), 1),
        };
        if self.residual { y + x } else { y }
    }
}

/// A loaded network: the blocks with their weights, and which block output
/// is which exposed layer.
pub struct Network {
    blocks: Vec<LoadedBlock>,
    /// For each exposed layer (catalogue order), the index of its block.
    layer_blocks: Vec<usize>,
}

impl Network {
    /// Builds `blocks` with the tensors of `weights`, BatchNorm epsilon `eps`.
    /// `layers` is the catalogue's layer list, which the blocks must expose
    /// in the same order.
    pub fn load(
        blocks: Vec<Block>,
        layers: &[&str],
        weights: &mut WeightsFile,
        eps: f64,
    ) -> Result<Self, ModelError> {
        let exposed: Vec<&str> = blocks.iter().filter_map(|b| b.layer).collect();
        assert_eq!(
            exposed, layers,
            "network description and catalogue disagree"
        );
        let layer_blocks = blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.layer.map(|_| i))
            .collect();
        let blocks = blocks
            .into_iter()
            .map(|b| {
                let branches = b
                    .branches
                    .into_iter()
                    .map(|ops| {
                        ops.into_iter()
                            .map(|op| load_op(op, weights, eps))
                            .collect()
                    })
                    .collect::<Result<_, _>>()?;
                Ok(LoadedBlock::new(branches, b.residual))
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Self {
            blocks,
            layer_blocks,
        })
    }

    /// Converts every weight to `kind`, in place.
    pub fn convert(&mut self, kind: Kind) {
        for block in &mut self.blocks {
            if let Some(shared) = &mut block.shared {
                shared.conv.convert(kind);
            }
            for op in block.branches.iter_mut().flat_map(|b| &mut b.ops) {
                if let LoadedOp::Conv(conv) = op {
                    conv.convert(kind);
                }
            }
        }
    }

    /// Activations of the exposed layers with the given catalogue indices,
    /// in the order asked; blocks past the deepest of them are not run.
    /// The network runs channels-last (see [`channels_last`]); the
    /// activations come back in that layout, NCHW-shaped.
    pub fn activations(&self, input: &Tensor, layers: &[usize]) -> Vec<Tensor> {
        let blocks: Vec<usize> = layers.iter().map(|&l| self.layer_blocks[l]).collect();
        let Some(&last) = blocks.iter().max() else {
            return Vec::new();
        };
        let mut outputs: Vec<Option<Tensor>> = (0..=last).map(|_| None).collect();
        let mut h = channels_last(input);
        for (i, block) in self.blocks[..=last].iter().enumerate() {
            h = block.forward(&h);
            if blocks.contains(&i) {
                outputs[i] = Some(h.shallow_clone());
            }
        }
        blocks
            .iter()
            .map(|&b| outputs[b].as_ref().map(Tensor::shallow_clone))
            .collect::<Option<Vec<_>>>()
            .expect("every requested block was run")
    }
}

fn load_op(op: Op, weights: &mut WeightsFile, eps: f64) -> Result<LoadedOp, ModelError> {
    Ok(match op {
        Op::Conv {
            weight,
            bn,
            shape,
            activation,
        } => LoadedOp::Conv(ConvBn::load(
            weights,
            ConvBnNames {
                weight: &weight,
                bn: &bn,
            },
            shape,
            eps,
            activation,
        )?),
        Op::MaxPool {
            kernel,
            stride,
            padding,
            ceil,
        } => LoadedOp::MaxPool {
            kernel,
            stride,
            padding,
            ceil,
        },
        Op::AvgPool3Same => LoadedOp::AvgPool3Same,
    })
}
