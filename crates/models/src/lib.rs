//! # closeup-models
//!
//! (crate docs to be completed)
#![deny(missing_docs)]

pub mod baselines;
mod config;
pub mod encoder;
mod error;
mod gates;
mod input;
pub mod mmoe;
mod model;

pub use baselines::{SharedBottom, SingleTask};
pub use config::{
    Architecture, MmoeConfig, ModelConfig, ModelShape, Readout, SequenceConfig, SharedBottomConfig,
    TimeWindowMask,
};
pub use encoder::{EncodedSequence, SequenceEncoder, TransformerBlock};
pub use error::{ModelError, Result};
pub use gates::{GateUtilization, mean_gate_weights};
pub use input::{ModelBatch, ModelOutput};
pub use mmoe::{HeadOutput, Mmoe};
pub use model::{
    CloseupModel, EncodedUser, METADATA_CONFIG, METADATA_FORMAT, METADATA_KIND, METADATA_SHAPE,
    MODEL_KIND, UserHistory,
};

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
