//! Attention: multi-head self-attention with a key-padding mask, and target attention (one
//! query vector, e.g. the candidate pin, pooling a sequence).

use crate::{Dropout, ForwardCtx, Linear};
use closeup_autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Tape, Var};
use ndarray::{ArrayD, IxDyn};
use rand::Rng;

/// The `[B, 1, 1, L]` (or `[B, 1, L]`) boolean keep-mask of a `[B, L]` key-padding mask.
fn broadcastable_key_mask(
    mask: &ArrayD<bool>,
    batch: usize,
    len: usize,
    rank: usize,
) -> ArrayD<bool> {
    assert_eq!(
        mask.shape(),
        &[batch, len],
        "attention: key mask shape {:?} does not match the sequence [batch {batch}, len {len}]",
        mask.shape()
    );
    let mut shape = vec![batch];
    shape.extend(std::iter::repeat_n(1, rank - 2));
    shape.push(len);
    // `as_standard_layout` first: a mask built by slicing or concatenation may not be
    // row-major, and a reshape of a non-standard array fails.
    mask.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&shape))
        .expect("same number of elements")
}

/// Multi-head scaled dot-product self-attention (Vaswani et al.) with a key-padding mask.
///
/// Parameter names: `q.weight`, `q.bias`, `k.*`, `v.*`, `out.*`.
///
/// Masking: `key_mask[b, j] = false` marks token `j` of sequence `b` as padding; no query
/// attends to it. A sequence whose tokens are all padding (an empty history) gets all-zero
/// attention weights — the output is then just the output projection's bias, never NaN. Outputs
/// at padded *query* positions are computed but meaningless: mask them downstream.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    dropout: Dropout,
}

impl MultiHeadAttention {
    /// `heads` heads over `dim` features (`dim` divisible by `heads`), with attention-weight
    /// dropout `dropout`.
    ///
    /// # Panics
    /// If `dim` is not divisible by `heads`, or `dropout` is not in `[0, 1)`.
    pub fn new(dim: usize, heads: usize, dropout: f32, rng: &mut impl Rng) -> Self {
        assert!(
            heads > 0 && dim.is_multiple_of(heads),
            "MultiHeadAttention::new: dim {dim} is not divisible by {heads} heads"
        );
        MultiHeadAttention {
            q: Linear::new(dim, dim, rng),
            k: Linear::new(dim, dim, rng),
            v: Linear::new(dim, dim, rng),
            out: Linear::new(dim, dim, rng),
            heads,
            dropout: Dropout::new(dropout),
        }
    }

    /// Model width.
    pub fn dim(&self) -> usize {
        self.q.inputs()
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Self-attention over `x`.
    ///
    /// # Shapes
    /// `x: [B, L, D]`, `key_mask: [B, L]` (true = real token) → `[B, L, D]`.
    ///
    /// # Panics
    /// If `x` is not `[B, L, D]` or the mask shape differs from `[B, L]`.
    pub fn forward<'t>(
        &self,
        x: Var<'t>,
        key_mask: Option<&ArrayD<bool>>,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        let shape = x.shape();
        assert!(
            shape.len() == 3 && shape[2] == self.dim(),
            "MultiHeadAttention::forward: input shape {shape:?} is not [batch, len, {}]",
            self.dim()
        );
        // One fused op for the head split, the scaled scores, the masked softmax, the dropout
        // of the weights, the product with the values and the head merge (see
        // `Var::multi_head_attention`); dropout draws its one seed from the context's RNG
        // only when training.
        let p = if ctx.is_training() {
            self.dropout.p()
        } else {
            0.0
        };
        let context = self.q.forward(x).multi_head_attention(
            self.k.forward(x),
            self.v.forward(x),
            self.heads,
            key_mask,
            p,
            &mut ctx.rng(),
        );
        self.out.forward(context)
    }
}

impl Parameterized for MultiHeadAttention {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("q", &self.q);
        v.child("k", &self.k);
        v.child("v", &self.v);
        v.child("out", &self.out);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("q", &mut self.q);
        v.child("k", &mut self.k);
        v.child("v", &mut self.v);
        v.child("out", &mut self.out);
    }
}

