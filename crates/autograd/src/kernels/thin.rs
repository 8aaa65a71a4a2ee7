//! The thin products of a training step — many rows times a small matrix: in the reference
//! model `[B·L, 64] · [64, 64]` (the encoder's projections), `[B·L, 64] · [64, 256]` and
//! `[B·L, 256] · [256, 64]` (its FFN), forward and input gradient — on the AVX-512 blocks of
//! [`small`](super::small) instead of the `gemm` crate.
//!
//! `gemm` packs both operands for every call, and its callers first write the whole output
//! (the bias row by row, or zeros) so that it can add onto it: two extra passes over a
//! `[B·L, n]` array that lives in memory, not cache. Here the small operand `B` (`k, n ≤ 256`)
//! is used in place — or, for `x · Wᵀ`, as one transposed copy per call — the rows run through
//! the register blocks in chunks of [`ROW_CHUNK`] (one rayon task each), and each output's
//! accumulator starts from its bias (or 0) in a register: a new output is written exactly
//! once, never zeroed or filled first. Each element is one chain of fused multiply-adds over
//! `p = 0 .. k` onto its starting value whatever the chunking, so results are the same for
//! every thread count. Measured with the bias (`RAYON_NUM_THREADS=1 cargo bench -p
//! closeup-autograd --bench kernels -- thin_products`, `[25600, k] → n`, against the `gemm`
//! path with its bias fill): `64 → 64` 2.69 → 1.94 ms, `64 → 256` 13.2 → 8.4 ms, `256 → 64`
//! 9.25 → 8.66 ms; the training step at one thread 645–658 → 674–689 samples/s (three
//! alternations; routing only the 64-wide outputs gave 663–672).

use super::has_avx512;
use super::small::{self, LANES};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// Largest inner dimension routed here (`B`'s column groups then stay in L1).
const MAX_K: usize = 256;
/// Largest output width routed here (the MMoE's 2048-wide first layer stays on `gemm`, which
/// runs it as fast).
const MAX_N: usize = 256;
/// Output rows per task.
const ROW_CHUNK: usize = 256;
/// Fewest rows for which a transposed copy of `B` is worth making.
const MIN_ROWS_FOR_COPY: usize = 1024;

