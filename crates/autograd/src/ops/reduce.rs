//! Reductions: `sum`, `sum_axis`, `mean`, `mean_axis` and `max_axis`.
//!
//! # Determinism
//! Every reduction has a fixed summation order that does not depend on the rayon pool:
//! - Axis reductions view the input as `[outer, n, inner]` (`n` the reduced axis) and reduce
//!   each of the `outer · inner` lanes serially in index order `k = 0, 1, …, n − 1`. Large inputs
//!   are split across threads by *lanes* (independent outputs), never inside a lane.
//! - [`Var::sum`] of the whole tensor sums fixed-size chunks of [`SUM_CHUNK`] elements serially,
//!   then sums the chunk totals serially in chunk order; threads only change which thread computes
//!   a chunk.
//!
//! So results are bit-identical for any thread count.

use crate::kernels::use_parallel;
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::IxDyn;
use rayon::prelude::*;

/// Chunk size (elements) of the full [`Var::sum`]: chunks are summed serially, then the chunk
/// totals are summed in order.
pub(crate) const SUM_CHUNK: usize = 1 << 12;

/// Column block of the parallel axis reductions when one outer row is wide.
const COL_CHUNK: usize = 1 << 10;

/// Panics unless `axis` is a valid axis of `shape`.
pub(super) fn check_axis(op: &str, axis: usize, shape: &[usize]) {
    assert!(
        axis < shape.len(),
        "{op}: axis {axis} out of range for shape {shape:?}"
    );
}

/// `shape` viewed as `[outer, n, inner]` around `axis`.
pub(super) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// The output shape of a reduction over `axis`.
fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut out = shape.to_vec();
    if keepdim {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    out
}

/// Serial left-to-right sum starting from 0.
fn serial_sum(xs: &[f32]) -> f32 {
    xs.iter().fold(0.0, |acc, &x| acc + x)
}

/// Sum of all elements: fixed chunks, each summed serially, totals summed in chunk order.
fn sum_all(x: &[f32]) -> f32 {
    if x.len() <= SUM_CHUNK {
        return serial_sum(x);
    }
    let partials: Vec<f32> = if use_parallel(x.len()) {
        x.par_chunks(SUM_CHUNK).map(serial_sum).collect()
    } else {
        x.chunks(SUM_CHUNK).map(serial_sum).collect()
    };
    serial_sum(&partials)
}

/// Runs `block(o, j0, dst_chunks...)` over the output `[outer, inner]` split by rows (and by
/// column blocks of wide rows when parallel). Each output element is written by exactly one call.
fn for_each_out_block<T: Send>(
    out: &mut [T],
    inner: usize,
    parallel: bool,
    block: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    if out.is_empty() || inner == 0 {
        return;
    }
    if parallel {
        out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
            if row.len() > COL_CHUNK {
                row.par_chunks_mut(COL_CHUNK)
                    .enumerate()
                    .for_each(|(c, d)| block(o, c * COL_CHUNK, d));
            } else {
                block(o, 0, row);
            }
        });
    } else {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(o, row)| block(o, 0, row));
    }
}

/// Sums `x` (standard layout, viewed as `[outer, n, inner]`) over the middle axis; each lane is
/// summed serially in index order.
fn sum_lanes(x: &[f32], outer: usize, n: usize, inner: usize) -> Vec<f32> {
    let mut out = vec![0.0_f32; outer * inner];
    let parallel = use_parallel(x.len());
    if inner == 1 {
        // Contiguous lanes.
        let lane = |(o, d): (usize, &mut f32)| *d = serial_sum(&x[o * n..(o + 1) * n]);
        if parallel {
            out.par_iter_mut().enumerate().for_each(lane);
        } else {
            out.iter_mut().enumerate().for_each(lane);
        }
        return out;
    }
    for_each_out_block(&mut out, inner, parallel, |o, j0, dst| {
        let base = o * n * inner + j0;
        for k in 0..n {
            let row = &x[base + k * inner..base + k * inner + dst.len()];
            for (d, &s) in dst.iter_mut().zip(row) {
                *d += s;
            }
        }
    });
    out
}

