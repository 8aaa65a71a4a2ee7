//! The per-head row and matrix loops of the fused attention: gathering a head's columns,
//! the masked softmax, dropout and the small reductions, written so that they vectorize.

use super::Dims;
use crate::kernels::fastmath;
use crate::kernels::small::LANES;
use crate::ops::dropout::Mask;

/// `dst[i] = src[i] · scale` for two equally long slices, in whole [`LANES`]-wide chunks
/// when the length allows (a plain loop this short runs entirely in the loop vectorizer's
/// scalar remainder).
#[inline(always)]
pub(super) fn copy_scaled(dst: &mut [f32], src: &[f32], scale: f32) {
    if dst.len().is_multiple_of(LANES) {
        for (o, x) in dst.chunks_exact_mut(LANES).zip(src.chunks_exact(LANES)) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = x * scale;
            }
        }
    } else {
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = x * scale;
        }
    }
}

/// Copies head `h`'s columns of a `[L, D]` sequence into `dst` `[L, d_h']`, times `scale`.
#[inline(always)]
pub(super) fn gather(src: &[f32], d: &Dims, h: usize, scale: f32, dst: &mut [f32]) {
    for (row, out) in src.chunks_exact(d.dim).zip(dst.chunks_exact_mut(d.dhp)) {
        copy_scaled(&mut out[..d.dh], &row[h * d.dh..(h + 1) * d.dh], scale);
    }
}

/// Head `h`'s columns of a `[L, D]` sequence, transposed into `dst` `[d_h, L']`, times
/// `scale`.
#[inline(always)]
pub(super) fn gather_t(src: &[f32], d: &Dims, h: usize, scale: f32, dst: &mut [f32]) {
    // Rows of `dst` written contiguously (strided reads hit L1; strided writes were slower).
    let src = &src[h * d.dh..];
    for (c, out) in dst.chunks_exact_mut(d.lp).enumerate() {
        for (j, o) in out[..d.len].iter_mut().enumerate() {
            *o = src[j * d.dim + c] * scale;
        }
    }
}

/// Writes `src` `[L, d_h']` (times `scale`) into head `h`'s columns of a `[L, D]` sequence.
#[inline(always)]
pub(super) fn scatter(src: &[f32], d: &Dims, h: usize, scale: f32, dst: &mut [f32]) {
    for (row, s) in dst.chunks_exact_mut(d.dim).zip(src.chunks_exact(d.dhp)) {
        copy_scaled(&mut row[h * d.dh..(h + 1) * d.dh], &s[..d.dh], scale);
    }
}

// Loops over one head's padded `[L, L']` matrix come in two kinds, so that everything
// vectorizes: per-row loops over fixed [`LANES`]-wide chunks (simple arithmetic, which LLVM's
// straight-line vectorizer handles) and flat loops over the whole matrix for the heavy
// element functions (`exp`, the dropout hash), which the loop vectorizer handles — in a loop
// over one 100- or 112-long row it left a third of the elements to its scalar remainder loop.

/// Masked softmax of each padded score row of `p` `[L, L']`: in place, or — when `out` is
/// given — written into `out` (every element; `p` then holds the unnormalized exponentials).
/// `bias[j]` is 0 for a
/// kept key and `−∞` for a masked one (always so for the padding columns): masked entries get
/// exactly 0, a row with nothing kept all 0. Maxima and sums use [`LANES`] partial lanes
/// combined in a fixed order. (An additive `−∞` rather than a `bool` select: float-only lane
/// loops vectorize; the byte mask made them scalar.)
#[inline(always)]
pub(super) fn softmax_rows(
    p: &mut [f32],
    lp: usize,
    bias: &[f32],
    row_sums: &mut [f32],
    out: Option<&mut [std::mem::MaybeUninit<f32>]>,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx512() {
        #[allow(unsafe_code)]
        // SAFETY: AVX-512F is available (checked just above).
        unsafe {
            super::simd::softmax_rows(p, lp, bias, row_sums, out);
        }
        return;
    }
    softmax_rows_portable(p, lp, bias, row_sums, out);
}

/// [`softmax_rows`] on any CPU.
#[inline(always)]
pub(super) fn softmax_rows_portable(
    p: &mut [f32],
    lp: usize,
    bias: &[f32],
    row_sums: &mut [f32],
    out: Option<&mut [std::mem::MaybeUninit<f32>]>,
) {
    for row in p.chunks_exact_mut(lp) {
        let m = pulp::Arch::new().dispatch(BiasMax { row, bias });
        // A row with nothing kept is all −∞: shift by 0 so that exp gives 0, not NaN.
        let m = if m == f32::NEG_INFINITY { 0.0 } else { m };
        for r in row.chunks_exact_mut(LANES) {
            for v in r.iter_mut() {
                *v -= m;
            }
        }
    }
    for v in p.iter_mut() {
        *v = fastmath::exp(*v);
    }
    for (row, total) in p.chunks_exact_mut(lp).zip(row_sums.iter_mut()) {
        let mut sums = [0.0_f32; LANES];
        for r in row.chunks_exact(LANES) {
            for (s, &v) in sums.iter_mut().zip(r) {
                *s += v;
            }
        }
        *total = sums.iter().fold(0.0_f32, |s, &v| s + v);
    }
    let inverse = |total: f32| if total > 0.0 { 1.0 / total } else { 0.0 };
    match out {
        None => {
            for (row, &total) in p.chunks_exact_mut(lp).zip(row_sums.iter()) {
                let inv = inverse(total);
                for r in row.chunks_exact_mut(LANES) {
                    for v in r.iter_mut() {
                        *v *= inv;
                    }
                }
            }
        }
        Some(out) => {
            assert_eq!(out.len(), p.len(), "softmax_rows: output length");
            for ((row, o), &total) in p
                .chunks_exact(lp)
                .zip(out.chunks_exact_mut(lp))
                .zip(row_sums.iter())
            {
                let inv = inverse(total);
                for (r, o) in row.chunks_exact(LANES).zip(o.chunks_exact_mut(LANES)) {
                    for (&v, o) in r.iter().zip(o) {
                        o.write(v * inv);
                    }
                }
            }
        }
    }
}

