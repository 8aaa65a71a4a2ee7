//! # closeup-models
//!
//! (crate docs to be completed by the models work: place in the layering — above
//! closeup-layers, below the pipeline — and a runnable example.)
#![deny(missing_docs)]

mod input;

pub use input::{ModelBatch, ModelOutput};

use closeup_autograd::{Parameterized, Tape};
use closeup_layers::ForwardCtx;

/// A multi-task ranking model: a batch in, one logit per example and task out.
///
/// The trainer, evaluation, scoring, churn and gate inspection are written against this trait.
pub trait RankingModel: Parameterized {
    /// The task names, in the order of the logits' columns.
    fn tasks(&self) -> &[String];

    /// The forward pass.
    ///
    /// # Shapes
    /// `batch` of `B` examples → `logits: [B, T]`, `gate_weights: [T, B, E]` when the model has
    /// gates.
    fn forward<'t>(
        &self,
        tape: &'t Tape,
        batch: &ModelBatch,
        ctx: &mut ForwardCtx<'_>,
    ) -> ModelOutput<'t>;
}
