//! Register-blocked products of small matrices that live in cache: the per-head products of
//! attention (`[L, d_h] · [d_h, L]` and `[L, L] · [L, d_h]` with `L = 100`, `d_h = 16` in the
//! reference model), where a general `gemm` call spends more time packing its operands and
//! dispatching than multiplying.
//!
//! [`matmul`] computes `out = A · B` with a block of [`ROWS`] output rows × [`LANES`] output
//! columns held in accumulators across the whole inner dimension: each step loads one
//! [`LANES`]-wide row piece of `B` and broadcasts [`ROWS`] scalars of `A` for `ROWS · LANES`
//! fused multiply-adds. The output width must be a multiple of [`LANES`]: callers pad their
//! scratch matrices with zero columns (padding costs a few wasted lanes; a scalar tail loop
//! would cost more). `A` may be read transposed, so `Aᵀ · B` needs no transposed copy.
//!
//! The functions are `#[inline(always)]` and meant to be called inside one
//! [`fastmath::dispatch`](super::fastmath::dispatch) region, where the fixed-size loops compile
//! to AVX-512 (or AVX2) registers and `f32::mul_add` to FMA instructions. Results therefore
//! differ from [`super::gemm`]'s in the last bits (another summation order), not across thread
//! counts.

/// Output columns per accumulator block (one AVX-512 register of `f32`).
pub const LANES: usize = 16;
/// Output rows per accumulator block: eight independent FMA chains per block, enough to
/// cover the FMA latency when the output is one [`LANES`]-wide column block (the per-head
/// `·V` products); leftover rows go in one 4-row block, then single rows.
pub const ROWS: usize = 8;

/// `n` rounded up to a multiple of [`LANES`].
pub fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// `out[i, j] = Σ_{p < k} A[i, p] · b[p·ldb + j]` for `i < m`, `j < n`, where
/// `A[i, p] = a[i·lda + p]`, or `a[p·lda + i]` when `TRANS_A` (then `a` holds `Aᵀ`).
/// Rows of `out` start every `ldo` elements; the result overwrites `out`.
///
/// # Panics
/// If `n` is not a multiple of [`LANES`] or a slice is too short for the given sizes and
/// strides.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn matmul<const TRANS_A: bool>(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    out: &mut [f32],
    ldo: usize,
) {
    assert!(
        n % LANES == 0,
        "small::matmul: output width {n} is not a multiple of {LANES}"
    );
    if m == 0 || n == 0 {
        return;
    }
    // One bounds check per operand up front instead of one per element.
    let a_len = if TRANS_A {
        if k == 0 { 0 } else { (k - 1) * lda + m }
    } else {
        (m - 1) * lda + k
    };
    assert!(
        a.len() >= a_len
            && (k == 0 || b.len() >= (k - 1) * ldb + n)
            && out.len() >= (m - 1) * ldo + n,
        "small::matmul: operand slices too short for m {m}, n {n}, k {k} (lengths {}, {}, {})",
        a.len(),
        b.len(),
        out.len()
    );
    let mut i = 0;
    while i + ROWS <= m {
        for j in (0..n).step_by(LANES) {
            block::<TRANS_A, ROWS>(i, j, k, a, lda, b, ldb, out, ldo);
        }
        i += ROWS;
    }
    if i + 4 <= m {
        for j in (0..n).step_by(LANES) {
            block::<TRANS_A, 4>(i, j, k, a, lda, b, ldb, out, ldo);
        }
        i += 4;
    }
    while i < m {
        for j in (0..n).step_by(LANES) {
            block::<TRANS_A, 1>(i, j, k, a, lda, b, ldb, out, ldo);
        }
        i += 1;
    }
}

/// One `R × LANES` block of [`matmul`]'s output at row `i0`, column `j0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const TRANS_A: bool, const R: usize>(
    i0: usize,
    j0: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    out: &mut [f32],
    ldo: usize,
) {
    let mut acc = [[0.0_f32; LANES]; R];
    for p in 0..k {
        let brow: &[f32; LANES] = b[p * ldb + j0..p * ldb + j0 + LANES]
            .try_into()
            .expect("LANES elements");
        for (r, acc) in acc.iter_mut().enumerate() {
            let s = if TRANS_A {
                a[p * lda + i0 + r]
            } else {
                a[(i0 + r) * lda + p]
            };
            for (acc, &bv) in acc.iter_mut().zip(brow) {
                *acc = s.mul_add(bv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        out[(i0 + r) * ldo + j0..(i0 + r) * ldo + j0 + LANES].copy_from_slice(acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::fastmath::dispatch;

    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: impl Fn(usize, usize) -> f32,
        b: &[f32],
        ldb: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|p| f64::from(a(i, p)) * f64::from(b[p * ldb + j]))
                    .sum();
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_with_row_tails_strides_and_transposed_a() {
        // m not a multiple of ROWS, strides larger than the widths, k not a multiple of anything.
        for &(m, n, k) in &[
            (7, 16, 5),
            (100, 112, 16),
            (13, 32, 100),
            (1, 16, 1),
            (4, 48, 0),
        ] {
            let (lda, ldb, ldo) = (k.max(m) + 3, n + 5, n + 7);
            let a = values(lda * (k.max(m) + 1), 1);
            let b = values(ldb * (k + 1), 2);
            for trans in [false, true] {
                let mut out = vec![f32::NAN; ldo * m];
                dispatch(|| {
                    if trans {
                        matmul::<true>(m, n, k, &a, lda, &b, ldb, &mut out, ldo);
                    } else {
                        matmul::<false>(m, n, k, &a, lda, &b, ldb, &mut out, ldo);
                    }
                });
                let at = |i: usize, p: usize| {
                    if trans {
                        a[p * lda + i]
                    } else {
                        a[i * lda + p]
                    }
                };
                let want = naive(m, n, k, at, &b, ldb);
                for i in 0..m {
                    for j in 0..n {
                        let (got, want) = (f64::from(out[i * ldo + j]), want[i * n + j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "m {m} n {n} k {k} trans {trans}: out[{i}, {j}] = {got}, want {want}"
                        );
                    }
                    // Columns past n in the output rows are not touched.
                    assert!(out[i * ldo + n..(i + 1) * ldo].iter().all(|v| v.is_nan()));
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "not a multiple of 16")]
    fn unpadded_width_panics() {
        let mut out = vec![0.0; 10];
        matmul::<false>(1, 10, 1, &[1.0], 1, &[0.0; 10], 10, &mut out, 10);
    }

    #[test]
    fn padded_rounds_up() {
        assert_eq!(
            (padded(0), padded(1), padded(16), padded(100)),
            (0, 16, 16, 112)
        );
    }
}
