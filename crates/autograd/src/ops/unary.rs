//! Element-wise unary ops: `neg`, `exp`, `log`, `sqrt`, `powf`, `relu`, `gelu`, `sigmoid`,
//! `tanh`, `softplus`, `abs`, `square` (and the unary `-` operator on [`Var`]).
//!
//! Each op is one [`Kind`]: a forward `f(x)` and a backward `g · f'(·)` evaluated from the saved
//! input or, where that is cheaper or more stable (`exp`, `sqrt`, `sigmoid`, `tanh`), the saved
//! output. Both loops go through [`map1`] / [`map2`], so they are serial below the parallel
//! threshold, parallel above it, and bit-identical across thread counts.

use crate::kernels::{fastmath, map1, map1_simd, map2, map2_simd};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tape, Tensor, Var};
use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;

/// The output of an op, for backward ops that need it (`exp`, `sigmoid`, `softmax`, ...).
///
/// [`Tape::record`] builds the backward op before the output's `Arc` exists, so the op holds
/// this slot and [`record_with_output`] fills it right after recording — sharing the tape's
/// value instead of copying it.
#[derive(Clone, Default)]
pub(super) struct SavedOutput(Rc<OnceCell<Arc<Tensor>>>);

impl SavedOutput {
    /// The saved output.
    ///
    /// # Panics
    /// If called before the op was recorded (cannot happen during [`Tape::backward`]).
    pub(super) fn get(&self) -> &Tensor {
        self.0
            .get()
            .expect("SavedOutput is filled when the op is recorded")
    }
}

/// [`Tape::record`] for backward ops that need the op's own output (see [`SavedOutput`]).
pub(super) fn record_with_output<'t, O, F>(
    tape: &'t Tape,
    inputs: &[Var<'t>],
    value: Tensor,
    make_op: F,
) -> Var<'t>
where
    O: BackwardOp + 'static,
    F: FnOnce(SavedOutput) -> O,
{
    let slot = SavedOutput::default();
    let for_op = slot.clone();
    let out = tape.record(inputs, value, move || make_op(for_op));
    if out.requires_grad() {
        // The op exists exactly when the output requires a gradient.
        let _ = slot.0.set(out.value());
    }
    out
}

/// The logistic function `1 / (1 + e^{−x})`, evaluated without overflow for any `x`.
pub(super) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Out-of-line scalar calls of the [`fastmath`] functions for [`Kind::apply`] / [`Kind::grad`]:
/// inlined there they made both functions too large to inline, and every cheap kind (ReLU,
/// square, …) then paid a call per element. The vectorized slice kernels are used for whole
/// tensors; these serve the strided fallback.
mod cold {
    use crate::kernels::fastmath;

    #[inline(never)]
    pub(super) fn exp(x: f32) -> f32 {
        fastmath::exp(x)
    }

    #[inline(never)]
    pub(super) fn gelu(x: f32) -> f32 {
        fastmath::gelu(x)
    }

    #[inline(never)]
    pub(super) fn gelu_grad(x: f32) -> f32 {
        fastmath::gelu_grad(x)
    }

    #[inline(never)]
    pub(super) fn sigmoid(x: f32) -> f32 {
        fastmath::sigmoid(x)
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Neg,
    Exp,
    Log,
    Sqrt,
    Powf(f32),
    Relu,
    Gelu,
    Sigmoid,
    Tanh,
    Softplus,
    Abs,
    Square,
}

/// Which value the backward of a [`Kind`] reads.
enum Reads {
    Nothing,
    Input,
    Output,
}

impl Kind {
    fn apply(self, x: f32) -> f32 {
        match self {
            Kind::Neg => -x,
            Kind::Exp => cold::exp(x),
            Kind::Log => x.ln(),
            Kind::Sqrt => x.sqrt(),
            Kind::Powf(p) => x.powf(p),
            // `x < 0` (not `max`) so that NaN propagates.
            Kind::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Kind::Gelu => cold::gelu(x),
            Kind::Sigmoid => cold::sigmoid(x),
            Kind::Tanh => x.tanh(),
            // max(x, 0) + log(1 + e^{−|x|}): no overflow for large x, no underflow to 0 for
            // moderately negative x. NaN propagates through the second term.
            Kind::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Kind::Abs => x.abs(),
            Kind::Square => x * x,
        }
    }

