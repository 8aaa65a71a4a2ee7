//! Matrix products: 2-D, batched 3-D, and 3-D by a shared 2-D matrix, with either operand
//! optionally transposed. Transposes are strided views into the same storage — never copies —
//! in the forward and in both backward products.

use crate::kernels::gemm::{Threading, new3_written_by, sgemm, sgemm_new};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
#[cfg(test)]
use ndarray::Array2;
#[cfg(test)]
use ndarray::Axis;
use ndarray::{ArrayView2, ArrayView3, ArrayViewMut2, Ix2, Ix3};
use rayon::prelude::*;
use std::sync::Arc;

/// `op(x)`: `x` or its transpose, as a view.
fn op2<'a>(x: ArrayView2<'a, f32>, t: bool) -> ArrayView2<'a, f32> {
    if t { x.reversed_axes() } else { x }
}

fn view2(t: &Tensor) -> ArrayView2<'_, f32> {
    t.view().into_dimensionality::<Ix2>().expect("2-D operand")
}

fn view3(t: &Tensor) -> ArrayView3<'_, f32> {
    t.view().into_dimensionality::<Ix3>().expect("3-D operand")
}

/// Batched `c[i] (+)= a[i] · b[i]` over the leading axis, parallel over the batch.
fn batched(
    c: &mut ndarray::ArrayViewMut3<'_, f32>,
    a: &[ArrayView2<'_, f32>],
    b: &[ArrayView2<'_, f32>],
    accumulate: bool,
) {
    let mut cs: Vec<ArrayViewMut2<'_, f32>> = c.outer_iter_mut().collect();
    let work = |(i, ci): (usize, &mut ArrayViewMut2<'_, f32>)| {
        sgemm(ci.view_mut(), a[i], b[i], accumulate, Threading::Serial);
    };
    let flops = a.first().map_or(0, |x| x.len()) * b.first().map_or(0, |x| x.ncols()) * a.len();
    if flops >= crate::kernels::gemm::PAR_MIN_FLOPS && rayon::current_num_threads() > 1 {
        cs.par_iter_mut().enumerate().for_each(work);
    } else {
        cs.iter_mut().enumerate().for_each(work);
    }
}

/// Shape of `op(x)` for a 2-D `[r, c]` operand.
fn dims(shape: &[usize], t: bool) -> (usize, usize) {
    let (r, c) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    if t { (c, r) } else { (r, c) }
}

fn forward(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Tensor {
    let (m, k) = dims(a.shape(), ta);
    let (k2, n) = dims(b.shape(), tb);
    let fail = || -> ! {
        panic!(
            "matmul: cannot multiply shapes {:?}{} and {:?}{}",
            a.shape(),
            if ta { "ᵀ" } else { "" },
            b.shape(),
            if tb { "ᵀ" } else { "" }
        )
    };
    if k != k2 {
        fail();
    }
    match (a.ndim(), b.ndim()) {
        (2, 2) => sgemm_new(op2(view2(a), ta), op2(view2(b), tb), Threading::Auto).into_dyn(),
        (3, 2) => {
            let batch = a.shape()[0];
            if !ta && a.is_standard_layout() {
                // One tall product: [batch·m, k] · [k, n].
                let a2 = a
                    .view()
                    .into_shape_with_order((batch * m, k))
                    .expect("contiguous");
                sgemm_new(a2, op2(view2(b), tb), Threading::Auto)
                    .into_shape_with_order((batch, m, n))
                    .expect("contiguous")
                    .into_dyn()
            } else {
                let a3 = view3(a);
                let av: Vec<_> = a3.outer_iter().map(|x| op2(x, true)).collect();
                let bv = vec![op2(view2(b), tb); batch];
                new3_written_by(batch, m, n, |mut c| batched(&mut c, &av, &bv, false)).into_dyn()
            }
        }
        (3, 3) => {
            let batch = a.shape()[0];
            if b.shape()[0] != batch {
                fail();
            }
            let (a3, b3) = (view3(a), view3(b));
            let av: Vec<_> = a3.outer_iter().map(|x| op2(x, ta)).collect();
            let bv: Vec<_> = b3.outer_iter().map(|x| op2(x, tb)).collect();
            new3_written_by(batch, m, n, |mut c| batched(&mut c, &av, &bv, false)).into_dyn()
        }
        _ => fail(),
    }
}

/// Adds the product `x · y` (shape `[r, c]`) to node `id`'s gradient, whose shape is `shape`
/// (any shape of `r · c` elements in standard layout): the first contribution is written into
/// a fresh buffer, later ones are accumulated by the product itself (`β = 1`).
pub(crate) fn add_product(
    sink: &mut GradSink<'_>,
    id: usize,
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    shape: &[usize],
) {
    let (r, c) = (x.nrows(), y.ncols());
    if sink.has(id) {
        let d = sink.dense_mut(id);
        let d2 = d
            .view_mut()
            .into_shape_with_order((r, c))
            .expect("gradient buffers are in standard layout");
        sgemm(d2, x, y, true, Threading::Auto);
    } else {
        let g = sgemm_new(x, y, Threading::Auto)
            .into_shape_with_order(ndarray::IxDyn(shape))
            .expect("r · c elements");
        sink.add(id, g);
    }
}

/// Batched [`add_product`]: `x[i] · y[i]` to item `i` of node `id`'s `[batch, r, c]` gradient.
fn add_batched(
    sink: &mut GradSink<'_>,
    id: usize,
    xs: &[ArrayView2<'_, f32>],
    ys: &[ArrayView2<'_, f32>],
    shape: &[usize],
) {
    if sink.has(id) {
        let d = sink.dense_mut(id);
        let mut d3 = d.view_mut().into_dimensionality::<Ix3>().expect("3-D");
        batched(&mut d3, xs, ys, true);
    } else {
        let g = new3_written_by(shape[0], shape[1], shape[2], |mut c| {
            batched(&mut c, xs, ys, false)
        });
        sink.add(id, g.into_dyn());
    }
}

struct MatmulBackward {
    a: usize,
    b: usize,
    a_val: Arc<Tensor>,
    b_val: Arc<Tensor>,
    ta: bool,
    tb: bool,
}

/// For `C = op_a(A) · op_b(B)`:
/// `dA = dC · op_b(B)ᵀ` (or its transpose `op_b(B) · dCᵀ` when `A` enters transposed), and
/// `dB = op_a(A)ᵀ · dC` (or `dCᵀ · op_a(A)` when `B` enters transposed).
fn grad_a<'a>(
    dc: ArrayView2<'a, f32>,
    opb: ArrayView2<'a, f32>,
    ta: bool,
) -> (ArrayView2<'a, f32>, ArrayView2<'a, f32>) {
    if ta {
        (opb, dc.reversed_axes())
    } else {
        (dc, opb.reversed_axes())
    }
}

fn grad_b<'a>(
    dc: ArrayView2<'a, f32>,
    opa: ArrayView2<'a, f32>,
    tb: bool,
) -> (ArrayView2<'a, f32>, ArrayView2<'a, f32>) {
    if tb {
        (dc.reversed_axes(), opa)
    } else {
        (opa.reversed_axes(), dc)
    }
}

impl BackwardOp for MatmulBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let (a, b, ta, tb) = (&*self.a_val, &*self.b_val, self.ta, self.tb);
        match (a.ndim(), b.ndim()) {
            (2, 2) => {
                let (opa, opb, dc) = (op2(view2(a), ta), op2(view2(b), tb), view2(g));
                if sink.wants(self.a) {
                    let (x, y) = grad_a(dc, opb, ta);
                    add_product(sink, self.a, x, y, a.shape());
                }
                if sink.wants(self.b) {
                    let (x, y) = grad_b(dc, opa, tb);
                    add_product(sink, self.b, x, y, b.shape());
                }
            }
            (3, 2) if !ta && a.is_standard_layout() && g.is_standard_layout() => {
                let batch = a.shape()[0];
                let (m, k) = (a.shape()[1], a.shape()[2]);
                let n = g.shape()[2];
                let a2 = a
                    .view()
                    .into_shape_with_order((batch * m, k))
                    .expect("contiguous");
                let dc = g
                    .view()
                    .into_shape_with_order((batch * m, n))
                    .expect("contiguous");
                let opb = op2(view2(b), tb);
                if sink.wants(self.a) {
                    let (x, y) = grad_a(dc, opb, false);
                    add_product(sink, self.a, x, y, a.shape());
                }
                if sink.wants(self.b) {
                    let (x, y) = grad_b(dc, a2, tb);
                    add_product(sink, self.b, x, y, b.shape());
                }
            }
            _ => {
                // Batched: per-item products (B shared across the batch when it is 2-D).
                let batch = a.shape()[0];
                let a3 = view3(a);
                let g = g.as_standard_layout();
                let dc3 = g.view().into_dimensionality::<Ix3>().expect("3-D gradient");
                let b3 = (b.ndim() == 3).then(|| view3(b));
                let b_items: Vec<ArrayView2<'_, f32>> = match &b3 {
                    None => vec![view2(b); batch],
                    Some(b3) => b3.outer_iter().collect(),
                };
                let opa: Vec<_> = a3.outer_iter().map(|x| op2(x, ta)).collect();
                let opb: Vec<_> = b_items.iter().map(|x| op2(*x, tb)).collect();
                let dcs: Vec<_> = dc3.outer_iter().collect();
                if sink.wants(self.a) {
                    let (xs, ys): (Vec<_>, Vec<_>) =
                        (0..batch).map(|i| grad_a(dcs[i], opb[i], ta)).unzip();
                    add_batched(sink, self.a, &xs, &ys, a.shape());
                }
                if sink.wants(self.b) {
                    let (xs, ys): (Vec<_>, Vec<_>) =
                        (0..batch).map(|i| grad_b(dcs[i], opa[i], tb)).unzip();
                    if b.ndim() == 2 {
                        // Shared B: sum the per-item products in batch order.
                        let db = sink.dense_mut(self.b);
                        let mut db2 = db.view_mut().into_dimensionality::<Ix2>().expect("2-D");
                        for i in 0..batch {
                            sgemm(db2.view_mut(), xs[i], ys[i], true, Threading::Auto);
                        }
                    } else {
                        add_batched(sink, self.b, &xs, &ys, b.shape());
                    }
                }
            }
        }
    }
}

