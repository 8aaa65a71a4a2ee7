//! The single-precision matrix multiply behind every matmul, on the `gemm` crate — except the
//! thin products (inner dimension and width ≤ 256) on AVX-512 CPUs, which run on unpacked
//! register blocks and write a new output once (`thin.rs`).
//!
//! Operands are [`ArrayView2`]s with arbitrary strides, so a transposed operand is just a
//! view (`a.t()`), never a copy. Large products use the rayon pool through `gemm`'s own
//! parallelism; small ones (and calls made from inside a parallel loop, e.g. per attention
//! head) run on the calling thread. `gemm` splits the output (rows/columns) across threads and
//! keeps the inner `k` loop on one thread, so the sum order — hence the result — is the same
//! for every thread count.

use ndarray::{Array2, Array3, ArrayView1, ArrayView2, ArrayViewMut2, ArrayViewMut3};
use std::borrow::Cow;

/// Products with fewer multiply-adds than this run single-threaded.
pub const PAR_MIN_FLOPS: usize = 1 << 18;

/// Whether [`sgemm`] may use the thread pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// Use the rayon pool for large products.
    Auto,
    /// Stay on the calling thread (inside an outer parallel loop).
    Serial,
}

/// Whether an `[m, k] · [k, n]` product may use the pool.
fn parallel_product(m: usize, n: usize, k: usize, threading: Threading) -> bool {
    threading == Threading::Auto && m * n * k >= PAR_MIN_FLOPS && rayon::current_num_threads() > 1
}

