//! ImageNet InceptionV3 trunk, stem to `mixed5`, with Keras' conventions.
//!
//! Parameter names follow torchvision (`Mixed_5b.branch1x1.conv.weight`),
//! layer names follow Keras (`mixed0` … `mixed5`), and the blocks list the
//! convolutions in the order Keras created them (`conv2d_1` … `conv2d_50`),
//! which is how [`crate::weights::nsfwjs`] maps the TF.js weights.
//! Everything after `mixed5` was fine-tuned away from ImageNet in nsfwjs and
//! is deliberately absent.

use super::graph::{Block, Op};
use super::layers::ConvShape;

/// Keras' BatchNormalization default.
pub const BN_EPS: f64 = 1e-3;

fn conv(name: String, shape: ConvShape) -> Op {
    Op::basic_conv(&name, shape)
}

fn max_pool() -> Op {
    Op::MaxPool {
        kernel: 3,
        stride: 2,
        padding: 0,
        ceil: false,
    }
}

/// A `kh`×`kw` conv with Keras `padding="same"` at stride 1.
fn same(cin: i64, cout: i64, kh: i64, kw: i64) -> ConvShape {
    ConvShape {
        kernel: [kh, kw],
        ..ConvShape::square(cin, cout, 1)
    }
    .same()
}

/// mixed0..mixed2 (torchvision's InceptionA).
fn inception_a(layer: &'static str, tv: &str, cin: i64, pool: i64) -> Block {
    let c = |b: &str, shape| conv(format!("{tv}.{b}"), shape);
    Block::branches(
        layer,
        vec![
            vec![c("branch1x1", same(cin, 64, 1, 1))],
            vec![
                c("branch5x5_1", same(cin, 48, 1, 1)),
                c("branch5x5_2", same(48, 64, 5, 5)),
            ],
            vec![
                c("branch3x3dbl_1", same(cin, 64, 1, 1)),
                c("branch3x3dbl_2", same(64, 96, 3, 3)),
                c("branch3x3dbl_3", same(96, 96, 3, 3)),
            ],
            vec![Op::AvgPool3Same, c("branch_pool", same(cin, pool, 1, 1))],
        ],
    )
}

/// mixed3 (torchvision's InceptionB): the 35→17 reduction.
fn inception_b() -> Block {
    let c = |b: &str, shape| conv(format!("Mixed_6a.{b}"), shape);
    Block::branches(
        "mixed3",
        vec![
            vec![c("branch3x3", ConvShape::square(288, 384, 3).stride(2))],
            vec![
                c("branch3x3dbl_1", same(288, 64, 1, 1)),
                c("branch3x3dbl_2", same(64, 96, 3, 3)),
                c("branch3x3dbl_3", ConvShape::square(96, 96, 3).stride(2)),
            ],
            vec![max_pool()],
        ],
    )
}

/// mixed4 and mixed5 (torchvision's InceptionC) with `c7` channels in the
/// factorised 7×7 branches.
fn inception_c(layer: &'static str, tv: &str, c7: i64) -> Block {
    let c = |b: &str, shape| conv(format!("{tv}.{b}"), shape);
    Block::branches(
        layer,
        vec![
            vec![c("branch1x1", same(768, 192, 1, 1))],
            vec![
                c("branch7x7_1", same(768, c7, 1, 1)),
                c("branch7x7_2", same(c7, c7, 1, 7)),
                c("branch7x7_3", same(c7, 192, 7, 1)),
            ],
            vec![
                c("branch7x7dbl_1", same(768, c7, 1, 1)),
                c("branch7x7dbl_2", same(c7, c7, 7, 1)),
                c("branch7x7dbl_3", same(c7, c7, 1, 7)),
                c("branch7x7dbl_4", same(c7, c7, 7, 1)),
                c("branch7x7dbl_5", same(c7, 192, 1, 7)),
            ],
            vec![Op::AvgPool3Same, c("branch_pool", same(768, 192, 1, 1))],
        ],
    )
}

/// The trunk, block by block.
pub fn blocks() -> Vec<Block> {
    let stem = |name: &str, shape| conv(name.to_string(), shape);
    vec![
        Block::sequence(
            None,
            vec![
                stem("Conv2d_1a_3x3", ConvShape::square(3, 32, 3).stride(2)),
                stem("Conv2d_2a_3x3", ConvShape::square(32, 32, 3)),
                stem("Conv2d_2b_3x3", same(32, 64, 3, 3)),
                max_pool(),
                stem("Conv2d_3b_1x1", same(64, 80, 1, 1)),
                stem("Conv2d_4a_3x3", ConvShape::square(80, 192, 3)),
                max_pool(),
            ],
        ),
        inception_a("mixed0", "Mixed_5b", 192, 32),
        inception_a("mixed1", "Mixed_5c", 256, 64),
        inception_a("mixed2", "Mixed_5d", 288, 64),
        inception_b(),
        inception_c("mixed4", "Mixed_6b", 128),
        inception_c("mixed5", "Mixed_6c", 160),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::graph::conv_units;
    use super::*;

    #[test]
    fn trunk_has_the_fifty_frozen_keras_convolutions() {
        let blocks = blocks();
        let units: Vec<_> = conv_units(&blocks).collect();
        assert_eq!(units.len(), 50, "conv2d_1 … conv2d_50 end at mixed5");
        assert_eq!(units[0].0, "Conv2d_1a_3x3.conv.weight");
        assert_eq!(units[26].0, "Mixed_6a.branch3x3.conv.weight");
        assert_eq!(units[49].0, "Mixed_6c.branch_pool.conv.weight");
    }
}