/// `row += bias` in place, returning the row's maximum (NaN ignored): explicit SIMD through
/// [`pulp::Simd`] (a compare-and-select or `max` over fixed-size lane arrays was left scalar
/// by LLVM's straight-line vectorizer).
struct BiasMax<'a> {
    row: &'a mut [f32],
    bias: &'a [f32],
}

impl pulp::WithSimd for BiasMax<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let (rows, row_tail) = S::as_mut_simd_f32s(self.row);
        let (bias, bias_tail) = S::as_simd_f32s(self.bias);
        let mut mx = simd.splat_f32s(f32::NEG_INFINITY);
        for (v, &b) in rows.iter_mut().zip(bias) {
            *v = simd.add_f32s(*v, b);
            mx = simd.max_f32s(mx, *v);
        }
        let mut m = simd.reduce_max_f32s(mx);
        for (v, &b) in row_tail.iter_mut().zip(bias_tail) {
            *v += b;
            m = m.max(*v);
        }
        m
    }
}

/// The score gradients of one head in place: `g` holds `dW = dO · Vᵀ` `[L, L']` and becomes
/// `dS = P ⊙ (dP − Σ_j dP ⊙ P) · scale` row by row, where `dP = dW ⊙ F` with the dropout
/// factors `F` (`dP = dW` without dropout); `row_sums` receives each row's `Σ_j dP ⊙ P`
/// (fused multiply-adds in [`LANES`] partial sums, combined in lane order).
#[inline(always)]
pub(super) fn score_grad_rows(
    g: &mut [f32],
    p: &[f32],
    factors: Option<&[f32]>,
    lp: usize,
    row_sums: &mut [f32],
    scale: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx512() {
        #[allow(unsafe_code)]
        // SAFETY: AVX-512F is available (checked just above).
        unsafe {
            super::simd::score_grad_rows(g, p, factors, lp, row_sums, scale);
        }
        return;
    }
    score_grad_rows_portable(g, p, factors, lp, row_sums, scale);
}

/// [`score_grad_rows`] on any CPU.
#[inline(always)]
pub(super) fn score_grad_rows_portable(
    g: &mut [f32],
    p: &[f32],
    factors: Option<&[f32]>,
    lp: usize,
    row_sums: &mut [f32],
    scale: f32,
) {
    if let Some(f) = factors {
        multiply_in_place(g, f);
    }
    for ((g, pr), dt) in g.chunks_exact_mut(lp).zip(p.chunks_exact(lp)).zip(row_sums) {
        *dt = dot(g, pr);
        for (g, pv) in g.chunks_exact_mut(LANES).zip(pr.chunks_exact(LANES)) {
            for (g, &pv) in g.iter_mut().zip(pv) {
                *g = pv * (*g - *dt) * scale;
            }
        }
    }
}

/// `Σ_j a[j] · b[j]` over slices whose length is a multiple of [`LANES`], in [`LANES`]
/// partial sums combined in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0_f32; LANES];
    for (a, b) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for ((s, &x), &y) in sums.iter_mut().zip(a).zip(b) {
            *s = x.mul_add(y, *s);
        }
    }
    sums.iter().fold(0.0, |s, &v| s + v)
}

/// `f[i·L' + j] = mask.factor(base + i·L + j)` over a padded `[L, L']` matrix: each row's `L`
/// factors are those of its elements in the unpadded `[L, L]` matrix (one vectorized run per
/// row, [`Mask::factors`]); the padding columns get 0.
#[inline(always)]
pub(super) fn dropout_factors(f: &mut [f32], d: &Dims, mask: &Mask, base: u64) {
    let l = d.len;
    for (i, row) in f.chunks_exact_mut(d.lp).enumerate() {
        let (real, pad) = row.split_at_mut(l);
        mask.factors(base + (i * l) as u64, real);
        pad.fill(0.0);
    }
}

/// `w = x ⊙ f` element-wise.
#[inline(always)]
pub(super) fn multiply(w: &mut [f32], x: &[f32], f: &[f32]) {
    for ((w, &x), &f) in w.iter_mut().zip(x).zip(f) {
        *w = x * f;
    }
}

/// `w ⊙= f` element-wise.
#[inline(always)]
fn multiply_in_place(w: &mut [f32], f: &[f32]) {
    for (w, &f) in w.iter_mut().zip(f) {
        *w *= f;
    }
}
