//! Boolean-mask ops: [`Var::masked_fill`] (e.g. attention masks with `-inf`) and the
//! element-wise choice [`Var::select`] (`where`).

use super::broadcast::{broadcast_shape, reduce_to};
use crate::kernels::use_parallel;
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};
use std::sync::Arc;

/// `cond ? yes : no` per element of `g` with `cond` broadcast to `g`'s shape.
fn choose(cond: &ArrayViewD<'_, bool>, g: &ArrayViewD<'_, f32>, keep_if: bool) -> Tensor {
    let z = Zip::from(g).and(cond);
    let f = move |&g: &f32, &c: &bool| if c == keep_if { g } else { 0.0 };
    if use_parallel(g.len()) {
        z.par_map_collect(f)
    } else {
        z.map_collect(f)
    }
}

fn bcast<'a, T>(x: &'a ArrayD<T>, shape: &[usize]) -> ArrayViewD<'a, T> {
    x.broadcast(IxDyn(shape))
        .expect("broadcast checked at forward")
}

struct MaskedFillBackward {
    x: usize,
    mask: Arc<ArrayD<bool>>,
}

impl BackwardOp for MaskedFillBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if sink.wants(self.x) {
            let m = bcast(&self.mask, g.shape());
            sink.add(self.x, choose(&m, &g.view(), false));
        }
    }
}

struct SelectBackward {
    a: usize,
    b: usize,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
    cond: Arc<ArrayD<bool>>,
}

impl BackwardOp for SelectBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let c = bcast(&self.cond, g.shape());
        if sink.wants(self.a) {
            sink.add(
                self.a,
                reduce_to(choose(&c, &g.view(), true).view(), &self.a_shape),
            );
        }
        if sink.wants(self.b) {
            sink.add(
                self.b,
                reduce_to(choose(&c, &g.view(), false).view(), &self.b_shape),
            );
        }
    }
}

