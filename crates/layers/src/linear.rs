//! The affine layer `y = x · Wᵀ + b`.

use crate::{Activation, Dropout, ForwardCtx, init};
use closeup_autograd::{
    LinearAct, Param, ParamVisitor, ParamVisitorMut, Parameterized, Tensor, Var,
};
use rand::Rng;

/// A fully connected layer with weights stored `[out, in]` (PyTorch's layout) and an optional
/// bias `[out]`.
///
/// Initialisation: PyTorch's default, `W, b ~ U(-1/√in, 1/√in)`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
}

impl Linear {
    /// A layer from `inputs` to `outputs` features, with a bias.
    pub fn new(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        Self::with_bias(inputs, outputs, true, rng)
    }

    /// A layer with or without a bias.
    pub fn with_bias(inputs: usize, outputs: usize, bias: bool, rng: &mut impl Rng) -> Self {
        let weight = Param::new(init::linear_default(&[outputs, inputs], inputs, rng));
        let bias = bias.then(|| Param::new(init::linear_default(&[outputs], inputs, rng)));
        Linear { weight, bias }
    }

    /// A layer with the given weights `[out, in]` and optional bias `[out]`.
    ///
    /// # Panics
    /// If `weight` is not 2-D or the bias length differs from `out`.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        assert_eq!(
            weight.ndim(),
            2,
            "Linear::from_weights: weight shape {:?} is not [out, in]",
            weight.shape()
        );
        if let Some(b) = &bias {
            assert_eq!(
                b.shape(),
                &[weight.shape()[0]],
                "Linear::from_weights: bias shape {:?} vs weight shape {:?}",
                b.shape(),
                weight.shape()
            );
        }
        Linear {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
        }
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Number of output features.
    pub fn outputs(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// `x · Wᵀ + b` over the last axis (the transpose is a strided view, not a copy), as one
    /// fused op ([`Var::linear`]): the bias is written into the output before the product is
    /// accumulated onto it.
    ///
    /// # Shapes
    /// `[.., in] → [.., out]` (any number of leading axes, including none beyond the batch).
    ///
    /// # Panics
    /// If the last axis of `x` is not `in`.
    pub fn forward<'t>(&self, x: Var<'t>) -> Var<'t> {
        self.forward_act(x, Activation::Identity)
    }

    /// `act(x · Wᵀ + b)`. ReLU, GELU and the identity are fused into the affine op
    /// ([`Var::linear`]: one pass over the output, ReLU in place); the other activations are
    /// applied after it.
    ///
    /// # Shapes
    /// `[.., in] → [.., out]`.
    ///
    /// # Panics
    /// If the last axis of `x` is not `in`.
    pub fn forward_act<'t>(&self, x: Var<'t>, act: Activation) -> Var<'t> {
        self.forward_act_dropout(x, act, None)
    }

    /// `dropout(act(x · Wᵀ + b))`: [`Linear::forward_act`] then `dropout`'s forward, with the
    /// activation and the mask fused into the affine op when they can be
    /// ([`Var::linear_dropout`]: one pass over the output and one over its gradient instead of
    /// two each). The values, gradients and RNG draws are those of the two layers in a row.
    ///
    /// # Shapes
    /// `[.., in] → [.., out]`.
    ///
    /// # Panics
    /// If the last axis of `x` is not `in`.
    pub fn forward_act_dropout<'t>(
        &self,
        x: Var<'t>,
        act: Activation,
        dropout: Option<(&Dropout, &mut ForwardCtx<'_>)>,
    ) -> Var<'t> {
        let shape = x.shape();
        assert!(
            shape.last() == Some(&self.inputs()),
            "Linear::forward: input shape {shape:?} does not end in {} features (weight shape {:?})",
            self.inputs(),
            self.weight.shape()
        );
        let tape = x.tape();
        let w = tape.param(&self.weight);
        let b = self.bias.as_ref().map(|b| tape.param(b));
        let fused = match act {
            Activation::Identity => LinearAct::Identity,
            Activation::Relu => LinearAct::Relu,
            Activation::Gelu => LinearAct::Gelu,
            Activation::Tanh | Activation::Sigmoid => {
                let y = act.apply(x.linear(w, b, LinearAct::Identity));
                return match dropout {
                    Some((d, ctx)) => d.forward(y, ctx),
                    None => y,
                };
            }
        };
        match dropout {
            Some((d, ctx)) if ctx.is_training() && d.p() > 0.0 => {
                let mut rng = ctx.rng();
                x.linear_dropout(w, b, fused, d.p(), &mut rng)
            }
            _ => x.linear(w, b, fused),
        }
    }
}

