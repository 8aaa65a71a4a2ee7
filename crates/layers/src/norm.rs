//! Layer normalization over the last axis, with a learned scale and shift.

use closeup_autograd::{Param, ParamVisitor, ParamVisitorMut, Parameterized, Tensor, Var};
use ndarray::IxDyn;

/// `LayerNorm(x) = (x − mean) / √(var + eps) · gamma + beta` over the last axis (one fused op
/// with an analytic backward in the engine). `gamma` starts at 1, `beta` at 0.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gamma: Param,
    beta: Param,
    eps: f32,
}

impl LayerNorm {
    /// A layer norm over `dim` features with `eps = 1e-5` (PyTorch's default).
    pub fn new(dim: usize) -> Self {
        LayerNorm {
            gamma: Param::new(Tensor::ones(IxDyn(&[dim]))),
            beta: Param::new(Tensor::zeros(IxDyn(&[dim]))),
            eps: 1e-5,
        }
    }

    /// Number of normalized features.
    pub fn dim(&self) -> usize {
        self.gamma.shape()[0]
    }

    /// Normalizes over the last axis.
    ///
    /// # Shapes
    /// `[.., dim] → [.., dim]`.
    ///
    /// # Panics
    /// If the last axis is not `dim`.
    pub fn forward<'t>(&self, x: Var<'t>) -> Var<'t> {
        let shape = x.shape();
        assert!(
            shape.last() == Some(&self.dim()),
            "LayerNorm::forward: input shape {shape:?} does not end in {} features",
            self.dim()
        );
        let tape = x.tape();
        x.layer_norm(tape.param(&self.gamma), tape.param(&self.beta), self.eps)
    }
}

impl Parameterized for LayerNorm {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.param("gamma", &self.gamma);
        v.param("beta", &self.beta);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.param("gamma", &mut self.gamma);
        v.param("beta", &mut self.beta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};

    #[test]
    fn normalizes_rows_and_checks_gradients() {
        let ln = LayerNorm::new(6);
        let tape = Tape::new();
        let y = ln.forward(tape.constant(randn(&[4, 6], 1) * 3.0 + 2.0));
        for row in y.value().outer_iter() {
            let mean = row.mean().unwrap();
            let var = row.mapv(|v| (v - mean) * (v - mean)).mean().unwrap();
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "mean {mean} var {var}"
            );
        }
        let l = ln.clone();
        assert_gradients(&[randn(&[2, 3, 6], 2)], move |_, v| l.forward(v[0]));
        assert_eq!(ln.num_params(), 12);
    }
}
