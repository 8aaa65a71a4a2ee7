//! Shape ops: `reshape`, `unsqueeze`, `squeeze`, `permute`, `transpose`, `concat`, `narrow`
//! and `broadcast_to`.
//!
//! Every output is materialized in standard layout (the tape's invariant): permutes, slices and
//! broadcasts are copied element by element (in parallel above the element-wise threshold — each
//! element is written once, so the copy is identical for any thread count); reshapes of the
//! already-standard input are a single contiguous copy.

use super::broadcast::reduce_to;
use super::reduce::check_axis;
use crate::kernels::use_parallel;
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, IxDyn, Slice, Zip};

/// `dst = src` element-wise (same shapes, any layouts).
pub(super) fn copy_into(dst: ArrayViewMutD<'_, f32>, src: ArrayViewD<'_, f32>) {
    let z = Zip::from(dst).and(src);
    if use_parallel(z.size()) {
        z.par_for_each(|d, &s| *d = s);
    } else {
        z.for_each(|d, &s| *d = s);
    }
}

/// `dst += src` element-wise (same shapes, any layouts).
fn add_into(dst: ArrayViewMutD<'_, f32>, src: ArrayViewD<'_, f32>) {
    let z = Zip::from(dst).and(src);
    if use_parallel(z.size()) {
        z.par_for_each(|d, &s| *d += s);
    } else {
        z.for_each(|d, &s| *d += s);
    }
}

/// A standard-layout copy of any view.
pub(super) fn standard(src: ArrayViewD<'_, f32>) -> Tensor {
    let mut out = Tensor::zeros(src.raw_dim());
    copy_into(out.view_mut(), src);
    out
}

/// Backward of the reshapes: the gradient reshaped back to the input shape.
struct ReshapeBackward {
    x: usize,
    in_shape: Vec<usize>,
}

impl BackwardOp for ReshapeBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if !sink.wants(self.x) {
            return;
        }
        let g = g
            .to_shape((IxDyn(&self.in_shape), ndarray::Order::RowMajor))
            .expect("same element count");
        sink.add_view(self.x, g.view());
    }

    /// A standard-layout gradient is reshaped without a copy.
    fn backward_owned(&self, g: Tensor, sink: &mut GradSink<'_>) {
        if !g.is_standard_layout() {
            return self.backward(&g, sink);
        }
        if sink.wants(self.x) {
            let g = g
                .into_shape_with_order(IxDyn(&self.in_shape))
                .expect("same element count");
            sink.add(self.x, g);
        }
    }
}

fn reshape_impl<'t>(x: Var<'t>, shape: &[usize]) -> Var<'t> {
    let v = x.value();
    let in_shape = v.shape().to_vec();
    let out = Tensor::from_shape_vec(
        IxDyn(shape),
        v.as_slice().expect("standard layout").to_vec(),
    )
    .expect("element count checked");
    x.tape
        .record(&[x], out, || ReshapeBackward { x: x.id, in_shape })
}

/// Backward of `permute`: the gradient permuted by the inverse permutation.
struct PermuteBackward {
    x: usize,
    inverse: Vec<usize>,
}

impl BackwardOp for PermuteBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if sink.wants(self.x) {
            let dx = standard(g.view().permuted_axes(IxDyn(&self.inverse)));
            sink.add(self.x, dx);
        }
    }
}

/// Backward of `concat`: each input gets its slice of the gradient.
struct ConcatBackward {
    inputs: Vec<usize>,
    sizes: Vec<usize>,
    axis: usize,
}

impl BackwardOp for ConcatBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let mut start = 0;
        for (&id, &len) in self.inputs.iter().zip(&self.sizes) {
            if sink.wants(id) {
                let part = g.slice_axis(Axis(self.axis), Slice::from(start..start + len));
                sink.add(id, standard(part));
            }
            start += len;
        }
    }
}

/// Backward of `narrow`: the gradient added into the slice of the input's gradient.
struct NarrowBackward {
    x: usize,
    axis: usize,
    start: usize,
}

impl BackwardOp for NarrowBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if !sink.wants(self.x) {
            return;
        }
        let len = g.shape()[self.axis];
        let dx = sink.dense_mut(self.x);
        let dst = dx.slice_axis_mut(Axis(self.axis), Slice::from(self.start..self.start + len));
        add_into(dst, g.view());
    }
}

/// Backward of `broadcast_to`: the gradient summed back to the input shape.
struct BroadcastBackward {
    x: usize,
    in_shape: Vec<usize>,
}

impl BackwardOp for BroadcastBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if sink.wants(self.x) {
            sink.add(self.x, reduce_to(g.view(), &self.in_shape));
        }
    }
}

