//! The fused affine layer `act(x · Wᵀ + b)`: one op instead of a matmul, a broadcast add and an
//! activation.
//!
//! The composed path makes three passes over the `[rows, out]` output and allocates three
//! buffers (the product, the sum, the activation) — and in the backward a copy of the gradient
//! for the bias add and one more buffer for the activation's gradient. Here the output buffer
//! is filled with the bias, the product is accumulated into it (`gemm` with `β = 1`: the same
//! pass that writes the product), and ReLU is applied in place; the backward masks the incoming
//! gradient in place and reads it for the bias sum and the two products. GELU's backward needs
//! its derivative at the pre-activation: when a gradient is needed the forward computes it
//! together with the activation (one evaluation of `Φ` and `φ` for both,
//! [`fastmath::gelu_and_grad`]) and keeps it in the pre-activation's buffer (one extra buffer, as
//! in the composed path, which keeps the pre-activation) — so the backward is one multiply per
//! element, with the same bits as evaluating the derivative there. Activation, derivative (and
//! dropout mask, [`Var::linear_dropout`]) run on each row chunk of a thin product right after
//! the chunk is computed (`kernels::gemm::affine_then`), so the pre-activation is not written to
//! memory and read back by a separate pass.
//!
//! The result equals the composed `x.matmul_t(w) + b` followed by the activation up to float
//! rounding (`gemm` adds the bias before the partial sums of the inner dimension instead of
//! after); the tests compare both paths and check the gradients by finite differences.

use super::dropout::Mask;
use super::matmul::add_product;
use crate::kernels::gemm::{affine, affine_then};
use crate::kernels::{fastmath, use_parallel};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{ArrayView2, Ix1, Ix2, IxDyn};
use rayon::prelude::*;
use std::sync::Arc;

/// The activation fused into [`Var::linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearAct {
    /// No activation: `x · Wᵀ + b`.
    Identity,
    /// `max(·, 0)` (NaN propagates, as [`Var::relu`]).
    Relu,
    /// The exact (erf) GELU, as [`Var::gelu`].
    Gelu,
}

/// Elements per parallel task of the in-place loops.
const CHUNK: usize = 1 << 14;

/// ReLU in place, with the same `x < 0` test as [`Var::relu`].
fn relu_in_place(y: &mut [f32]) {
    let f = |c: &mut [f32]| {
        // An unconditional select (not a conditional store), so the loop vectorizes.
        for v in c {
            *v = relu(*v);
        }
    };
    if use_parallel(y.len()) {
        y.par_chunks_mut(CHUNK).for_each(f);
    } else {
        f(y);
    }
}

/// `f(&mut g[i], y[i])` for every element, by the pool when large (same lengths).
fn zip_in_place(g: &mut [f32], y: &[f32], f: impl Fn(&mut f32, f32) + Copy + Send + Sync) {
    let run = |(g, y): (&mut [f32], &[f32])| {
        for (g, &y) in g.iter_mut().zip(y) {
            f(g, y);
        }
    };
    if use_parallel(g.len()) {
        g.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .for_each(run);
    } else {
        run((g, y));
    }
}

/// `g = g · scale` where the ReLU output `y` is positive, else 0: the gradient of [`Var::relu`]
/// (`scale = 1`, exact), or of ReLU followed by dropout when `y` is the masked output (its
/// kept elements are exactly the positive ones, and their factor is `scale`).
fn relu_mask_in_place(g: &mut [f32], y: &[f32], scale: f32) {
    // `y > 0` exactly where the input was > 0 (NaN gets no gradient, as in `relu`).
    zip_in_place(g, y, move |g, y| {
        *g = if y > 0.0 { *g * scale } else { 0.0 }
    });
}

/// ReLU with the same `x < 0` test (and NaN propagation) as [`Var::relu`].
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// `g = g · d` element-wise in place.
fn multiply_in_place(g: &mut [f32], d: &[f32]) {
    zip_in_place(g, d, |g, d| *g *= d);
}

/// GELU in place through a small stack buffer (the vectorized kernel needs distinct slices).
fn gelu_in_place(y: &mut [f32]) {
    let f = |c: &mut [f32]| {
        let mut tmp = [0.0_f32; 256];
        for block in c.chunks_mut(tmp.len()) {
            let t = &mut tmp[..block.len()];
            t.copy_from_slice(block);
            fastmath::gelu_slice(t, block);
        }
    };
    if use_parallel(y.len()) {
        y.par_chunks_mut(CHUNK).for_each(f);
    } else {
        f(y);
    }
}