    fn reads(self) -> Reads {
        match self {
            Kind::Neg => Reads::Nothing,
            Kind::Exp | Kind::Sqrt | Kind::Sigmoid | Kind::Tanh => Reads::Output,
            _ => Reads::Input,
        }
    }

    /// The input gradient `g · f'` where `s` is the saved input or output (see [`Kind::reads`]).
    fn grad(self, g: f32, s: f32) -> f32 {
        match self {
            Kind::Neg => -g,
            Kind::Exp => g * s,
            Kind::Log => g / s,
            Kind::Sqrt => g * 0.5 / s,
            // x⁰ is constant (avoid 0·∞ at x = 0).
            Kind::Powf(p) => {
                if p == 0.0 {
                    0.0
                } else {
                    g * p * s.powf(p - 1.0)
                }
            }
            Kind::Relu => {
                if s > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            // d/dx [x·Φ(x)] = Φ(x) + x·φ(x).
            Kind::Gelu => g * cold::gelu_grad(s),
            Kind::Sigmoid => g * s * (1.0 - s),
            Kind::Tanh => g * (1.0 - s * s),
            Kind::Softplus => g * sigmoid(s),
            Kind::Abs => {
                if s > 0.0 {
                    g
                } else if s < 0.0 {
                    -g
                } else {
                    0.0
                }
            }
            Kind::Square => 2.0 * s * g,
        }
    }
}

enum Saved {
    Nothing,
    Input(Arc<Tensor>),
    Output(SavedOutput),
}

struct UnaryBackward {
    kind: Kind,
    x: usize,
    saved: Saved,
}

impl BackwardOp for UnaryBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let kind = self.kind;
        let dx = match &self.saved {
            Saved::Nothing => map1(&g.view(), move |g| kind.grad(g, 0.0)),
            // The transcendental backward gets the vectorized loop (`kind` is fixed per loop).
            Saved::Input(x) if matches!(kind, Kind::Gelu) => map2_simd(
                &g.view(),
                &x.view(),
                fastmath::gelu_backward_slice,
                |g, s| g * fastmath::gelu_grad(s),
            ),
            Saved::Input(x) => map2(&g.view(), &x.view(), move |g, s| kind.grad(g, s)),
            Saved::Output(y) => map2(&g.view(), &y.get().view(), move |g, s| kind.grad(g, s)),
        };
        sink.add(self.x, dx);
    }
}

