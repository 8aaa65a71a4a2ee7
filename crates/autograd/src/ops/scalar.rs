//! Arithmetic with an `f32` constant: `add_scalar`, `sub_scalar`, `rsub_scalar`, `mul_scalar`
//! (alias `scale`), `div_scalar`, `clamp` — and the `+ - * /` operators between a [`Var`] and
//! an `f32` (`x * 0.5`, `1.0 - x`, ...).

use crate::kernels::{map1, map2};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Add(f32),
    Sub(f32),
    /// `s − x`.
    RSub(f32),
    Mul(f32),
    Div(f32),
    Clamp(f32, f32),
}

impl Kind {
    fn apply(self, x: f32) -> f32 {
        match self {
            Kind::Add(s) => x + s,
            Kind::Sub(s) => x - s,
            Kind::RSub(s) => s - x,
            Kind::Mul(s) => x * s,
            Kind::Div(s) => x / s,
            // Comparisons rather than `max`/`min` so that NaN propagates.
            Kind::Clamp(lo, hi) => {
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
        }
    }
}

struct ScalarBackward {
    kind: Kind,
    x: usize,
    /// The input, kept only by `clamp` (the others' gradients do not depend on it).
    x_val: Option<Arc<Tensor>>,
}

impl BackwardOp for ScalarBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        match self.kind {
            Kind::Add(_) | Kind::Sub(_) => sink.add_view(self.x, g.view()),
            Kind::RSub(_) => sink.add(self.x, map1(&g.view(), |g| -g)),
            Kind::Mul(s) => sink.add(self.x, map1(&g.view(), move |g| g * s)),
            Kind::Div(s) => sink.add(self.x, map1(&g.view(), move |g| g / s)),
            Kind::Clamp(lo, hi) => {
                let x = self.x_val.as_ref().expect("clamp keeps its input");
                // The gradient passes where lo ≤ x ≤ hi (bounds included, as PyTorch).
                let dx = map2(&g.view(), &x.view(), move |g, x| {
                    if x >= lo && x <= hi { g } else { 0.0 }
                });
                sink.add(self.x, dx);
            }
        }
    }
}

fn scalar(kind: Kind, x: Var<'_>) -> Var<'_> {
    let x_val = x.value();
    let out = map1(&x_val.view(), move |v| kind.apply(v));
    let keep = matches!(kind, Kind::Clamp(..)).then_some(x_val);
    x.tape.record(&[x], out, || ScalarBackward {
        kind,
        x: x.id,
        x_val: keep,
    })
}

impl<'t> Var<'t> {
    /// `self + s` element-wise (also `var + s` and `s + var`).
    ///
    /// # Shapes
    /// Any shape → the same shape (as every op in this family).
    pub fn add_scalar(self, s: f32) -> Var<'t> {
        scalar(Kind::Add(s), self)
    }

    /// `self − s` element-wise (also `var - s`).
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn sub_scalar(self, s: f32) -> Var<'t> {
        scalar(Kind::Sub(s), self)
    }

    /// `s − self` element-wise (also `s - var`), e.g. `1 − p`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn rsub_scalar(self, s: f32) -> Var<'t> {
        scalar(Kind::RSub(s), self)
    }

    /// `self · s` element-wise (also `var * s`, `s * var` and [`Var::scale`]).
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn mul_scalar(self, s: f32) -> Var<'t> {
        scalar(Kind::Mul(s), self)
    }

    /// `self · s` element-wise; the same op as [`Var::mul_scalar`].
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn scale(self, s: f32) -> Var<'t> {
        self.mul_scalar(s)
    }

    /// `self / s` element-wise (also `var / s`); a true division, not a multiplication by
    /// `1/s`. Dividing by 0 gives ±∞ or NaN as `f32` does.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn div_scalar(self, s: f32) -> Var<'t> {
        scalar(Kind::Div(s), self)
    }

    /// Limits every element to `[min, max]` (NaN stays NaN). The gradient passes unchanged
    /// where `min ≤ x ≤ max` (bounds included, as PyTorch) and is 0 outside. Infinite bounds
    /// give a one-sided clamp, e.g. `clamp(0.0, f32::INFINITY)`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    ///
    /// # Panics
    /// If `min > max` or either bound is NaN.
    pub fn clamp(self, min: f32, max: f32) -> Var<'t> {
        assert!(
            min <= max,
            "clamp: need min <= max (and neither NaN), got min {min}, max {max}"
        );
        scalar(Kind::Clamp(min, max), self)
    }
}

macro_rules! impl_scalar_operator {
    ($trait:ident, $method:ident, $var_op:ident, $scalar_op:ident) => {
        impl<'t> std::ops::$trait<f32> for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: f32) -> Var<'t> {
                Var::$var_op(self, rhs)
            }
        }
        impl<'t> std::ops::$trait<Var<'t>> for f32 {
            type Output = Var<'t>;
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                Var::$scalar_op(rhs, self)
            }
        }
    };
}
impl_scalar_operator!(Add, add, add_scalar, add_scalar);
impl_scalar_operator!(Sub, sub, sub_scalar, rsub_scalar);
impl_scalar_operator!(Mul, mul, mul_scalar, mul_scalar);