/// Whether `v` replaces the running maximum `best`: strictly greater (so ties keep the first),
/// or the first NaN (so NaN propagates).
#[inline]
fn beats(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// Max over the middle axis of `x` viewed as `[outer, n, inner]` (`n ≥ 1`): the values and the
/// index `k` along the axis of the first maximum of each lane.
fn max_lanes(x: &[f32], outer: usize, n: usize, inner: usize) -> (Vec<f32>, Vec<usize>) {
    let parallel = use_parallel(x.len());
    // Pair the two outputs so one block call writes both.
    let mut pairs: Vec<(f32, usize)> = vec![(0.0, 0); outer * inner];
    for_each_out_block(&mut pairs, inner, parallel, |o, j0, dst| {
        let base = o * n * inner + j0;
        for (j, d) in dst.iter_mut().enumerate() {
            *d = (x[base + j], 0);
        }
        for k in 1..n {
            let row = &x[base + k * inner..base + k * inner + dst.len()];
            for (d, &v) in dst.iter_mut().zip(row) {
                if beats(v, d.0) {
                    *d = (v, k);
                }
            }
        }
    });
    pairs.into_iter().unzip()
}

/// Backward of `sum`/`mean` (all elements or one axis): the output gradient broadcast back over
/// the reduced elements and divided by `divisor` (1 for sums, `n` for means).
struct SumBackward {
    x: usize,
    in_shape: Vec<usize>,
    axis: Option<usize>,
    divisor: f32,
}

impl BackwardOp for SumBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if !sink.wants(self.x) {
            return;
        }
        let divisor = self.divisor;
        let dx = match self.axis {
            None => {
                let gv = g.iter().next().copied().unwrap_or(0.0) / divisor;
                Tensor::from_elem(IxDyn(&self.in_shape), gv)
            }
            Some(axis) => {
                let (outer, n, inner) = split_at_axis(&self.in_shape, axis);
                let g = g.as_standard_layout();
                let gs = g.as_slice().expect("standard layout");
                let mut dx = vec![0.0_f32; outer * n * inner];
                if inner > 0 {
                    // Row r of the [outer·n, inner] view is lane-row (o = r / n).
                    let fill = |(r, row): (usize, &mut [f32])| {
                        let o = r / n;
                        for (d, &s) in row.iter_mut().zip(&gs[o * inner..(o + 1) * inner]) {
                            *d = s / divisor;
                        }
                    };
                    if use_parallel(dx.len()) {
                        dx.par_chunks_mut(inner).enumerate().for_each(fill);
                    } else {
                        dx.chunks_mut(inner).enumerate().for_each(fill);
                    }
                }
                Tensor::from_shape_vec(IxDyn(&self.in_shape), dx).expect("input shape")
            }
        };
        sink.add(self.x, dx);
    }
}

/// Backward of `max_axis`: each lane's gradient goes to its first arg-max.
struct MaxBackward {
    x: usize,
    in_shape: Vec<usize>,
    axis: usize,
    arg: Vec<usize>,
}

impl BackwardOp for MaxBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if !sink.wants(self.x) {
            return;
        }
        let (_, n, inner) = split_at_axis(&self.in_shape, self.axis);
        let g = g.as_standard_layout();
        let gs = g.as_slice().expect("standard layout");
        let pos = |l: usize| (l / inner) * n * inner + self.arg[l] * inner + l % inner;
        let dx = sink.dense_mut(self.x);
        if let Some(d) = dx.as_slice_mut() {
            for (l, &gv) in gs.iter().enumerate() {
                d[pos(l)] += gv;
            }
        } else {
            let mut t = Tensor::zeros(IxDyn(&self.in_shape));
            let d = t.as_slice_mut().expect("fresh tensor is standard");
            for (l, &gv) in gs.iter().enumerate() {
                d[pos(l)] += gv;
            }
            crate::kernels::add_assign(dx, &t.view());
        }
    }
}

