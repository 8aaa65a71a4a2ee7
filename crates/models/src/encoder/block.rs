//! One pre-LN transformer encoder block.

use closeup_autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Var};
use closeup_layers::{Activation, Dropout, ForwardCtx, LayerNorm, Mlp, MultiHeadAttention};
use ndarray::ArrayD;
use rand::Rng;

/// A pre-LN transformer block (Xiong et al. 2020; PyTorch's `norm_first=True`):
/// `x + Dropout(Attn(LN₁(x)))`, then `x + Dropout(FFN(LN₂(x)))` with a GELU FFN
/// `d → ffn_hidden → d` (dropout after the GELU, as PyTorch's encoder layer).
///
/// Parameter names: `ln1.*`, `attn.{q,k,v,out}.*`, `ln2.*`, `ffn.layers.{0,1}.*`.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    ln1: LayerNorm,
    attn: MultiHeadAttention,
    ln2: LayerNorm,
    ffn: Mlp,
    dropout: Dropout,
}

impl TransformerBlock {
    /// A block of width `d_model` with `heads` heads, FFN width `ffn_hidden` and dropout `p`.
    ///
    /// # Panics
    /// If `d_model` is not divisible by `heads` or `dropout` is not in `[0, 1)`.
    pub fn new(
        d_model: usize,
        heads: usize,
        ffn_hidden: usize,
        dropout: f32,
        rng: &mut impl Rng,
    ) -> Self {
        TransformerBlock {
            ln1: LayerNorm::new(d_model),
            attn: MultiHeadAttention::new(d_model, heads, dropout, rng),
            ln2: LayerNorm::new(d_model),
            ffn: Mlp::new(
                d_model,
                &[ffn_hidden],
                Some(d_model),
                Activation::Gelu,
                dropout,
                rng,
            ),
            dropout: Dropout::new(dropout),
        }
    }

    /// Runs the block.
    ///
    /// # Shapes
    /// `x: [B, L, D]`, `key_mask: [B, L]` (true = real token) → `[B, L, D]`. Outputs at padded
    /// positions are meaningless (mask them downstream); they never reach real positions.
    ///
    /// # Panics
    /// If `x` is not `[B, L, D]` or the mask is not `[B, L]`.
    pub fn forward<'t>(
        &self,
        x: Var<'t>,
        key_mask: &ArrayD<bool>,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        let a = self.attn.forward(self.ln1.forward(x), Some(key_mask), ctx);
        let x = x + self.dropout.forward(a, ctx);
        // The FFN's output layer and the residual dropout as one op.
        x + self
            .ffn
            .forward_then_dropout(self.ln2.forward(x), &self.dropout, ctx)
    }
}

impl Parameterized for TransformerBlock {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("ln1", &self.ln1);
        v.child("attn", &self.attn);
        v.child("ln2", &self.ln2);
        v.child("ffn", &self.ffn);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("ln1", &mut self.ln1);
        v.child("attn", &mut self.attn);
        v.child("ln2", &mut self.ln2);
        v.child("ffn", &mut self.ffn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use rand::SeedableRng;

    #[test]
    fn shapes_names_gradients_and_padding() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let block = TransformerBlock::new(8, 2, 16, 0.1, &mut rng);
        let names: Vec<_> = block.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "ln1.gamma");
        assert!(names.contains(&"attn.q.weight".to_string()));
        assert!(names.contains(&"ffn.layers.1.bias".to_string()));
        // 2 LNs + 4 projections + FFN.
        let d = 8;
        assert_eq!(
            block.num_params(),
            4 * d + 4 * (d * d + d) + (d * 16 + 16) + (16 * d + d)
        );
        let mask = ndarray::array![[true, true, false], [false, false, false]].into_dyn();
        let (b, m) = (block.clone(), mask.clone());
        assert_gradients(&[randn(&[2, 3, 8], 1)], move |_, v| {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            b.forward(v[0], &m, &mut ForwardCtx::eval(&mut r))
        });
        // Padded positions do not affect real ones.
        let x1 = randn(&[2, 3, 8], 2);
        let mut x2 = x1.clone();
        x2.slice_mut(ndarray::s![0, 2, ..]).fill(50.0);
        let tape = Tape::no_grad();
        let mut ctx = ForwardCtx::eval(&mut rng);
        let y1 = block.forward(tape.constant(x1), &mask, &mut ctx).value();
        let y2 = block.forward(tape.constant(x2), &mask, &mut ctx).value();
        let (a, b) = (
            y1.slice(ndarray::s![0, ..2, ..]),
            y2.slice(ndarray::s![0, ..2, ..]),
        );
        assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-5));
        assert!(y1.iter().all(|v| v.is_finite()));
    }
}
