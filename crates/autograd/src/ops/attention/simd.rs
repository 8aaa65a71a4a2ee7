//! AVX-512 versions of the softmax and score-gradient row loops in `rows.rs`, used when the
//! CPU has AVX-512F.
//!
//! Left to the compiler, the per-row passes of [`rows::softmax_rows`](super::rows) came out
//! poorly: the shift by the row maximum as a chain of 8-lane subtractions under masks, the
//! normalizing write into the saved (uninitialized) buffer fully scalar, and the backward's
//! `dS` pass scalar too. In a standalone probe on one head's `[100, 112]` scores (one thread)
//! the softmax took 17.5 µs against 4 µs for its `exp` alone, 7.3 µs here; the whole attention
//! op, forward and backward at the reference shape, 110.5 → 101.8 ms (`RAYON_NUM_THREADS=1
//! cargo bench -p closeup-autograd --bench kernels -- multi_head_attention/fused`). Each softmax
//! row goes through three explicit passes while it sits in L1: `v = s + bias` with the running
//! maximum, `e = exp(v − m)` with the running sum, `e · (1/Σ)`.
//! Every operation is the one the portable loops perform, in the same order — the same `exp`
//! ([`fastmath::exp`] written lane-wise: clamp, Cody–Waite, the Cephes polynomial with
//! separate multiplies and adds, `2ⁿ` from the bits), sums in 16 lanes folded in lane order —
//! so both paths give the same bits for rows without NaN (tested; a NaN score leaves NaN in
//! its row's output on both, though not necessarily in the same places).

use crate::kernels::fastmath::exp_consts as c;
use crate::kernels::small::LANES;
use std::arch::x86_64::{
    __m512, _CMP_GT_OQ, _CMP_LT_OQ, _mm512_add_epi32, _mm512_add_ps, _mm512_castps_si512,
    _mm512_castsi512_ps, _mm512_cmp_ps_mask, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_mask_blend_ps, _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps, _mm512_reduce_max_ps,
    _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm512_storeu_ps,
    _mm512_sub_epi32, _mm512_sub_ps,
};
use std::mem::MaybeUninit;

/// [`fastmath::exp`](crate::kernels::fastmath::exp) on 16 lanes, operation for operation.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn exp(x: __m512) -> __m512 {
    // SAFETY: register-only AVX-512F operations; the caller runs with AVX-512F enabled.
    unsafe {
        let splat = |v: f32| _mm512_set1_ps(v);
        // `clamp`: NaN in the second operand is returned, so NaN propagates as in `f32::clamp`.
        let xc = _mm512_min_ps(splat(c::CLAMP_MAX), _mm512_max_ps(splat(c::EXP_MIN), x));
        let t = _mm512_add_ps(_mm512_mul_ps(xc, splat(c::LOG2E)), splat(c::ROUND_MAGIC));
        let n = _mm512_sub_ps(t, splat(c::ROUND_MAGIC));
        let r = _mm512_sub_ps(
            _mm512_sub_ps(xc, _mm512_mul_ps(n, splat(c::LN2_HI))),
            _mm512_mul_ps(n, splat(c::LN2_LO)),
        );
        let mut p = splat(c::POLY[0]);
        for &k in &c::POLY[1..] {
            p = _mm512_add_ps(_mm512_mul_ps(p, r), splat(k));
        }
        let y = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
            splat(1.0),
        );
        let bits = _mm512_add_epi32(
            _mm512_sub_epi32(
                _mm512_castps_si512(t),
                _mm512_set1_epi32(c::ROUND_MAGIC.to_bits() as i32),
            ),
            _mm512_set1_epi32(127),
        );
        let v = _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)));
        let v = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, splat(c::EXP_MIN)),
            v,
            _mm512_setzero_ps(),
        );
        _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, splat(c::EXP_MAX)),
            v,
            splat(f32::INFINITY),
        )
    }
}

