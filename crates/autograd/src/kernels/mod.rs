//! Low-level kernels shared by the ops: the matrix multiply (`gemm`), register-blocked products
//! of small in-cache matrices (`small`), vectorized transcendentals (`fastmath`) and parallel
//! element-wise loops.
//!
//! Element-wise loops run serially below [`PAR_MIN_LEN`] elements and with rayon above it. Each
//! output element is computed by exactly one closure call, so results do not depend on how
//! rayon splits the work (bit-identical across thread counts). Reductions that cross elements
//! are written with a fixed split (see the reduce ops) for the same reason.

pub mod alloc;
pub mod fastmath;
pub mod gemm;
pub mod small;

use crate::Tensor;
use ndarray::{ArrayViewD, Zip};
use rayon::prelude::*;

/// Below this many elements an element-wise loop runs on the calling thread.
pub const PAR_MIN_LEN: usize = 1 << 15;

/// Whether a loop over `len` elements should be split across the rayon pool.
pub fn use_parallel(len: usize) -> bool {
    len >= PAR_MIN_LEN && rayon::current_num_threads() > 1
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
    let mut out = vec![0.0_f32; x.len()];
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
    let mut out = vec![0.0_f32; x.len()];
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
    use super::{copy, zeros};

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
}
