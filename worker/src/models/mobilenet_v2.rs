//! torchvision's ImageNet MobileNetV2 feature extractor (`features.0` …
//! `features.18`), parameter names as in torchvision's state dict.

use super::graph::{Block, Op};
use super::layers::{Activation, ConvShape};

/// torchvision's BatchNorm2d default.
pub const BN_EPS: f64 = 1e-5;

/// `(expansion t, output channels c, repeats n, first stride s)` per stage,
/// from the paper's Table 2.
const STAGES: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Channels of the last feature layer.
pub const LAST_CHANNELS: i64 = 1280;

/// `{prefix}.0` conv + `{prefix}.1` BatchNorm (torchvision's
/// `Conv2dNormActivation`).
fn conv_norm(prefix: &str, shape: ConvShape, activation: Activation) -> Op {
    Op::Conv {
        weight: format!("{prefix}.0.weight"),
        bn: format!("{prefix}.1"),
        shape,
        activation,
    }
}

fn inverted_residual(layer: &'static str, cin: i64, cout: i64, stride: i64, t: i64) -> Block {
    let hidden = cin * t;
    let mut ops = Vec::new();
    if t != 1 {
        ops.push(conv_norm(
            &format!("{layer}.conv.{}", ops.len()),
            ConvShape::square(cin, hidden, 1),
            Activation::Relu6,
        ));
    }
    let depthwise = ConvShape {
        groups: hidden,
        ..ConvShape::square(hidden, hidden, 3).same().stride(stride)
    };
    ops.push(conv_norm(
        &format!("{layer}.conv.{}", ops.len()),
        depthwise,
        Activation::Relu6,
    ));
    // The linear projection is a bare conv at `.conv.{k}` and its BatchNorm at
    // `.conv.{k+1}`.
    let k = ops.len();
    ops.push(Op::Conv {
        weight: format!("{layer}.conv.{k}.weight"),
        bn: format!("{layer}.conv.{}", k + 1),
        shape: ConvShape::square(hidden, cout, 1),
        activation: Activation::Linear,
    });
    Block {
        layer: Some(layer),
        branches: vec![ops],
        residual: stride == 1 && cin == cout,
    }
}

/// The catalogue's name of layer `features.{i}`.
fn feature_name(i: usize) -> &'static str {
    dreamfarm_common::model_catalog::BuiltinModel::MobilenetV2
        .info()
        .layers[i]
}

/// The feature extractor, block by block.
pub fn blocks() -> Vec<Block> {
    let mut blocks = vec![Block::sequence(
        Some(feature_name(0)),
        vec![conv_norm(
            "features.0",
            ConvShape::square(3, 32, 3).same().stride(2),
            Activation::Relu6,
        )],
    )];
    let mut cin = 32;
    for (t, c, n, s) in STAGES {
        for r in 0..n {
            let stride = if r == 0 { s } else { 1 };
            blocks.push(inverted_residual(
                feature_name(blocks.len()),
                cin,
                c,
                stride,
                t,
            ));
            cin = c;
        }
    }
    blocks.push(Block::sequence(
        Some(feature_name(18)),
        vec![conv_norm(
            "features.18",
            ConvShape::square(cin, LAST_CHANNELS, 1),
            Activation::Relu6,
        )],
    ));
    blocks
}