fn unary(kind: Kind, x: Var<'_>) -> Var<'_> {
    let x_val = x.value();
    // The transcendental kinds get a vectorized loop of their own (no `match` per element).
    let out = match kind {
        Kind::Exp => map1_simd(&x_val.view(), fastmath::exp_slice, fastmath::exp),
        Kind::Gelu => map1_simd(&x_val.view(), fastmath::gelu_slice, fastmath::gelu),
        Kind::Sigmoid => map1_simd(&x_val.view(), fastmath::sigmoid_slice, fastmath::sigmoid),
        _ => map1(&x_val.view(), move |v| kind.apply(v)),
    };
    let id = x.id;
    match kind.reads() {
        Reads::Nothing => x.tape.record(&[x], out, || UnaryBackward {
            kind,
            x: id,
            saved: Saved::Nothing,
        }),
        Reads::Input => x.tape.record(&[x], out, || UnaryBackward {
            kind,
            x: id,
            saved: Saved::Input(x_val),
        }),
        Reads::Output => record_with_output(x.tape, &[x], out, |y| UnaryBackward {
            kind,
            x: id,
            saved: Saved::Output(y),
        }),
    }
}

impl<'t> Var<'t> {
    /// `−self` element-wise (also the unary `-` operator).
    ///
    /// # Shapes
    /// Any shape → the same shape (as every op in this family).
    // Named like `Neg::neg` on purpose: the operator below delegates to it.
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Var<'t> {
        unary(Kind::Neg, self)
    }

    /// `e^self` element-wise. The backward reuses the output.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn exp(self) -> Var<'t> {
        unary(Kind::Exp, self)
    }

    /// The natural logarithm element-wise: `−∞` at 0 and NaN below 0 (as `f32::ln`); the
    /// gradient is `1/x`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn log(self) -> Var<'t> {
        unary(Kind::Log, self)
    }

    /// `√self` element-wise (NaN below 0). The gradient `1/(2√x)` is infinite at 0.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn sqrt(self) -> Var<'t> {
        unary(Kind::Sqrt, self)
    }

    /// `self^p` element-wise (as `f32::powf`: NaN for a negative base and a non-integer `p`).
    /// The gradient is `p·x^(p−1)`, and exactly 0 for `p = 0`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn powf(self, p: f32) -> Var<'t> {
        unary(Kind::Powf(p), self)
    }

    /// `max(self, 0)` element-wise (NaN propagates). The gradient at 0 is 0.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn relu(self) -> Var<'t> {
        unary(Kind::Relu, self)
    }

    /// The exact (erf) GELU, PyTorch's default: `0.5·x·(1 + erf(x/√2)) = x·Φ(x)`, with gradient
    /// `Φ(x) + x·φ(x)`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn gelu(self) -> Var<'t> {
        unary(Kind::Gelu, self)
    }

    /// The logistic function `1 / (1 + e^{−x})` element-wise, stable for any `|x|` (exactly 0
    /// or 1 far out, never NaN for finite input). The backward reuses the output: `y·(1 − y)`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn sigmoid(self) -> Var<'t> {
        unary(Kind::Sigmoid, self)
    }

    /// `tanh(self)` element-wise. The backward reuses the output: `1 − y²`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn tanh(self) -> Var<'t> {
        unary(Kind::Tanh, self)
    }

    /// `log(1 + e^x)` element-wise, computed as `max(x, 0) + log1p(e^{−|x|})` so it neither
    /// overflows for large `x` nor loses the tail for very negative `x`. The gradient is
    /// `sigmoid(x)`.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn softplus(self) -> Var<'t> {
        unary(Kind::Softplus, self)
    }

    /// `|self|` element-wise. The gradient is `sign(x)`, with 0 at 0.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn abs(self) -> Var<'t> {
        unary(Kind::Abs, self)
    }

    /// `self²` element-wise (one node, cheaper than `x * x`).
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn square(self) -> Var<'t> {
        unary(Kind::Square, self)
    }
}

impl<'t> std::ops::Neg for Var<'t> {
    type Output = Var<'t>;
    fn neg(self) -> Var<'t> {
        Var::neg(self)
    }
}