fn sum_axis_impl<'t>(x: Var<'t>, axis: usize, keepdim: bool, mean: bool, op: &str) -> Var<'t> {
    let v = x.value();
    let in_shape = v.shape().to_vec();
    check_axis(op, axis, &in_shape);
    let (outer, n, inner) = split_at_axis(&in_shape, axis);
    let mut out = sum_lanes(v.as_slice().expect("standard layout"), outer, n, inner);
    let divisor = if mean { n as f32 } else { 1.0 };
    if mean {
        out.iter_mut().for_each(|s| *s /= divisor);
    }
    let out = Tensor::from_shape_vec(IxDyn(&reduced_shape(&in_shape, axis, keepdim)), out)
        .expect("reduced shape");
    x.tape.record(&[x], out, || SumBackward {
        x: x.id,
        in_shape,
        axis: Some(axis),
        divisor,
    })
}

fn sum_all_impl<'t>(x: Var<'t>, mean: bool) -> Var<'t> {
    let v = x.value();
    let in_shape = v.shape().to_vec();
    let s = sum_all(v.as_slice().expect("standard layout"));
    let divisor = if mean { v.len() as f32 } else { 1.0 };
    let out = Tensor::from_elem(IxDyn(&[]), if mean { s / divisor } else { s });
    x.tape.record(&[x], out, || SumBackward {
        x: x.id,
        in_shape,
        axis: None,
        divisor,
    })
}

