//! The composed (unfused) path of [`Var::multi_head_attention`]: the reference the fused op is
//! tested and benchmarked against.

use super::check_args;
use crate::Var;
use ndarray::{ArrayD, IxDyn};

impl<'t> Var<'t> {
    /// The composed (unfused) path of [`Var::multi_head_attention`], op by op: head split
    /// (reshape + permute), queries scaled by `1/√d_h`, batched `Q·Kᵀ`, masked softmax with the
    /// mask repeated per head, [`Var::dropout`], batched `·V`, head merge. Same arguments, same
    /// RNG draws and the same result up to float rounding; slower and with several
    /// `[B·H, L, L]` intermediates on the tape. It is the reference the fused op is tested and
    /// benchmarked against.
    ///
    /// # Shapes
    /// As [`Var::multi_head_attention`].
    ///
    /// # Panics
    /// As [`Var::multi_head_attention`].
    pub fn multi_head_attention_composed<R: rand::Rng + ?Sized>(
        self,
        k: Var<'t>,
        v: Var<'t>,
        heads: usize,
        key_mask: Option<&ArrayD<bool>>,
        dropout_p: f32,
        rng: &mut R,
    ) -> Var<'t> {
        let (b, l, d) = check_args(self, k, v, heads, key_mask, dropout_p);
        let dh = d / heads;
        let split = |x: Var<'t>| {
            x.reshape(&[b, l, heads, dh])
                .permute(&[0, 2, 1, 3])
                .reshape(&[b * heads, l, dh])
        };
        let scores = split(self)
            .mul_scalar(1.0 / (dh as f32).sqrt())
            .matmul_t(split(k));
        let w = match key_mask {
            Some(m) => {
                let per_head = m
                    .as_standard_layout()
                    .into_shape_with_order(IxDyn(&[b, 1, l]))
                    .expect("same number of elements")
                    .broadcast(IxDyn(&[b, heads, l]))
                    .expect("[B, 1, L] → [B, H, L]")
                    .as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(&[b * heads, 1, l]))
                    .expect("same number of elements");
                scores.masked_softmax(&per_head)
            }
            None => scores.softmax(2),
        };
        w.dropout(dropout_p, rng)
            .matmul(split(v))
            .reshape(&[b, heads, l, dh])
            .permute(&[0, 2, 1, 3])
            .reshape(&[b, l, d])
    }
}
