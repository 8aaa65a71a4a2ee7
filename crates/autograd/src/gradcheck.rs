//! Finite-difference gradient checks, used by every op's and layer's tests (here and in the
//! crates above).
//!
//! A *directional* check: for a function `f` of several tensors, pick a fixed random projection
//! `r` of the output and random directions `d_i` of the inputs; compare the analytic directional
//! derivative `Σ_i ⟨∇_i ⟨r, f⟩, d_i⟩` from [`crate::Tape::backward_with_seed`] with the central
//! difference `(⟨r, f(x + εd)⟩ − ⟨r, f(x − εd)⟩) / 2ε`, evaluated in f32 and summed in f64. Each
//! input is checked on its own (the others held fixed) so a failure names the input.

use crate::{Tape, Tensor, Var};
use ndarray::IxDyn;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Settings of a directional gradient check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheck {
    /// Finite-difference step.
    pub eps: f32,
    /// Relative tolerance on the directional derivative.
    pub rtol: f64,
    /// Absolute tolerance on the directional derivative.
    pub atol: f64,
    /// Random directions tried per input.
    pub directions: usize,
    /// Seed of the projection and the directions.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 2e-3,
            rtol: 2e-2,
            atol: 2e-3,
            directions: 3,
            seed: 0x5eed,
        }
    }
}

/// A tensor of standard-normal entries from a seeded RNG (test helper).
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Tensor::from_shape_simple_fn(IxDyn(shape), || StandardNormal.sample(&mut rng))
}

fn project(out: &Tensor, r: &Tensor) -> f64 {
    out.iter()
        .zip(r.iter())
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

impl GradCheck {
    /// Runs the check; `Err` carries a readable report of the first failing input/direction.
    pub fn run<F>(&self, inputs: &[Tensor], f: F) -> Result<(), String>
    where
        F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
    {
        let tape = Tape::new();
        let vars: Vec<Var<'_>> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
        let out = f(&tape, &vars);
        let out_val = out.value();
        let r = randn(out_val.shape(), self.seed);
        if !out.requires_grad() {
            return Err("the output does not depend on any input".into());
        }
        let grads = tape.backward_with_seed(out, r.clone());
        let eval = |xs: &[Tensor]| -> f64 {
            let tape = Tape::no_grad();
            let vars: Vec<Var<'_>> = xs.iter().map(|x| tape.constant(x.clone())).collect();
            project(&f(&tape, &vars).value(), &r)
        };
        for (i, x) in inputs.iter().enumerate() {
            let g = grads
                .wrt(vars[i])
                .unwrap_or_else(|| Tensor::zeros(x.raw_dim()));
            for k in 0..self.directions {
                let d = randn(
                    x.shape(),
                    self.seed ^ ((1 + i as u64) * 7919) ^ ((k as u64) << 32),
                );
                let analytic: f64 = g
                    .iter()
                    .zip(d.iter())
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                let scale: f64 = g
                    .iter()
                    .zip(d.iter())
                    .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                    .sum();
                let mut plus = inputs.to_vec();
                let mut minus = inputs.to_vec();
                plus[i] = x + &(&d * self.eps);
                minus[i] = x - &(&d * self.eps);
                let numeric = (eval(&plus) - eval(&minus)) / (2.0 * f64::from(self.eps));
                let err = (numeric - analytic).abs();
                let tol =
                    self.atol + self.rtol * numeric.abs().max(analytic.abs()).max(0.05 * scale);
                let within = err <= tol; // false for NaN too
                if !within {
                    return Err(format!(
                        "input {i} (shape {:?}), direction {k}: analytic {analytic:.6e}, \
                         finite difference {numeric:.6e}, |error| {err:.3e} > tolerance {tol:.3e}",
                        x.shape()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The value of `f` at `inputs` and the gradient of `⟨randn(seed), f⟩` with respect to each
/// input — the pieces a test needs to compare a fused op with its composed slow path, or two
/// runs bit for bit.
pub fn value_and_grads<F>(inputs: &[Tensor], seed: u64, f: F) -> (Tensor, Vec<Tensor>)
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&tape, &vars);
    let val = (*out.value()).clone();
    let grads = tape.backward_with_seed(out, randn(val.shape(), seed));
    let gs = vars
        .iter()
        .map(|&v| {
            grads
                .wrt(v)
                .unwrap_or_else(|| Tensor::zeros(v.value().raw_dim()))
        })
        .collect();
    (val, gs)
}

/// Panics with a report unless `f`'s gradients pass a default [`GradCheck`].
///
/// # Panics
/// When the analytic and finite-difference directional derivatives disagree.
pub fn assert_gradients<F>(inputs: &[Tensor], f: F)
where
    F: for<'t> Fn(&'t Tape, &[Var<'t>]) -> Var<'t>,
{
    if let Err(report) = GradCheck::default().run(inputs, f) {
        panic!("gradient check failed: {report}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_wrong_gradient() {
        // A deliberately wrong op: forward x*x, backward claims x (should be 2x).
        use crate::tape::{BackwardOp, GradSink};
        use std::sync::Arc;
        struct Wrong {
            x: usize,
            v: Arc<Tensor>,
        }
        impl BackwardOp for Wrong {
            fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
                sink.add(self.x, g * &*self.v);
            }
        }
        let res = GradCheck::default().run(&[randn(&[3, 2], 1)], |tape, v| {
            let val = v[0].value();
            let out = &*val * &*val;
            let x = v[0];
            tape.record(&[x], out, || Wrong {
                x: x.id,
                v: val.clone(),
            })
        });
        assert!(res.is_err(), "a wrong backward must be caught");
    }
}