/// The AVX-512 [`rows::softmax_rows`](super::rows::softmax_rows) (same contract, same bits).
///
/// # Safety
/// The CPU supports AVX-512F. (`lp` is a multiple of [`LANES`] and `bias` has `lp` elements,
/// as for the portable version; the slices are only accessed through bounds-checked chunks.)
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
pub(super) unsafe fn softmax_rows(
    p: &mut [f32],
    lp: usize,
    bias: &[f32],
    row_sums: &mut [f32],
    mut out: Option<&mut [MaybeUninit<f32>]>,
) {
    assert!(
        lp.is_multiple_of(LANES) && bias.len() == lp,
        "softmax_rows: row stride {lp} or bias length {}",
        bias.len()
    );
    if let Some(o) = &out {
        assert_eq!(o.len(), p.len(), "softmax_rows: output length");
    }
    // SAFETY: every pointer below comes from a `LANES`-long chunk of a slice; AVX-512F is
    // enabled by the function's target feature.
    unsafe {
        for (i, (row, total)) in p.chunks_exact_mut(lp).zip(row_sums.iter_mut()).enumerate() {
            // v = s + bias, and the row maximum (NaN ignored: `max` returns its second
            // operand, the running maximum, when the element is NaN).
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            for (r, b) in row.chunks_exact_mut(LANES).zip(bias.chunks_exact(LANES)) {
                let v = _mm512_add_ps(_mm512_loadu_ps(r.as_ptr()), _mm512_loadu_ps(b.as_ptr()));
                _mm512_storeu_ps(r.as_mut_ptr(), v);
                mx = _mm512_max_ps(v, mx);
            }
            let m = _mm512_reduce_max_ps(mx);
            // A row with nothing kept is all −∞: shift by 0 so that exp gives 0, not NaN.
            let m = _mm512_set1_ps(if m == f32::NEG_INFINITY { 0.0 } else { m });
            let mut sums = _mm512_setzero_ps();
            for r in row.chunks_exact_mut(LANES) {
                let e = exp(_mm512_sub_ps(_mm512_loadu_ps(r.as_ptr()), m));
                _mm512_storeu_ps(r.as_mut_ptr(), e);
                sums = _mm512_add_ps(sums, e);
            }
            let mut lanes = [0.0_f32; LANES];
            _mm512_storeu_ps(lanes.as_mut_ptr(), sums);
            *total = lanes.iter().fold(0.0_f32, |s, &v| s + v);
            let inv = _mm512_set1_ps(if *total > 0.0 { 1.0 / *total } else { 0.0 });
            match out.as_deref_mut() {
                None => {
                    for r in row.chunks_exact_mut(LANES) {
                        let v = _mm512_mul_ps(_mm512_loadu_ps(r.as_ptr()), inv);
                        _mm512_storeu_ps(r.as_mut_ptr(), v);
                    }
                }
                Some(o) => {
                    let o = &mut o[i * lp..(i + 1) * lp];
                    for (r, o) in row.chunks_exact(LANES).zip(o.chunks_exact_mut(LANES)) {
                        let v = _mm512_mul_ps(_mm512_loadu_ps(r.as_ptr()), inv);
                        _mm512_storeu_ps(o.as_mut_ptr().cast::<f32>(), v);
                    }
                }
            }
        }
    }
}

