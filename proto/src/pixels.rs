//! Planar RGB pixels on the wire. Tiles go out and changes come back as
//! little-endian f32 by default: the octave image is float (base plus
//! carried detail), and f32 is exact. f16 halves the bytes for jobs that
//! ask for it (`wire_precision = "f16"`); a single-machine render of such
//! a job rounds its tiles the same way ([`round_as_on_the_wire`]), so its
//! frames stay identical to the cluster's.

use dreamfarm_common::params::WirePrecision;
use dreamfarm_common::resample::{Planar, all_finite};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::halves;
use crate::pb::PixelFormat;
use crate::{Bytes, CHUNK_BYTES, MAX_TILE_SIDE, WireError};

/// The pixel format of a job's leases and results.
pub fn format_for(precision: WirePrecision) -> PixelFormat {
    match precision {
        WirePrecision::F32 => PixelFormat::F32,
        WirePrecision::F16 => PixelFormat::F16,
    }
}

/// Rounds `image` as [`encode`] then [`decode`] in `format` would.
pub fn round_as_on_the_wire(image: &mut Planar, format: PixelFormat) {
    if format == PixelFormat::F16 {
        halves::narrow(&image.data).convert_to_f32_slice(&mut image.data);
    }
}

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

/// Encodes `image`'s samples in wire pieces of at most [`CHUNK_BYTES`].
/// In f32 on a little-endian machine the pieces are the samples' own
/// memory, shared with `image` (which they keep alive), not copied; in
/// f16 each piece is converted as it is taken, so a 14 MB tile is never
/// copied whole.
pub fn encode<P>(image: P, format: PixelFormat) -> Result<Encoded, WireError>
where
    P: AsRef<Planar> + Send + 'static,
{
    let bytes = sample_bytes(format)?;
    let samples = image.as_ref().data.len();
    let source = if format == PixelFormat::F32 && cfg!(target_endian = "little") {
        Source::Shared(Bytes::from_owner(SampleBytes(image)))
    } else {
        Source::Samples(Box::new(image))
    };
    Ok(Encoded {
        total_bytes: samples as u64 * bytes,
        per_piece: CHUNK_BYTES / bytes as usize,
        next: 0,
        samples,
        source,
        format,
    })
}

/// An image's samples seen as their bytes in memory.
struct SampleBytes<P>(P);

impl<P: AsRef<Planar>> AsRef<[u8]> for SampleBytes<P> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0.as_ref().data)
    }
}

/// Halves seen as their bytes in memory.
struct HalfBytes(Vec<f16>);

impl AsRef<[u8]> for HalfBytes {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Where an encoding's pieces come from.
enum Source {
    /// The samples' own bytes, already the wire's.
    Shared(Bytes),
    /// The samples, converted piece by piece.
    Samples(Box<dyn AsRef<Planar> + Send>),
}

/// The pieces of an encoded image, in order.
pub struct Encoded {
    total_bytes: u64,
    /// Samples per piece.
    per_piece: usize,
    /// The first sample of the next piece.
    next: usize,
    /// Samples in all.
    samples: usize,
    source: Source,
    format: PixelFormat,
}

impl Encoded {
    /// Bytes of all the pieces together, for the payload's header.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

impl Iterator for Encoded {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let range = self.next..(self.next + self.per_piece).min(self.samples);
        if range.is_empty() {
            return None;
        }
        self.next = range.end;
        Some(match &self.source {
            Source::Shared(bytes) => bytes.slice(4 * range.start..4 * range.end),
            Source::Samples(image) => {
                let samples = &(**image).as_ref().data[range];
                match self.format {
                    PixelFormat::F16 => {
                        let halves = halves::narrow(samples);
                        if cfg!(target_endian = "little") {
                            // The halves' memory is the piece: not copied
                            // again.
                            Bytes::from_owner(HalfBytes(halves))
                        } else {
                            le_bytes(&halves, |v| v.to_le_bytes()).into()
                        }
                    }
                    _ => le_bytes(samples, |v| v.to_le_bytes()).into(),
                }
            }
        })
    }
}

/// `samples` as little-endian bytes: on a little-endian machine (every one
/// the farm runs on) a single copy of their memory.
fn le_bytes<T: bytemuck::NoUninit, const N: usize>(
    samples: &[T],
    to_le_bytes: impl Fn(&T) -> [u8; N],
) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice(samples).to_vec()
    } else {
        samples.iter().flat_map(to_le_bytes).collect()
    }
}

