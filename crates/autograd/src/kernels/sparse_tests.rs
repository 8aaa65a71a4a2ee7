//! The sparse product against the dense `affine`, on ReLU-like inputs.

use super::*;
use crate::gradcheck::randn;
use crate::kernels::gemm::affine;
use ndarray::{Array1, Array2, Axis, Ix2, s};

fn mat(r: usize, c: usize, seed: u64) -> Array2<f32> {
    randn(&[r, c], seed).into_dimensionality::<Ix2>().unwrap()
}

/// A `[rows, cols]` ReLU-like input: about `zeros` of the entries exactly 0 (a deterministic
/// pattern), the rest positive; row 1 all zeros when there are at least 3 rows.
fn relu_like(rows: usize, cols: usize, zeros: f64, seed: u64) -> Array2<f32> {
    let mut x = mat(rows, cols, seed).mapv(f32::abs);
    for ((i, j), v) in x.indexed_iter_mut() {
        let u = ((i * 7919 + j * 104_729 + seed as usize * 31) % 1000) as f64 / 1000.0;
        if u < zeros {
            *v = 0.0;
        }
    }
    if rows >= 3 {
        x.row_mut(1).fill(0.0);
    }
    x
}

fn assert_close(got: &Array2<f32>, want: &Array2<f32>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    for (a, b) in got.iter().zip(want) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}: {a} vs {b}"
        );
    }
}

#[test]
fn sparse_product_equals_the_dense_affine() {
    // Widths around the tile sizes: below one vector, odd, a multiple of 16, above 256.
    for (rows, inputs, out) in [
        (5, 7, 3),
        (9, 33, 17),
        (4, 64, 48),
        (6, 40, 256),
        (3, 300, 275),
        (2, 16, 130),
        (150, 70, 40), // several row groups, a partial chunk of inputs
    ] {
        for zeros in [0.0, 0.5, 1.0] {
            let x = relu_like(rows, inputs, zeros, (rows * out) as u64);
            let w = mat(out, inputs, 2);
            let wt = SparseWeight::new(w.view());
            let b = mat(1, out, 3).remove_axis(Axis(0));
            let what = format!("[{rows}, {inputs}] → {out}, {zeros} zeros");
            let want = affine(x.view(), w.view(), Some(b.view()));
            let mut got = Array2::from_elem((rows, out), f32::NAN);
            sparse_affine_into(got.view_mut(), x.view(), &wt, Some(b.view()));
            assert_close(&got, &want, &what);
            if rows >= 3 {
                // The all-zero row is exactly the bias.
                assert_eq!(got.row(1), b, "{what}");
            }
            // Without a bias.
            let want = affine(x.view(), w.view(), None);
            sparse_affine_into(got.view_mut(), x.view(), &wt, None);
            assert_close(&got, &want, &what);
        }
    }
}

#[test]
fn all_zero_input_gives_the_bias_and_no_rows_is_fine() {
    let wt = SparseWeight::new(mat(35, 20, 1).view());
    let b = Array1::from_iter((0..35).map(|i| i as f32 - 3.0));
    let mut d = Array2::from_elem((4, 35), f32::NAN);
    sparse_affine_into(
        d.view_mut(),
        Array2::zeros((4, 20)).view(),
        &wt,
        Some(b.view()),
    );
    for row in d.rows() {
        assert_eq!(row, b);
    }
    let mut empty = Array2::<f32>::zeros((0, 35));
    sparse_affine_into(empty.view_mut(), Array2::zeros((0, 20)).view(), &wt, None);
}

#[test]
fn strided_input_and_output_views_are_handled() {
    // x: every other column of a wider array; dst: a transposed (column-major) view.
    let (rows, inputs, out) = (7, 24, 40);
    let wide = relu_like(rows, 2 * inputs, 0.5, 4);
    let x = wide.slice(s![.., ..;2]);
    let w = mat(out, inputs, 5);
    let wt = SparseWeight::new(w.view());
    let want = affine(x, w.view(), None);
    let mut t = Array2::<f32>::zeros((out, rows));
    sparse_affine_into(t.view_mut().reversed_axes(), x, &wt, None);
    assert_close(&t.t().to_owned(), &want, "strided");
}

#[test]
fn the_dispatch_uses_the_sparse_product_only_below_the_break_even() {
    let (rows, inputs, out) = (6, 50, 33);
    let w = mat(out, inputs, 6);
    let wt = SparseWeight::new(w.view());
    let b = mat(1, out, 7).remove_axis(Axis(0));
    for (zeros, sparse) in [(0.0, false), (0.9, true), (1.0, true)] {
        let x = relu_like(rows, inputs, zeros, 8);
        let density = count_nonzero(x.view()) as f64 / x.len() as f64;
        assert_eq!(density <= SPARSE_MAX_DENSITY, sparse, "density {density}");
        let mut got = Array2::zeros((rows, out));
        let ran = relu_affine_into(
            got.view_mut(),
            x.view(),
            w.view(),
            &wt,
            Some(b.view()),
            Threading::Serial,
        );
        assert_eq!(ran, sparse);
        assert_close(
            &got,
            &affine(x.view(), w.view(), Some(b.view())),
            "dispatch",
        );
    }
    // NaN is not a zero.
    let x = Array2::from_shape_fn((2, 3), |(i, j)| if i == j { f32::NAN } else { 0.0 });
    assert_eq!(count_nonzero(x.view()), 2);
}

#[test]
#[should_panic(expected = "sparse_affine_into: shapes x [2, 3] · w [5, 4]ᵀ")]
fn mismatched_shapes_panic_with_both_shapes() {
    let mut d = Array2::zeros((2, 5));
    let w = SparseWeight::new(Array2::zeros((5, 4)).view());
    sparse_affine_into(d.view_mut(), Array2::zeros((2, 3)).view(), &w, None);
}