/// Target attention: a query vector per example (the candidate pin's embedding) pools a
/// sequence by `softmax(seq · q / √D)` — the read-out of Pinterest's closeup model and the
/// PyTorch peer (single head, no parameters). A fully masked sequence pools to zeros.
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetAttention;

impl TargetAttention {
    /// Pools `seq` with one query per example.
    ///
    /// # Shapes
    /// `query: [B, D]`, `seq: [B, L, D]`, `key_mask: [B, L]` → `[B, D]`.
    ///
    /// # Panics
    /// If the shapes disagree.
    pub fn forward<'t>(
        &self,
        query: Var<'t>,
        seq: Var<'t>,
        key_mask: Option<&ArrayD<bool>>,
    ) -> Var<'t> {
        let (qs, ss) = (query.shape(), seq.shape());
        assert!(
            qs.len() == 2 && ss.len() == 3 && qs[0] == ss[0] && qs[1] == ss[2],
            "TargetAttention::forward: query shape {qs:?} and sequence shape {ss:?} are not [B, D] and [B, L, D]"
        );
        let (batch, len, dim) = (ss[0], ss[1], ss[2]);
        let scores = query
            .unsqueeze(1)
            .matmul_t(seq)
            .mul_scalar(1.0 / (dim as f32).sqrt()); // [B, 1, L]
        let weights = match key_mask {
            Some(m) => scores.masked_softmax(&broadcastable_key_mask(m, batch, len, 3)),
            None => scores.softmax(2),
        };
        weights.matmul(seq).reshape(&[batch, dim])
    }
}

/// A learned positional embedding `[max_len, D]`, added to token embeddings.
#[derive(Debug, Clone)]
pub struct PositionalEmbedding {
    table: closeup_autograd::Param,
}

impl PositionalEmbedding {
    /// Positions `0..max_len` of width `dim`, initialised `N(0, 1/dim)`.
    pub fn new(max_len: usize, dim: usize, rng: &mut impl Rng) -> Self {
        let std = 1.0 / (dim.max(1) as f32).sqrt();
        PositionalEmbedding {
            table: closeup_autograd::Param::new(crate::init::normal(&[max_len, dim], std, rng)),
        }
    }

    /// Longest supported sequence.
    pub fn max_len(&self) -> usize {
        self.table.shape()[0]
    }

    /// The embeddings of positions `0..len`.
    ///
    /// # Shapes
    /// `→ [len, D]` (broadcasts when added to `[B, len, D]`).
    ///
    /// # Panics
    /// If `len > max_len`.
    pub fn forward<'t>(&self, tape: &'t Tape, len: usize) -> Var<'t> {
        assert!(
            len <= self.max_len(),
            "PositionalEmbedding::forward: length {len} exceeds max_len {}",
            self.max_len()
        );
        tape.param(&self.table).narrow(0, 0, len)
    }
}

impl Parameterized for PositionalEmbedding {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.param("table", &self.table);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.param("table", &mut self.table);
    }
}

