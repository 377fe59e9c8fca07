//! Planar RGB pixels on the wire. Tiles go out and changes come back as
//! little-endian f32 by default: the octave image is float (base plus
//! carried detail), and f32 keeps a cluster's frames bit-identical to a
//! single-machine render. f16 halves the bytes for jobs that accept
//! ~1e-3 relative error per step.

use dreamfarm_common::resample::Planar;

use crate::pb::PixelFormat;
use crate::{MAX_TILE_SIDE, WireError};

/// Bytes per sample of `format`.
pub fn sample_bytes(format: PixelFormat) -> Result<u64, WireError> {
    match format {
        PixelFormat::F32 => Ok(4),
        PixelFormat::F16 => Ok(2),
        PixelFormat::Unspecified => Err(WireError::Format(format as i32)),
    }
}

/// The format named by a message's enum field.
pub fn format_of(raw: i32) -> Result<PixelFormat, WireError> {
    match PixelFormat::try_from(raw) {
        Ok(PixelFormat::Unspecified) | Err(_) => Err(WireError::Format(raw)),
        Ok(f) => Ok(f),
    }
}

/// Bytes of a `width`×`height` RGB image in `format`, after checking the
/// dimensions against the protocol's limits.
pub fn payload_bytes(
    what: &'static str,
    width: u32,
    height: u32,
    format: PixelFormat,
) -> Result<u64, WireError> {
    let valid = 1..=MAX_TILE_SIDE;
    if !valid.contains(&width) || !valid.contains(&height) {
        return Err(WireError::Size {
            what,
            width,
            height,
        });
    }
    Ok(3 * u64::from(width) * u64::from(height) * sample_bytes(format)?)
}

/// Encodes `image`'s samples.
pub fn encode(image: &Planar, format: PixelFormat) -> Result<Vec<u8>, WireError> {
    let bytes = sample_bytes(format)? as usize;
    let mut out = Vec::with_capacity(image.data.len() * bytes);
    match format {
        PixelFormat::F32 => image
            .data
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        PixelFormat::F16 => image
            .data
            .iter()
            .for_each(|&v| out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
        PixelFormat::Unspecified => unreachable!("sample_bytes refused it"),
    }
    Ok(out)
}

/// Decodes a `width`×`height` image, refusing a payload of the wrong length
/// or with non-finite samples.
pub fn decode(
    bytes: &[u8],
    width: u32,
    height: u32,
    format: PixelFormat,
) -> Result<Planar, WireError> {
    let expected = payload_bytes("image", width, height, format)?;
    if bytes.len() as u64 != expected {
        return Err(WireError::Length {
            expected,
            got: bytes.len() as u64,
        });
    }
    let data: Vec<f32> = match format {
        PixelFormat::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        PixelFormat::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        PixelFormat::Unspecified => unreachable!("payload_bytes refused it"),
    };
    if data.iter().any(|v| !v.is_finite()) {
        return Err(WireError::Protocol(
            "pixels hold NaN or infinite values".into(),
        ));
    }
    Ok(Planar {
        width: width as usize,
        height: height as usize,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Planar {
        Planar {
            width: 3,
            height: 2,
            data: (0..18).map(|i| i as f32 / 17.0 - 0.3).collect(),
        }
    }

    #[test]
    fn f32_round_trips_exactly_and_f16_closely() {
        let img = image();
        let back = decode(
            &encode(&img, PixelFormat::F32).unwrap(),
            3,
            2,
            PixelFormat::F32,
        );
        assert_eq!(back.unwrap(), img);
        let half = decode(
            &encode(&img, PixelFormat::F16).unwrap(),
            3,
            2,
            PixelFormat::F16,
        )
        .unwrap();
        for (a, b) in half.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn wrong_lengths_sizes_and_formats_are_refused() {
        let bytes = encode(&image(), PixelFormat::F32).unwrap();
        assert_eq!(
            decode(&bytes[1..], 3, 2, PixelFormat::F32),
            Err(WireError::Length {
                expected: 72,
                got: 71
            })
        );
        assert!(matches!(
            decode(&bytes, 0, 2, PixelFormat::F32),
            Err(WireError::Size { .. })
        ));
        assert!(decode(&bytes, MAX_TILE_SIDE + 1, 1, PixelFormat::F32).is_err());
        assert_eq!(format_of(0), Err(WireError::Format(0)));
        assert_eq!(format_of(99), Err(WireError::Format(99)));
        let nan = f32::NAN.to_le_bytes().repeat(18);
        assert!(decode(&nan, 3, 2, PixelFormat::F32).is_err());
    }
}
