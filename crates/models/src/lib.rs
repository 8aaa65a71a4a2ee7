//! # closeup-models
//!
//! (crate docs to be completed)
#![deny(missing_docs)]

mod config;
pub mod encoder;
mod error;
mod input;
pub mod mmoe;

pub use config::{
    Architecture, MmoeConfig, ModelConfig, ModelShape, Readout, SequenceConfig,
    SharedBottomConfig, TimeWindowMask,
};
pub use encoder::{EncodedSequence, SequenceEncoder, TransformerBlock};
pub use error::{ModelError, Result};
pub use input::{ModelBatch, ModelOutput};
pub use mmoe::{HeadOutput, Mmoe};

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