/// `c = a · b` (or `c += a · b` when `accumulate`).
///
/// # Panics
/// If the shapes are not `[m, k] · [k, n] → [m, n]`.
pub fn sgemm(
    mut c: ArrayViewMut2<'_, f32>,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    accumulate: bool,
    threading: Threading,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "sgemm: shapes a {:?} · b {:?} → c {:?} do not match",
        a.shape(),
        b.shape(),
        c.shape()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let parallel = parallel_product(m, n, k, threading);
    // Thin products (see `thin.rs`) run on unpacked register blocks.
    #[cfg(target_arch = "x86_64")]
    if super::thin::try_sgemm(&mut c, a, b, accumulate, parallel) {
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    #[allow(unsafe_code)]
    // SAFETY: the pointers come from live ndarray views whose dimensions were checked above
    // (m×k, k×n, m×n) and whose strides are passed unchanged, so every address gemm forms
    // lies inside its view; `c` is a unique mutable view, so dst aliases neither lhs nor rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst = x · wᵀ + b` (any strides; `b` broadcast over the rows, zero when `None`): the bias
/// is written first and the product accumulated onto it (`gemm` with `β = 1`), so the output is
/// written in one pass after the bias. The affine step of the fused linear op and of the
/// tape-free serving head.
///
/// # Panics
/// If the shapes are not `x: [rows, in]`, `w: [out, in]`, `b: [out]`, `dst: [rows, out]`.
pub fn affine_into(
    dst: ArrayViewMut2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    b: Option<ArrayView1<'_, f32>>,
) {
    affine_into_with(dst, x, w, b, Threading::Auto);
}

/// [`affine_into`] with the product's [`Threading`] chosen by the caller (e.g.
/// [`Threading::Serial`] inside an outer parallel loop over row blocks).
///
/// # Panics
/// As [`affine_into`].
pub fn affine_into_with(
    mut dst: ArrayViewMut2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    b: Option<ArrayView1<'_, f32>>,
    threading: Threading,
) {
    match b {
        Some(b) => {
            check_bias(b, w);
            for mut row in dst.rows_mut() {
                row.assign(&b);
            }
        }
        None => dst.fill(0.0),
    }
    sgemm(dst, x, w.t(), true, threading);
}

/// [`affine_into`] a new `[rows, out]` array (without a bias, the product is the only write).
///
/// # Panics
/// As [`affine_into`].
pub fn affine(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    b: Option<ArrayView1<'_, f32>>,
) -> Array2<f32> {
    affine_with(x, w, b, Threading::Auto)
}

/// [`affine`] with the product's [`Threading`] chosen by the caller.
///
/// # Panics
/// As [`affine_into`].
pub fn affine_with(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    b: Option<ArrayView1<'_, f32>>,
    threading: Threading,
) -> Array2<f32> {
    let Some(b) = b else {
        return sgemm_new(x, w.t(), threading);
    };
    check_affine(x, w, Some(b));
    let (rows, out) = (x.nrows(), w.nrows());
    let b: Cow<'_, [f32]> = b
        .as_slice()
        .map_or_else(|| Cow::Owned(b.to_vec()), Cow::Borrowed);
    // Thin products start each output from its bias in a register: no bias fill first.
    #[cfg(target_arch = "x86_64")]
    if let Some(y) = super::thin::try_new(
        x,
        w.t(),
        Some(&b),
        parallel_product(rows, out, x.ncols(), threading),
    ) {
        return y;
    }
    let y = super::repeat_rows(&b, rows);
    let mut y = Array2::from_shape_vec((rows, out), y).expect("rows · out elements");
    sgemm(y.view_mut(), x, w.t(), true, threading);
    y
}

/// Elements per piece of [`affine_then`]'s epilogue after a `gemm` product.
const EPILOGUE_CHUNK: usize = 1 << 14;

/// [`affine`] followed by an element-wise `epilogue(start, z, out)` over
/// consecutive pieces of the row-major output: `z` is a piece of `x · wᵀ + b` (the epilogue
/// may rewrite it in place), `out` the same elements of a second output, which the epilogue
/// **must write in full**, and `start` the piece's first element index. Returns `z` (as the
/// epilogue left it) and the second output. On the thin path each piece is a row chunk handed
/// to the epilogue right after it is computed, while it is still in cache (e.g. an activation
/// and its derivative: the pre-activation never goes to memory and back); otherwise the
/// pieces follow the whole product. The pieces' bounds depend on the path, so the epilogue's
/// result for an element must depend only on its value and index.
///
/// # Safety
/// The epilogue must write every element of each `out` piece it is given (the second output
/// is returned as initialized).
///
/// # Panics
/// As [`affine`].
#[allow(unsafe_code)]
pub(crate) unsafe fn affine_then(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    b: Option<ArrayView1<'_, f32>>,
    epilogue: impl Fn(usize, &mut [f32], &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> (Array2<f32>, Vec<f32>) {
    check_affine(x, w, b);
    #[cfg(target_arch = "x86_64")]
    {
        let bs: Option<Cow<'_, [f32]>> = b.map(|b| {
            b.to_slice()
                .map_or_else(|| Cow::Owned(b.to_vec()), Cow::Borrowed)
        });
        let parallel = parallel_product(x.nrows(), w.nrows(), x.ncols(), Threading::Auto);
        // SAFETY: the epilogue's contract is this function's.
        let pair =
            unsafe { super::thin::try_new_then(x, w.t(), bs.as_deref(), parallel, &epilogue) };
        if let Some(pair) = pair {
            return pair;
        }
    }
    let mut z = affine(x, w, b);
    let n = z.len();
    let zs = z.as_slice_mut().expect("a new array is row-major");
    let mut second: Vec<f32> = Vec::with_capacity(n);
    let piece = |(i, (z, out)): (usize, (&mut [f32], &mut [std::mem::MaybeUninit<f32>]))| {
        epilogue(i * EPILOGUE_CHUNK, z, out);
    };
    let spare = &mut second.spare_capacity_mut()[..n];
    if super::use_parallel(n) {
        use rayon::prelude::*;
        zs.par_chunks_mut(EPILOGUE_CHUNK)
            .zip(spare.par_chunks_mut(EPILOGUE_CHUNK))
            .enumerate()
            .for_each(piece);
    } else {
        zs.chunks_mut(EPILOGUE_CHUNK)
            .zip(spare.chunks_mut(EPILOGUE_CHUNK))
            .enumerate()
            .for_each(piece);
    }
    // SAFETY: the pieces cover the first `n` elements, and the epilogue wrote all of each
    // (the caller's contract).
    unsafe {
        second.set_len(n);
    }
    (z, second)
}

/// Panics unless `x · wᵀ (+ b)` is defined (with [`check_bias`]).
fn check_affine(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>, b: Option<ArrayView1<'_, f32>>) {
    if let Some(b) = b {
        check_bias(b, w);
    }
    assert_eq!(
        x.ncols(),
        w.ncols(),
        "affine: input shape {:?} vs weight shape {:?}",
        x.shape(),
        w.shape()
    );
}

fn check_bias(b: ArrayView1<'_, f32>, w: ArrayView2<'_, f32>) {
    assert_eq!(
        b.len(),
        w.nrows(),
        "affine: bias shape {:?} vs weight shape {:?}",
        b.shape(),
        w.shape()
    );
}

/// A new array whose every element `fill` writes — the output of a product with
/// `accumulate = false`.
///
/// The buffer comes from [`super::zeros`]: zeroed by the rayon pool when it is large (the
/// allocator reuses freed memory — see [`super::alloc`] — so a `calloc` would be a serial
/// `memset` that leaves the other threads idle), and no uninitialized memory is ever viewed as
/// `f32` (an earlier version handed the product a `&mut [f32]` over `Vec::spare_capacity_mut`,
/// which Rust's rules make undefined behaviour even though the product never reads it).
fn write_once<D: ndarray::Dimension>(
    shape: D,
    fill: impl FnOnce(&mut [f32]),
) -> ndarray::Array<f32, D> {
    let mut v = super::zeros(shape.size());
    fill(&mut v);
    ndarray::Array::from_shape_vec(shape, v).expect("n elements")
}

/// `a · b` into a new array (see `write_once` for how the buffer is allocated).
///
/// # Panics
/// If the inner dimensions differ.
pub fn sgemm_new(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    threading: Threading,
) -> Array2<f32> {
    let (m, n) = (a.nrows(), b.ncols());
    assert_eq!(
        a.ncols(),
        b.nrows(),
        "sgemm: shapes a {:?} · b {:?} do not match",
        a.shape(),
        b.shape()
    );
    // Thin products write their output once (no zeroing first).
    #[cfg(target_arch = "x86_64")]
    if let Some(y) = super::thin::try_new(a, b, None, parallel_product(m, n, a.ncols(), threading))
    {
        return y;
    }
    write_once(ndarray::Ix2(m, n), |out| {
        let c = ArrayViewMut2::from_shape((m, n), out).expect("m · n elements");
        sgemm(c, a, b, false, threading);
    })
}

/// A new `[batch, m, n]` array filled by `fill`, which must write every element (e.g. one
/// product with `accumulate = false` per item).
pub fn new3_written_by(
    batch: usize,
    m: usize,
    n: usize,
    fill: impl FnOnce(ArrayViewMut3<'_, f32>),
) -> Array3<f32> {
    write_once(ndarray::Ix3(batch, m, n), |out| {
        fill(ArrayViewMut3::from_shape((batch, m, n), out).expect("batch · m · n elements"));
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, linalg::general_mat_mul};

    fn naive(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        general_mat_mul(1.0, &a, &b, 0.0, &mut c);
        c
    }

    fn filled(r: usize, c: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 31 + j * 17) as f32 * seed).sin())
    }

    #[test]
    fn affine_then_equals_affine_followed_by_the_epilogue_on_any_thread_count() {
        // `[1040, 64] → 256` takes the thin path on AVX-512 CPUs (row chunks, several of them
        // and a partial one); `→ 200` (not a multiple of 16) the `gemm` fallback. The epilogue
        // records each element's index (checking `start`) and rewrites `z` in place.
        for (n, with_bias) in [(256, true), (256, false), (200, true)] {
            let (x, w) = (filled(1040, 64, 0.3), filled(n, 64, 0.7));
            let b = ndarray::Array1::from_shape_fn(n, |j| j as f32 * 0.01 - 1.0);
            let b = with_bias.then(|| b.view());
            let want = affine(x.view(), w.view(), b);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                #[allow(unsafe_code)]
                // SAFETY: the epilogue writes every element of `out`.
                let (z, second) = pool.install(|| unsafe {
                    affine_then(x.view(), w.view(), b, |start, z, out| {
                        for (k, (z, o)) in z.iter_mut().zip(out.iter_mut()).enumerate() {
                            o.write((start + k) as f32);
                            *z = 2.0 * *z + 1.0;
                        }
                    })
                });
                let what = format!("n {n}, bias {with_bias}, {threads} threads");
                assert_eq!(z, want.mapv(|v| 2.0 * v + 1.0), "{what}");
                assert!(
                    second.iter().enumerate().all(|(i, &v)| v == i as f32),
                    "{what}: element indices"
                );
            }
        }
    }

    #[test]
    fn matches_reference_with_transposed_views() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 2), (37, 64, 19), (128, 96, 70)] {
            let a = filled(m, k, 0.37);
            let b = filled(k, n, 0.11);
            let at = a.t().to_owned(); // [k, m] storage, used through a transposed view
            let bt = b.t().to_owned();
            let want = naive(a.view(), b.view());
            for (av, bv) in [
                (a.view(), b.view()),
                (at.t(), b.view()),
                (a.view(), bt.t()),
                (at.t(), bt.t()),
            ] {
                let mut c = Array2::zeros((m, n));
                sgemm(c.view_mut(), av, bv, false, Threading::Auto);
                for (x, y) in c.iter().zip(want.iter()) {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{m}x{k}x{n}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn write_once_products_equal_the_zeroed_ones() {
        for &(m, k, n) in &[(1, 1, 1), (37, 64, 19), (128, 300, 70), (5, 0, 3)] {
            let a = filled(m, k, 0.37);
            let b = filled(k, n, 0.11);
            let mut want = Array2::zeros((m, n));
            sgemm(
                want.view_mut(),
                a.view(),
                b.t().t(),
                false,
                Threading::Serial,
            );
            assert_eq!(sgemm_new(a.view(), b.view(), Threading::Auto), want);
            let c3 = new3_written_by(2, m, n, |mut c| {
                for mut ci in c.outer_iter_mut() {
                    sgemm(ci.view_mut(), a.view(), b.view(), false, Threading::Serial);
                }
            });
            assert_eq!(c3.index_axis(ndarray::Axis(0), 1), want);
        }
    }

    #[test]
    fn accumulates_and_handles_empty_inner_dimension() {
        let a = filled(4, 3, 0.5);
        let b = filled(3, 2, 0.25);
        let mut c = Array2::from_elem((4, 2), 1.0_f32);
        sgemm(c.view_mut(), a.view(), b.view(), true, Threading::Serial);
        let want = naive(a.view(), b.view()) + 1.0;
        assert!(c.iter().zip(want.iter()).all(|(x, y)| (x - y).abs() < 1e-5));

        let mut c = Array2::from_elem((4, 2), 7.0_f32);
        sgemm(
            c.view_mut(),
            Array2::zeros((4, 0)).view(),
            Array2::zeros((0, 2)).view(),
            false,
            Threading::Auto,
        );
        assert!(c.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn affine_equals_product_plus_bias_for_any_layout() {
        let x = filled(9, 7, 0.3);
        let w = filled(5, 7, 0.7); // [out, in]
        let wide_bias = filled(1, 10, 0.9);
        let bias = wide_bias.row(0).to_owned().slice_move(ndarray::s![..5]);
        let strided_bias = wide_bias.row(0).slice_move(ndarray::s![..;2]); // non-contiguous
        for b in [bias.view(), strided_bias] {
            let want = naive(x.view(), w.t()) + b;
            let got = affine(x.view(), w.view(), Some(b));
            assert!(
                (&got - &want).iter().all(|d| d.abs() < 1e-5),
                "{got} vs {want}"
            );
            let mut into = Array2::from_elem((18, 5), f32::NAN); // written through a strided view
            affine_into(
                into.slice_mut(ndarray::s![..;2, ..]),
                x.view(),
                w.view(),
                Some(b),
            );
            assert_eq!(into.slice(ndarray::s![..;2, ..]), got);
        }
        let mut into = Array2::from_elem((9, 5), f32::NAN);
        affine_into(into.view_mut(), x.view(), w.view(), None);
        assert_eq!(into, affine(x.view(), w.view(), None));
        assert_eq!(into, sgemm_new(x.view(), w.t(), Threading::Auto));
    }

    #[test]
    fn serial_affine_equals_the_threaded_one() {
        // Large enough for the threaded path (≥ PAR_MIN_FLOPS multiply-adds).
        let x = filled(300, 70, 0.3);
        let w = filled(90, 70, 0.7);
        let b = filled(1, 90, 0.9).row(0).to_owned();
        let auto = affine(x.view(), w.view(), Some(b.view()));
        assert_eq!(
            affine_with(x.view(), w.view(), Some(b.view()), Threading::Serial),
            auto
        );
        let mut into = Array2::zeros((300, 90));
        affine_into_with(
            into.view_mut(),
            x.view(),
            w.view(),
            Some(b.view()),
            Threading::Serial,
        );
        assert_eq!(into, auto);
        assert_eq!(
            affine_with(x.view(), w.view(), None, Threading::Serial),
            affine(x.view(), w.view(), None)
        );
    }

    #[test]
    #[should_panic(expected = "affine: bias shape [4] vs weight shape [5, 7]")]
    fn affine_names_both_shapes_on_a_bias_mismatch() {
        let b = ndarray::Array1::<f32>::zeros(4);
        affine(
            filled(2, 7, 0.1).view(),
            filled(5, 7, 0.2).view(),
            Some(b.view()),
        );
    }

    #[test]
    #[should_panic(expected = "affine: input shape [2048, 32] vs weight shape [64, 48]")]
    fn affine_names_both_shapes_on_an_input_mismatch() {
        // A shape the thin path would take if the widths matched: checked before it.
        let b = ndarray::Array1::<f32>::zeros(64);
        affine(
            filled(2048, 32, 0.1).view(),
            filled(64, 48, 0.2).view(),
            Some(b.view()),
        );
    }

    #[test]
    #[should_panic(expected = "sgemm: shapes a [2048, 32] · b [48, 64] do not match")]
    fn new_products_name_both_shapes_on_a_mismatch() {
        sgemm_new(
            filled(2048, 32, 0.1).view(),
            filled(48, 64, 0.2).view(),
            Threading::Auto,
        );
    }
}
