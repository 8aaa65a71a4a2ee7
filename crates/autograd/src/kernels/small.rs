//! Register-blocked products of small matrices that live in cache: the per-head products of
//! attention (`[L, d_h] · [d_h, L]` and `[L, L] · [L, d_h]` with `L = 100`, `d_h = 16` in the
//! reference model), where a general `gemm` call spends more time packing its operands and
//! dispatching than multiplying.
//!
//! [`matmul`] computes `out = A · B` with a block of output rows × [`LANES`]-wide column blocks
//! held in accumulators across the whole inner dimension: each step loads the block's row
//! pieces of `B` once and broadcasts one scalar of `A` per row for `LANES` fused multiply-adds
//! per column block. The output width must be a multiple of [`LANES`]: callers pad their
//! scratch matrices with zero columns (padding costs a few wasted lanes; a scalar tail loop
//! would cost more). `A` may be read transposed, so `Aᵀ · B` needs no transposed copy.
//!
//! On CPUs with AVX-512 the blocks are written with explicit intrinsics (`avx512` below):
//! an output one column block wide (the `·V`-like products) runs in blocks of [`ROWS`] rows,
//! a wider one (`Q·Kᵀ`-like) in blocks of 4 rows × up to 4 column blocks, each `B` piece
//! loaded into a register once per step: each product within 10 % of its FMA time whatever
//! the call site. The portable blocks depend on how the compiler vectorizes them where they
//! are inlined: in a standalone probe it re-read `B` from memory for every multiply-add and
//! kept bounds checks in the inner loop (6.0–7.4 µs at the reference shapes, ≈ 40 % of the FMA
//! peak); in the criterion `small_matmul` group it did better (`cargo bench -p
//! closeup-autograd --bench kernels -- small_matmul`, one thread: 3.81 / 2.96 / 2.80 µs
//! portable, 3.24 / 2.77 / 2.76 µs here). Elsewhere the portable blocks below run (AVX2 or
//! baseline, through the caller's [`fastmath::dispatch`](super::fastmath::dispatch) region). Both paths add each output's
//! terms in the same order (`p = 0, 1, …` by fused multiply-adds onto zero), so they give the
//! same bits; the results differ from [`super::gemm`]'s in the last bits (another summation
//! order), never across thread counts.

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
        n.is_multiple_of(LANES),
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
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx512() {
        #[allow(unsafe_code)]
        // SAFETY: AVX-512F is available (checked just above), and the asserts above
        // guarantee that every element the product reads or writes is in bounds.
        unsafe {
            let ops = avx512::Operands {
                a: a.as_ptr(),
                lda,
                b: b.as_ptr(),
                ldb,
                bias: std::ptr::null(),
                out: out.as_mut_ptr(),
                ldo,
            };
            avx512::product::<TRANS_A, false>(m, n, k, ops);
        }
        return;
    }
    portable::<TRANS_A>(m, n, k, a, lda, b, ldb, out, ldo);
}

/// [`matmul`] on any CPU, its operands already checked: blocks of fixed-size lane arrays,
/// vectorized by the compiler.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn portable<const TRANS_A: bool>(
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