impl<'t> Var<'t> {
    /// The same elements (in row-major order) with a new shape.
    ///
    /// # Shapes
    /// `[d0, …]` → `shape`, with the same element count.
    ///
    /// # Panics
    /// If the element counts differ.
    pub fn reshape(self, shape: &[usize]) -> Var<'t> {
        let in_shape = self.shape();
        assert_eq!(
            in_shape.iter().product::<usize>(),
            shape.iter().product::<usize>(),
            "reshape: cannot reshape {in_shape:?} into {shape:?}"
        );
        reshape_impl(self, shape)
    }

    /// Inserts an axis of length 1 at position `axis`.
    ///
    /// # Shapes
    /// `[d0, …, d_{n−1}]` → the same with a 1 inserted before position `axis` (`axis ≤ n`).
    ///
    /// # Panics
    /// If `axis > ndim`.
    pub fn unsqueeze(self, axis: usize) -> Var<'t> {
        let mut shape = self.shape();
        assert!(
            axis <= shape.len(),
            "unsqueeze: axis {axis} out of range for shape {shape:?}"
        );
        shape.insert(axis, 1);
        reshape_impl(self, &shape)
    }

    /// Removes the axis `axis`, which must have length 1.
    ///
    /// # Shapes
    /// `[…, 1, …]` → the same without `axis`.
    ///
    /// # Panics
    /// If `axis` is out of range or its length is not 1.
    pub fn squeeze(self, axis: usize) -> Var<'t> {
        let mut shape = self.shape();
        check_axis("squeeze", axis, &shape);
        assert_eq!(
            shape[axis], 1,
            "squeeze: axis {axis} of shape {shape:?} does not have length 1"
        );
        shape.remove(axis);
        reshape_impl(self, &shape)
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`. The result is copied into
    /// standard layout.
    ///
    /// # Shapes
    /// `[d0, …, d_{n−1}]` → `[d_perm[0], …, d_perm[n−1]]`.
    ///
    /// # Panics
    /// If `perm` is not a permutation of `0..ndim`.
    pub fn permute(self, perm: &[usize]) -> Var<'t> {
        let v = self.value();
        let n = v.ndim();
        let mut seen = vec![false; n];
        let valid = perm.len() == n
            && perm
                .iter()
                .all(|&p| p < n && !std::mem::replace(&mut seen[p], true));
        assert!(
            valid,
            "permute: {perm:?} is not a permutation of the axes of shape {:?}",
            v.shape()
        );
        let mut inverse = vec![0; n];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let out = standard(v.view().permuted_axes(IxDyn(perm)));
        self.tape.record(&[self], out, || PermuteBackward {
            x: self.id,
            inverse,
        })
    }

    /// Swaps axes `a` and `b` (a [`Var::permute`]).
    ///
    /// # Shapes
    /// `[…, d_a, …, d_b, …]` → `[…, d_b, …, d_a, …]`.
    ///
    /// # Panics
    /// If `a` or `b` is out of range.
    pub fn transpose(self, a: usize, b: usize) -> Var<'t> {
        let shape = self.shape();
        check_axis("transpose", a, &shape);
        check_axis("transpose", b, &shape);
        let mut perm: Vec<usize> = (0..shape.len()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Concatenates `vars` along `axis`.
    ///
    /// # Shapes
    /// Inputs of equal shapes except along `axis` → that shape with `axis` the sum of their
    /// lengths.
    ///
    /// # Panics
    /// If `vars` is empty, `axis` is out of range, the shapes disagree off `axis`, or the inputs
    /// live on different tapes.
    pub fn concat(vars: &[Var<'t>], axis: usize) -> Var<'t> {
        let first = *vars.first().expect("concat: no inputs");
        let values: Vec<_> = vars
            .iter()
            .map(|v| {
                first.same_tape(v, "concat");
                v.value()
            })
            .collect();
        let shape0 = values[0].shape().to_vec();
        check_axis("concat", axis, &shape0);
        let mut out_shape = shape0.clone();
        out_shape[axis] = 0;
        for (i, v) in values.iter().enumerate() {
            let s = v.shape();
            let compatible = s.len() == shape0.len()
                && s.iter()
                    .zip(&shape0)
                    .enumerate()
                    .all(|(ax, (a, b))| ax == axis || a == b);
            assert!(
                compatible,
                "concat: input {i} has shape {s:?}, incompatible with input 0's {shape0:?} \
                 along axis {axis}"
            );
            out_shape[axis] += s[axis];
        }
        let mut out = Tensor::zeros(IxDyn(&out_shape));
        let mut start = 0;
        let sizes: Vec<usize> = values.iter().map(|v| v.shape()[axis]).collect();
        for (v, &len) in values.iter().zip(&sizes) {
            let dst = out.slice_axis_mut(Axis(axis), Slice::from(start..start + len));
            copy_into(dst, v.view());
            start += len;
        }
        first.tape.record(vars, out, || ConcatBackward {
            inputs: vars.iter().map(|v| v.id).collect(),
            sizes,
            axis,
        })
    }

    /// The slice `start..start + len` along `axis`, copied into standard layout.
    ///
    /// # Shapes
    /// `[…, d_axis, …]` → `[…, len, …]`.
    ///
    /// # Panics
    /// If `axis` is out of range or `start + len > d_axis`.
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Var<'t> {
        let v = self.value();
        check_axis("narrow", axis, v.shape());
        assert!(
            start
                .checked_add(len)
                .is_some_and(|end| end <= v.shape()[axis]),
            "narrow: range {start}..{} out of bounds for axis {axis} of shape {:?}",
            start.saturating_add(len),
            v.shape()
        );
        let out = standard(v.slice_axis(Axis(axis), Slice::from(start..start + len)));
        self.tape.record(&[self], out, || NarrowBackward {
            x: self.id,
            axis,
            start,
        })
    }

    /// Broadcasts to `shape` (NumPy rules: trailing axes aligned, length-1 axes stretched,
    /// missing leading axes added), materialized. The backward sums the gradient back.
    ///
    /// # Shapes
    /// `[…]` → `shape`.
    ///
    /// # Panics
    /// If the value cannot be broadcast to `shape`.
    pub fn broadcast_to(self, shape: &[usize]) -> Var<'t> {
        let v = self.value();
        let in_shape = v.shape().to_vec();
        let view = v
            .broadcast(IxDyn(shape))
            .unwrap_or_else(|| panic!("broadcast_to: cannot broadcast {in_shape:?} to {shape:?}"));
        let out = standard(view);
        self.tape.record(&[self], out, || BroadcastBackward {
            x: self.id,
            in_shape,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor, Var};
    use ndarray::{Axis, IxDyn, array};

    #[test]
    fn values() {
        let tape = Tape::new();
        let x = tape.constant(array![[1.0_f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
        assert_eq!(
            *x.reshape(&[3, 2]).value(),
            array![[1.0_f32, 2.0], [3.0, 4.0], [5.0, 6.0]].into_dyn()
        );
        assert_eq!(
            *x.transpose(0, 1).value(),
            array![[1.0_f32, 4.0], [2.0, 5.0], [3.0, 6.0]].into_dyn()
        );
        assert!(x.transpose(0, 1).value().is_standard_layout());
        assert_eq!(
            *x.narrow(1, 1, 2).value(),
            array![[2.0_f32, 3.0], [5.0, 6.0]].into_dyn()
        );
        assert_eq!(x.unsqueeze(0).shape(), vec![1, 2, 3]);
        assert_eq!(x.unsqueeze(2).shape(), vec![2, 3, 1]);
        assert_eq!(x.unsqueeze(1).squeeze(1).shape(), vec![2, 3]);
        let c = Var::concat(&[x, x.narrow(0, 0, 1)], 0);
        assert_eq!(
            *c.value(),
            array![[1.0_f32, 2.0, 3.0], [4.0, 5.0, 6.0], [1.0, 2.0, 3.0]].into_dyn()
        );
        let c = Var::concat(&[x, x.narrow(1, 2, 1)], 1);
        assert_eq!(
            *c.value(),
            array![[1.0_f32, 2.0, 3.0, 3.0], [4.0, 5.0, 6.0, 6.0]].into_dyn()
        );
        let b = tape
            .constant(array![[1.0_f32], [2.0]].into_dyn())
            .broadcast_to(&[3, 2, 2]);
        assert_eq!(b.shape(), vec![3, 2, 2]);
        assert_eq!(b.value()[[2, 1, 0]], 2.0);
    }

    #[test]
    fn permute_matches_ndarray() {
        let x = randn(&[2, 3, 4, 5], 1);
        let tape = Tape::new();
        let p = tape.constant(x.clone()).permute(&[2, 0, 3, 1]);
        let want = x.view().permuted_axes(IxDyn(&[2, 0, 3, 1])).to_owned();
        assert_eq!(*p.value(), want);
        assert!(p.value().is_standard_layout());
    }

    #[test]
    fn gradients() {
        let x = randn(&[2, 3, 4], 2);
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].reshape(&[6, 4]));
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].reshape(&[24]));
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].permute(&[2, 0, 1]));
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].permute(&[0, 1, 2]));
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].transpose(1, 2));
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].transpose(0, 2));
        for axis in 0..3 {
            assert_gradients(std::slice::from_ref(&x), move |_, v| {
                v[0].narrow(axis, 1, 1)
            });
            assert_gradients(std::slice::from_ref(&x), move |_, v| {
                v[0].unsqueeze(axis).squeeze(axis)
            });
        }
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].unsqueeze(3));
        assert_gradients(std::slice::from_ref(&x), |_, v| v[0].narrow(2, 0, 4));
        assert_gradients(&[randn(&[3, 1], 3)], |_, v| v[0].broadcast_to(&[2, 3, 4]));
        assert_gradients(&[randn(&[4], 3)], |_, v| v[0].broadcast_to(&[3, 4]));
        // Batch size 1.
        assert_gradients(&[randn(&[1, 4], 4)], |_, v| {
            v[0].transpose(0, 1).reshape(&[2, 2])
        });
    }

    #[test]
    fn concat_gradients() {
        for axis in 0..3 {
            let mut b_shape = vec![2, 3, 4];
            b_shape[axis] = 1;
            let (a, b) = (randn(&[2, 3, 4], 5), randn(&b_shape, 6));
            assert_gradients(&[a, b], move |_, v| Var::concat(&[v[0], v[1], v[0]], axis));
        }
        // One input only, and a constant among the inputs.
        assert_gradients(&[randn(&[1, 3], 7)], |_, v| Var::concat(&[v[0]], 0));
        assert_gradients(&[randn(&[2, 3], 8)], |tape, v| {
            let c = tape.constant(Tensor::ones(IxDyn(&[2, 2])));
            Var::concat(&[c, v[0]], 1)
        });
    }

    #[test]
    fn narrow_gradient_accumulates() {
        let tape = Tape::new();
        let x = tape.leaf(array![1.0_f32, 2.0, 3.0, 4.0].into_dyn());
        let y = x.narrow(0, 0, 3).sum() + x.narrow(0, 2, 2).sum() + x.sum();
        let g = tape.backward(y);
        assert_eq!(g.wrt(x).unwrap(), array![2.0_f32, 2.0, 3.0, 2.0].into_dyn());
    }

    #[test]
    fn large_permute_is_identical_across_thread_counts() {
        let x = randn(&[8, 50, 4, 25], 9); // 40k elements
        let run = || {
            let tape = Tape::new();
            let v = tape.leaf(x.clone());
            let y = v.permute(&[0, 2, 1, 3]);
            let c = Var::concat(&[y, y], 3).narrow(3, 10, 30);
            let r = tape.constant(randn(&c.shape(), 1));
            let g = tape.backward((c * r).sum());
            (c.value().as_ref().clone(), g.wrt(v).unwrap())
        };
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(run);
        let two = pool(2).install(run);
        assert_eq!(one.0.mapv(f32::to_bits), two.0.mapv(f32::to_bits));
        assert_eq!(one.1.mapv(f32::to_bits), two.1.mapv(f32::to_bits));
        assert_eq!(one.0.index_axis(Axis(0), 0).shape(), &[4, 50, 30]);
    }

    #[test]
    #[should_panic(expected = "reshape: cannot reshape [2, 3] into [4]")]
    fn bad_reshape() {
        let tape = Tape::new();
        let _ = tape.constant(Tensor::zeros(IxDyn(&[2, 3]))).reshape(&[4]);
    }

    #[test]
    #[should_panic(expected = "permute: [0, 0] is not a permutation")]
    fn bad_permute() {
        let tape = Tape::new();
        let _ = tape
            .constant(Tensor::zeros(IxDyn(&[2, 3])))
            .permute(&[0, 0]);
    }

    #[test]
    #[should_panic(
        expected = "concat: input 1 has shape [2, 4], incompatible with input 0's [3, 4]"
    )]
    fn bad_concat() {
        let tape = Tape::new();
        let a = tape.constant(Tensor::zeros(IxDyn(&[3, 4])));
        let b = tape.constant(Tensor::zeros(IxDyn(&[2, 4])));
        let _ = Var::concat(&[a, b], 1);
    }

    #[test]
    #[should_panic(expected = "narrow: range 2..5 out of bounds for axis 1 of shape [2, 4]")]
    fn bad_narrow() {
        let tape = Tape::new();
        let _ = tape.constant(Tensor::zeros(IxDyn(&[2, 4]))).narrow(1, 2, 3);
    }

    #[test]
    #[should_panic(expected = "squeeze: axis 0 of shape [2, 4] does not have length 1")]
    fn bad_squeeze() {
        let tape = Tape::new();
        let _ = tape.constant(Tensor::zeros(IxDyn(&[2, 4]))).squeeze(0);
    }

    #[test]
    #[should_panic(expected = "broadcast_to: cannot broadcast [2, 4] to [3, 4]")]
    fn bad_broadcast() {
        let tape = Tape::new();
        let _ = tape
            .constant(Tensor::zeros(IxDyn(&[2, 4])))
            .broadcast_to(&[3, 4]);
    }
}
