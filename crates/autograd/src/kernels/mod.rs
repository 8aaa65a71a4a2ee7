//! Low-level kernels shared by the ops: the matrix multiply (`gemm`), register-blocked products
//! of small in-cache matrices (`small`), affine products over the nonzero inputs only
//! (`sparse`), vectorized transcendentals (`fastmath`) and parallel element-wise loops.
//!
//! Element-wise loops run serially below [`PAR_MIN_LEN`] elements and with rayon above it. Each
//! output element is computed by exactly one closure call, so results do not depend on how
//! rayon splits the work (bit-identical across thread counts). Reductions that cross elements
//! are written with a fixed split (see the reduce ops) for the same reason.

pub mod alloc;
pub(crate) mod dropout_bits;
pub mod fastmath;
pub mod gemm;
pub mod small;
pub mod sparse;
#[cfg(target_arch = "x86_64")]
mod thin;

use crate::Tensor;
use ndarray::{ArrayViewD, Zip};
use rayon::prelude::*;

/// Below this many elements an element-wise loop runs on the calling thread.
pub const PAR_MIN_LEN: usize = 1 << 15;

/// Whether a loop over `len` elements should be split across the rayon pool.
pub fn use_parallel(len: usize) -> bool {
    len >= PAR_MIN_LEN && rayon::current_num_threads() > 1
}

/// Whether this x86-64 CPU has AVX-512F: the explicit-intrinsics kernels (`small`'s blocks,
/// the thin products, the attention's row passes) run only then, their portable twins
/// otherwise. (The detection is cached by `std`; each call is one atomic load.)
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// A vector of `n` zeros, filled by the rayon pool when it is large (`vec![0.0; n]` is a
/// serial `memset` once the allocator reuses memory, which left the second thread idle).
pub fn zeros(n: usize) -> Vec<f32> {
    if use_parallel(n) {
        let mut v = Vec::with_capacity(n);
        v.par_extend(rayon::iter::repeat_n(0.0_f32, n));
        v
    } else {
        vec![0.0; n]
    }
}

/// A vector of `n` elements written once by `fill(i, chunk)` for its consecutive chunks of
/// `chunk` elements (chunk `i` starts at element `i · chunk`; the last may be shorter), on the
/// rayon pool when `n` is large, with `fill`'s results in chunk order — no zeroing pass before
/// the writes (a `memset` of the whole output, ≈ 1.5 % of a training step when every fully
/// written output started as [`zeros`]).
///
/// # Safety
/// `fill` must write every element of every chunk it is given.
///
/// # Panics
/// If `chunk` is 0 while `n` is not.
#[allow(unsafe_code)]
pub(crate) unsafe fn written_by<T: Send>(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let mut results = Vec::new();
    if n > 0 {
        assert!(chunk > 0, "written_by: chunk 0 for {n} elements");
        let spare = &mut v.spare_capacity_mut()[..n];
        results = if use_parallel(n) {
            spare
                .par_chunks_mut(chunk)
                .enumerate()
                .map(|(i, c)| fill(i, c))
                .collect()
        } else {
            spare
                .chunks_mut(chunk)
                .enumerate()
                .map(|(i, c)| fill(i, c))
                .collect()
        };
    }
    // SAFETY: the chunks cover the first `n` elements and the caller guarantees that `fill`
    // wrote every one of them.
    unsafe {
        v.set_len(n);
    }
    (v, results)
}

/// A copy of `x`, made by the rayon pool when it is large (see [`zeros`]).
pub fn copy(x: &[f32]) -> Vec<f32> {
    if use_parallel(x.len()) {
        let mut v = Vec::with_capacity(x.len());
        v.par_extend(x.par_iter().copied());
        v
    } else {
        x.to_vec()
    }
}

/// `row` repeated `rows` times, one after the other (`[rows, row.len()]` in row-major order),
/// written by the rayon pool when it is large (see [`zeros`]): e.g. a bias broadcast over the
/// rows of an output that a product then accumulates onto.
pub fn repeat_rows(row: &[f32], rows: usize) -> Vec<f32> {
    let n = rows * row.len();
    let mut v = Vec::with_capacity(n);
    if use_parallel(n) && !row.is_empty() {
        // Written in place, whole rows per task (`par_extend` of an un-indexed iterator
        // would collect pieces and then copy them serially).
        v.spare_capacity_mut()[..n]
            .par_chunks_mut(row.len())
            .for_each(|out| {
                for (o, &x) in out.iter_mut().zip(row) {
                    o.write(x);
                }
            });
        #[allow(unsafe_code)]
        // SAFETY: the capacity is at least `n`, and the loop above initialized each of the
        // first `n` elements (`n / row.len()` chunks of exactly `row.len()` elements each).
        unsafe {
            v.set_len(n);
        }
    } else {
        for _ in 0..rows {
            v.extend_from_slice(row);
        }
    }
    v
}