/// Sets rows of a `[B, L]` mask to "all padding" (test helper for empty histories).
#[cfg(test)]
fn mask_from_lens(lens: &[usize], len: usize) -> ArrayD<bool> {
    let mut m = ndarray::Array2::from_elem((lens.len(), len), false);
    for (b, &l) in lens.iter().enumerate() {
        m.index_axis_mut(ndarray::Axis(0), b)
            .iter_mut()
            .take(l)
            .for_each(|x| *x = true);
    }
    m.into_dyn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use rand::SeedableRng;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(11)
    }

    #[test]
    fn self_attention_shapes_gradients_and_empty_rows() {
        let mut r = rng();
        let mha = MultiHeadAttention::new(8, 2, 0.0, &mut r);
        let mask = mask_from_lens(&[4, 2, 0], 4);
        let m = mha.clone();
        let mk = mask.clone();
        assert_gradients(&[randn(&[3, 4, 8], 1)], move |_, v| {
            let mut r = rng();
            m.forward(v[0], Some(&mk), &mut ForwardCtx::eval(&mut r))
        });
        let tape = Tape::new();
        let y = mha.forward(
            tape.constant(randn(&[3, 4, 8], 2)),
            Some(&mask),
            &mut ForwardCtx::eval(&mut r),
        );
        assert_eq!(y.shape(), [3, 4, 8]);
        assert!(y.value().iter().all(|v| v.is_finite()));
        // The fully padded sequence outputs the output bias at every position.
        let bias = mha.out.bias().unwrap().value().clone();
        for t in 0..4 {
            let row = y.value().slice(ndarray::s![2, t, ..]).to_owned().into_dyn();
            assert!(
                row.iter()
                    .zip(bias.iter())
                    .all(|(a, b)| (a - b).abs() < 1e-6)
            );
        }
        let names: Vec<_> = mha.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "q.weight");
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn padding_positions_do_not_change_real_outputs() {
        let mut r = rng();
        let mha = MultiHeadAttention::new(8, 4, 0.0, &mut r);
        let mask = mask_from_lens(&[3], 5);
        let x1 = randn(&[1, 5, 8], 3);
        let mut x2 = x1.clone();
        x2.slice_mut(ndarray::s![0, 3.., ..]).fill(100.0);
        let tape = Tape::no_grad();
        let y1 = mha.forward(
            tape.constant(x1),
            Some(&mask),
            &mut ForwardCtx::eval(&mut r),
        );
        let y2 = mha.forward(
            tape.constant(x2),
            Some(&mask),
            &mut ForwardCtx::eval(&mut r),
        );
        let (a, b) = (y1.value(), y2.value());
        let a = a.slice(ndarray::s![0, ..3, ..]);
        let b = b.slice(ndarray::s![0, ..3, ..]);
        assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn target_attention_pools_and_handles_empty_sequences() {
        let mask = mask_from_lens(&[3, 0], 3);
        let mk = mask.clone();
        assert_gradients(&[randn(&[2, 4], 1), randn(&[2, 3, 4], 2)], move |_, v| {
            TargetAttention.forward(v[0], v[1], Some(&mk))
        });
        let tape = Tape::no_grad();
        let y = TargetAttention.forward(
            tape.constant(randn(&[2, 4], 1)),
            tape.constant(randn(&[2, 3, 4], 2)),
            Some(&mask),
        );
        assert_eq!(y.shape(), [2, 4]);
        assert!(
            y.value()
                .index_axis(ndarray::Axis(0), 1)
                .iter()
                .all(|&v| v == 0.0)
        );
        // A query that strongly matches one key pools (almost) exactly that key.
        let seq = ndarray::array![[[10.0_f32, 0.0], [0.0, 10.0]]].into_dyn();
        let q = ndarray::array![[10.0_f32, 0.0]].into_dyn();
        let y = TargetAttention.forward(tape.constant(q), tape.constant(seq), None);
        assert!((y.value()[[0, 0]] - 10.0).abs() < 1e-3);
    }

    #[test]
    fn non_standard_layout_masks_work() {
        let mut r = rng();
        let mha = MultiHeadAttention::new(8, 2, 0.0, &mut r);
        let standard = mask_from_lens(&[2, 3], 4);
        use ndarray::ShapeBuilder;
        let mut column_major = ndarray::Array2::<bool>::default((2, 4).f());
        column_major.assign(
            &standard
                .view()
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap(),
        );
        let column_major = column_major.into_dyn();
        assert!(!column_major.is_standard_layout());
        let tape = Tape::no_grad();
        let x = tape.constant(randn(&[2, 4, 8], 5));
        let a = mha.forward(x, Some(&standard), &mut ForwardCtx::eval(&mut r));
        let b = mha.forward(x, Some(&column_major), &mut ForwardCtx::eval(&mut r));
        assert_eq!(*a.value(), *b.value());
    }

    #[test]
    fn positional_embedding_narrows() {
        let mut r = rng();
        let pos = PositionalEmbedding::new(10, 4, &mut r);
        let tape = Tape::new();
        assert_eq!(pos.forward(&tape, 7).shape(), [7, 4]);
        assert_eq!(pos.forward(&tape, 0).shape(), [0, 4]);
    }
}
