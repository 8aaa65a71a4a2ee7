//! Softmax along an axis: `softmax`, `log_softmax`, and the fused `masked_softmax` of
//! attention (key-padding masks).
//!
//! Each lane (the 1-D slice along the axis) is processed by one call of a lane kernel:
//! max-subtracted, exponentiated and summed once, then normalised — serially in index order
//! within the lane. Lanes run in parallel above the element-wise threshold; as each lane is one
//! closure call the result is bit-identical across thread counts.
//!
//! **Fully masked lanes.** A lane whose every entry is `−∞` (an attention row masked with
//! `−∞`), or every entry of which is masked out in `masked_softmax`, has no well-defined
//! distribution (0/0). Instead of NaN, `softmax` and `masked_softmax` give all zeros there and
//! `log_softmax` gives all `−∞` (the log of those zeros); in every case the gradient reaching
//! such a lane's inputs is exactly zero.

use super::unary::{SavedOutput, record_with_output};
use crate::kernels::{fastmath, use_parallel};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{ArrayD, ArrayView1, ArrayViewMut1, Axis, IxDyn, Zip};

/// The largest entry of a lane (`−∞` for an empty or all-`−∞` lane; NaN entries are skipped
/// here and propagate through the exponentials instead).
fn lane_max<'a>(x: impl IntoIterator<Item = &'a f32>) -> f32 {
    x.into_iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `y = softmax(x)` (or `log_softmax(x)` when `log`) for one lane.
fn softmax_lane(x: ArrayView1<'_, f32>, mut y: ArrayViewMut1<'_, f32>, log: bool) {
    let m = lane_max(x.iter());
    if m == f32::NEG_INFINITY {
        y.fill(if log { f32::NEG_INFINITY } else { 0.0 });
        return;
    }
    let sum = exp_shifted(x, m, None, y.view_mut());
    if log {
        let log_sum = sum.ln();
        Zip::from(&mut y)
            .and(&x)
            .for_each(|y, &x| *y = (x - m) - log_sum);
    } else {
        y.mapv_inplace(|e| e / sum);
    }
}

/// `y = softmax(x)` over the entries where `keep` is true; masked entries get exactly 0 and are
/// never read (they may hold anything, NaN included).
fn masked_softmax_lane(
    x: ArrayView1<'_, f32>,
    keep: ArrayView1<'_, bool>,
    mut y: ArrayViewMut1<'_, f32>,
) {
    let m = x.iter().zip(&keep).fold(
        f32::NEG_INFINITY,
        |m, (&v, &k)| if k && v > m { v } else { m },
    );
    if m == f32::NEG_INFINITY {
        y.fill(0.0);
        return;
    }
    let sum = exp_shifted(x, m, Some(keep), y.view_mut());
    let inv = 1.0 / sum;
    y.mapv_inplace(|e| e * inv);
}

/// `y = e^{x − m}` (0 where `keep` is false) with the vectorized [`fastmath::exp`]; returns
/// `Σ y`, summed serially in index order.
fn exp_shifted(
    x: ArrayView1<'_, f32>,
    m: f32,
    keep: Option<ArrayView1<'_, bool>>,
    mut y: ArrayViewMut1<'_, f32>,
) -> f32 {
    match (
        x.as_slice(),
        keep.as_ref().map(|k| k.as_slice()),
        y.as_slice_mut(),
    ) {
        (Some(x), None, Some(y)) => fastmath::exp_shifted_slice(x, m, None, y),
        (Some(x), Some(Some(k)), Some(y)) => fastmath::exp_shifted_slice(x, m, Some(k), y),
        _ => match keep {
            Some(k) => Zip::from(&mut y).and(&x).and(&k).for_each(|y, &x, &k| {
                *y = if k { fastmath::exp(x - m) } else { 0.0 };
            }),
            None => Zip::from(&mut y)
                .and(&x)
                .for_each(|y, &x| *y = fastmath::exp(x - m)),
        },
    }
    y.iter().fold(0.0_f32, |s, &e| s + e)
}

/// Softmax backward for one lane: `dx = y ⊙ (dy − Σ dy ⊙ y)`. Zero wherever `y` is zero, so
/// masked entries and fully masked lanes get no gradient.
fn softmax_backward_lane(
    y: ArrayView1<'_, f32>,
    dy: ArrayView1<'_, f32>,
    mut dx: ArrayViewMut1<'_, f32>,
) {
    let dot = y.iter().zip(&dy).fold(0.0_f32, |acc, (&y, &g)| acc + y * g);
    Zip::from(&mut dx)
        .and(&y)
        .and(&dy)
        .for_each(|dx, &y, &g| *dx = y * (g - dot));
}

/// Log-softmax backward for one lane: `dx = dy − softmax ⊙ Σ dy`, with `softmax = e^y`; zero
/// for a fully masked (all `−∞`) lane.
fn log_softmax_backward_lane(
    y: ArrayView1<'_, f32>,
    dy: ArrayView1<'_, f32>,
    mut dx: ArrayViewMut1<'_, f32>,
) {
    if y.iter().all(|&v| v == f32::NEG_INFINITY) {
        dx.fill(0.0);
        return;
    }
    let sum = dy.fold(0.0_f32, |acc, &g| acc + g);
    Zip::from(&mut dx)
        .and(&y)
        .and(&dy)
        .for_each(|dx, &y, &g| *dx = g - fastmath::exp(y) * sum);
}

fn check_axis(op: &str, shape: &[usize], axis: usize) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} is out of range for a value of shape {shape:?}"
    );
}