fn matmul_impl<'t>(a: Var<'t>, b: Var<'t>, ta: bool, tb: bool) -> Var<'t> {
    a.same_tape(&b, "matmul");
    let (a_val, b_val) = (a.value(), b.value());
    let out = forward(&a_val, &b_val, ta, tb);
    a.tape.record(&[a, b], out, || MatmulBackward {
        a: a.id,
        b: b.id,
        a_val,
        b_val,
        ta,
        tb,
    })
}

impl<'t> Var<'t> {
    /// Matrix product `self · other`.
    ///
    /// # Shapes
    /// - `[m, k] · [k, n] → [m, n]`
    /// - `[B, m, k] · [k, n] → [B, m, n]` (one matrix shared across the batch)
    /// - `[B, m, k] · [B, k, n] → [B, m, n]` (batched)
    ///
    /// # Panics
    /// If the inner dimensions or batch sizes differ, or the ranks are not one of the above.
    pub fn matmul(self, other: Var<'t>) -> Var<'t> {
        matmul_impl(self, other, false, false)
    }

    /// `self · otherᵀ` with the transpose taken as a strided view (no copy); the form of
    /// `x · Wᵀ` for weights stored `[out, in]` and of attention scores `Q · Kᵀ`.
    ///
    /// # Shapes
    /// `[m, k] · [n, k]ᵀ → [m, n]`, `[B, m, k] · [n, k]ᵀ → [B, m, n]`,
    /// `[B, m, k] · [B, n, k]ᵀ → [B, m, n]`.
    ///
    /// # Panics
    /// As [`Var::matmul`].
    pub fn matmul_t(self, other: Var<'t>) -> Var<'t> {
        matmul_impl(self, other, false, true)
    }

    /// `op(self) · op(other)` with either operand transposed as a view.
    ///
    /// # Shapes
    /// As [`Var::matmul`], applied to the transposed last two axes where requested.
    ///
    /// # Panics
    /// As [`Var::matmul`].
    pub fn matmul_with(
        self,
        other: Var<'t>,
        transpose_self: bool,
        transpose_other: bool,
    ) -> Var<'t> {
        matmul_impl(self, other, transpose_self, transpose_other)
    }
}

/// The composed reference product (used by tests): plain loops through ndarray's `dot`.
#[cfg(test)]
pub(crate) fn reference(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Tensor {
    let t = |x: ArrayView2<'_, f32>, t: bool| if t { x.t().to_owned() } else { x.to_owned() };
    match (a.ndim(), b.ndim()) {
        (2, 2) => t(view2(a), ta).dot(&t(view2(b), tb)).into_dyn(),
        (3, _) => {
            let items: Vec<Array2<f32>> = (0..a.shape()[0])
                .map(|i| {
                    let bi = if b.ndim() == 2 {
                        view2(b)
                    } else {
                        view3(b).index_axis_move(Axis(0), i)
                    };
                    t(view3(a).index_axis_move(Axis(0), i), ta).dot(&t(bi, tb))
                })
                .collect();
            let views: Vec<_> = items.iter().map(|x| x.view()).collect();
            ndarray::stack(Axis(0), &views)
                .expect("same shapes")
                .into_dyn()
        }
        _ => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::reference;
    use crate::Tape;
    use crate::gradcheck::{assert_gradients, randn};

    fn shape_of(rows: usize, cols: usize, t: bool) -> Vec<usize> {
        if t {
            vec![cols, rows]
        } else {
            vec![rows, cols]
        }
    }

    #[test]
    fn forward_matches_reference_for_all_layouts() {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = randn(&shape_of(5, 7, ta), 1);
                let b = randn(&shape_of(7, 3, tb), 2);
                let tape = Tape::new();
                let c = tape
                    .constant(a.clone())
                    .matmul_with(tape.constant(b.clone()), ta, tb);
                let want = reference(&a, &b, ta, tb);
                assert!(
                    c.value()
                        .iter()
                        .zip(want.iter())
                        .all(|(x, y)| (x - y).abs() < 1e-5)
                );

                let mut sa = vec![4];
                sa.extend(shape_of(5, 7, ta));
                let mut sb = vec![4];
                sb.extend(shape_of(7, 3, tb));
                let (a3, b3) = (randn(&sa, 3), randn(&sb, 4));
                for bb in [b3.clone(), b.clone()] {
                    let c =
                        tape.constant(a3.clone())
                            .matmul_with(tape.constant(bb.clone()), ta, tb);
                    let want = reference(&a3, &bb, ta, tb);
                    assert_eq!(c.shape(), want.shape());
                    assert!(
                        c.value()
                            .iter()
                            .zip(want.iter())
                            .all(|(x, y)| (x - y).abs() < 1e-5)
                    );
                }
            }
        }
    }

    #[test]
    fn gradients_2d_batched_shared_and_transposed() {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = randn(&shape_of(4, 6, ta), 5);
                let b = randn(&shape_of(6, 3, tb), 6);
                assert_gradients(&[a, b], move |_, v| v[0].matmul_with(v[1], ta, tb));
                let mut sa = vec![3];
                sa.extend(shape_of(4, 6, ta));
                let mut sb = vec![3];
                sb.extend(shape_of(6, 3, tb));
                let (a3, b3) = (randn(&sa, 7), randn(&sb, 8));
                assert_gradients(&[a3.clone(), b3], move |_, v| {
                    v[0].matmul_with(v[1], ta, tb)
                });
                let b2 = randn(&shape_of(6, 3, tb), 9);
                assert_gradients(&[a3, b2], move |_, v| v[0].matmul_with(v[1], ta, tb));
            }
        }
    }

    #[test]
    fn batch_size_one_and_vectors() {
        assert_gradients(&[randn(&[1, 5], 1), randn(&[5, 1], 2)], |_, v| {
            v[0].matmul(v[1])
        });
        assert_gradients(&[randn(&[1, 1, 5], 1), randn(&[1, 2, 5], 2)], |_, v| {
            v[0].matmul_t(v[1])
        });
    }

    #[test]
    #[should_panic(expected = "matmul: cannot multiply shapes [2, 3] and [4, 5]")]
    fn mismatch_panics_with_both_shapes() {
        let tape = Tape::new();
        let _ = tape
            .constant(randn(&[2, 3], 1))
            .matmul(tape.constant(randn(&[4, 5], 1)));
    }
}
