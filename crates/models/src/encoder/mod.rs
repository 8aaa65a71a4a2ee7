//! The action-sequence encoder (SPEC §2.2; TransAct, Xia et al., KDD 2023).
//!
//! Each history token is `pin_embedding(pin) + action_embedding(action) + position(i)` (the pin
//! table is the model's, shared with the candidate). With **early fusion** the candidate
//! embedding is concatenated to every token and a `Linear(2·d → d)` projects it back. Padded
//! tokens are zeroed, the sequence goes through pre-LN transformer blocks with a key-padding
//! mask and a final LayerNorm, and configurable [`Readout`]s turn `[B, L, d]` into a vector.
//!
//! During training an optional [`crate::TimeWindowMask`] hides a random number of the most
//! recent actions (TransAct's random time-window mask), drawing from the [`ForwardCtx`] RNG.
//!
//! Padding never matters: padded tokens are zeroed before the encoder, never attended to, and
//! masked out of every read-out; a history with no real token (or `L = 0`) reads out as zeros.

mod block;
pub(crate) mod readout;

pub use block::TransformerBlock;

use crate::config::{Readout, SequenceConfig, TimeWindowMask};
use closeup_autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Tape, Tensor, Var};
use closeup_layers::{
    Embedding, ForwardCtx, HashEmbedding, LayerNorm, Linear, PositionalEmbedding,
};
use ndarray::{Array2, ArrayView2, IxDyn, s};
use rand::Rng;

/// A borrowed batch of histories, each `[B, L]`, most recent action first.
#[derive(Debug, Clone, Copy)]
pub struct HistoryView<'a> {
    /// Pin ids.
    pub pins: ArrayView2<'a, u64>,
    /// Action ids (0 = padding, 1 = unknown).
    pub actions: ArrayView2<'a, usize>,
    /// True for a real token.
    pub mask: ArrayView2<'a, bool>,
}

impl<'a> HistoryView<'a> {
    /// The history arrays of a batch.
    pub fn of(batch: &'a crate::ModelBatch) -> Self {
        HistoryView {
            pins: batch.hist_pins.view(),
            actions: batch.hist_actions.view(),
            mask: batch.hist_mask.view(),
        }
    }
}

/// A history after the encoder.
#[derive(Debug, Clone)]
pub struct EncodedSequence<'t> {
    /// The output tokens `[B, L, d]` (meaningless at padded positions).
    pub hidden: Var<'t>,
    /// The effective key mask `[B, L]` (after truncation and any time-window masking).
    pub mask: Array2<bool>,
}

/// The transformer encoder over a user's action sequence, with its read-outs.
///
/// Parameter names: `action_embedding.table`, `position.table`, `fusion.*` (early fusion only),
/// `layers.{i}.{ln1,attn,ln2,ffn}.*`, `final_norm.*`.
#[derive(Debug, Clone)]
pub struct SequenceEncoder {
    action_embedding: Embedding,
    position: PositionalEmbedding,
    fusion: Option<Linear>,
    layers: Vec<TransformerBlock>,
    final_norm: LayerNorm,
    readouts: Vec<Readout>,
    first_k: usize,
    time_window: TimeWindowMask,
}

impl SequenceEncoder {
    /// An encoder for `num_actions` action ids (including the reserved 0 and 1) with the given
    /// read-outs (normally [`crate::ModelConfig::active_readouts`]).
    ///
    /// # Panics
    /// If the config is invalid (see [`crate::ModelConfig::validate`]) or `readouts` is empty.
    pub fn new(
        cfg: &SequenceConfig,
        num_actions: usize,
        readouts: Vec<Readout>,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(!readouts.is_empty(), "SequenceEncoder::new: no read-out");
        let d = cfg.d_model;
        let action_embedding = Embedding::new(num_actions, d, rng);
        let position = PositionalEmbedding::new(cfg.seq_len, d, rng);
        let fusion = cfg.early_fusion.then(|| Linear::new(2 * d, d, rng));
        let layers = (0..cfg.layers)
            .map(|_| TransformerBlock::new(d, cfg.heads, cfg.ffn_hidden, cfg.dropout, rng))
            .collect();
        SequenceEncoder {
            action_embedding,
            position,
            fusion,
            layers,
            final_norm: LayerNorm::new(d),
            readouts,
            first_k: cfg.first_k,
            time_window: cfg.time_window_mask,
        }
    }