/// Rows per block of [`sum_rows`].
const SUM_ROWS_BLOCK: usize = 256;

/// The column sums `Σ_i x[i, ..]` of a matrix (any strides), e.g. a bias gradient: rows are
/// added in order within fixed blocks of 256 rows, blocks on the rayon pool when the matrix is
/// large, and the block sums are added in block order — so the result depends on `x` only,
/// never on the thread count.
pub fn sum_rows(x: ndarray::ArrayView2<'_, f32>) -> ndarray::Array1<f32> {
    let width = x.ncols();
    let block = |rows: ndarray::ArrayView2<'_, f32>| -> Vec<f32> {
        let mut acc = vec![0.0_f32; width];
        match rows.as_slice() {
            // Contiguous rows: plain slice loops, compiled for the widest instruction set.
            Some(flat) if width > 0 => fastmath::dispatch(
                #[inline(always)]
                || {
                    for r in flat.chunks_exact(width) {
                        for (a, &v) in acc.iter_mut().zip(r) {
                            *a += v;
                        }
                    }
                },
            ),
            _ => {
                for row in rows.rows() {
                    acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
                }
            }
        }
        acc
    };
    let blocks: Vec<Vec<f32>> = if use_parallel(x.len()) {
        x.axis_chunks_iter(ndarray::Axis(0), SUM_ROWS_BLOCK)
            .into_par_iter()
            .map(block)
            .collect()
    } else {
        x.axis_chunks_iter(ndarray::Axis(0), SUM_ROWS_BLOCK)
            .map(block)
            .collect()
    };
    let mut total = vec![0.0_f32; width];
    for b in &blocks {
        total.iter_mut().zip(b).for_each(|(t, &v)| *t += v);
    }
    ndarray::Array1::from_vec(total)
}

/// `dst += src` (same shapes; `src` may be any layout).
///
/// # Panics
/// If the shapes differ.
pub fn add_assign(dst: &mut Tensor, src: &ArrayViewD<'_, f32>) {
    assert_eq!(
        dst.shape(),
        src.shape(),
        "add_assign: destination shape {:?} vs source shape {:?}",
        dst.shape(),
        src.shape()
    );
    let z = Zip::from(dst).and(src);
    if use_parallel(src.len()) {
        z.par_for_each(|d, &s| *d += s);
    } else {
        z.for_each(|d, &s| *d += s);
    }
}

/// `f` applied to every element of `a`, into a new standard-layout tensor.
pub fn map1(a: &ArrayViewD<'_, f32>, f: impl Fn(f32) -> f32 + Sync + Send) -> Tensor {
    let z = Zip::from(a);
    if use_parallel(a.len()) {
        z.par_map_collect(|&x| f(x))
    } else {
        z.map_collect(|&x| f(x))
    }
}

