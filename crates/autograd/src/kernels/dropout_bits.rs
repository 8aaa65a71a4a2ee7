//! The counter-based random bits of dropout: element `i` of a mask seeded with `s` reads the
//! 16-bit field `i mod 4` of the `⌊i/4⌋`-th output of a SplitMix64 stream seeded with `s`,
//!
//! ```text
//! field(s, i) = (splitmix64(s + (⌊i/4⌋ + 1)·γ) >> (16 · (i mod 4))) mod 2¹⁶,
//! ```
//!
//! and is kept iff `field(s, i) ≥ t` for the threshold `t = ⌊p·2¹⁶⌋` — keep probability
//! `1 − t/2¹⁶`, within `2⁻¹⁶` of `1 − p`. One 64-bit hash serves four elements: on AVX-512
//! (with the BW and DQ extensions) eight hashes per register give 32 fields, compared with the
//! threshold in one instruction (`vpcmpuw`) whose 32-bit result selects `scale` or 0 for two
//! registers of factors. `Var::dropout` forward + backward on `[25600, 256]` (one thread,
//! `RAYON_NUM_THREADS=1 cargo bench -p closeup-autograd --bench kernels -- "^dropout"`):
//! 10.6–10.9 ms with one hash per element, 7.7–8.0 ms this way. The portable path computes the
//! same fields (tested bit for bit).
//!
//! Each factor depends only on `(s, i)`, so any split of the elements between calls, threads
//! or row segments gives the same mask.