impl<'t> Var<'t> {
    /// The sum of all elements.
    ///
    /// Summed in fixed chunks of 4096 elements (each serially), then the chunk totals in order:
    /// bit-identical for any thread count.
    ///
    /// # Shapes
    /// Any shape → `[]` (a scalar). An empty tensor sums to 0.
    pub fn sum(self) -> Var<'t> {
        sum_all_impl(self, false)
    }

    /// The mean of all elements ([`Var::sum`] divided by the element count).
    ///
    /// # Shapes
    /// Any shape → `[]`. An empty tensor gives NaN.
    pub fn mean(self) -> Var<'t> {
        sum_all_impl(self, true)
    }

    /// The sum over `axis`, each lane summed serially in index order.
    ///
    /// # Shapes
    /// `[d0, …, d_axis, …]` → the same shape without `axis`, or with `d_axis = 1` when `keepdim`.
    ///
    /// # Panics
    /// If `axis` is out of range.
    pub fn sum_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        sum_axis_impl(self, axis, keepdim, false, "sum_axis")
    }

    /// The mean over `axis` (see [`Var::sum_axis`]). A zero-length axis gives NaN.
    ///
    /// # Shapes
    /// As [`Var::sum_axis`].
    ///
    /// # Panics
    /// If `axis` is out of range.
    pub fn mean_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        sum_axis_impl(self, axis, keepdim, true, "mean_axis")
    }

    /// The maximum over `axis` (e.g. max-pooling a sequence).
    ///
    /// The gradient of each output element goes entirely to the **first** arg-max of its lane:
    /// with ties (e.g. several masked positions at `-inf`, or equal values), only the lowest index
    /// along `axis` receives gradient. A NaN in a lane wins (the first NaN is the maximum), so
    /// divergence propagates instead of being hidden.
    ///
    /// # Shapes
    /// As [`Var::sum_axis`].
    ///
    /// # Panics
    /// If `axis` is out of range or has length 0.
    pub fn max_axis(self, axis: usize, keepdim: bool) -> Var<'t> {
        let v = self.value();
        let in_shape = v.shape().to_vec();
        check_axis("max_axis", axis, &in_shape);
        let (outer, n, inner) = split_at_axis(&in_shape, axis);
        assert!(
            n > 0,
            "max_axis: axis {axis} of shape {in_shape:?} has length 0"
        );
        let (best, arg) = max_lanes(v.as_slice().expect("standard layout"), outer, n, inner);
        let out = Tensor::from_shape_vec(IxDyn(&reduced_shape(&in_shape, axis, keepdim)), best)
            .expect("reduced shape");
        self.tape.record(&[self], out, || MaxBackward {
            x: self.id,
            in_shape,
            axis,
            arg,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor};
    use ndarray::{Axis, IxDyn, array};

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn values() {
        let tape = Tape::new();
        let x = tape.constant(array![[1.0_f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        assert_eq!(x.sum().shape(), Vec::<usize>::new());
        assert_eq!(x.sum().item(), 21.0);
        assert_eq!(x.mean().item(), 3.5);
        assert_eq!(
            *x.sum_axis(0, false).value(),
            array![5.0_f32, 7.0, 9.0].into_dyn()
        );
        assert_eq!(
            *x.sum_axis(1, true).value(),
            array![[6.0_f32], [15.0]].into_dyn()
        );
        assert_eq!(
            *x.mean_axis(1, false).value(),
            array![2.0_f32, 5.0].into_dyn()
        );
        assert_eq!(
            *x.mean_axis(0, true).value(),
            array![[2.5_f32, 3.5, 4.5]].into_dyn()
        );
        assert_eq!(
            *x.max_axis(0, false).value(),
            array![4.0_f32, 5.0, 6.0].into_dyn()
        );
        assert_eq!(
            *x.max_axis(1, true).value(),
            array![[3.0_f32], [6.0]].into_dyn()
        );
        let s = tape.constant(Tensor::from_elem(IxDyn(&[]), 2.5));
        assert_eq!(s.sum().item(), 2.5);
        let e = tape.constant(Tensor::zeros(IxDyn(&[0, 3])));
        assert_eq!(e.sum().item(), 0.0);
        assert_eq!(
            *e.sum_axis(0, false).value(),
            array![0.0_f32, 0.0, 0.0].into_dyn()
        );
    }

    #[test]
    fn axis_reductions_match_ndarray_on_3d() {
        let x = randn(&[3, 4, 5], 11);
        let tape = Tape::new();
        let v = tape.constant(x.clone());
        for axis in 0..3 {
            let want = x.sum_axis(Axis(axis));
            let got = v.sum_axis(axis, false).value();
            assert!(
                got.iter()
                    .zip(want.iter())
                    .all(|(a, b)| (a - b).abs() < 1e-5)
            );
            let want_max = x.fold_axis(Axis(axis), f32::NEG_INFINITY, |&m, &y| m.max(y));
            assert_eq!(*v.max_axis(axis, false).value(), want_max);
            let mut keep = want_max.shape().to_vec();
            keep.insert(axis, 1);
            assert_eq!(v.max_axis(axis, true).shape(), keep);
        }
    }

    #[test]
    fn gradients() {
        for shape in [
            vec![1, 5],
            vec![4, 3],
            vec![2, 3, 4],
            vec![1, 1, 6],
            vec![7],
        ] {
            let x = randn(&shape, 3);
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].sum());
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].mean());
            for axis in 0..shape.len() {
                for keepdim in [false, true] {
                    assert_gradients(std::slice::from_ref(&x), move |_, v| {
                        v[0].sum_axis(axis, keepdim)
                    });
                    assert_gradients(std::slice::from_ref(&x), move |_, v| {
                        v[0].mean_axis(axis, keepdim)
                    });
                    assert_gradients(std::slice::from_ref(&x), move |_, v| {
                        v[0].max_axis(axis, keepdim)
                    });
                }
            }
        }
    }

    #[test]
    fn gradients_composed_with_binary_ops() {
        let (a, b) = (randn(&[3, 4], 5), randn(&[4], 6));
        assert_gradients(&[a, b], |_, v| {
            (v[0] * v[1]).sum_axis(1, true) * v[0].mean_axis(1, true)
        });
    }

    #[test]
    fn max_ties_route_to_first_argmax() {
        let tape = Tape::new();
        let x = tape.leaf(
            array![
                [1.0_f32, 3.0, 3.0],
                [f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY]
            ]
            .into_dyn(),
        );
        let m = x.max_axis(1, false);
        assert_eq!(m.value()[[1]], f32::NEG_INFINITY);
        let g = tape.backward_with_seed(m, array![2.0_f32, 5.0].into_dyn());
        assert_eq!(
            g.wrt(x).unwrap(),
            array![[0.0_f32, 2.0, 0.0], [5.0, 0.0, 0.0]].into_dyn()
        );
    }

    #[test]
    fn max_propagates_nan() {
        let tape = Tape::new();
        let x = tape.constant(array![[1.0_f32, f32::NAN, 3.0], [f32::NAN, 1.0, 2.0]].into_dyn());
        assert!(x.max_axis(1, false).value().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn gradient_accumulates_into_existing() {
        // x used by two reductions: gradients add.
        let tape = Tape::new();
        let x = tape.leaf(array![[1.0_f32, 4.0], [3.0, 2.0]].into_dyn());
        let y = x.max_axis(0, false).sum() + x.sum();
        let g = tape.backward(y);
        assert_eq!(
            g.wrt(x).unwrap(),
            array![[1.0_f32, 2.0], [2.0, 1.0]].into_dyn()
        );
    }

    #[test]
    #[should_panic(expected = "sum_axis: axis 2 out of range for shape [2, 3]")]
    fn axis_out_of_range() {
        let tape = Tape::new();
        let _ = tape
            .constant(Tensor::zeros(IxDyn(&[2, 3])))
            .sum_axis(2, false);
    }

    #[test]
    #[should_panic(expected = "max_axis: axis 1 of shape [2, 0] has length 0")]
    fn max_of_empty_axis() {
        let tape = Tape::new();
        let _ = tape
            .constant(Tensor::zeros(IxDyn(&[2, 0])))
            .max_axis(1, false);
    }

    #[test]
    fn big_sum_is_accurate() {
        let x = randn(&[300_001], 9);
        let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let tape = Tape::new();
        let got = tape.constant(x).sum().item();
        assert!((f64::from(got) - want).abs() < 1e-2, "{got} vs {want}");
    }

    /// Forward values and input gradients of every reduction on large inputs, as raw bits.
    fn run_all(x: &Tensor, wide: &Tensor) -> Vec<Vec<u32>> {
        let tape = Tape::new();
        let (v, w) = (tape.leaf(x.clone()), tape.leaf(wide.clone()));
        let outs = [
            v.sum(),
            v.mean(),
            v.sum_axis(0, false),
            v.sum_axis(1, true),
            v.mean_axis(2, false),
            v.max_axis(1, false),
            v.max_axis(2, true),
            w.sum_axis(0, false),
            w.max_axis(0, false),
        ];
        let mut bits: Vec<Vec<u32>> = Vec::new();
        let mut loss = None;
        for (i, o) in outs.iter().enumerate() {
            bits.push(o.value().iter().map(|f| f.to_bits()).collect());
            let r = tape.constant(randn(&o.shape(), 100 + i as u64));
            let term = (*o * r).sum();
            loss = Some(match loss {
                None => term,
                Some(l) => l + term,
            });
        }
        let g = tape.backward(loss.unwrap());
        bits.push(g.wrt(v).unwrap().iter().map(|f| f.to_bits()).collect());
        bits.push(g.wrt(w).unwrap().iter().map(|f| f.to_bits()).collect());
        bits
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        let x = randn(&[40, 30, 50], 21); // 60k elements
        let wide = randn(&[3, 20_000], 22); // one wide row per lane block
        let one = in_pool(1, || run_all(&x, &wide));
        let two = in_pool(2, || run_all(&x, &wide));
        assert_eq!(one, two);
    }
}