/// `x` as `[rows, in]` (every tape value is in standard layout).
fn rows_view(x: &Tensor) -> ArrayView2<'_, f32> {
    let k = x.shape()[x.ndim() - 1];
    x.view()
        .into_shape_with_order((x.len() / k.max(1), k))
        .expect("tape values are in standard layout")
}

struct LinearBackward {
    x: usize,
    w: usize,
    b: Option<usize>,
    x_val: Arc<Tensor>,
    w_val: Arc<Tensor>,
    act: LinearAct,
    /// ReLU: the output (read by the mask); GELU: its derivative at the pre-activation;
    /// identity: nothing.
    saved: Option<Saved>,
    /// The dropout mask applied to the activation ([`Var::linear_dropout`]).
    dropout: Option<Mask>,
}

enum Saved {
    Output(super::unary::SavedOutput),
    /// `GELU'(z)` at the pre-activation `z`.
    Derivative(Tensor),
}

impl BackwardOp for LinearBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        self.backward_owned(g.clone(), sink);
    }

    fn backward_owned(&self, g: Tensor, sink: &mut GradSink<'_>) {
        let mut g = if g.is_standard_layout() {
            g
        } else {
            g.as_standard_layout().into_owned()
        };
        // dz = (dy ⊙ F) ⊙ act'(z) (F the dropout factors, if any), in the gradient's own buffer
        // where possible.
        let gs = g.as_slice_mut().expect("standard layout");
        let dz: Tensor = match (&self.saved, self.act, self.dropout) {
            (Some(Saved::Output(y)), LinearAct::Relu, None) => {
                relu_mask_in_place(gs, y.get().as_slice().expect("standard layout"), 1.0);
                g
            }
            (Some(Saved::Output(y)), LinearAct::Relu, Some(mask)) => {
                // The saved output is after the mask: > 0 exactly where the element was kept
                // and its input was > 0, and there the factor is the scale.
                let y = y.get();
                relu_mask_in_place(gs, y.as_slice().expect("standard layout"), mask.scale());
                g
            }
            (Some(Saved::Derivative(d)), LinearAct::Gelu, None) => {
                multiply_in_place(gs, d.as_slice().expect("standard layout"));
                g
            }
            (Some(Saved::Derivative(d)), LinearAct::Gelu, Some(mask)) => {
                let d = d.as_slice().expect("standard layout");
                mask.grad_in_place(gs, d, |d| d);
                g
            }
            (_, _, Some(mask)) => {
                mask.apply_in_place(gs);
                g
            }
            _ => g,
        };
        let dz2 = rows_view(&dz);
        let x2 = rows_view(&self.x_val);
        let w2 = self
            .w_val
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D weight");
        if let Some(b) = self.b
            && sink.wants(b)
        {
            // The same reduction (and order) as the composed broadcast add's backward.
            sink.add(b, crate::kernels::sum_rows(dz2.view()).into_dyn());
        }
        if sink.wants(self.w) {
            add_product(sink, self.w, dz2.t(), x2, self.w_val.shape());
        }
        if sink.wants(self.x) {
            add_product(sink, self.x, dz2, w2, self.x_val.shape());
        }
    }
}