#[cfg(test)]
mod tests {
    use super::sigmoid;
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor};
    use ndarray::array;

    /// Standard-normal values pushed at least `margin` away from 0 (for kinks at 0).
    fn away_from_zero(shape: &[usize], seed: u64, margin: f32) -> Tensor {
        randn(shape, seed).mapv(|v| if v < 0.0 { v - margin } else { v + margin })
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn closed_form_values() {
        let tape = Tape::new();
        let x = tape.constant(array![-2.0_f32, -0.5, 0.0, 0.5, 3.0].into_dyn());
        let p = tape.constant(array![0.25_f32, 1.0, 4.0].into_dyn());
        let check = |got: &Tensor, want: &[f32]| {
            assert_eq!(got.len(), want.len());
            for (&g, &w) in got.iter().zip(want) {
                assert!(close(g, w, 1e-6), "got {got:?}, want {want:?}");
            }
        };
        check(&x.neg().value(), &[2.0, 0.5, -0.0, -0.5, -3.0]);
        check(&(-x).value(), &[2.0, 0.5, -0.0, -0.5, -3.0]);
        check(
            &x.exp().value(),
            &[
                (-2.0f32).exp(),
                (-0.5f32).exp(),
                1.0,
                0.5f32.exp(),
                3.0f32.exp(),
            ],
        );
        check(&p.log().value(), &[-(4.0f32.ln()), 0.0, 4.0f32.ln()]);
        check(&p.sqrt().value(), &[0.5, 1.0, 2.0]);
        check(&p.powf(1.5).value(), &[0.125, 1.0, 8.0]);
        check(&p.powf(0.0).value(), &[1.0, 1.0, 1.0]);
        check(&x.relu().value(), &[0.0, 0.0, 0.0, 0.5, 3.0]);
        // Reference values of x·Φ(x) (from the normal CDF).
        check(
            &x.gelu().value(),
            &[-0.045_500_26, -0.154_268_77, 0.0, 0.345_731_23, 2.995_950_3],
        );
        check(
            &x.sigmoid().value(),
            &[0.119_202_92, 0.377_540_67, 0.5, 0.622_459_3, 0.952_574_13],
        );
        check(
            &x.tanh().value(),
            &[-0.964_027_6, -0.462_117_16, 0.0, 0.462_117_16, 0.995_054_7],
        );
        check(
            &x.softplus().value(),
            &[
                0.126_928_01,
                0.474_077,
                std::f32::consts::LN_2,
                0.974_077,
                3.048_587_4,
            ],
        );
        check(&x.abs().value(), &[2.0, 0.5, 0.0, 0.5, 3.0]);
        check(&x.square().value(), &[4.0, 0.25, 0.0, 0.25, 9.0]);
    }

    #[test]
    fn closed_form_gradients() {
        // The gradient of Σ f(x) is f'(x).
        let x0 = array![-2.0_f32, -0.5, 0.0, 0.5, 3.0].into_dyn();
        let grad = |f: &dyn for<'t> Fn(crate::Var<'t>) -> crate::Var<'t>| {
            let tape = Tape::new();
            let x = tape.leaf(x0.clone());
            let y = f(x);
            let g = tape.backward_with_seed(y, Tensor::ones(y.value().raw_dim()));
            g.wrt(x).expect("x has a gradient")
        };
        assert_eq!(
            grad(&|x| x.relu()),
            array![0.0_f32, 0.0, 0.0, 1.0, 1.0].into_dyn()
        );
        assert_eq!(
            grad(&|x| x.abs()),
            array![-1.0_f32, -1.0, 0.0, 1.0, 1.0].into_dyn()
        );
        assert_eq!(
            grad(&|x| x.square()),
            array![-4.0_f32, -1.0, 0.0, 1.0, 6.0].into_dyn()
        );
        assert_eq!(
            grad(&|x| -x),
            array![-1.0_f32, -1.0, -1.0, -1.0, -1.0].into_dyn()
        );
        let gelu = grad(&|x| x.gelu());
        // Φ(x) + x·φ(x) at the same points.
        let want = [-0.085_231_8, 0.132_504_88, 0.5, 0.867_495_1, 1.011_945_6];
        assert!(
            gelu.iter().zip(want).all(|(&g, w)| close(g, w, 1e-5)),
            "{gelu:?}"
        );
        let sig = grad(&|x| x.sigmoid());
        assert!(sig.iter().zip(x0.iter()).all(|(&g, &x)| close(
            g,
            sigmoid(x) * (1.0 - sigmoid(x)),
            1e-6
        )));
        let sp = grad(&|x| x.softplus());
        assert!(
            sp.iter()
                .zip(x0.iter())
                .all(|(&g, &x)| close(g, sigmoid(x), 1e-6))
        );
    }

    #[test]
    fn gradient_checks() {
        for shape in [vec![3, 4], vec![1, 5], vec![2, 3, 2]] {
            let x = randn(&shape, 11);
            let pos = randn(&shape, 12).mapv(|v| v.abs() + 0.3);
            let off0 = away_from_zero(&shape, 13, 0.05);
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].neg());
            assert_gradients(std::slice::from_ref(&x), |_, v| -v[0]);
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].exp());
            assert_gradients(std::slice::from_ref(&pos), |_, v| v[0].log());
            assert_gradients(std::slice::from_ref(&pos), |_, v| v[0].sqrt());
            assert_gradients(std::slice::from_ref(&pos), |_, v| v[0].powf(1.7));
            assert_gradients(std::slice::from_ref(&pos), |_, v| v[0].powf(-0.5));
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].powf(3.0));
            assert_gradients(std::slice::from_ref(&off0), |_, v| v[0].relu());
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].gelu());
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].sigmoid());
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].tanh());
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].softplus());
            assert_gradients(std::slice::from_ref(&off0), |_, v| v[0].abs());
            assert_gradients(std::slice::from_ref(&x), |_, v| v[0].square());
        }
    }

    #[test]
    fn gradient_checks_composed_with_broadcasting() {
        // (x + b).gelu() · w.sigmoid(): gradients reach both sides of each broadcast.
        let (x, b, w) = (randn(&[4, 3], 21), randn(&[3], 22), randn(&[1, 3], 23));
        assert_gradients(&[x, b, w], |_, v| (v[0] + v[1]).gelu() * v[2].sigmoid());
        let (x, b) = (randn(&[2, 1, 3], 24), randn(&[2, 3], 25));
        assert_gradients(&[x, b], |_, v| (v[0] * v[1]).tanh().softplus().square());
        // Several uses of one input accumulate.
        assert_gradients(&[randn(&[5], 26)], |_, v| {
            v[0].exp() * v[0].sigmoid() + v[0].tanh()
        });
    }

    #[test]
    fn stable_for_large_magnitudes() {
        let tape = Tape::new();
        let x = tape.leaf(array![-1e4_f32, -100.0, -30.0, 30.0, 100.0, 1e4].into_dyn());
        let s = x.sigmoid().value();
        assert!(
            s.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
            "{s:?}"
        );
        assert_eq!((s[0], s[5]), (0.0, 1.0));
        assert!(close(s[2], (-30f32).exp(), 1e-5));
        let sp = x.softplus().value();
        assert!(sp.iter().all(|v| v.is_finite() && *v >= 0.0), "{sp:?}");
        assert_eq!((sp[0], sp[4], sp[5]), (0.0, 100.0, 1e4));
        assert!(
            close(sp[2], (-30f32).exp(), 1e-5),
            "softplus(-30) keeps its tail: {}",
            sp[2]
        );
        let t = x.tanh().value();
        assert_eq!((t[0], t[5]), (-1.0, 1.0));
        let g = x.gelu().value();
        assert_eq!((g[0], g[5]), (-0.0, 1e4));
        // Gradients are finite too.
        let y = x.sigmoid() + x.softplus() + x.tanh() + x.gelu();
        let grads = tape.backward_with_seed(y, Tensor::ones(ndarray::IxDyn(&[6])));
        let gx = grads.wrt(x).unwrap();
        assert!(gx.iter().all(|v| v.is_finite()), "{gx:?}");
        // d/dx [sigmoid + softplus + tanh + gelu] → 0 on the far left, 0 + 1 + 0 + 1 on the right.
        assert_eq!((gx[0], gx[5]), (0.0, 2.0));
        // Gradient checks near (but inside) the saturated regions.
        let far = array![-20.0_f32, -12.0, -8.0, 8.0, 12.0, 20.0].into_dyn();
        assert_gradients(std::slice::from_ref(&far), |_, v| v[0].sigmoid());
        assert_gradients(std::slice::from_ref(&far), |_, v| v[0].softplus());
        assert_gradients(std::slice::from_ref(&far), |_, v| v[0].gelu());
    }

    #[test]
    fn constants_record_nothing() {
        let tape = Tape::new();
        let x = tape.constant(randn(&[3], 1));
        assert!(!x.exp().sigmoid().gelu().requires_grad());
        let no_grad = Tape::no_grad();
        assert!(!no_grad.leaf(randn(&[3], 1)).tanh().requires_grad());
    }

    /// Forward and backward of a chain of every op over > 32k elements.
    fn big_run() -> (Tensor, Tensor) {
        let x0 = randn(&[300, 128], 7);
        let tape = Tape::new();
        let x = tape.leaf(x0);
        let y =
            x.gelu() + x.sigmoid() * x.tanh() + x.softplus() + x.abs().sqrt() + x.relu().square()
                - x.exp().log().powf(3.0).neg();
        let seed = randn(&y.shape(), 8);
        let val = (*y.value()).clone();
        let g = tape.backward_with_seed(y, seed).wrt(x).unwrap();
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
        let (v1, g1) = in_pool(1);
        let (v2, g2) = in_pool(2);
        let (v3, g3) = big_run();
        let bits = |t: &Tensor| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&v1), bits(&v2));
        assert_eq!(bits(&g1), bits(&g2));
        assert_eq!(bits(&v1), bits(&v3));
        assert_eq!(bits(&g1), bits(&g3));
    }
}
