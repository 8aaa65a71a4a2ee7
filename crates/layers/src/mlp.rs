//! The multi-layer perceptron used for MMoE experts, towers and the blender's f(x).

use crate::{Activation, Dropout, ForwardCtx, Linear};
use closeup_autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Var};
use rand::Rng;

/// `Linear → activation → dropout` for each hidden size, then an optional output `Linear` with
/// no activation.
///
/// - An MMoE expert `[256, 256]` with ReLU and dropout 0.2: `Mlp::new(input, &[256, 256], None, Relu, 0.2)`.
/// - A tower `[128] → 1 logit`: `Mlp::new(480, &[128], Some(1), Relu, 0.0)`.
///
/// Parameter names: `layers.{i}.weight`, `layers.{i}.bias` (the output layer is the last `i`).
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
    dropout: Dropout,
    has_output: bool,
}

impl Mlp {
    /// An MLP from `inputs` features through `hidden` sizes, then (optionally) to `output`.
    ///
    /// # Panics
    /// If `dropout` is not in `[0, 1)`.
    pub fn new(
        inputs: usize,
        hidden: &[usize],
        output: Option<usize>,
        activation: Activation,
        dropout: f32,
        rng: &mut impl Rng,
    ) -> Self {
        let mut sizes = vec![inputs];
        sizes.extend_from_slice(hidden);
        sizes.extend(output);
        let layers = sizes
            .windows(2)
            .map(|w| Linear::new(w[0], w[1], rng))
            .collect();
        Mlp {
            layers,
            activation,
            dropout: Dropout::new(dropout),
            has_output: output.is_some(),
        }
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, Linear::inputs)
    }

    /// Number of output features (the input width when there is no layer at all).
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, Linear::outputs)
    }

    /// The linear layers, in order.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// Runs the MLP.
    ///
    /// # Shapes
    /// `[.., inputs] → [.., outputs]`.
    ///
    /// # Panics
    /// If the last axis of `x` is not `inputs`.
    pub fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> Var<'t> {
        self.forward_impl(x, None, ctx)
    }

    /// `after.forward(self.forward(x, ctx), ctx)` — e.g. a transformer block's FFN and the
    /// dropout before its residual add — with that dropout fused into the output layer
    /// ([`Linear::forward_act_dropout`]). Same values, gradients and RNG draws.
    ///
    /// # Shapes
    /// `[.., inputs] → [.., outputs]`.
    ///
    /// # Panics
    /// If the last axis of `x` is not `inputs`.
    pub fn forward_then_dropout<'t>(
        &self,
        x: Var<'t>,
        after: &Dropout,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        self.forward_impl(x, Some(after), ctx)
    }

    fn forward_impl<'t>(
        &self,
        mut x: Var<'t>,
        after: Option<&Dropout>,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        let hidden = self.layers.len() - usize::from(self.has_output);
        for (i, layer) in self.layers.iter().enumerate() {
            if i < hidden {
                x = layer.forward_act_dropout(x, self.activation, Some((&self.dropout, ctx)));
            } else {
                x = layer.forward_act_dropout(
                    x,
                    Activation::Identity,
                    after.map(|d| (d, &mut *ctx)),
                );
                return x;
            }
        }
        match after {
            Some(d) => d.forward(x, ctx),
            None => x,
        }
    }
}

impl Parameterized for Mlp {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("layers", &self.layers);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("layers", &mut self.layers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use rand::SeedableRng;

    #[test]
    fn shapes_names_and_counts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mlp = Mlp::new(10, &[8, 6], Some(1), Activation::Relu, 0.2, &mut rng);
        assert_eq!((mlp.inputs(), mlp.outputs()), (10, 1));
        assert_eq!(mlp.num_params(), 10 * 8 + 8 + 8 * 6 + 6 + 6 + 1);
        let names: Vec<_> = mlp.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "layers.0.weight");
        assert_eq!(names[5], "layers.2.bias");
        let tape = Tape::new();
        let mut ctx = ForwardCtx::eval(&mut rng);
        assert_eq!(
            mlp.forward(tape.constant(randn(&[3, 10], 1)), &mut ctx)
                .shape(),
            [3, 1]
        );
    }

    #[test]
    fn gradient_check_eval_and_fixed_dropout_mask() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for act in [Activation::Relu, Activation::Gelu, Activation::Tanh] {
            let mlp = Mlp::new(4, &[5, 3], Some(2), act, 0.3, &mut rng);
            let m = mlp.clone();
            assert_gradients(&[randn(&[6, 4], 3)], move |_, v| {
                let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
                m.forward(v[0], &mut ForwardCtx::eval(&mut r))
            });
            // Training mode: the same seed each evaluation gives the same dropout mask.
            let m = mlp.clone();
            assert_gradients(&[randn(&[6, 4], 4)], move |_, v| {
                let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(9);
                m.forward(v[0], &mut ForwardCtx::train(&mut r))
            });
        }
    }

    /// The layer-by-layer composition the fused forward replaces: `Linear → activation →
    /// Dropout` per hidden layer, the output layer, then `after`.
    fn composed<'t>(
        mlp: &Mlp,
        mut x: Var<'t>,
        after: Option<&Dropout>,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        let hidden = mlp.layers.len() - usize::from(mlp.has_output);
        for (i, layer) in mlp.layers.iter().enumerate() {
            x = if i < hidden {
                mlp.dropout
                    .forward(layer.forward_act(x, mlp.activation), ctx)
            } else {
                layer.forward(x)
            };
        }
        after.map_or(x, |d| d.forward(x, ctx))
    }

    #[test]
    fn fused_dropout_equals_the_layer_by_layer_composition() {
        use closeup_autograd::gradcheck::value_and_grads;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let after = Dropout::new(0.25);
        for act in [
            Activation::Relu,
            Activation::Gelu,
            Activation::Tanh,
            Activation::Identity,
        ] {
            for output in [Some(3), None] {
                let mlp = Mlp::new(6, &[7, 5], output, act, 0.3, &mut rng);
                for (training, then) in [(true, false), (true, true), (false, true)] {
                    let run = |fused: bool| {
                        let m = mlp.clone();
                        value_and_grads(&[randn(&[2, 4, 6], 6)], 1, move |_, v| {
                            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(9);
                            let mut ctx = if training {
                                ForwardCtx::train(&mut r)
                            } else {
                                ForwardCtx::eval(&mut r)
                            };
                            let y = match (fused, then) {
                                (true, true) => m.forward_then_dropout(v[0], &after, &mut ctx),
                                (true, false) => m.forward(v[0], &mut ctx),
                                (false, t) => composed(&m, v[0], t.then_some(&after), &mut ctx),
                            };
                            // The RNG is left in the same state (same number of draws).
                            let next = rand::RngCore::next_u32(ctx.rng()) as f32;
                            y + v[0].tape().constant(closeup_autograd::Tensor::from_elem(
                                ndarray::IxDyn(&[]),
                                next,
                            ))
                        })
                    };
                    assert_eq!(
                        run(true),
                        run(false),
                        "{act:?} output {output:?} training {training} then {then}"
                    );
                }
            }
        }
    }
}