/// Whether `[m, k] · [k, n]` goes here, and `b` as a row-major `[k, n]` slice if so.
fn plan<'b>(a: &ArrayView2<'_, f32>, b: &'b ArrayView2<'_, f32>) -> Option<Cow<'b, [f32]>> {
    let ((m, k), n) = (a.dim(), b.ncols());
    if !has_avx512()
        || k == 0
        || k > MAX_K
        || n == 0
        || n > MAX_N
        || !n.is_multiple_of(LANES)
        || m < LANES
        || !a.is_standard_layout()
    {
        return None;
    }
    match b.as_slice() {
        Some(b) => Some(Cow::Borrowed(b)),
        None if m >= MIN_ROWS_FOR_COPY => Some(Cow::Owned(b.iter().copied().collect())),
        None => None,
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`) if the product is thin and `c` row-major;
/// `false`, having done nothing, otherwise. Shapes are checked by the caller.
pub(super) fn try_sgemm(
    c: &mut ArrayViewMut2<'_, f32>,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    accumulate: bool,
    parallel: bool,
) -> bool {
    let Some(bs) = plan(&a, &b) else {
        return false;
    };
    let Some(c) = c.as_slice_mut() else {
        return false;
    };
    let (k, n) = b.dim();
    let a = a.as_slice().expect("checked by plan");
    for_row_chunks(c, n, parallel, |i, out| {
        let rows = out.len() / n;
        let a = &a[i * ROW_CHUNK * k..][..rows * k];
        #[allow(unsafe_code)]
        // SAFETY: AVX-512F (checked by `plan`); `a` holds `rows × k`, `bs` `k × n` and `out`
        // `rows × n` initialized elements, all row-major.
        unsafe {
            let ops = operands(a, &bs, None, out.as_mut_ptr(), k, n);
            if accumulate {
                small::avx512::product::<false, true>(rows, n, k, ops);
            } else {
                small::avx512::product::<false, false>(rows, n, k, ops);
            }
        }
    });
    true
}

/// The operands of one chunk: `a` `[rows, k]` and `b` `[k, n]` row-major, the output's rows
/// `n` apart.
fn operands(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    out: *mut f32,
    k: usize,
    n: usize,
) -> small::avx512::Operands {
    small::avx512::Operands {
        a: a.as_ptr(),
        lda: k,
        b: b.as_ptr(),
        ldb: n,
        bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        out,
        ldo: n,
    }
}

/// `f(i, chunk)` for the chunks of [`ROW_CHUNK`] rows of a row-major `[rows, n]` buffer, on
/// the pool when `parallel`.
fn for_row_chunks<T: Send>(
    out: &mut [T],
    n: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if parallel {
        out.par_chunks_mut(ROW_CHUNK * n)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        out.chunks_mut(ROW_CHUNK * n)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// An output element not yet written.
type Uninit = MaybeUninit<f32>;

/// Row chunk `i` of `a · b + bias` (`a` `[m, k]`, `b` `[k, n]`, both row-major and checked by
/// [`plan`]) written into `z` (its `rows × n` elements, all of them), returned as initialized.
fn new_chunk<'z>(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    (i, k, n): (usize, usize, usize),
    z: &'z mut [Uninit],
) -> &'z mut [f32] {
    let rows = z.len() / n;
    let a = &a[i * ROW_CHUNK * k..][..rows * k];
    #[allow(unsafe_code)]
    // SAFETY: AVX-512F (checked by `plan`, the only way here); `a` holds `rows × k` and `b`
    // `k × n` elements, `bias` (if any) `n`; `z` has room for `rows × n`, which the product
    // writes in full — after which it is initialized and may be viewed as `f32`.
    unsafe {
        let ops = operands(a, b, bias, z.as_mut_ptr().cast(), k, n);
        small::avx512::product::<false, false>(rows, n, k, ops);
        std::slice::from_raw_parts_mut(z.as_mut_ptr().cast::<f32>(), z.len())
    }
}

/// `a · b + bias` (bias broadcast over the rows, none: 0) as a new array written once, if
/// the product is thin; `None` otherwise. Shapes are checked by the caller.
pub(super) fn try_new(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    bias: Option<&[f32]>,
    parallel: bool,
) -> Option<Array2<f32>> {
    let bs = plan(&a, &b)?;
    let ((m, k), n) = (a.dim(), b.ncols());
    let a = a.as_slice().expect("checked by plan");
    let mut y: Vec<f32> = Vec::with_capacity(m * n);
    for_row_chunks(
        &mut y.spare_capacity_mut()[..m * n],
        n,
        parallel,
        |i, out| {
            new_chunk(a, &bs, bias, (i, k, n), out);
        },
    );
    #[allow(unsafe_code)]
    // SAFETY: the chunks cover the first `m · n` elements, and `new_chunk` wrote every
    // element of every chunk.
    unsafe {
        y.set_len(m * n);
    }
    Some(Array2::from_shape_vec((m, n), y).expect("m · n elements"))
}

/// [`try_new`] with an `epilogue(start, z, out)` run on each row chunk right after the chunk
/// is computed (while it is in cache): `z` is the chunk of the product (the epilogue may
/// rewrite it), `out` the same elements of a second output, which the epilogue must write in
/// full, `start` the chunk's first element index. Returns the product and the second output.
///
/// # Safety
/// The epilogue must write every element of each `out` chunk it is given.
#[allow(unsafe_code)]
pub(super) unsafe fn try_new_then(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    bias: Option<&[f32]>,
    parallel: bool,
    epilogue: &(impl Fn(usize, &mut [f32], &mut [MaybeUninit<f32>]) + Sync),
) -> Option<(Array2<f32>, Vec<f32>)> {
    let bs = plan(&a, &b)?;
    let ((m, k), n) = (a.dim(), b.ncols());
    let a = a.as_slice().expect("checked by plan");
    let mut y: Vec<f32> = Vec::with_capacity(m * n);
    let mut second: Vec<f32> = Vec::with_capacity(m * n);
    let chunk = |(i, (z, out)): (usize, (&mut [Uninit], &mut [Uninit]))| {
        epilogue(
            i * ROW_CHUNK * n,
            new_chunk(a, &bs, bias, (i, k, n), z),
            out,
        );
    };
    let (zs, outs) = (
        &mut y.spare_capacity_mut()[..m * n],
        &mut second.spare_capacity_mut()[..m * n],
    );
    if parallel {
        zs.par_chunks_mut(ROW_CHUNK * n)
            .zip(outs.par_chunks_mut(ROW_CHUNK * n))
            .enumerate()
            .for_each(chunk);
    } else {
        zs.chunks_mut(ROW_CHUNK * n)
            .zip(outs.chunks_mut(ROW_CHUNK * n))
            .enumerate()
            .for_each(chunk);
    }
    // SAFETY: the chunks cover the first `m · n` elements of both buffers; the product wrote
    // every element of `y`'s, and the epilogue (the caller's contract) every element of
    // `second`'s.
    unsafe {
        y.set_len(m * n);
        second.set_len(m * n);
    }
    Some((
        Array2::from_shape_vec((m, n), y).expect("m · n elements"),
        second,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;

    fn filled(r: usize, c: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 31 + j * 17) as f32 * seed).sin())
    }

    fn naive(
        a: &Array2<f32>,
        b: ArrayView2<'_, f32>,
        start: impl Fn(usize, usize) -> f64,
    ) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            start(i, j)
                + (0..a.ncols())
                    .map(|p| f64::from(a[[i, p]]) * f64::from(b[[p, j]]))
                    .sum::<f64>()
        })
    }

    fn close(got: &Array2<f32>, want: &Array2<f64>) {
        for ((i, j), &w) in want.indexed_iter() {
            let g = f64::from(got[[i, j]]);
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "[{i}, {j}]: {g} vs {w}"
            );
        }
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
    }

    #[test]
    fn new_products_with_and_without_bias_match_the_definition_on_any_thread_count() {
        if !has_avx512() {
            return;
        }
        // 1100 rows: several chunks and a partial one; B row-major and transposed (copied).
        let (m, k, n) = (1100, 40, 48);
        let a = filled(m, k, 0.37);
        let w = filled(n, k, 0.11); // [out, in], used as wᵀ
        let b = filled(k, n, 0.23);
        let bias = Array1::from_shape_fn(n, |j| j as f32 * 0.01 - 0.2);
        let mut runs = Vec::new();
        for threads in [1, 2, 3] {
            runs.push(pool(threads).install(|| {
                let with_bias = try_new(a.view(), w.t(), bias.as_slice(), true).expect("thin");
                let plain = try_new(a.view(), b.view(), None, true).expect("thin");
                (with_bias, plain)
            }));
        }
        close(&runs[0].0, &naive(&a, w.t(), |_, j| f64::from(bias[j])));
        close(&runs[0].1, &naive(&a, b.view(), |_, _| 0.0));
        for run in &runs[1..] {
            assert_eq!(run, &runs[0], "results differ across thread counts");
        }
    }

    #[test]
    fn sgemm_overwrites_or_accumulates() {
        if !has_avx512() {
            return;
        }
        let (m, k, n) = (300, 256, 256);
        let a = filled(m, k, 0.41);
        let b = filled(k, n, 0.07);
        let start = filled(m, n, 0.19);
        for accumulate in [false, true] {
            let mut c = start.clone();
            assert!(try_sgemm(
                &mut c.view_mut(),
                a.view(),
                b.view(),
                accumulate,
                false
            ));
            let s0 = |i: usize, j: usize| {
                if accumulate {
                    f64::from(start[[i, j]])
                } else {
                    0.0
                }
            };
            close(&c, &naive(&a, b.view(), s0));
        }
    }

    #[test]
    fn other_shapes_and_layouts_are_left_to_gemm() {
        let a = filled(2000, 64, 0.3);
        let b = filled(64, 64, 0.2);
        let mut c = Array2::<f32>::zeros((2000, 64));
        // Width not a multiple of 16, width or depth too large, `a` transposed, few rows with
        // a transposed `b`, and a strided output.
        assert!(try_new(a.view(), filled(64, 40, 0.1).view(), None, false).is_none());
        assert!(try_new(a.view(), filled(64, 512, 0.1).view(), None, false).is_none());
        assert!(
            try_new(
                filled(10, 300, 0.1).view(),
                filled(300, 16, 0.1).view(),
                None,
                false
            )
            .is_none()
        );
        assert!(try_new(a.t(), filled(2000, 16, 0.1).view(), None, false).is_none());
        assert!(try_new(a.slice(ndarray::s![..100, ..]), b.t(), None, false).is_none());
        let mut wide = Array2::<f32>::zeros((2000, 128));
        let mut strided = wide.slice_mut(ndarray::s![.., ..64]);
        assert!(!try_sgemm(&mut strided, a.view(), b.view(), false, false));
        if has_avx512() {
            assert!(try_sgemm(
                &mut c.view_mut(),
                a.view(),
                b.view(),
                false,
                false
            ));
        }
    }
}
