//! # closeup-models
//!
//! The third layer of Closeup (SPEC §3): the models of Pinterest's closeup ranking system,
//! built from [`closeup_layers`] on [`closeup_autograd`], below the losses/trainer and the
//! pipeline (which only see the [`RankingModel`] trait).
//!
//! ```text
//! history (pins, actions) ──► SequenceEncoder ──► read-outs ─┐
//!   TransAct-style tokens, pre-LN transformer, masking        │
//! candidate pin ──► pin_embedding (shared with history) ─────┼─► head input ──► MMoE ──► [B, T] logits
//! dense features ────────────────────────────────────────────┘         (or OMoE / shared-bottom /
//!                                                                          single-task baselines)
//! ```
//!
//! - [`encoder`]: [`SequenceEncoder`] — token = pin + action + position (optionally fused with the
//!   candidate, TransAct's early fusion), [`TransformerBlock`]s, and the [`Readout`]s (first-K +
//!   max-pool as TransAct, mean + target attention as the PyTorch peer).
//! - [`mmoe`]: [`Mmoe`] with residual experts, one softmax gate per task (or one shared gate:
//!   OMoE), optional gate dropout; [`baselines`]: [`SharedBottom`] and [`SingleTask`].
//! - [`CloseupModel`]: everything composed from a serde [`ModelConfig`] (TOML; the defaults are
//!   the reference configuration of SPEC §5) and a [`ModelShape`] (what the data provides);
//!   [`CloseupModel::save`] / [`CloseupModel::load`]; the serving path
//!   [`CloseupModel::score_request`] that encodes the user once per request, and [`Server`],
//!   which also prepares the head's split weights once for many requests.
//! - [`GateUtilization`] / [`mean_gate_weights`]: mean gate weight per task per expert.
//!
//! All randomness comes from explicit seeds (parameters) or the [`ForwardCtx`] RNG (dropout,
//! time-window masking, gate dropout): the same seed gives bit-identical models and outputs.
//!
//! ```
//! use closeup_autograd::Tape;
//! use closeup_layers::ForwardCtx;
//! use closeup_models::{CloseupModel, ModelBatch, ModelConfig, ModelShape, RankingModel, UserHistory};
//! use ndarray::{Array2, array};
//! use rand::SeedableRng;
//!
//! let config = ModelConfig::from_toml_str(r#"
//!     architecture = "mmoe"
//!     [sequence]
//!     pin_buckets = 1000
//!     d_model = 16
//!     [mmoe]
//!     num_experts = 4
//!     expert_hidden = [32]
//! "#).unwrap();
//! let shape = ModelShape {
//!     tasks: vec!["repin".into(), "click".into()],
//!     num_actions: 6, // the data vocabulary's size, including padding and unknown
//!     num_features: 2,
//!     has_history: true,
//!     has_candidate: true,
//! };
//! let model = CloseupModel::new(&config, &shape, 42).unwrap();
//!
//! // A batch of two examples; the second user has no history yet.
//! let batch = ModelBatch {
//!     hist_pins: array![[11_u64, 12, 13], [0, 0, 0]],
//!     hist_actions: array![[2_usize, 3, 2], [0, 0, 0]],
//!     hist_mask: array![[true, true, true], [false, false, false]],
//!     candidates: Some(array![99_u64, 7]),
//!     features: array![[0.5_f32, -1.0], [0.0, 2.0]],
//! };
//! let tape = Tape::new();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let out = model.forward(&tape, &batch, &mut ForwardCtx::train(&mut rng));
//! assert_eq!(out.logits.shape(), [2, 2]);
//! assert_eq!(out.gate_weights.unwrap().shape(), [2, 2, 4]); // [tasks, batch, experts]
//!
//! // Serving: the history is encoded once, then any number of candidates are scored.
//! let history = UserHistory::new(vec![11, 12, 13], vec![2, 3, 2]);
//! let scores = model.score_request(&history, Some(&[99, 5, 6]), Array2::zeros((3, 2)).view());
//! assert_eq!(scores.shape(), [3, 2]);
//! ```
#![deny(missing_docs)]

pub mod baselines;
pub mod config;
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
pub use encoder::{EncodedSequence, HistoryView, SequenceEncoder, TransformerBlock};
pub use error::{ModelError, Result};
pub use gates::{GateUtilization, mean_gate_weights};
pub use input::{ModelBatch, ModelOutput};
pub use mmoe::{HeadOutput, Mmoe};
pub use model::{
    CloseupModel, EncodedUser, METADATA_CONFIG, METADATA_FORMAT, METADATA_KIND, METADATA_SHAPE,
    MODEL_KIND, Server, UserHistory,
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