/// The AVX-512 blocks of [`matmul`] (see the module docs), on raw pointers: the caller has
/// checked every operand's extent.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod avx512 {
    use super::{LANES, ROWS};
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    /// Rows per block when the output is wider than one column block. With
    /// [`WIDE_BLOCKS`] column blocks: 16 accumulators + 4 `B` pieces + a broadcast fit the
    /// 32 registers (4 × 7 spilled). Measured on the `[100, 16] · [16, 112]` score product
    /// (one thread): 4 × 4 3.2 µs, 3 × 7 3.5 µs, 6 × 4 / 4 × 5 / 8 × 3 3.3–3.4 µs (the FMA time
    /// is ≈ 3.1 µs).
    const WIDE_ROWS: usize = 4;
    /// Column blocks per block of a wide output (the last block of a row takes the rest).
    const WIDE_BLOCKS: usize = 4;

    /// The operands of [`product`]: `A` (`A[i, p] = a[i·lda + p]`, or `a[p·lda + i]` when
    /// transposed), `B` (`B[p, j] = b[p·ldb + j]`), an optional bias row (null: none) and the
    /// output (`out[i·ldo + j]`).
    #[derive(Clone, Copy)]
    pub(crate) struct Operands {
        pub(crate) a: *const f32,
        pub(crate) lda: usize,
        pub(crate) b: *const f32,
        pub(crate) ldb: usize,
        pub(crate) bias: *const f32,
        pub(crate) out: *mut f32,
        pub(crate) ldo: usize,
    }

    /// [`super::matmul`] on pointers (`out += A · B` when `ACC`), each output starting from
    /// `bias[j]` when `bias` is not null (and not `ACC`).
    ///
    /// # Safety
    /// The CPU supports AVX-512F, `n` is a multiple of [`LANES`], every element the sizes and
    /// strides address is within its allocation (`out`'s may be uninitialized unless `ACC`:
    /// they are only written), and a non-null `bias` points to `n` elements.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn product<const TRANS_A: bool, const ACC: bool>(
        m: usize,
        n: usize,
        k: usize,
        ops: Operands,
    ) {
        let blocks = n / LANES;
        // SAFETY (every call below): the block's rows `i .. i + R` are below `m` and its
        // column blocks below `blocks`, so it touches only elements the caller vouched for.
        if blocks == 1 {
            let mut i = 0;
            while i + ROWS <= m {
                unsafe { block::<TRANS_A, ACC, ROWS, 1>(i, 0, k, ops) };
                i += ROWS;
            }
            if i + 4 <= m {
                unsafe { block::<TRANS_A, ACC, 4, 1>(i, 0, k, ops) };
                i += 4;
            }
            while i < m {
                unsafe { block::<TRANS_A, ACC, 1, 1>(i, 0, k, ops) };
                i += 1;
            }
            return;
        }
        let mut jb = 0;
        while jb < blocks {
            let nb = (blocks - jb).min(WIDE_BLOCKS);
            let j0 = jb * LANES;
            let mut i = 0;
            while i + WIDE_ROWS <= m {
                unsafe { wide::<TRANS_A, ACC, WIDE_ROWS>(nb, i, j0, k, ops) };
                i += WIDE_ROWS;
            }
            while i < m {
                unsafe { wide::<TRANS_A, ACC, 1>(nb, i, j0, k, ops) };
                i += 1;
            }
            jb += nb;
        }
    }

    /// An `R`-row block `nb` column blocks wide (`nb ≤ WIDE_BLOCKS`), with the width made a constant.
    ///
    /// # Safety
    /// As [`block`].
    #[inline(always)]
    unsafe fn wide<const TRANS_A: bool, const ACC: bool, const R: usize>(
        nb: usize,
        i0: usize,
        j0: usize,
        k: usize,
        ops: Operands,
    ) {
        macro_rules! widths {
            ($($nb:literal)*) => {
                match nb {
                    $($nb => unsafe {
                        block::<TRANS_A, ACC, R, $nb>(i0, j0, k, ops)
                    },)*
                    _ => unreachable!("at most {WIDE_BLOCKS} column blocks"),
                }
            };
        }
        widths!(1 2 3 4)
    }

    /// One `R × (NB·LANES)` block of the output at row `i0`, column `j0`: accumulators for
    /// the whole block (starting from the output's values when `ACC`, else from the bias when
    /// there is one, else from 0), `B`'s `NB` pieces loaded once per step `p`, one broadcast of `A` per
    /// row, terms added in increasing `p` (as the portable block does).
    ///
    /// # Safety
    /// AVX-512F is available; rows `i0 .. i0 + R` of `A` (columns `i0 .. i0 + R` of `Aᵀ`),
    /// rows `0 .. k` of `B` at columns `j0 .. j0 + NB·LANES`, the block's output elements
    /// (initialized if `ACC`) and a non-null bias's columns are in bounds.
    #[inline(always)]
    unsafe fn block<const TRANS_A: bool, const ACC: bool, const R: usize, const NB: usize>(
        i0: usize,
        j0: usize,
        k: usize,
        ops: Operands,
    ) {
        let Operands {
            a,
            lda,
            b,
            ldb,
            bias,
            out,
            ldo,
        } = ops;
        // SAFETY: in bounds by the function's contract; AVX-512F by its target feature.
        unsafe {
            let mut acc: [[__m512; NB]; R] = [[_mm512_setzero_ps(); NB]; R];
            if ACC {
                for (r, acc) in acc.iter_mut().enumerate() {
                    let row = out.add((i0 + r) * ldo + j0);
                    for (c, v) in acc.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(row.add(c * LANES));
                    }
                }
            } else if !bias.is_null() {
                for acc in acc.iter_mut() {
                    for (c, v) in acc.iter_mut().enumerate() {
                        *v = _mm512_loadu_ps(bias.add(j0 + c * LANES));
                    }
                }
            }
            for p in 0..k {
                let brow = b.add(p * ldb + j0);
                let mut bv: [__m512; NB] = [_mm512_setzero_ps(); NB];
                for (c, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(brow.add(c * LANES));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let s = if TRANS_A {
                        *a.add(p * lda + i0 + r)
                    } else {
                        *a.add((i0 + r) * lda + p)
                    };
                    let sv = _mm512_set1_ps(s);
                    for (acc, &bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm512_fmadd_ps(sv, bv, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let row = out.add((i0 + r) * ldo + j0);
                for (c, &v) in acc.iter().enumerate() {
                    _mm512_storeu_ps(row.add(c * LANES), v);
                }
            }
        }
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
        // m not a multiple of ROWS, strides larger than the widths, k not a multiple of anything,
        // widths of 1–8 column blocks (wide blocks of 4 and their remainders).
        for &(m, n, k) in &[
            (7, 16, 5),
            (100, 112, 16),
            (100, 16, 100),
            (13, 32, 100),
            (7, 48, 33),
            (10, 80, 9),
            (3, 128, 4),
            (1, 16, 1),
            (4, 48, 0),
        ] {
            let (lda, ldb, ldo) = (k.max(m) + 3, n + 5, n + 7);
            let a = values(lda * (k.max(m) + 1), 1);
            let b = values(ldb * (k + 1), 2);
            for trans in [false, true] {
                let (mut out, mut slow) = (vec![f32::NAN; ldo * m], vec![f32::NAN; ldo * m]);
                dispatch(|| {
                    if trans {
                        matmul::<true>(m, n, k, &a, lda, &b, ldb, &mut out, ldo);
                        portable::<true>(m, n, k, &a, lda, &b, ldb, &mut slow, ldo);
                    } else {
                        matmul::<false>(m, n, k, &a, lda, &b, ldb, &mut out, ldo);
                        portable::<false>(m, n, k, &a, lda, &b, ldb, &mut slow, ldo);
                    }
                });
                // Whatever path `matmul` took on this CPU (AVX-512 blocks or the portable
                // ones), each output adds the same terms in the same order: the same bits.
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&out), bits(&slow), "m {m} n {n} k {k} trans {trans}");
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