impl<'t> std::ops::Div<f32> for Var<'t> {
    type Output = Var<'t>;
    fn div(self, rhs: f32) -> Var<'t> {
        Var::div_scalar(self, rhs)
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor};
    use ndarray::{IxDyn, array};

    #[test]
    fn values() {
        let tape = Tape::new();
        let x = tape.constant(array![[-2.0_f32, 0.5], [1.0, 4.0]].into_dyn());
        assert_eq!(
            *x.add_scalar(1.0).value(),
            array![[-1.0_f32, 1.5], [2.0, 5.0]].into_dyn()
        );
        assert_eq!(*(x + 1.0).value(), *(1.0 + x).value());
        assert_eq!(
            *x.sub_scalar(1.0).value(),
            array![[-3.0_f32, -0.5], [0.0, 3.0]].into_dyn()
        );
        assert_eq!(*(x - 1.0).value(), *x.sub_scalar(1.0).value());
        assert_eq!(
            *x.rsub_scalar(1.0).value(),
            array![[3.0_f32, 0.5], [0.0, -3.0]].into_dyn()
        );
        assert_eq!(*(1.0 - x).value(), *x.rsub_scalar(1.0).value());
        assert_eq!(
            *x.mul_scalar(2.0).value(),
            array![[-4.0_f32, 1.0], [2.0, 8.0]].into_dyn()
        );
        assert_eq!(*x.scale(2.0).value(), *(2.0 * x).value());
        assert_eq!(*(x * 2.0).value(), *x.mul_scalar(2.0).value());
        assert_eq!(
            *x.div_scalar(4.0).value(),
            array![[-0.5_f32, 0.125], [0.25, 1.0]].into_dyn()
        );
        assert_eq!(
            *(x / 3.0).value(),
            x.value().mapv(|v| v / 3.0),
            "a true division"
        );
        assert_eq!(
            *x.clamp(-1.0, 1.0).value(),
            array![[-1.0_f32, 0.5], [1.0, 1.0]].into_dyn()
        );
        assert_eq!(
            *x.clamp(0.0, f32::INFINITY).value(),
            array![[0.0_f32, 0.5], [1.0, 4.0]].into_dyn()
        );
        let nan = tape.constant(array![f32::NAN].into_dyn());
        assert!(nan.clamp(0.0, 1.0).value()[0].is_nan());
    }

    #[test]
    fn closed_form_gradients() {
        let x0 = array![-2.0_f32, -1.0, 0.5, 1.0, 4.0].into_dyn();
        let grad = |f: &dyn for<'t> Fn(crate::Var<'t>) -> crate::Var<'t>| {
            let tape = Tape::new();
            let x = tape.leaf(x0.clone());
            let y = f(x);
            tape.backward_with_seed(y, Tensor::ones(IxDyn(&[5])))
                .wrt(x)
                .unwrap()
        };
        assert_eq!(grad(&|x| x + 3.0), Tensor::ones(IxDyn(&[5])));
        assert_eq!(grad(&|x| x - 3.0), Tensor::ones(IxDyn(&[5])));
        assert_eq!(grad(&|x| 3.0 - x), Tensor::from_elem(IxDyn(&[5]), -1.0));
        assert_eq!(grad(&|x| x * 3.0), Tensor::from_elem(IxDyn(&[5]), 3.0));
        assert_eq!(grad(&|x| x / 4.0), Tensor::from_elem(IxDyn(&[5]), 0.25));
        // Zero outside, bounds included.
        assert_eq!(
            grad(&|x| x.clamp(-1.0, 1.0)),
            array![0.0_f32, 1.0, 1.0, 1.0, 0.0].into_dyn()
        );
    }

    #[test]
    fn gradient_checks() {
        for shape in [vec![3, 4], vec![1, 6], vec![2, 1, 3]] {
            let x = randn(&shape, 31);
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].add_scalar(0.7));
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].sub_scalar(0.7));
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].rsub_scalar(0.7));
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].mul_scalar(-1.3));
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].scale(2.5));
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].div_scalar(-0.6));
            // Clamp with every element away from the bounds (the kinks).
            let xc = x.mapv(|v| {
                if (v.abs() - 0.5).abs() < 0.05 {
                    v * 1.3
                } else {
                    v
                }
            });
            assert_gradients(&[xc], |_, v| v[0].clamp(-0.5, 0.5));
        }
        // Composed with broadcasting binary ops and the operators.
        let (x, b) = (randn(&[3, 4], 32), randn(&[4], 33));
        assert_gradients(&[x, b], |_, v| {
            (1.0 - v[0] * 0.5) * (v[1] + 2.0) / 3.0 - v[0]
        });
    }

    #[test]
    #[should_panic(expected = "clamp: need min <= max")]
    fn clamp_rejects_inverted_bounds() {
        let tape = Tape::new();
        let _ = tape.constant(randn(&[2], 1)).clamp(1.0, -1.0);
    }

    fn big_run() -> (Tensor, Tensor) {
        let tape = Tape::new();
        let x = tape.leaf(randn(&[256, 160], 3));
        let y = (2.0 - x.scale(1.5)).clamp(-1.0, 2.5) / 3.0 + x.add_scalar(0.1);
        let val = (*y.value()).clone();
        let g = tape
            .backward_with_seed(y, randn(&[256, 160], 4))
            .wrt(x)
            .unwrap();
        (val, g)
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
        let bits = |t: &Tensor| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let (a, b, c) = (in_pool(1), in_pool(2), big_run());
        assert_eq!(bits(&a.0), bits(&b.0));
        assert_eq!(bits(&a.1), bits(&b.1));
        assert_eq!(bits(&a.0), bits(&c.0));
        assert_eq!(bits(&a.1), bits(&c.1));
    }
}