    /// Token width.
    pub fn d_model(&self) -> usize {
        self.final_norm.dim()
    }

    /// Longest history used (longer ones are truncated to the most recent `seq_len`).
    pub fn seq_len(&self) -> usize {
        self.position.max_len()
    }

    /// Whether the candidate is fused into every token (then it is needed by `encode`).
    pub fn early_fusion(&self) -> bool {
        self.fusion.is_some()
    }

    /// The read-outs, in concatenation order.
    pub fn readouts(&self) -> &[Readout] {
        &self.readouts
    }

    /// Width of [`SequenceEncoder::read_out`]'s output.
    pub fn readout_width(&self) -> usize {
        self.readouts
            .iter()
            .map(|&r| readout::width(r, self.d_model(), self.first_k))
            .sum()
    }

    /// Looks up the history's pins in `pins` and encodes it. Histories longer than `seq_len`
    /// are truncated to their first (most recent) `seq_len` tokens.
    ///
    /// # Shapes
    /// `history: [B, L]`, `candidate: [B, d]` → hidden `[B, min(L, seq_len), d]`.
    ///
    /// # Panics
    /// If the shapes disagree, an action id at a real position is `≥ num_actions`, or early
    /// fusion is on and `candidate` is `None`.
    pub fn encode<'t>(
        &self,
        tape: &'t Tape,
        pins: &HashEmbedding,
        history: HistoryView<'_>,
        candidate: Option<Var<'t>>,
        ctx: &mut ForwardCtx<'_>,
    ) -> EncodedSequence<'t> {
        let HistoryView {
            pins: hist_pins,
            actions: hist_actions,
            mask: hist_mask,
        } = history;
        assert!(
            hist_pins.shape() == hist_actions.shape() && hist_pins.shape() == hist_mask.shape(),
            "SequenceEncoder::encode: hist_pins {:?}, hist_actions {:?} and hist_mask {:?} differ",
            hist_pins.shape(),
            hist_actions.shape(),
            hist_mask.shape()
        );
        let len = hist_pins.ncols().min(self.seq_len());
        let pin_tokens = pins.forward(tape, &hist_pins.slice(s![.., ..len]).to_owned().into_dyn());
        self.encode_embedded(
            pin_tokens,
            hist_actions.slice(s![.., ..len]),
            hist_mask.slice(s![.., ..len]),
            candidate,
            ctx,
        )
    }

    /// Encodes a history whose pin embeddings are already looked up (the differentiable core of
    /// [`SequenceEncoder::encode`]).
    ///
    /// # Shapes
    /// `pin_tokens: [B, L, d]` with `L ≤ seq_len`, `hist_actions`, `hist_mask: [B, L]`,
    /// `candidate: [B, d]` → hidden `[B, L, d]`.
    ///
    /// # Panics
    /// As [`SequenceEncoder::encode`], and if `L > seq_len`.
    pub fn encode_embedded<'t>(
        &self,
        pin_tokens: Var<'t>,
        hist_actions: ArrayView2<'_, usize>,
        hist_mask: ArrayView2<'_, bool>,
        candidate: Option<Var<'t>>,
        ctx: &mut ForwardCtx<'_>,
    ) -> EncodedSequence<'t> {
        let tape = pin_tokens.tape();
        let shape = pin_tokens.shape();
        let d = self.d_model();
        assert!(
            shape.len() == 3 && shape[2] == d && shape[..2] == *hist_mask.shape(),
            "SequenceEncoder: pin tokens {shape:?} do not match the mask {:?} and d_model {d}",
            hist_mask.shape()
        );
        let (batch, len) = (shape[0], shape[1]);
        // Standard layout: the attention layer reshapes the mask.
        let mut mask = hist_mask.as_standard_layout().into_owned();
        if ctx.is_training() && self.time_window.probability > 0.0 {
            apply_time_window(&mut mask, &self.time_window, ctx);
        }
        if len == 0 {
            let hidden = tape.constant(Tensor::zeros(IxDyn(&[batch, 0, d])));
            return EncodedSequence { hidden, mask };
        }
        // Padding ids are ignored: look up the padding row for them.
        let actions = ndarray::Zip::from(&hist_actions)
            .and(&mask)
            .map_collect(|&a, &m| if m { a } else { 0 });
        let mut x = pin_tokens
            + self.action_embedding.forward(tape, &actions.into_dyn())
            + self.position.forward(tape, len);
        if let Some(fusion) = &self.fusion {
            let c = candidate.expect("early fusion needs the candidate embedding");
            let c = c.unsqueeze(1).broadcast_to(&[batch, len, d]);
            x = fusion.forward(Var::concat(&[x, c], 2));
        }
        x = x.masked_fill(&readout::padding_mask3(&mask), 0.0);
        let key_mask = mask.clone().into_dyn();
        for layer in &self.layers {
            x = layer.forward(x, &key_mask, ctx);
        }
        EncodedSequence {
            hidden: self.final_norm.forward(x),
            mask,
        }
    }

    /// One read-out of an encoded sequence.
    ///
    /// # Shapes
    /// `→ [B, width]` (`first_k · d` for [`Readout::FirstK`], `d` otherwise).
    ///
    /// # Panics
    /// If `r` needs a candidate and `candidate` is `None`.
    pub fn read_out_one<'t>(
        &self,
        r: Readout,
        enc: &EncodedSequence<'t>,
        candidate: Option<Var<'t>>,
    ) -> Var<'t> {
        readout::readout(r, enc.hidden, &enc.mask, candidate, self.first_k)
    }

    /// All configured read-outs, concatenated.
    ///
    /// # Shapes
    /// `candidate: [B, d]` → `[B, readout_width]`.
    ///
    /// # Panics
    /// If a read-out needs a candidate and `candidate` is `None`.
    pub fn read_out<'t>(&self, enc: &EncodedSequence<'t>, candidate: Option<Var<'t>>) -> Var<'t> {
        let parts: Vec<Var<'t>> = self
            .readouts
            .iter()
            .map(|&r| self.read_out_one(r, enc, candidate))
            .collect();
        if parts.len() == 1 {
            parts[0]
        } else {
            Var::concat(&parts, 1)
        }
    }
}

/// TransAct's random time-window mask on a `[B, L]` mask (most recent first): per example, with
/// probability `p`, hide the first `w ~ U{1..=max_window}` tokens.
fn apply_time_window(mask: &mut Array2<bool>, tw: &TimeWindowMask, ctx: &mut ForwardCtx<'_>) {
    let rng = ctx.rng();
    for mut row in mask.rows_mut() {
        if rng.random::<f32>() < tw.probability {
            let w = rng.random_range(1..=tw.max_window).min(row.len());
            row.slice_mut(s![..w]).fill(false);
        }
    }
}

impl Parameterized for SequenceEncoder {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("action_embedding", &self.action_embedding);
        v.child("position", &self.position);
        if let Some(f) = &self.fusion {
            v.child("fusion", f);
        }
        v.child("layers", &self.layers);
        v.child("final_norm", &self.final_norm);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("action_embedding", &mut self.action_embedding);
        v.child("position", &mut self.position);
        if let Some(f) = &mut self.fusion {
            v.child("fusion", f);
        }
        v.child("layers", &mut self.layers);
        v.child("final_norm", &mut self.final_norm);
    }
}

#[cfg(test)]
mod tests;
