//! What a model reads and returns: a plain-ndarray batch (built by the data layer's batcher,
//! converted by the pipeline) and the model's outputs.

use closeup_autograd::{Tensor, Var};
use ndarray::{Array1, Array2};

/// One mini-batch of `B` examples, as plain arrays (no autograd).
///
/// History tokens are **most recent first, left-aligned**: position 0 is the latest action, so
/// TransAct's "first K output tokens" are the K most recent actions. Padding positions have
/// `hist_mask = false` (their pin and action ids are ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelBatch {
    /// Pin ids of the history, `[B, L]` (arbitrary u64; hashed into buckets by the model).
    pub hist_pins: Array2<u64>,
    /// Action-type ids of the history, `[B, L]` (0 = padding, 1 = unknown action, 2.. learned).
    pub hist_actions: Array2<usize>,
    /// `[B, L]`: true for a real token, false for padding. `L` may be 0 or all-false (empty
    /// histories are valid).
    pub hist_mask: Array2<bool>,
    /// Candidate pin ids `[B]`, when the data has candidates.
    pub candidates: Option<Array1<u64>>,
    /// Dense context features `[B, F]` (`F` may be 0).
    pub features: Array2<f32>,
}

impl ModelBatch {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.features.nrows()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outputs of a forward pass.
#[derive(Debug)]
pub struct ModelOutput<'t> {
    /// One logit per example and task, `[B, T]` (task order = the model's task list).
    pub logits: Var<'t>,
    /// Gate weights `[T, B, E]` (per task, per example, per expert) for MMoE-style models;
    /// `None` for models without gates. Detached values, for inspection only.
    pub gate_weights: Option<Tensor>,
}
