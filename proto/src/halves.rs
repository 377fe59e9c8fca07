//! f32 samples narrowed to f16 for the wire and widened back, in one pass
//! over memory each way.
//!
//! A job with `wire_precision = "f16"` converts every sample it sends and
//! receives: a 4K frame is 118 M samples on the coordinator. The `half`
//! crate converts eight samples per (not inlined) call into a slice that
//! must be zeroed first; with the F16C instructions in the loop itself the
//! conversion runs at the speed of memory and writes straight into a
//! vector's spare room. The results are the same halves and floats bit for
//! bit (round to nearest even, as `f16::from_f32`); CPUs without F16C take
//! `half`'s portable path.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// `samples` rounded to the nearest halves.
pub fn narrow(samples: &[f32]) -> Vec<f16> {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        let mut halves = Vec::with_capacity(samples.len());
        // SAFETY: the CPU has F16C and AVX; `halves` has room for every
        // sample, and all of them are written before the length is set.
        unsafe {
            x86::narrow(samples, halves.as_mut_ptr());
            halves.set_len(samples.len());
        }
        return halves;
    }
    narrow_portably(samples)
}

/// [`narrow`] without F16C.
fn narrow_portably(samples: &[f32]) -> Vec<f16> {
    let mut halves = vec![f16::ZERO; samples.len()];
    halves.convert_from_f32_slice(samples);
    halves
}

/// Appends to `out` the floats of `bytes`, little-endian halves (whole
/// ones: an odd last byte is ignored), which need no alignment.
pub fn widen_into(bytes: &[u8], out: &mut Vec<f32>) {
    let n = bytes.len() / 2;
    out.reserve(n);
    #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
    if x86::available() {
        // SAFETY: the CPU has F16C and AVX; `out` has room for `n` more
        // floats, and all of them are written before the length grows.
        unsafe {
            let first = out.len();
            x86::widen(&bytes[..2 * n], out.as_mut_ptr().add(first));
            out.set_len(first + n);
        }
        return;
    }
    widen_portably(bytes, out);
}

/// [`widen_into`] without F16C.
fn widen_portably(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
    );
}

/// The F16C loops.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::f16;
    use std::arch::x86_64::{
        __m128i, _MM_FROUND_TO_NEAREST_INT, _mm_loadu_si128, _mm_storeu_si128, _mm256_cvtph_ps,
        _mm256_cvtps_ph, _mm256_loadu_ps, _mm256_storeu_ps,
    };

    /// Whether the CPU (and the OS, which must save the AVX registers)
    /// can run these loops.
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("f16c")
    }

    /// Writes the halves of `samples` at `out`.
    ///
    /// # Safety
    /// The CPU has F16C and AVX; `out` has room for `samples.len()` halves.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn narrow(samples: &[f32], out: *mut f16) {
        let whole = samples.len() / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: `i + 8 <= samples.len()`, and `out` has that room.
            unsafe {
                let v = _mm256_loadu_ps(samples.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                _mm_storeu_si128(out.add(i).cast::<__m128i>(), h);
            }
        }
        for (i, &v) in samples.iter().enumerate().skip(whole) {
            // SAFETY: `i < samples.len()`.
            unsafe { out.add(i).write(f16::from_f32(v)) };
        }
    }

    /// Writes the floats of `bytes` (little-endian halves, an even count
    /// of bytes) at `out`.
    ///
    /// # Safety
    /// The CPU has F16C and AVX; `out` has room for `bytes.len() / 2`
    /// floats.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn widen(bytes: &[u8], out: *mut f32) {
        let n = bytes.len() / 2;
        let whole = n / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: bytes `2i .. 2i + 16` lie in `bytes`; `out` has room
            // for floats `i .. i + 8`.
            unsafe {
                let h = _mm_loadu_si128(bytes.as_ptr().add(2 * i).cast::<__m128i>());
                _mm256_storeu_ps(out.add(i), _mm256_cvtph_ps(h));
            }
        }
        for i in whole..n {
            let v = f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32();
            // SAFETY: `i < n`.
            unsafe { out.add(i).write(v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_rounds_every_sample_as_half_does() {
        // Every 3rd float bit pattern near the halves' range, specials
        // included, at a length that leaves a tail after the 8-wide loop.
        let mut samples: Vec<f32> = (0..2_000_003u32)
            .map(|i| f32::from_bits(0x3000_0000u32.wrapping_add(i.wrapping_mul(1_201))))
            .collect();
        samples.extend([
            0.0,
            -0.0,
            65_504.0,
            65_520.0,
            1e-8,
            -1e-8,
            f32::MIN_POSITIVE,
        ]);
        let expected: Vec<u16> = samples
            .iter()
            .map(|&v| f16::from_f32(v).to_bits())
            .collect();
        for narrowed in [narrow(&samples), narrow_portably(&samples)] {
            let got: Vec<u16> = narrowed.iter().map(|h| h.to_bits()).collect();
            assert!(got == expected, "a sample rounded differently");
        }
    }

    #[test]
    fn widening_gives_every_half_s_float_at_any_alignment() {
        let halves: Vec<u16> = (0..=u16::MAX).collect();
        let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(&bytes);
            let mut fast = vec![1.5f32];
            widen_into(&shifted[shift..], &mut fast);
            let mut portable = vec![1.5f32];
            widen_portably(&shifted[shift..], &mut portable);
            for out in [fast, portable] {
                assert_eq!(out.len(), 1 + halves.len());
                for (&h, &v) in halves.iter().zip(&out[1..]) {
                    let want = f16::from_bits(h).to_f32();
                    assert!(
                        v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
                        "half {h:#06x} widened to {v}, not {want}"
                    );
                }
            }
        }
    }
}
