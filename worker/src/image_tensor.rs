//! Conversions between 8-bit RGB pixels and the `[1, 3, H, W]` f32 tensors
//! in `0..=1` that the models take.

use tch::{Device, Kind, Tensor};

/// Interleaved RGB bytes (row-major, `width * height * 3`) as a tensor.
pub fn from_rgb8(pixels: &[u8], width: u32, height: u32, device: Device) -> Tensor {
    Tensor::from_slice(pixels)
        .to_device(device)
        .view([i64::from(height), i64::from(width), 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .to_kind(Kind::Float)
        / 255.0
}

/// A `[1, 3, H, W]` tensor in `0..=1` as interleaved RGB bytes, rounded.
pub fn to_rgb8(image: &Tensor) -> Vec<u8> {
    let bytes = (image.squeeze_dim(0).permute([1, 2, 0]) * 255.0)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .to_device(Device::Cpu)
        .contiguous()
        .flatten(0, -1);
    Vec::<u8>::try_from(&bytes).expect("a uint8 tensor converts to bytes")
}