/// `f` applied to corresponding elements of two same-shape views.
///
/// # Panics
/// If the shapes differ.
pub fn map2(
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Tensor {
    assert_eq!(
        a.shape(),
        b.shape(),
        "map2: shapes {:?} vs {:?}",
        a.shape(),
        b.shape()
    );
    let z = Zip::from(a).and(b);
    if use_parallel(a.len()) {
        z.par_map_collect(|&x, &y| f(x, y))
    } else {
        z.map_collect(|&x, &y| f(x, y))
    }
}

/// `f` applied to corresponding elements of three same-shape views.
///
/// # Panics
/// If the shapes differ.
pub fn map3(
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
    c: &ArrayViewD<'_, f32>,
    f: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) -> Tensor {
    assert!(
        a.shape() == b.shape() && b.shape() == c.shape(),
        "map3: shapes {:?}, {:?}, {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
    let z = Zip::from(a).and(b).and(c);
    if use_parallel(a.len()) {
        z.par_map_collect(|&x, &y, &w| f(x, y, w))
    } else {
        z.map_collect(|&x, &y, &w| f(x, y, w))
    }
}

/// Elements per parallel task of the vectorized maps (a multiple of every SIMD width).
const SIMD_CHUNK: usize = 1 << 14;

/// [`map1`] through a vectorized slice kernel (one of [`fastmath`]'s, compiled for the CPU's
/// widest SIMD), split in fixed chunks above the parallel threshold. `kernel` must compute
/// `out[i] = f(x[i])` element by element, so the result does not depend on the split or the
/// thread count; non-contiguous inputs take [`map1`] with `f`.
pub fn map1_simd(
    a: &ArrayViewD<'_, f32>,
    kernel: fn(&[f32], &mut [f32]),
    f: impl Fn(f32) -> f32 + Sync + Send,
) -> Tensor {
    let Some(x) = a.as_slice() else {
        return map1(a, f);
    };
    let mut out = zeros(x.len());
    if use_parallel(x.len()) {
        use rayon::prelude::*;
        out.par_chunks_mut(SIMD_CHUNK)
            .zip(x.par_chunks(SIMD_CHUNK))
            .for_each(|(o, x)| kernel(x, o));
    } else {
        kernel(x, &mut out);
    }
    Tensor::from_shape_vec(a.raw_dim(), out).expect("same element count")
}

/// [`map2`] vectorized like [`map1_simd`] (non-contiguous inputs take [`map2`]).
///
/// # Panics
/// If the shapes differ.
pub fn map2_simd(
    a: &ArrayViewD<'_, f32>,
    b: &ArrayViewD<'_, f32>,
    kernel: fn(&[f32], &[f32], &mut [f32]),
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Tensor {
    assert_eq!(a.shape(), b.shape(), "map2_simd: shapes differ");
    let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) else {
        return map2(a, b, f);
    };
    let mut out = zeros(x.len());
    if use_parallel(x.len()) {
        use rayon::prelude::*;
        out.par_chunks_mut(SIMD_CHUNK)
            .zip(x.par_chunks(SIMD_CHUNK).zip(y.par_chunks(SIMD_CHUNK)))
            .for_each(|(o, (x, y))| kernel(x, y, o));
    } else {
        kernel(x, y, &mut out);
    }
    Tensor::from_shape_vec(a.raw_dim(), out).expect("same element count")
}

#[cfg(test)]
mod tests {
    use super::{copy, repeat_rows, sum_rows, zeros};

    #[test]
    fn parallel_zeros_and_copy_equal_the_serial_ones_on_any_thread_count() {
        let n = 3 * super::PAR_MIN_LEN + 7; // above the parallel threshold, odd length
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (z, c) = pool.install(|| (zeros(n), copy(&x)));
            assert_eq!(z, vec![0.0; n], "{threads} threads");
            assert_eq!(c, x, "{threads} threads");
        }
        assert_eq!(
            (zeros(3), copy(&[1.0, 2.0])),
            (vec![0.0; 3], vec![1.0, 2.0])
        );
    }

    #[test]
    fn repeat_rows_equals_the_serial_repeat_on_any_thread_count() {
        let row: Vec<f32> = (0..37).map(|i| i as f32 - 5.5).collect();
        let rows = super::PAR_MIN_LEN / 10; // 37 · rows is above the parallel threshold
        let want: Vec<f32> = (0..rows).flat_map(|_| row.iter().copied()).collect();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(
                pool.install(|| repeat_rows(&row, rows)),
                want,
                "{threads} threads"
            );
        }
        assert_eq!(repeat_rows(&[1.0, 2.0], 2), vec![1.0, 2.0, 1.0, 2.0]);
        assert!(repeat_rows(&[], 5).is_empty());
        assert!(repeat_rows(&[1.0], 0).is_empty());
    }

    #[test]
    fn sum_rows_adds_the_rows_and_is_identical_across_thread_counts() {
        let rows = 5 * super::SUM_ROWS_BLOCK + 17; // several blocks and a partial one
        let x = ndarray::Array2::from_shape_fn((rows, 70), |(i, j)| {
            ((i * 31 + j * 7) % 19) as f32 * 0.25 - 2.0
        });
        // Small integers times 0.25: every partial sum is exact, so any order gives `want`.
        let want = x.sum_axis(ndarray::Axis(0));
        let mut first = None;
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| sum_rows(x.view()));
            assert_eq!(got, want, "{threads} threads");
            // Inexact values: still the same bits on every thread count.
            let y = x.mapv(|v| v * 0.1 + 1e-3);
            let bits: Vec<u32> = pool
                .install(|| sum_rows(y.view()))
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(first.get_or_insert_with(|| bits.clone()), &bits);
        }
        // Strided (transposed) input, and empty shapes.
        assert_eq!(sum_rows(x.t()), x.sum_axis(ndarray::Axis(1)));
        assert_eq!(
            sum_rows(ndarray::Array2::<f32>::zeros((0, 3)).view()).to_vec(),
            vec![0.0; 3]
        );
        assert!(sum_rows(ndarray::Array2::<f32>::zeros((4, 0)).view()).is_empty());
    }
}
