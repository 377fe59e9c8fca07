//! GoogLeNet / Inception-v1 exactly as torchvision builds it (including its
//! 3×3 kernel where the paper has 5×5), so that a state dict saved from
//! torchvision loads by name.

use super::graph::{Block, Op};
use super::layers::ConvShape;

/// torchvision's `BasicConv2d` BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-3;

fn pool(kernel: i64, stride: i64, padding: i64) -> Op {
    Op::MaxPool {
        kernel,
        stride,
        padding,
        ceil: true,
    }
}

/// One Inception module: `[c1, c3r, c3, c5r, c5, pool_proj]` channels.
fn inception(layer: &'static str, cin: i64, ch: [i64; 6]) -> Block {
    let [c1, c3r, c3, c5r, c5, pp] = ch;
    let c = |b: &str, shape| Op::basic_conv(&format!("{layer}.{b}"), shape);
    let k1 = |i, o| ConvShape::square(i, o, 1);
    let k3 = |i, o| ConvShape::square(i, o, 3).same();
    Block::branches(
        layer,
        vec![
            vec![c("branch1", k1(cin, c1))],
            vec![c("branch2.0", k1(cin, c3r)), c("branch2.1", k3(c3r, c3))],
            vec![c("branch3.0", k1(cin, c5r)), c("branch3.1", k3(c5r, c5))],
            vec![pool(3, 1, 1), c("branch4.1", k1(cin, pp))],
        ],
    )
}

/// The network to `inception5b`, block by block.
pub fn blocks() -> Vec<Block> {
    let conv = |layer: &'static str, pre: Option<Op>, shape| {
        let ops = pre
            .into_iter()
            .chain([Op::basic_conv(layer, shape)])
            .collect();
        Block::sequence(Some(layer), ops)
    };
    let conv1 = ConvShape {
        padding: [3, 3],
        ..ConvShape::square(3, 64, 7).stride(2)
    };
    vec![
        conv("conv1", None, conv1),
        conv("conv2", Some(pool(3, 2, 0)), ConvShape::square(64, 64, 1)),
        conv("conv3", None, ConvShape::square(64, 192, 3).same()),
        Block::sequence(None, vec![pool(3, 2, 0)]),
        inception("inception3a", 192, [64, 96, 128, 16, 32, 32]),
        inception("inception3b", 256, [128, 128, 192, 32, 96, 64]),
        Block::sequence(None, vec![pool(3, 2, 0)]),
        inception("inception4a", 480, [192, 96, 208, 16, 48, 64]),
        inception("inception4b", 512, [160, 112, 224, 24, 64, 64]),
        inception("inception4c", 512, [128, 128, 256, 24, 64, 64]),
        inception("inception4d", 512, [112, 144, 288, 32, 64, 64]),
        inception("inception4e", 528, [256, 160, 320, 32, 128, 128]),
        Block::sequence(None, vec![pool(2, 2, 0)]),
        inception("inception5a", 832, [256, 160, 320, 32, 128, 128]),
        inception("inception5b", 832, [384, 192, 384, 48, 128, 128]),
    ]
}