/// The SplitMix64 increment (2⁶⁴ / φ).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output for counter `j` of the stream seeded with `seed`.
#[inline(always)]
pub(crate) fn splitmix64(seed: u64, j: u64) -> u64 {
    let mut z = seed.wrapping_add(j.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 16 random bits of element `i` (see the module docs).
#[inline(always)]
pub(crate) fn field(seed: u64, i: u64) -> u16 {
    (splitmix64(seed, i >> 2) >> (16 * (i & 3))) as u16
}

/// The dropout threshold for rate `p ∈ [0, 1)`: `⌊p·2¹⁶⌋`.
pub(crate) fn threshold(p: f32) -> u16 {
    (f64::from(p) * 65_536.0).min(65_535.0) as u16
}

/// `out[k] = scale` if element `start + k` is kept (`field(seed, start + k) ≥ t`), else 0.
pub(crate) fn factors(seed: u64, t: u16, scale: f32, start: u64, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512_bw_dq() {
        // Elements before the first multiple of 4, then blocks of 32, then the rest.
        let head = ((4 - start % 4) % 4).min(out.len() as u64) as usize;
        let (first, rest) = out.split_at_mut(head);
        portable(seed, t, scale, start, first);
        let blocks = rest.len() / 32 * 32;
        let (middle, tail) = rest.split_at_mut(blocks);
        let at = start + head as u64;
        if !middle.is_empty() {
            #[allow(unsafe_code)]
            // SAFETY: AVX-512F/BW/DQ are available (checked above); `at` is a multiple of 4
            // (a non-empty middle follows a whole head) and `middle`'s length a multiple of 32.
            unsafe {
                avx512::factors(seed, t, scale, at, middle);
            }
        }
        portable(seed, t, scale, at + blocks as u64, tail);
        return;
    }
    portable(seed, t, scale, start, out);
}

/// Whether the CPU has the AVX-512 extensions [`avx512::factors`] uses.
#[cfg(target_arch = "x86_64")]
fn has_avx512_bw_dq() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

/// [`factors`] one hash per group of four elements (the reference for the vector path).
fn portable(seed: u64, t: u16, scale: f32, start: u64, out: &mut [f32]) {
    let factor = |f: u16| if f >= t { scale } else { 0.0 };
    let head = ((4 - start % 4) % 4).min(out.len() as u64) as usize;
    let (first, rest) = out.split_at_mut(head);
    for (k, o) in first.iter_mut().enumerate() {
        *o = factor(field(seed, start + k as u64));
    }
    let at = start + head as u64;
    for (g, quad) in rest.chunks_mut(4).enumerate() {
        let h = splitmix64(seed, (at >> 2) + g as u64);
        for (k, o) in quad.iter_mut().enumerate() {
            *o = factor((h >> (16 * k)) as u16);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::GAMMA;
    use std::arch::x86_64::{
        _mm512_add_epi64, _mm512_cmpge_epu16_mask, _mm512_maskz_mov_ps, _mm512_mullo_epi64,
        _mm512_set_epi64, _mm512_set1_epi16, _mm512_set1_epi64, _mm512_set1_ps, _mm512_srli_epi64,
        _mm512_storeu_ps, _mm512_xor_si512,
    };

    /// [`super::factors`] for `start` a multiple of 4 and `out` a multiple of 32 long: per 32
    /// elements, eight SplitMix64 outputs in one register (the counters advance by 8γ), their
    /// 32 fields compared with `t` at once, the mask's halves selecting `scale` or 0.
    ///
    /// # Safety
    /// The CPU supports AVX-512F, BW and DQ.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq")]
    pub(super) unsafe fn factors(seed: u64, t: u16, scale: f32, start: u64, out: &mut [f32]) {
        debug_assert!(start.is_multiple_of(4) && out.len().is_multiple_of(32));
        let counters = _mm512_add_epi64(
            _mm512_set1_epi64(((start >> 2) + 1) as i64),
            _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0),
        );
        // z = seed + (j + 1)·γ for the eight counters j, then + 8γ per block.
        let mut z = _mm512_add_epi64(
            _mm512_set1_epi64(seed as i64),
            _mm512_mullo_epi64(counters, _mm512_set1_epi64(GAMMA as i64)),
        );
        let step = _mm512_set1_epi64(GAMMA.wrapping_mul(8) as i64);
        let m1 = _mm512_set1_epi64(0xBF58_476D_1CE4_E5B9_u64 as i64);
        let m2 = _mm512_set1_epi64(0x94D0_49BB_1331_11EB_u64 as i64);
        let tv = _mm512_set1_epi16(t as i16);
        let sv = _mm512_set1_ps(scale);
        for block in out.chunks_exact_mut(32) {
            let mut h = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), m1);
            h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_srli_epi64(h, 27)), m2);
            h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 31));
            // Bit k of the mask is field k of the block (16-bit lanes, little-endian).
            let keep = _mm512_cmpge_epu16_mask(h, tv);
            // SAFETY: `block` holds 32 elements.
            unsafe {
                _mm512_storeu_ps(block.as_mut_ptr(), _mm512_maskz_mov_ps(keep as u16, sv));
                _mm512_storeu_ps(
                    block.as_mut_ptr().add(16),
                    _mm512_maskz_mov_ps((keep >> 16) as u16, sv),
                );
            }
            z = _mm512_add_epi64(z, step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // The first outputs of SplitMix64 seeded with 1234567 (Vigna's reference code).
        assert_eq!(splitmix64(1_234_567, 0), 6_457_827_717_110_365_317);
        assert_eq!(splitmix64(1_234_567, 1), 3_203_168_211_198_807_973);
    }

    #[test]
    fn factors_equal_the_field_definition_at_any_start_and_length() {
        let (seed, scale) = (0x0123_4567_89AB_CDEF, 1.25);
        for p in [0.1_f32, 0.5, 0.9] {
            let t = threshold(p);
            for start in [0_u64, 1, 2, 3, 4, 100, 10_001, (1 << 40) + 3] {
                for len in [0, 1, 3, 4, 5, 31, 32, 33, 64, 100, 257] {
                    let mut out = vec![f32::NAN; len];
                    factors(seed, t, scale, start, &mut out);
                    for (k, &o) in out.iter().enumerate() {
                        let want = if field(seed, start + k as u64) >= t {
                            scale
                        } else {
                            0.0
                        };
                        assert_eq!(o.to_bits(), want.to_bits(), "p {p} start {start} k {k}");
                    }
                    let mut twin = vec![f32::NAN; len];
                    portable(seed, t, scale, start, &mut twin);
                    assert_eq!(out, twin);
                }
            }
        }
    }

    #[test]
    fn threshold_rounds_down_and_stays_below_two_to_the_sixteen() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(0.1), 6553);
        assert_eq!(threshold(0.5), 32768);
        assert_eq!(threshold(0.999_999_9), 65_535);
    }
}