/// Decodes a `width`×`height` image, refusing a payload of the wrong length
/// or with non-finite samples.
pub fn decode(
    bytes: &[u8],
    width: u32,
    height: u32,
    format: PixelFormat,
) -> Result<Planar, WireError> {
    let mut decoder = Decoder::new(width, height, format)?;
    decoder.add(bytes)?;
    decoder.finish()
}

/// Decodes an image whose pieces arrive one by one straight into its
/// samples: no buffer of the whole payload's bytes, and each byte is read
/// once while it is still in cache. A 4K frame's results are 190 MB.
#[derive(Debug)]
pub struct Decoder {
    width: usize,
    height: usize,
    format: PixelFormat,
    /// Bytes per sample of `format`.
    sample_bytes: usize,
    expected: u64,
    received: u64,
    /// The samples so far.
    data: Vec<f32>,
    /// The start of a sample cut between two pieces.
    partial: Vec<u8>,
}

impl Decoder {
    /// Expects a `width`×`height` image in `format`, a size the receiver
    /// has checked against what it asked for (a result's follows from its
    /// lease): its samples are allocated here, at once.
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Result<Self, WireError> {
        let expected = payload_bytes("image", width, height, format)?;
        let samples = 3 * width as usize * height as usize;
        Ok(Self {
            width: width as usize,
            height: height as usize,
            format,
            sample_bytes: sample_bytes(format)? as usize,
            expected,
            received: 0,
            data: Vec::with_capacity(samples),
            partial: Vec::new(),
        })
    }