struct SoftmaxBackward {
    x: usize,
    axis: usize,
    log: bool,
    y: SavedOutput,
}

impl BackwardOp for SoftmaxBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let y = self.y.get();
        let ax = Axis(self.axis);
        let mut dx = Tensor::zeros(y.raw_dim());
        let z = Zip::from(dx.lanes_mut(ax))
            .and(y.lanes(ax))
            .and(g.lanes(ax));
        let log = self.log;
        let lane = |dx, y, dy| {
            if log {
                log_softmax_backward_lane(y, dy, dx);
            } else {
                softmax_backward_lane(y, dy, dx);
            }
        };
        if use_parallel(y.len()) {
            z.par_for_each(lane);
        } else {
            z.for_each(lane);
        }
        sink.add(self.x, dx);
    }
}

fn softmax_impl(x: Var<'_>, axis: usize, log: bool) -> Var<'_> {
    let op = if log { "log_softmax" } else { "softmax" };
    let x_val = x.value();
    check_axis(op, x_val.shape(), axis);
    let ax = Axis(axis);
    let mut out = Tensor::zeros(x_val.raw_dim());
    let z = Zip::from(out.lanes_mut(ax)).and(x_val.lanes(ax));
    if use_parallel(x_val.len()) {
        z.par_for_each(|y, x| softmax_lane(x, y, log));
    } else {
        z.for_each(|y, x| softmax_lane(x, y, log));
    }
    let id = x.id;
    record_with_output(x.tape, &[x], out, |y| SoftmaxBackward {
        x: id,
        axis,
        log,
        y,
    })
}

impl<'t> Var<'t> {
    /// Softmax along `axis`: `y = e^{x − max} / Σ e^{x − max}` per lane, so large inputs do not
    /// overflow. A lane whose entries are all `−∞` (fully masked) gives all zeros and a zero
    /// gradient, never NaN. The backward reuses the output: `dx = y ⊙ (dy − Σ dy ⊙ y)`.
    ///
    /// # Shapes
    /// Any shape with `axis < ndim` → the same shape.
    ///
    /// # Panics
    /// If `axis` is out of range.
    pub fn softmax(self, axis: usize) -> Var<'t> {
        softmax_impl(self, axis, false)
    }

    /// Log-softmax along `axis`: `y = x − max − log Σ e^{x − max}` per lane (stable for large
    /// inputs). A lane whose entries are all `−∞` (fully masked) gives all `−∞` — the log of
    /// the zeros [`Var::softmax`] gives there — and a zero gradient. The backward is
    /// `dx = dy − e^y ⊙ Σ dy`.
    ///
    /// # Shapes
    /// Any shape with `axis < ndim` → the same shape.
    ///
    /// # Panics
    /// If `axis` is out of range.
    pub fn log_softmax(self, axis: usize) -> Var<'t> {
        softmax_impl(self, axis, true)
    }

    /// Softmax along the last axis over the entries where `mask` is `true` (keep); masked
    /// entries get probability exactly 0 and no gradient, and are never read (they may hold
    /// anything). A row with nothing kept gives all zeros and a zero gradient, never NaN. Fused:
    /// one pass per row, no `−∞` tensor is built.
    ///
    /// Typical use is attention with a key-padding mask: scores `[B, H, L, L]` and a mask
    /// `[B, 1, 1, L]` (true = a real token).
    ///
    /// # Shapes
    /// `self`: any shape with at least one axis; `mask`: broadcastable to `self`'s shape
    /// (NumPy rules) → `self`'s shape.
    ///
    /// # Panics
    /// If `self` is a scalar or `mask` cannot be broadcast to `self`'s shape.
    pub fn masked_softmax(self, mask: &ArrayD<bool>) -> Var<'t> {
        let x_val = self.value();
        let shape = x_val.shape();
        assert!(
            !shape.is_empty(),
            "masked_softmax: the input must have at least one axis"
        );
        let keep = mask.broadcast(IxDyn(shape)).unwrap_or_else(|| {
            panic!(
                "masked_softmax: mask of shape {:?} cannot be broadcast to the input shape {shape:?}",
                mask.shape()
            )
        });
        let axis = shape.len() - 1;
        let ax = Axis(axis);
        let mut out = Tensor::zeros(x_val.raw_dim());
        let z = Zip::from(out.lanes_mut(ax))
            .and(x_val.lanes(ax))
            .and(keep.lanes(ax));
        if use_parallel(x_val.len()) {
            z.par_for_each(|y, x, k| masked_softmax_lane(x, k, y));
        } else {
            z.for_each(|y, x, k| masked_softmax_lane(x, k, y));
        }
        let id = self.id;
        record_with_output(self.tape, &[self], out, |y| SoftmaxBackward {
            x: id,
            axis,
            log: false,
            y,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn, value_and_grads};
    use crate::{Tape, Tensor, Var};
    use ndarray::{ArrayD, Axis, IxDyn, array};

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    fn assert_close(got: &Tensor, want: &Tensor, tol: f32) {
        assert_eq!(got.shape(), want.shape());
        for (&g, &w) in got.iter().zip(want) {
            assert!(close(g, w, tol), "got {got:?}\nwant {want:?}");
        }
    }

    fn row(t: &Tensor, i: usize) -> Vec<f32> {
        t.index_axis(Axis(0), i).iter().copied().collect()
    }

    #[test]
    fn closed_form_values() {
        let tape = Tape::new();
        let x = tape.constant(array![[1.0_f32, 2.0, 3.0], [0.0, 0.0, 0.0]].into_dyn());
        let e: Vec<f32> = [1.0_f32, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f32 = e.iter().sum();
        let want = array![
            [e[0] / s, e[1] / s, e[2] / s],
            [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
        ]
        .into_dyn();
        assert_close(&x.softmax(1).value(), &want, 1e-6);
        assert_close(&x.log_softmax(1).value(), &want.mapv(f32::ln), 1e-6);
        // Along axis 0: columns.
        let c = x.softmax(0).value();
        let s0 = 1.0 + 1.0_f32.exp();
        assert!(close(c[[0, 0]], 1.0_f32.exp() / s0, 1e-6) && close(c[[1, 0]], 1.0 / s0, 1e-6));
        // Every lane sums to 1.
        let y = tape.constant(randn(&[2, 3, 4], 1)).softmax(1).value();
        assert!(y.sum_axis(Axis(1)).iter().all(|&v| close(v, 1.0, 1e-6)));
    }

    #[test]
    fn large_inputs_are_finite_and_correct() {
        let tape = Tape::new();
        let x = tape.leaf(array![[1000.0_f32, 0.0, -1000.0], [1e30, 1e30, -1e30]].into_dyn());
        let y = x.softmax(1).value();
        assert_eq!(*y, array![[1.0_f32, 0.0, 0.0], [0.5, 0.5, 0.0]].into_dyn());
        let l = x.log_softmax(1).value();
        assert_eq!(l[[0, 0]], 0.0);
        assert_eq!(l[[0, 1]], -1000.0);
        assert_eq!(l[[0, 2]], -2000.0);
        assert!(close(l[[1, 0]], -std::f32::consts::LN_2, 1e-6));
        let loss = x.softmax(1) + x.log_softmax(1);
        let g = tape
            .backward_with_seed(loss, randn(&[2, 3], 2))
            .wrt(x)
            .unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        // Gradient checks at large offsets: a lane shifted by a constant is unchanged.
        let big = randn(&[3, 5], 3).mapv(|v| 3.0 * v + 80.0);
        assert_gradients(std::slice::from_ref(&big), |_, v| v[0].softmax(1));
        assert_gradients(std::slice::from_ref(&big), |_, v| v[0].log_softmax(1));
    }

    #[test]
    fn gradient_checks_every_axis() {
        for (shape, axis) in [
            (vec![3, 5], 1),
            (vec![3, 5], 0),
            (vec![2, 3, 4], 1),
            (vec![1, 6], 1),
            (vec![4], 0),
        ] {
            let x = randn(&shape, 41);
            assert_gradients(std::slice::from_ref(&x), move |_, v| v[0].softmax(axis));
            assert_gradients(std::slice::from_ref(&x), move |_, v| v[0].log_softmax(axis));
        }
        // Composed with broadcasting and matmul (an attention-like score).
        let (q, k, b) = (
            randn(&[2, 3, 4], 42),
            randn(&[2, 5, 4], 43),
            randn(&[5], 44),
        );
        assert_gradients(&[q, k, b], |_, v| (v[0].matmul_t(v[1]) + v[2]).softmax(2));
    }

    #[test]
    fn lanes_of_one_element() {
        let tape = Tape::new();
        let x = tape.leaf(randn(&[3, 1], 1));
        assert_eq!(*x.softmax(1).value(), Tensor::ones(IxDyn(&[3, 1])));
        assert_eq!(*x.log_softmax(1).value(), Tensor::zeros(IxDyn(&[3, 1])));
        assert_gradients(&[randn(&[3, 1], 1)], |_, v| v[0].softmax(1) * v[0]);
    }

    #[test]
    fn fully_masked_lanes_give_zeros_not_nan() {
        let inf = f32::NEG_INFINITY;
        let x0 = array![[inf, inf, inf], [0.0, inf, 1.0]].into_dyn();
        let (y, g) = value_and_grads(std::slice::from_ref(&x0), 1, |_, v| v[0].softmax(1));
        let e = 1.0_f32.exp();
        assert_close(
            &y,
            &array![[0.0_f32, 0.0, 0.0], [1.0 / (1.0 + e), 0.0, e / (1.0 + e)]].into_dyn(),
            1e-6,
        );
        assert!(g[0].iter().all(|v| v.is_finite()));
        assert_eq!(row(&g[0], 0), vec![0.0; 3]);
        assert_eq!(g[0][[1, 1]], 0.0);

        let (l, g) = value_and_grads(std::slice::from_ref(&x0), 2, |_, v| v[0].log_softmax(1));
        assert!(row(&l, 0).iter().all(|&v| v == inf), "{l:?}");
        assert!(!l.iter().any(|v| v.is_nan()), "{l:?}");
        assert_eq!(row(&g[0], 0), vec![0.0; 3]);
        assert!(g[0].iter().all(|v| v.is_finite()));
    }

    /// A key-padding mask `[B, 1, 1, L]` for the given lengths.
    fn padding_mask(lengths: &[usize], l: usize) -> ArrayD<bool> {
        ArrayD::from_shape_fn(IxDyn(&[lengths.len(), 1, 1, l]), |i| i[3] < lengths[i[0]])
    }

    /// The composed slow path: masked entries pushed to a large negative by arithmetic.
    fn composed<'t>(tape: &'t Tape, x: Var<'t>, mask: &ArrayD<bool>) -> Var<'t> {
        let keep = tape.constant(mask.mapv(|k| if k { 1.0 } else { 0.0 }));
        let penalty = tape.constant(mask.mapv(|k| if k { 0.0 } else { -1e9 }));
        (x * keep + penalty).softmax(x.ndim() - 1)
    }

    #[test]
    fn masked_softmax_matches_composed_path() {
        let (b, h, l) = (3, 2, 5);
        let mask = padding_mask(&[5, 2, 1], l);
        let x = randn(&[b, h, l, l], 51);
        let m1 = mask.clone();
        let (y_fast, g_fast) = value_and_grads(std::slice::from_ref(&x), 9, move |_, v| {
            v[0].masked_softmax(&m1)
        });
        let m2 = mask.clone();
        let (y_slow, g_slow) = value_and_grads(std::slice::from_ref(&x), 9, move |t, v| {
            composed(t, v[0], &m2)
        });
        assert_close(&y_fast, &y_slow, 1e-6);
        assert_close(&g_fast[0], &g_slow[0], 1e-5);
        // Masked keys get probability and gradient exactly 0.
        let full = mask.broadcast(IxDyn(&[b, h, l, l])).unwrap();
        for ((&k, &y), &g) in full.iter().zip(&y_fast).zip(&g_fast[0]) {
            if !k {
                assert_eq!((y, g), (0.0, 0.0));
            }
        }
        // Masked entries are never read.
        let mut poisoned = x.clone();
        ndarray::Zip::from(&mut poisoned)
            .and(&full)
            .for_each(|v, &k| {
                if !k {
                    *v = f32::NAN;
                }
            });
        let m3 = mask.clone();
        let (y_poisoned, _) = value_and_grads(&[poisoned], 9, move |_, v| v[0].masked_softmax(&m3));
        assert_eq!(y_poisoned, y_fast);
        let m4 = mask.clone();
        assert_gradients(&[x], move |_, v| v[0].masked_softmax(&m4));
    }

    #[test]
    fn masked_softmax_fully_masked_rows_and_empty_history() {
        // Batch item 1 has no tokens at all (a new user): every row of it is fully masked.
        let mask = padding_mask(&[3, 0], 3);
        let x = randn(&[2, 2, 3, 3], 61);
        let m = mask.clone();
        let (y, g) = value_and_grads(std::slice::from_ref(&x), 3, move |_, v| {
            v[0].masked_softmax(&m)
        });
        assert!(y.iter().chain(g[0].iter()).all(|v| v.is_finite()));
        let item1 = y.index_axis(Axis(0), 1);
        assert!(item1.iter().all(|&v| v == 0.0));
        assert!(g[0].index_axis(Axis(0), 1).iter().all(|&v| v == 0.0));
        let item0 = y.index_axis(Axis(0), 0);
        assert!(
            item0
                .lanes(Axis(2))
                .into_iter()
                .all(|r| close(r.sum(), 1.0, 1e-6))
        );
        // Gradients still check with an all-masked batch item, batch of 1 and a per-row mask.
        let m = mask.clone();
        assert_gradients(&[x], move |_, v| v[0].masked_softmax(&m));
        let m1 = padding_mask(&[2], 4);
        assert_gradients(&[randn(&[1, 3, 4, 4], 62)], move |_, v| {
            v[0].masked_softmax(&m1)
        });
        let per_row = array![[true, false, true], [false, false, false]].into_dyn();
        let (y, _) = value_and_grads(&[randn(&[2, 3], 63)], 1, move |_, v| {
            v[0].masked_softmax(&per_row)
        });
        assert_eq!(row(&y, 1), vec![0.0; 3]);
        assert_eq!(y[[0, 1]], 0.0);
    }

    #[test]
    #[should_panic(
        expected = "masked_softmax: mask of shape [2, 4] cannot be broadcast to the input shape [2, 3]"
    )]
    fn masked_softmax_rejects_bad_mask() {
        let tape = Tape::new();
        let _ = tape
            .constant(randn(&[2, 3], 1))
            .masked_softmax(&ArrayD::from_elem(IxDyn(&[2, 4]), true));
    }

    #[test]
    #[should_panic(expected = "softmax: axis 2 is out of range for a value of shape [2, 3]")]
    fn bad_axis_panics() {
        let tape = Tape::new();
        let _ = tape.constant(randn(&[2, 3], 1)).softmax(2);
    }

    fn big_run() -> Vec<Tensor> {
        let tape = Tape::new();
        let x = tape.leaf(randn(&[8, 4, 32, 40], 5)); // 40960 elements
        let mask = padding_mask(&[40, 7, 0, 13, 40, 1, 20, 39], 40);
        let a = x.softmax(3);
        let b = x.log_softmax(1);
        let c = x.masked_softmax(&mask);
        let y = a * b + c;
        let vals = vec![
            (*a.value()).clone(),
            (*b.value()).clone(),
            (*c.value()).clone(),
        ];
        let g = tape
            .backward_with_seed(y, randn(&y.shape(), 6))
            .wrt(x)
            .unwrap();
        vals.into_iter().chain([g]).collect()
    }

    #[test]
    fn deterministic_across_runs_and_thread_counts() {
        let in_pool = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(big_run)
        };
        let bits = |ts: &[Tensor]| {
            ts.iter()
                .map(|t| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (in_pool(1), in_pool(2), big_run());
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(bits(&a), bits(&c));
    }
}
