//! Building blocks shared by the built-in networks.

use tch::{Kind, Tensor};

use super::ModelError;
use super::weights_file::WeightsFile;

/// `x` (NCHW-shaped) with its values stored channels-last (NHWC strides).
///
/// Convolutions, pooling and their gradients run faster in that layout on
/// CPU (oneDNN) and GPU (cuDNN tensor cores); PyTorch picks the layout from
/// the strides and keeps it through the network, so the weights and the
/// network's input are converted once and everything after follows.
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// The nonlinearity after a convolution.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    /// No nonlinearity (MobileNetV2's linear bottleneck).
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` in value, but with ReLU's gradient: the clip at 6
    /// would stop the dream's gradient where activations are strongest.
    Relu6,
}

impl Activation {
    /// `x` through the nonlinearity.
    pub fn apply(self, x: Tensor) -> Tensor {
        match self {
            Self::Linear => x,
            Self::Relu => x.relu(),
            Self::Relu6 => clip_at_six(x.relu()),
        }
    }

    /// Like [`apply`](Self::apply), reusing `x`'s memory where the
    /// nonlinearity allows: for a convolution's output, whose gradient does
    /// not need it, so no second tensor of its size is made.
    fn apply_in_place(self, mut x: Tensor) -> Tensor {
        match self {
            Self::Linear => x,
            Self::Relu => x.relu_(),
            Self::Relu6 => clip_at_six(x.relu_()),
        }
    }
}

/// `relu` (ReLU's output) clipped at 6 in place, out of autograd's sight:
/// ReLU's gradient reads only which of its outputs are above 0, which the
/// clip keeps, so the gradient stays ReLU's. One pass, where subtracting
/// the detached excess took three and a tensor of their size each.
fn clip_at_six(relu: Tensor) -> Tensor {
    // `data` shares the values but not the version autograd checks.
    let _ = relu.data().clamp_max_(6.0);
    relu
}

/// Shape and placement of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels (per group times groups).
    pub cin: i64,
    /// Output channels.
    pub cout: i64,
    /// Kernel height and width.
    pub kernel: [i64; 2],
    /// Stride in both directions.
    pub stride: i64,
    /// Zero padding, rows and columns.
    pub padding: [i64; 2],
    /// Convolution groups (depthwise: `cin`).
    pub groups: i64,
}

impl ConvShape {
    /// A square `k`×`k` kernel, stride 1, no padding, one group.
    pub const fn square(cin: i64, cout: i64, k: i64) -> Self {
        Self {
            cin,
            cout,
            kernel: [k, k],
            stride: 1,
            padding: [0, 0],
            groups: 1,
        }
    }

    /// Pads `k / 2` on each side, keeping the size at stride 1 (odd kernels).
    pub const fn same(self) -> Self {
        Self {
            padding: [self.kernel[0] / 2, self.kernel[1] / 2],
            ..self
        }
    }

    /// Sets the stride.
    pub const fn stride(self, stride: i64) -> Self {
        Self { stride, ..self }
    }
}

/// Convolution followed by inference-mode BatchNorm, folded at load time
/// into one convolution with bias, then the activation.
#[derive(Debug)]
pub struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    shape: ConvShape,
    activation: Activation,
}

/// Where the convolution and BatchNorm tensors of a [`ConvBn`] are stored.
pub struct ConvBnNames<'a> {
    /// The conv kernel, OIHW.
    pub weight: &'a str,
    /// The BatchNorm prefix (`{bn}.bias`, `{bn}.running_mean`, ...).
    pub bn: &'a str,
}

impl ConvBn {
    /// Loads and folds `conv(x) -> bn -> activation`. A BatchNorm without
    /// `weight` is Keras' `scale=False` (gamma = 1).
    pub fn load(
        w: &mut WeightsFile,
        names: ConvBnNames<'_>,
        shape: ConvShape,
        eps: f64,
        activation: Activation,
    ) -> Result<Self, ModelError> {
        let [kh, kw] = shape.kernel;
        let c = [shape.cout];
        let kernel = w.take(
            names.weight,
            &[shape.cout, shape.cin / shape.groups, kh, kw],
        )?;
        let bn = names.bn;
        let gamma = w.take_optional(&format!("{bn}.weight"), &c)?;
        let beta = w.take(&format!("{bn}.bias"), &c)?;
        let mean = w.take(&format!("{bn}.running_mean"), &c)?;
        let var = w.take(&format!("{bn}.running_var"), &c)?;
        let inv_std = (var + eps).rsqrt();
        let scale = match gamma {
            Some(g) => g * inv_std,
            None => inv_std,
        };
        let weight = channels_last(&(kernel * scale.view([-1, 1, 1, 1])));
        let bias = beta - mean * scale;
        Ok(Self {
            weight,
            bias,
            shape,
            activation,
        })
    }

    /// Converts the weight and bias to `kind` (the weight keeps its
    /// channels-last layout).
    pub fn convert(&mut self, kind: Kind) {
        self.weight = self.weight.to_kind(kind);
        self.bias = self.bias.to_kind(kind);
    }

    /// Whether this is a 1×1, stride-1, unpadded, ungrouped convolution:
    /// one that sibling branches reading the same input can share.
    pub fn is_pointwise(&self) -> bool {
        let s = self.shape;
        s.kernel == [1, 1] && s.stride == 1 && s.padding == [0, 0] && s.groups == 1
    }

    /// The convolution without its activation, and the activation.
    pub fn split_activation(self) -> (Self, Activation) {
        let activation = self.activation;
        (
            Self {
                activation: Activation::Linear,
                ..self
            },
            activation,
        )
    }

    /// One convolution computing the outputs of `convs` side by side along
    /// channels, and how many channels each has. They must read the same
    /// input with the same geometry.
    pub fn concat(convs: &[Self]) -> (Self, Vec<i64>) {
        let shape = convs.first().expect("a convolution to concatenate").shape;
        let sizes: Vec<i64> = convs.iter().map(|c| c.shape.cout).collect();
        let weights: Vec<&Tensor> = convs.iter().map(|c| &c.weight).collect();
        let biases: Vec<&Tensor> = convs.iter().map(|c| &c.bias).collect();
        assert!(
            convs.iter().all(|c| ConvShape {
                cout: shape.cout,
                ..c.shape
            } == shape),
            "concatenated convolutions differ in more than their outputs"
        );
        let fused = Self {
            weight: channels_last(&Tensor::cat(&weights, 0)),
            bias: Tensor::cat(&biases, 0),
            shape: ConvShape {
                cout: sizes.iter().sum(),
                ..shape
            },
            activation: Activation::Linear,
        };
        (fused, sizes)
    }

    /// Applies the folded convolution and the activation.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let s = self.shape;
        let y = x.conv2d(
            &self.weight,
            Some(&self.bias),
            [s.stride, s.stride],
            s.padding,
            [1, 1],
            s.groups,
        );
        self.activation.apply_in_place(y)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::Activation;

    /// ReLU6 keeps its values in 0..=6 but passes ReLU's gradient, above 6
    /// too, whether it runs on a fresh tensor or in place on one.
    #[test]
    fn relu6_clips_the_values_and_keeps_relus_gradient() {
        let values = [-3.0f32, -0.0, 0.5, 5.9, 6.0, 6.5, 40.0];
        let clipped = [0.0f32, 0.0, 0.5, 5.9, 6.0, 6.0, 6.0];
        let gradient = [0.0f32, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        for in_place in [false, true] {
            let x = Tensor::from_slice(&values).set_requires_grad(true);
            // What a convolution hands on: a result of autograd, not a leaf.
            let y = &x * 1.0;
            let out = if in_place {
                Activation::Relu6.apply_in_place(y)
            } else {
                Activation::Relu6.apply(y)
            };
            let seen = Vec::<f32>::try_from(&out).expect("values");
            assert_eq!(seen, clipped, "in place: {in_place}");
            // Weighted so that a gradient that skipped the clip shows.
            let weights = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
            (out * &weights).sum(Kind::Float).backward();
            let grad = Vec::<f32>::try_from(x.grad()).expect("gradient");
            let expected: Vec<f32> = gradient
                .iter()
                .zip(1..)
                .map(|(g, w)| g * w as f32)
                .collect();
            assert_eq!(grad, expected, "in place: {in_place}");
        }
    }
}