impl<'t> Var<'t> {
    /// The fused affine layer `act(self · weightᵀ + bias)` over the last axis, with the weight
    /// stored `[out, in]` (the transpose is a strided view). Equal to
    /// `act(self.matmul_t(weight) + bias)` up to float rounding, in one pass over the output
    /// instead of three (see the module docs).
    ///
    /// # Shapes
    /// `self: [.., in]` (rank ≥ 1), `weight: [out, in]`, `bias: [out]` → `[.., out]`.
    ///
    /// # Panics
    /// If `weight` is not 2-D, the last axis of `self` is not `in`, `bias` is not `[out]`, or
    /// the operands belong to different tapes.
    pub fn linear(self, weight: Var<'t>, bias: Option<Var<'t>>, act: LinearAct) -> Var<'t> {
        self.linear_impl(weight, bias, act, None)
    }

    /// [`Var::linear`] followed by [`Var::dropout`] of rate `p`, as one op: the same values
    /// and gradients bit for bit (the same single `u64` drawn from `rng`, the same mask over
    /// the output's elements, the same arithmetic), with the activation and the mask applied
    /// in one pass over the output and, in the backward, the mask and the activation's
    /// derivative in one pass over the gradient. `p == 0` is [`Var::linear`] and draws
    /// nothing.
    ///
    /// The one exception to bit-equality: with ReLU, a dropped element whose gradient is
    /// infinite or NaN gets gradient 0 here (the composed path multiplies it by 0).
    ///
    /// # Shapes
    /// As [`Var::linear`].
    ///
    /// # Panics
    /// As [`Var::linear`], and if `p` is not in `[0, 1)`.
    pub fn linear_dropout<R: rand::Rng + ?Sized>(
        self,
        weight: Var<'t>,
        bias: Option<Var<'t>>,
        act: LinearAct,
        p: f32,
        rng: &mut R,
    ) -> Var<'t> {
        assert!(
            (0.0..1.0).contains(&p),
            "linear_dropout: p must be in [0, 1), got {p}"
        );
        if p == 0.0 {
            return self.linear(weight, bias, act);
        }
        let mask = Mask::new(p, rng.next_u64());
        self.linear_impl(weight, bias, act, Some(mask))
    }

    fn linear_impl(
        self,
        weight: Var<'t>,
        bias: Option<Var<'t>>,
        act: LinearAct,
        dropout: Option<Mask>,
    ) -> Var<'t> {
        self.same_tape(&weight, "linear");
        let (x_val, w_val) = (self.value(), weight.value());
        assert!(
            w_val.ndim() == 2
                && x_val.ndim() >= 1
                && x_val.shape()[x_val.ndim() - 1] == w_val.shape()[1],
            "linear: input shape {:?} does not match weight shape {:?} ([out, in])",
            x_val.shape(),
            w_val.shape()
        );
        let out = w_val.shape()[0];
        let b_val = bias.map(|b| {
            self.same_tape(&b, "linear");
            let v = b.value();
            assert_eq!(
                v.shape(),
                &[out],
                "linear: bias shape {:?} vs weight shape {:?}",
                v.shape(),
                w_val.shape()
            );
            v
        });
        let w2 = w_val.view().into_dimensionality::<Ix2>().expect("2-D");
        let b1 = b_val
            .as_deref()
            .map(|b| b.view().into_dimensionality::<Ix1>().expect("1-D bias"));
        let mut out_shape = x_val.shape().to_vec();
        *out_shape.last_mut().expect("rank ≥ 1") = out;
        let shaped = |y2: ndarray::Array2<f32>| {
            y2.into_shape_with_order(IxDyn(&out_shape))
                .expect("same element count")
        };
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let needs_grad = inputs.iter().any(|v| v.requires_grad());
        // GELU with a gradient (the transformer's FFN): the activation, the mask if any and
        // the derivative run on each row chunk of the product right after it is computed (in
        // cache), writing the output and `GELU'(z)` over `z`.
        let (mut y, fused_gelu) = if act == LinearAct::Gelu && needs_grad {
            #[allow(unsafe_code)]
            // SAFETY: both `map_keep_chunk` and `gelu_and_grad_slice` write every element of
            // `out` (their contracts).
            let (d, a) = unsafe {
                affine_then(rows_view(&x_val), w2, b1, |start, z, out| match dropout {
                    Some(mask) => mask.map_keep_chunk(start, z, out, fastmath::gelu_and_grad),
                    None => fastmath::gelu_and_grad_slice(z, out),
                })
            };
            (shaped(d), Some(a))
        } else {
            (shaped(affine(rows_view(&x_val), w2, b1)), None)
        };
        let make = |saved| LinearBackward {
            x: self.id,
            w: weight.id,
            b: bias.map(|b| b.id),
            x_val,
            w_val,
            act,
            saved,
            dropout,
        };
        if let Some(a) = fused_gelu {
            let a = Tensor::from_shape_vec(y.raw_dim(), a).expect("same element count");
            return self
                .tape
                .record(&inputs, a, || make(Some(Saved::Derivative(y))));
        }
        if let Some(mask) = dropout {
            return match act {
                LinearAct::Identity => {
                    mask.apply_in_place(y.as_slice_mut().expect("standard layout"));
                    self.tape.record(&inputs, y, || make(None))
                }
                LinearAct::Relu => {
                    mask.map_in_place(y.as_slice_mut().expect("standard layout"), relu);
                    super::unary::record_with_output(self.tape, &inputs, y, |s| {
                        make(Some(Saved::Output(s)))
                    })
                }
                // (With a gradient: above.)
                LinearAct::Gelu => {
                    mask.map_in_place(y.as_slice_mut().expect("standard layout"), fastmath::gelu);
                    self.tape.record(&inputs, y, || make(None))
                }
            };
        }
        match act {
            LinearAct::Identity => self.tape.record(&inputs, y, || make(None)),
            LinearAct::Relu => {
                relu_in_place(y.as_slice_mut().expect("standard layout"));
                super::unary::record_with_output(self.tape, &inputs, y, |s| {
                    make(Some(Saved::Output(s)))
                })
            }
            LinearAct::Gelu => {
                gelu_in_place(y.as_slice_mut().expect("standard layout"));
                self.tape.record(&inputs, y, || make(None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LinearAct;
    use crate::Tape;
    use crate::gradcheck::{assert_gradients, randn, value_and_grads};

    const ACTS: [LinearAct; 3] = [LinearAct::Identity, LinearAct::Relu, LinearAct::Gelu];

    fn composed<'t>(
        x: crate::Var<'t>,
        w: crate::Var<'t>,
        b: Option<crate::Var<'t>>,
        act: LinearAct,
    ) -> crate::Var<'t> {
        let z = x.matmul_t(w);
        let z = match b {
            Some(b) => z + b,
            None => z,
        };
        match act {
            LinearAct::Identity => z,
            LinearAct::Relu => z.relu(),
            LinearAct::Gelu => z.gelu(),
        }
    }

    fn close(a: &crate::Tensor, b: &crate::Tensor, tol: f32) {
        assert_eq!(a.shape(), b.shape());
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn fused_matches_composed_values_and_gradients() {
        // 2-D and 3-D inputs, with and without bias, every activation, on the tape with
        // gradients and without.
        for (xs, out, seed) in [
            (vec![7, 5], 6, 1),
            (vec![3, 4, 5], 6, 2),
            (vec![300, 70], 33, 3),
        ] {
            let w = randn(&[out, xs[xs.len() - 1]], seed + 10);
            let b = randn(&[out], seed + 20);
            let x = randn(&xs, seed);
            for act in ACTS {
                for with_bias in [true, false] {
                    let inputs = if with_bias {
                        vec![x.clone(), w.clone(), b.clone()]
                    } else {
                        vec![x.clone(), w.clone()]
                    };
                    let (fv, fg) = value_and_grads(&inputs, 5, move |_, v| {
                        v[0].linear(v[1], v.get(2).copied(), act)
                    });
                    let (sv, sg) = value_and_grads(&inputs, 5, move |_, v| {
                        composed(v[0], v[1], v.get(2).copied(), act)
                    });
                    close(&fv, &sv, 1e-5);
                    for (a, b) in fg.iter().zip(&sg) {
                        close(a, b, 1e-4);
                    }
                    // No-grad tape: in-place activation, same values.
                    let tape = Tape::no_grad();
                    let vs: Vec<_> = inputs.iter().map(|t| tape.constant(t.clone())).collect();
                    let y = vs[0].linear(vs[1], vs.get(2).copied(), act);
                    let want = composed(vs[0], vs[1], vs.get(2).copied(), act);
                    close(&y.value(), &want.value(), 1e-5);
                }
            }
        }
    }

    #[test]
    fn linear_dropout_equals_linear_then_dropout_bit_for_bit() {
        use rand::SeedableRng;
        // Below and above the parallel threshold (300 · 200 elements), rank 2 and 3, every
        // activation, with and without bias, on 1 and 2 threads; `[2, 520, 64] → 256` is a
        // thin product (on AVX-512 CPUs), where GELU with dropout runs on each row chunk.
        for (xs, out, seed) in [
            (vec![3, 4, 5], 6, 1),
            (vec![300, 70], 200, 2),
            (vec![2, 520, 64], 256, 3),
        ] {
            let w = randn(&[out, xs[xs.len() - 1]], seed + 10);
            let b = randn(&[out], seed + 20);
            let x = randn(&xs, seed);
            for act in ACTS {
                for (with_bias, p) in [(true, 0.3), (false, 0.3), (true, 0.0)] {
                    let inputs = if with_bias {
                        vec![x.clone(), w.clone(), b.clone()]
                    } else {
                        vec![x.clone(), w.clone()]
                    };
                    let run = |fused: bool, threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        pool.install(|| {
                            value_and_grads(&inputs, 5, move |_, v| {
                                let mut rng = rand::rngs::StdRng::seed_from_u64(7);
                                let (bias, y) = (v.get(2).copied(), v[0]);
                                let out = if fused {
                                    y.linear_dropout(v[1], bias, act, p, &mut rng)
                                } else {
                                    y.linear(v[1], bias, act).dropout(p, &mut rng)
                                };
                                // The same RNG state afterwards: one draw (none for p = 0).
                                out + v[0].tape().constant(crate::Tensor::from_elem(
                                    ndarray::IxDyn(&[]),
                                    rand::Rng::random::<f32>(&mut rng),
                                ))
                            })
                        })
                    };
                    let want = run(false, 1);
                    let what = format!("{xs:?} {act:?} bias {with_bias} p {p}");
                    assert_eq!(run(true, 1), want, "{what}");
                    assert_eq!(run(true, 2), want, "{what}, 2 threads");
                }
            }
        }
    }

    #[test]
    fn linear_dropout_gradient_checks() {
        use rand::SeedableRng;
        for act in ACTS {
            let x = randn(&[4, 3, 5], 7) * 0.3;
            let w = randn(&[4, 5], 8) * 0.3;
            let b = ndarray::array![2.0_f32, -2.0, 2.5, -2.5].into_dyn();
            assert_gradients(&[x, w, b], move |_, v| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(3);
                v[0].linear_dropout(v[1], Some(v[2]), act, 0.4, &mut rng)
            });
        }
    }

    #[test]
    fn linear_gradient_checks_on_the_thin_product_path() {
        // 1040 rows and widths of 16 / 32: on AVX-512 CPUs the forward (`x · Wᵀ + b`, with a
        // transposed copy of W) and the input gradient (`dY · W`) run on kernels/thin.rs.
        for act in ACTS {
            // Biases ±2 keep the 16 640 pre-activations away from ReLU's kink.
            let x = randn(&[1040, 32], 11) * 0.3;
            let w = randn(&[16, 32], 12) * 0.1;
            let b = crate::Tensor::from_shape_fn(ndarray::IxDyn(&[16]), |i| {
                if i[0] % 2 == 0 { 2.0 } else { -2.0 }
            });
            assert_gradients(&[x, w, b], move |_, v| v[0].linear(v[1], Some(v[2]), act));
        }
    }

    #[test]
    #[should_panic(expected = "linear_dropout: p must be in [0, 1), got 1")]
    fn linear_dropout_p_one_panics() {
        let tape = Tape::new();
        let x = tape.constant(randn(&[2, 3], 1));
        let w = tape.constant(randn(&[4, 3], 2));
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let _ = x.linear_dropout(w, None, LinearAct::Relu, 1.0, &mut rng);
    }

    #[test]
    fn gradient_checks() {
        for act in ACTS {
            let x = randn(&[4, 3, 5], 7) * 0.3;
            let w = randn(&[4, 5], 8) * 0.3;
            // Pre-activations away from the ReLU kink (the finite differences would straddle
            // it): a bias of ±2 dominates the small products, two units on each side.
            let b = ndarray::array![2.0_f32, -2.0, 2.5, -2.5].into_dyn();
            assert_gradients(&[x.clone(), w.clone(), b], move |_, v| {
                v[0].linear(v[1], Some(v[2]), act)
            });
            if act != LinearAct::Relu {
                assert_gradients(&[x, w], move |_, v| v[0].linear(v[1], None, act));
            }
        }
    }

    #[test]
    fn relu_propagates_nan_like_the_unary_op() {
        let tape = Tape::no_grad();
        let x = tape.constant(ndarray::array![[-2.0_f32, 1.0]].into_dyn());
        let w = tape.constant(ndarray::array![[1.0_f32, 0.0], [0.0, 1.0]].into_dyn());
        let b = tape.constant(ndarray::array![f32::NAN, 0.0].into_dyn());
        let y = x.linear(w, Some(b), LinearAct::Relu).value();
        assert!(y[[0, 0]].is_nan());
        assert_eq!(y[[0, 1]], 1.0);
        let y = x.linear(w, None, LinearAct::Relu).value();
        assert_eq!(y.as_slice().unwrap(), &[0.0, 1.0]);
    }

    #[test]
    #[should_panic(expected = "linear: input shape [2, 3] does not match weight shape [4, 5]")]
    fn mismatch_panics_with_both_shapes() {
        let tape = Tape::new();
        let _ = tape.constant(randn(&[2, 3], 1)).linear(
            tape.constant(randn(&[4, 5], 2)),
            None,
            LinearAct::Identity,
        );
    }
}