impl<'t> Var<'t> {
    /// Replaces the elements where `mask` is `true` by `value` (which may be `f32::NEG_INFINITY`,
    /// as for attention masks before a softmax). The gradient is zero at filled positions and
    /// passes through elsewhere. A mask with no `true` entry returns `self` unchanged (nothing
    /// recorded, no copy).
    ///
    /// # Shapes
    /// `self: S`, `mask` broadcastable to `S` (e.g. `[B, 1, 1, L]` key-padding masks against
    /// `[B, H, L, L]` scores) → `S`.
    ///
    /// # Panics
    /// If `mask` cannot be broadcast to `self`'s shape.
    pub fn masked_fill(self, mask: &ArrayD<bool>, value: f32) -> Var<'t> {
        let v = self.value();
        let m = mask.broadcast(v.raw_dim()).unwrap_or_else(|| {
            panic!(
                "masked_fill: mask of shape {:?} cannot be broadcast to {:?}",
                mask.shape(),
                v.shape()
            )
        });
        // Nothing to fill (e.g. a padding mask over full sequences): the identity.
        if !mask.iter().any(|&c| c) {
            return self;
        }
        let z = Zip::from(&*v).and(&m);
        let f = move |&x: &f32, &c: &bool| if c { value } else { x };
        let out = if use_parallel(v.len()) {
            z.par_map_collect(f)
        } else {
            z.map_collect(f)
        };
        self.tape.record(&[self], out, || MaskedFillBackward {
            x: self.id,
            mask: Arc::new(mask.clone()),
        })
    }

    /// Element-wise choice `cond ? a : b` (NumPy's `where`), broadcasting `cond`, `a` and `b`
    /// together. `a` receives the gradient where `cond` is `true`, `b` where it is `false`
    /// (each summed back to its own shape).
    ///
    /// # Shapes
    /// `cond`, `a`, `b` broadcast-compatible → their common broadcast shape.
    ///
    /// # Panics
    /// If the three shapes cannot be broadcast together, or `a` and `b` live on different tapes.
    #[doc(alias = "where")]
    pub fn select(cond: &ArrayD<bool>, a: Var<'t>, b: Var<'t>) -> Var<'t> {
        a.same_tape(&b, "select");
        let (av, bv) = (a.value(), b.value());
        let ab = broadcast_shape(av.shape(), bv.shape(), "select");
        let shape = broadcast_shape(cond.shape(), &ab, "select (condition)");
        let (c, x, y) = (bcast(cond, &shape), bcast(&av, &shape), bcast(&bv, &shape));
        let z = Zip::from(&c).and(&x).and(&y);
        let f = |&c: &bool, &x: &f32, &y: &f32| if c { x } else { y };
        let out = if use_parallel(z.size()) {
            z.par_map_collect(f)
        } else {
            z.map_collect(f)
        };
        a.tape.record(&[a, b], out, || SelectBackward {
            a: a.id,
            b: b.id,
            a_shape: av.shape().to_vec(),
            b_shape: bv.shape().to_vec(),
            cond: Arc::new(cond.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor, Var};
    use ndarray::{ArrayD, Dimension, IxDyn, array};

    fn mask(shape: &[usize], seed: usize) -> ArrayD<bool> {
        ArrayD::from_shape_fn(IxDyn(shape), |i| {
            (i.as_array_view().iter().sum::<usize>() * 7 + seed).is_multiple_of(3)
        })
    }

    #[test]
    fn masked_fill_values_and_gradient() {
        let tape = Tape::new();
        let x = tape.leaf(array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn());
        let m = array![false, true].into_dyn();
        let y = x.masked_fill(&m, f32::NEG_INFINITY);
        assert_eq!(
            *y.value(),
            array![[1.0_f32, f32::NEG_INFINITY], [3.0, f32::NEG_INFINITY]].into_dyn()
        );
        let g = tape.backward_with_seed(y, array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn());
        assert_eq!(
            g.wrt(x).unwrap(),
            array![[1.0_f32, 0.0], [3.0, 0.0]].into_dyn()
        );
    }

    #[test]
    fn masked_fill_with_nothing_to_fill_is_the_identity() {
        let tape = Tape::new();
        let x = tape.leaf(array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn());
        let y = x.masked_fill(&array![false, false].into_dyn(), 9.0);
        assert_eq!(*y.value(), *x.value());
        let g = tape.backward_with_seed(y * x, array![[1.0_f32, 1.0], [1.0, 1.0]].into_dyn());
        assert_eq!(
            g.wrt(x).unwrap(),
            array![[2.0_f32, 4.0], [6.0, 8.0]].into_dyn()
        );
    }

    #[test]
    #[should_panic(expected = "masked_fill: mask of shape [3] cannot be broadcast to [2, 2]")]
    fn masked_fill_checks_the_shape_even_with_nothing_to_fill() {
        let tape = Tape::new();
        let _ = tape
            .leaf(array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn())
            .masked_fill(&array![false, false, false].into_dyn(), 0.0);
    }

    #[test]
    fn masked_fill_gradients() {
        let x = randn(&[2, 3, 4], 1);
        for mshape in [vec![2, 3, 4], vec![4], vec![2, 1, 4], vec![1, 3, 1]] {
            let m = mask(&mshape, 1);
            assert_gradients(std::slice::from_ref(&x), move |_, v| {
                v[0].masked_fill(&m, 0.5) * v[0]
            });
        }
        let m = mask(&[1, 5], 2);
        assert_gradients(&[randn(&[1, 5], 2)], move |_, v| v[0].masked_fill(&m, -3.0));
    }

    #[test]
    fn select_values_and_gradients() {
        let tape = Tape::new();
        let a = tape.constant(array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn());
        let b = tape.constant(array![10.0_f32, 20.0].into_dyn());
        let c = array![[true], [false]].into_dyn();
        assert_eq!(
            *Var::select(&c, a, b).value(),
            array![[1.0_f32, 2.0], [10.0, 20.0]].into_dyn()
        );

        for (cs, sa, sb) in [
            (vec![3, 4], vec![3, 4], vec![3, 4]),
            (vec![3, 1], vec![3, 4], vec![4]),
            (vec![2, 3, 4], vec![3, 1], vec![1, 4]),
            (vec![4], vec![1, 4], vec![1, 4]),
        ] {
            let c = mask(&cs, 0);
            assert_gradients(&[randn(&sa, 3), randn(&sb, 4)], move |_, v| {
                Var::select(&c, v[0], v[1])
            });
        }
    }

    #[test]
    fn select_with_one_constant_side() {
        let tape = Tape::new();
        let a = tape.leaf(array![1.0_f32, 2.0, 3.0].into_dyn());
        let b = tape.constant(Tensor::from_elem(IxDyn(&[3]), f32::NEG_INFINITY));
        let y = Var::select(&array![true, false, true].into_dyn(), a, b);
        let g = tape.backward(y.narrow(0, 0, 1).sum() + y.narrow(0, 2, 1).sum());
        assert_eq!(g.wrt(a).unwrap(), array![1.0_f32, 0.0, 1.0].into_dyn());
    }

    #[test]
    fn large_is_identical_across_thread_counts() {
        let x = randn(&[64, 600], 5);
        let m = mask(&[1, 600], 3);
        let run = || {
            let tape = Tape::new();
            let v = tape.leaf(x.clone());
            let w = tape.leaf(randn(&[600], 6));
            let y = Var::select(
                &m,
                v.masked_fill(&m.t().to_owned().into_dyn().reversed_axes(), 1.0),
                w,
            );
            let g = tape.backward((y * tape.constant(randn(&[64, 600], 7))).sum());
            (
                y.value().mapv(f32::to_bits),
                g.wrt(v).unwrap().mapv(f32::to_bits),
                g.wrt(w).unwrap().mapv(f32::to_bits),
            )
        };
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        assert_eq!(pool(1).install(run), pool(2).install(run));
    }

    #[test]
    #[should_panic(expected = "masked_fill: mask of shape [3] cannot be broadcast to [2, 4]")]
    fn bad_mask() {
        let tape = Tape::new();
        let _ = tape
            .constant(Tensor::zeros(IxDyn(&[2, 4])))
            .masked_fill(&ArrayD::from_elem(IxDyn(&[3]), true), 0.0);
    }

    #[test]
    #[should_panic(expected = "select (condition): shapes [3] and [2, 4] cannot be broadcast")]
    fn bad_condition() {
        let tape = Tape::new();
        let a = tape.constant(Tensor::zeros(IxDyn(&[2, 4])));
        let _ = Var::select(&ArrayD::from_elem(IxDyn(&[3]), true), a, a);
    }
}