impl Parameterized for Linear {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.param("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.param("weight", &mut self.weight);
        if let Some(b) = &mut self.bias {
            v.param("bias", b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use rand::SeedableRng;

    #[test]
    fn shapes_and_values() {
        let layer = Linear::from_weights(
            ndarray::array![[1.0_f32, 2.0], [0.0, -1.0], [3.0, 0.5]].into_dyn(),
            Some(ndarray::array![0.5_f32, 0.0, -1.0].into_dyn()),
        );
        let tape = Tape::new();
        let y = layer.forward(tape.constant(ndarray::array![[1.0_f32, 1.0]].into_dyn()));
        assert_eq!(*y.value(), ndarray::array![[3.5_f32, -1.0, 2.5]].into_dyn());
        for shape in [vec![4, 2], vec![3, 5, 2], vec![2, 3, 4, 2], vec![1, 2]] {
            let mut want = shape.clone();
            *want.last_mut().unwrap() = 3;
            assert_eq!(layer.forward(tape.constant(randn(&shape, 1))).shape(), want);
        }
        assert_eq!(layer.num_params(), 9);
        let names: Vec<_> = layer.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["weight", "bias"]);
    }

    #[test]
    fn gradient_check_through_input_weight_and_bias() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let layer = Linear::new(5, 4, &mut rng);
        let (w, b) = (
            layer.weight().value().clone(),
            layer.bias().unwrap().value().clone(),
        );
        for shape in [vec![3, 5], vec![1, 5], vec![2, 3, 5], vec![2, 1, 2, 5]] {
            assert_gradients(&[randn(&shape, 2), w.clone(), b.clone()], |_, v| {
                let rows: usize = shape[..shape.len() - 1].iter().product();
                let mut out = shape.clone();
                *out.last_mut().unwrap() = 4;
                v[0].reshape(&[rows, 5])
                    .matmul_t(v[1])
                    .add(v[2])
                    .reshape(&out)
            });
            // The layer itself: check the input gradient through `forward`.
            let l = layer.clone();
            assert_gradients(&[randn(&shape, 4)], move |_, v| l.forward(v[0]));
        }
    }

    #[test]
    fn fused_activations_match_the_composed_layer() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let layer = Linear::new(6, 5, &mut rng);
        let x = randn(&[7, 6], 5);
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            let tape = Tape::new();
            let xv = tape.constant(x.clone());
            let w = tape.param(layer.weight());
            let b = tape.param(layer.bias().unwrap());
            let slow = act.apply(xv.matmul_t(w) + b).value();
            let fast = layer.forward_act(xv, act).value();
            for (f, s) in fast.iter().zip(slow.iter()) {
                assert!((f - s).abs() < 1e-6, "{act:?}: {f} vs {s}");
            }
            let l = layer.clone();
            assert_gradients(std::slice::from_ref(&x), move |_, v| {
                l.forward_act(v[0], act)
            });
        }
    }

    #[test]
    #[should_panic(expected = "does not end in 5 features")]
    fn wrong_width_panics_with_both_shapes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let layer = Linear::new(5, 4, &mut rng);
        let tape = Tape::new();
        layer.forward(tape.constant(randn(&[2, 3], 1)));
    }
}