    /// Adds a piece; refuses one bigger than a chunk, one that overruns
    /// the image, and non-finite samples.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), WireError> {
        if piece.len() > CHUNK_BYTES {
            return Err(WireError::Length {
                expected: CHUNK_BYTES as u64,
                got: piece.len() as u64,
            });
        }
        self.add(piece)
    }

    /// [`push`](Self::push) without the piece size limit.
    fn add(&mut self, mut piece: &[u8]) -> Result<(), WireError> {
        let got = self.received + piece.len() as u64;
        if got > self.expected {
            return Err(WireError::Length {
                expected: self.expected,
                got,
            });
        }
        self.received = got;
        let first = self.data.len();
        let size = self.sample_bytes;
        if !self.partial.is_empty() {
            let (rest, after) = piece.split_at((size - self.partial.len()).min(piece.len()));
            self.partial.extend_from_slice(rest);
            piece = after;
            if self.partial.len() == size {
                let sample = std::mem::take(&mut self.partial);
                self.convert(&sample);
            }
        }
        let (whole, cut) = piece.split_at(piece.len() / size * size);
        self.convert(whole);
        self.partial.extend_from_slice(cut);
        if !all_finite(&self.data[first..]) {
            return Err(WireError::Protocol(
                "pixels hold NaN or infinite values".into(),
            ));
        }
        Ok(())
    }

    /// Appends the samples of `bytes`, whole samples of the format.
    fn convert(&mut self, bytes: &[u8]) {
        let samples = bytes.chunks_exact(self.sample_bytes);
        match self.format {
            PixelFormat::F16 => halves::widen_into(bytes, &mut self.data),
            // The bytes are the samples' own (on a little-endian machine):
            // copied, not converted sample by sample. A piece aligned for
            // f32 is cast; one that is not goes through a small aligned
            // block that stays in cache, rather than into zeroed room (a
            // second pass over the samples' memory).
            _ if cfg!(target_endian = "little") => match bytemuck::try_cast_slice(bytes) {
                Ok(own) => self.data.extend_from_slice(own),
                Err(_) => {
                    let mut block = [0.0f32; 4096];
                    for run in bytes.chunks(4 * block.len()) {
                        let samples = &mut block[..run.len() / 4];
                        bytemuck::cast_slice_mut::<f32, u8>(samples).copy_from_slice(run);
                        self.data.extend_from_slice(samples);
                    }
                }
            },
            _ => self
                .data
                .extend(samples.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
    }

    /// Whether every byte of the image has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.expected
    }

    /// The image, once complete.
    pub fn finish(self) -> Result<Planar, WireError> {
        if !self.is_complete() {
            return Err(WireError::Length {
                expected: self.expected,
                got: self.received,
            });
        }
        Ok(Planar {
            width: self.width,
            height: self.height,
            data: self.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(image: &Planar, format: PixelFormat) -> Vec<u8> {
        let pieces = encode(image.clone(), format).unwrap();
        let total = pieces.total_bytes();
        let bytes = pieces.flatten().collect::<Vec<u8>>();
        assert_eq!(bytes.len() as u64, total);
        bytes
    }

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
        let back = decode(&encoded(&img, PixelFormat::F32), 3, 2, PixelFormat::F32);
        assert_eq!(back.unwrap(), img);
        let half = decode(&encoded(&img, PixelFormat::F16), 3, 2, PixelFormat::F16).unwrap();
        for (a, b) in half.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn pieces_at_any_alignment_decode_exactly() {
        // More samples than the blocks unaligned pieces are copied
        // through, most of them different: every byte of an f32 varies,
        // and in f16 each sample is a half, so exact there too.
        let spread = |i: usize| (i as u32).wrapping_mul(2_654_435_761);
        let mut floats = Planar::zeros(100, 50);
        let mut halves = Planar::zeros(100, 50);
        for (i, (f, h)) in floats.data.iter_mut().zip(&mut halves.data).enumerate() {
            *f = f32::from_bits(0x3f00_0000 + spread(i) % 0x0080_0000);
            *h = f16::from_bits((0x3800 + spread(i) % 0x0800) as u16).to_f32();
        }
        for (format, img) in [(PixelFormat::F32, floats), (PixelFormat::F16, halves)] {
            let bytes = encoded(&img, format);
            for shift in 0..4 {
                let mut shifted = vec![0u8; shift];
                shifted.extend_from_slice(&bytes);
                let back = decode(&shifted[shift..], 100, 50, format).expect("decoded");
                assert_eq!(back, img, "{format:?}: {shift} bytes off alignment");
            }
        }
    }

    #[test]
    fn rounding_in_place_matches_the_wire() {
        for format in [PixelFormat::F32, PixelFormat::F16] {
            let mut img = image();
            let sent = decode(&encoded(&img, format), 3, 2, format).unwrap();
            round_as_on_the_wire(&mut img, format);
            assert_eq!(img, sent);
        }
        assert_ne!(
            image(),
            decode(&encoded(&image(), PixelFormat::F16), 3, 2, PixelFormat::F16).unwrap(),
            "f16 rounds these samples"
        );
    }

    #[test]
    fn f16_pieces_hold_the_nearest_halves_sample_by_sample() {
        // Bit patterns across the whole f32 range (every sign, exponent,
        // subnormals, values past the f16 range): the vectorised slice
        // conversion must give each sample exactly the half, and each half
        // exactly the float, that converting it alone gives.
        let side = 256;
        let data: Vec<f32> = (0..3 * side * side)
            .map(|i: u32| f32::from_bits(i.wrapping_mul(21_851)))
            .map(|v| if v.is_finite() { v } else { -0.0 })
            .collect();
        let img = Planar {
            width: side as usize,
            height: side as usize,
            data,
        };
        let bytes = encoded(&img, PixelFormat::F16);
        let one_by_one: Vec<u8> = img
            .data
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        assert!(bytes == one_by_one, "encoded halves differ");
        // Every finite half (63,488 of them, zeros after), back to floats.
        let mut halves: Vec<f16> = (0..=u16::MAX)
            .map(f16::from_bits)
            .filter(|h| h.is_finite())
            .collect();
        assert_eq!(halves.len(), 63_488);
        halves.resize(3 * 146 * 146, f16::ZERO);
        let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let back = decode(&bytes, 146, 146, PixelFormat::F16);
        let expected: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        assert!(back.unwrap().data == expected, "decoded floats differ");
    }

    #[test]
    fn big_images_go_in_pieces_of_at_most_a_chunk() {
        let (w, h) = (1024, 200);
        let img = Planar {
            width: w,
            height: h,
            data: (0..3 * w * h).map(|i| (i % 997) as f32 / 997.0).collect(),
        };
        for format in [PixelFormat::F32, PixelFormat::F16] {
            let pieces: Vec<Bytes> = encode(img.clone(), format).unwrap().collect();
            assert!(pieces.len() > 1);
            assert!(pieces.iter().all(|p| p.len() <= CHUNK_BYTES));
            let back = decode(&pieces.concat(), w as u32, h as u32, format).unwrap();
            let exact = format == PixelFormat::F32;
            for (a, b) in back.data.iter().zip(&img.data) {
                assert!(if exact { a == b } else { (a - b).abs() < 1e-3 });
            }
        }
    }

    #[test]
    fn pieces_cut_anywhere_decode_as_the_whole() {
        let img = image();
        for format in [PixelFormat::F32, PixelFormat::F16] {
            let bytes = encoded(&img, format);
            let whole = decode(&bytes, 3, 2, format).unwrap();
            for cut in [1, 3, 5, 7] {
                let mut d = Decoder::new(3, 2, format).unwrap();
                for piece in bytes.chunks(cut) {
                    assert!(!d.is_complete());
                    d.push(piece).unwrap();
                }
                assert_eq!(d.finish().unwrap(), whole, "{format:?} in pieces of {cut}");
            }
        }
        let mut short = Decoder::new(3, 2, PixelFormat::F32).unwrap();
        short.push(&encoded(&img, PixelFormat::F32)[..70]).unwrap();
        assert_eq!(
            short.finish(),
            Err(WireError::Length {
                expected: 72,
                got: 70
            })
        );
        let mut big = Decoder::new(MAX_TILE_SIDE, 1, PixelFormat::F32).unwrap();
        assert!(
            big.push(&vec![0; CHUNK_BYTES + 1]).is_err(),
            "a piece over a chunk"
        );
        let mut nan = Decoder::new(3, 2, PixelFormat::F32).unwrap();
        let bits = f32::NAN.to_le_bytes();
        nan.push(&bits[..2]).unwrap();
        assert!(nan.push(&bits[2..]).is_err(), "a NaN cut in two");
    }

    #[test]
    fn a_non_finite_sample_anywhere_in_a_big_piece_is_refused() {
        // A piece of almost a chunk; the bad sample first, a few blocks of
        // a vectorised check in, in the middle and last.
        let (width, height) = (1024, 85);
        let samples = 3 * width * height;
        for at in [0, 1023, 1024, 2049, samples / 2 + 1, samples - 1] {
            let mut image = vec![0.5f32; samples];
            image[at] = f32::INFINITY;
            let f32_bytes: Vec<u8> = image.iter().flat_map(|v| v.to_le_bytes()).collect();
            let f16_bytes: Vec<u8> = image
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect();
            for (format, piece) in [(PixelFormat::F32, f32_bytes), (PixelFormat::F16, f16_bytes)] {
                assert!(piece.len() <= CHUNK_BYTES);
                let mut d = Decoder::new(width as u32, height as u32, format).unwrap();
                assert!(d.push(&piece).is_err(), "{format:?}, at {at}");
            }
        }
    }

    #[test]
    fn wrong_lengths_sizes_and_formats_are_refused() {
        let bytes = encoded(&image(), PixelFormat::F32);
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