/// The AVX-512 [`rows::score_grad_rows`](super::rows::score_grad_rows) (same contract, same
/// bits: `dP = dW · F`, the row sum by fused multiply-adds in 16 lanes folded in lane order,
/// `dS = (P · (dP − Σ)) · scale`), one row at a time while it is in L1.
///
/// # Safety
/// The CPU supports AVX-512F. (`lp` is a multiple of [`LANES`]; the slices are only
/// accessed through bounds-checked chunks.)
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
pub(super) unsafe fn score_grad_rows(
    g: &mut [f32],
    p: &[f32],
    factors: Option<&[f32]>,
    lp: usize,
    row_sums: &mut [f32],
    scale: f32,
) {
    assert!(lp.is_multiple_of(LANES), "score_grad_rows: row stride {lp}");
    if let Some(f) = factors {
        assert_eq!(f.len(), g.len(), "score_grad_rows: factors length");
    }
    let scale = _mm512_set1_ps(scale);
    // SAFETY: every pointer below comes from a `LANES`-long chunk of a slice; AVX-512F is
    // enabled by the function's target feature.
    unsafe {
        for (i, ((g, pr), dt)) in g
            .chunks_exact_mut(lp)
            .zip(p.chunks_exact(lp))
            .zip(row_sums)
            .enumerate()
        {
            let mut sums = _mm512_setzero_ps();
            match factors {
                Some(f) => {
                    let f = &f[i * lp..(i + 1) * lp];
                    for ((g, pv), f) in g
                        .chunks_exact_mut(LANES)
                        .zip(pr.chunks_exact(LANES))
                        .zip(f.chunks_exact(LANES))
                    {
                        let dp =
                            _mm512_mul_ps(_mm512_loadu_ps(g.as_ptr()), _mm512_loadu_ps(f.as_ptr()));
                        _mm512_storeu_ps(g.as_mut_ptr(), dp);
                        sums = _mm512_fmadd_ps(dp, _mm512_loadu_ps(pv.as_ptr()), sums);
                    }
                }
                None => {
                    for (g, pv) in g.chunks_exact(LANES).zip(pr.chunks_exact(LANES)) {
                        let (dp, pv) = (_mm512_loadu_ps(g.as_ptr()), _mm512_loadu_ps(pv.as_ptr()));
                        sums = _mm512_fmadd_ps(dp, pv, sums);
                    }
                }
            }
            let mut lanes = [0.0_f32; LANES];
            _mm512_storeu_ps(lanes.as_mut_ptr(), sums);
            *dt = lanes.iter().fold(0.0_f32, |s, &v| s + v);
            let total = _mm512_set1_ps(*dt);
            for (g, pv) in g.chunks_exact_mut(LANES).zip(pr.chunks_exact(LANES)) {
                let d = _mm512_sub_ps(_mm512_loadu_ps(g.as_ptr()), total);
                let v = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(pv.as_ptr()), d), scale);
                _mm512_storeu_ps(g.as_mut_ptr(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rows::{score_grad_rows_portable, softmax_rows_portable};
    use crate::kernels::fastmath::dispatch;
    use std::mem::MaybeUninit;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Scores with a spread of magnitudes (exp's clamps included), rows of `lp = 48` with 37
    /// kept keys, the padding and two more keys masked, one row entirely masked.
    fn case() -> (Vec<f32>, Vec<f32>, usize) {
        let (rows, lp) = (6, 48);
        let p: Vec<f32> = (0..rows * lp)
            .map(|i| ((i * 7919 % 997) as f32 - 498.0) * if i % 11 == 0 { 0.4 } else { 0.01 })
            .collect();
        let mut bias = vec![0.0_f32; lp];
        for (j, b) in bias.iter_mut().enumerate() {
            if j >= 37 || j == 3 || j == 20 {
                *b = f32::NEG_INFINITY;
            }
        }
        (p, bias, lp)
    }

    #[test]
    fn softmax_rows_gives_the_portable_bits() {
        if !crate::kernels::has_avx512() {
            return;
        }
        let (scores, bias, lp) = case();
        let rows = scores.len() / lp;
        for keep_probs in [false, true] {
            let (mut fast, mut slow) = (scores.clone(), scores.clone());
            let (mut sums_fast, mut sums_slow) = (vec![0.0; rows], vec![0.0; rows]);
            let mut out_fast = vec![MaybeUninit::new(f32::NAN); scores.len()];
            let mut out_slow = vec![MaybeUninit::new(f32::NAN); scores.len()];
            // The last row: every key masked.
            let all_masked = vec![f32::NEG_INFINITY; lp];
            #[allow(unsafe_code)]
            // SAFETY: AVX-512F is available (checked above).
            unsafe {
                super::softmax_rows(
                    &mut fast[..(rows - 1) * lp],
                    lp,
                    &bias,
                    &mut sums_fast,
                    keep_probs.then_some(&mut out_fast[..(rows - 1) * lp]),
                );
                super::softmax_rows(
                    &mut fast[(rows - 1) * lp..],
                    lp,
                    &all_masked,
                    &mut sums_fast[rows - 1..],
                    keep_probs.then_some(&mut out_fast[(rows - 1) * lp..]),
                );
            }
            dispatch(|| {
                softmax_rows_portable(
                    &mut slow[..(rows - 1) * lp],
                    lp,
                    &bias,
                    &mut sums_slow,
                    keep_probs.then_some(&mut out_slow[..(rows - 1) * lp]),
                );
                softmax_rows_portable(
                    &mut slow[(rows - 1) * lp..],
                    lp,
                    &all_masked,
                    &mut sums_slow[rows - 1..],
                    keep_probs.then_some(&mut out_slow[(rows - 1) * lp..]),
                );
            });
            assert_eq!(bits(&fast), bits(&slow), "keep_probs {keep_probs}");
            assert_eq!(bits(&sums_fast), bits(&sums_slow));
            // SAFETY: both outputs were initialized (NaN) and possibly overwritten.
            let read = |o: &[MaybeUninit<f32>]| -> Vec<f32> {
                #[allow(unsafe_code)]
                o.iter().map(|v| unsafe { v.assume_init() }).collect()
            };
            assert_eq!(bits(&read(&out_fast)), bits(&read(&out_slow)));
            // Probabilities: masked keys exactly 0, the all-masked row all 0, rows sum to 1.
            let probs = if keep_probs {
                read(&out_fast)
            } else {
                fast.clone()
            };
            for (i, row) in probs.chunks(lp).enumerate() {
                assert!(
                    row[37..]
                        .iter()
                        .chain([&row[3], &row[20]])
                        .all(|&v| v == 0.0)
                );
                let total: f32 = row.iter().sum();
                let want = if i == rows - 1 { 0.0 } else { 1.0 };
                assert!((total - want).abs() < 1e-5, "row {i} sums to {total}");
            }
        }
    }

    #[test]
    fn score_grad_rows_gives_the_portable_bits() {
        if !crate::kernels::has_avx512() {
            return;
        }
        let (dw, _, lp) = case();
        let rows = dw.len() / lp;
        let p: Vec<f32> = (0..dw.len()).map(|i| (i % 13) as f32 / 40.0).collect();
        let factors: Vec<f32> = (0..dw.len())
            .map(|i| if i % 10 == 3 { 0.0 } else { 1.0 / 0.9 })
            .collect();
        for with_dropout in [false, true] {
            let f = with_dropout.then_some(&factors[..]);
            let (mut fast, mut slow) = (dw.clone(), dw.clone());
            let (mut sums_fast, mut sums_slow) = (vec![0.0; rows], vec![0.0; rows]);
            #[allow(unsafe_code)]
            // SAFETY: AVX-512F is available (checked above).
            unsafe {
                super::score_grad_rows(&mut fast, &p, f, lp, &mut sums_fast, 0.25);
            }
            dispatch(|| score_grad_rows_portable(&mut slow, &p, f, lp, &mut sums_slow, 0.25));
            assert_eq!(bits(&fast), bits(&slow), "dropout {with_dropout}");
            assert_eq!(bits(&sums_fast), bits(&sums_slow), "dropout {with_dropout}");
        }
    }
}
