//! The training pipeline: the trainer, evaluation, churn and gate utilization, written against
//! [`closeup_models::RankingModel`] so any model of the models crate (or a user's own) trains
//! the same way.
//!
//! - [`TrainConfig`]: epochs, batch size, Adam's learning rate and its warm-up/decay schedule,
//!   gradient clipping, early stopping, task weights, score regularization.
//! - [`Trainer`]: the loop — seeded shuffling, padded batches, masked multi-task BCE (plus
//!   `λ · MSE` toward a [`Teacher`]'s or the data's logged scores), a divergence guard,
//!   validation and early stopping on the mean validation AUC, best weights kept and restored.
//! - [`predict`] / [`evaluate`] / [`churn`]: inference over a data set, metrics and the churn
//!   between two models.
//! - `metrics.json` is a serialized [`TrainReport`].
//!
//! See `docs/training.md` for the loop, the loss normalization, early stopping, determinism and
//! score regularization.
//!
//! ```
//! use closeup::train::{PredictOptions, TrainConfig, Trainer, evaluate};
//! # use closeup_autograd::{Param, ParamVisitor, ParamVisitorMut, Parameterized, Tape};
//! # use closeup_models::{ModelBatch, ModelOutput, RankingModel};
//! # use closeup_layers::{ForwardCtx, Linear};
//! # use closeup_data::{EngagementDataset, ReadOptions, record::EngagementRecord};
//! # #[derive(Debug)] struct Logistic { tasks: Vec<String>, head: Linear }
//! # impl Parameterized for Logistic {
//! #     fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) { v.child("head", &self.head) }
//! #     fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) { v.child("head", &mut self.head) }
//! # }
//! # impl RankingModel for Logistic {
//! #     fn tasks(&self) -> &[String] { &self.tasks }
//! #     fn forward<'t>(&self, tape: &'t Tape, b: &ModelBatch, _: &mut ForwardCtx<'_>) -> ModelOutput<'t> {
//! #         let x = tape.constant(b.features.clone().into_dyn());
//! #         ModelOutput { logits: self.head.forward(x), gate_weights: None }
//! #     }
//! # }
//! // One dense feature decides the label.
//! let records = (0..200).map(|i| {
//!     let x = if i % 2 == 0 { 1.0 } else { -1.0 };
//!     serde_json::from_value::<EngagementRecord>(serde_json::json!(
//!         {"features": [x], "labels": {"click": u8::from(x > 0.0)}})).unwrap()
//! });
//! let ds = EngagementDataset::from_records_training("toy", records, &ReadOptions::default())?;
//! let (train, valid) = ds.split_by_time(0.2)?;
//! # use rand::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut model = Logistic { tasks: vec!["click".into()], head: Linear::new(1, 1, &mut rng) };
//! let config = TrainConfig { epochs: 5, batch_size: 16, lr: 0.05, ..TrainConfig::default() };
//! let report = Trainer::new(config, 0)?.fit(&mut model, &train, &valid, &mut |_, _| Ok(()))?;
//! assert_eq!(report.mean_auc(), Some(1.0));
//! let again = evaluate(&model, &valid, PredictOptions::default(), None);
//! assert_eq!(again.mean_auc, Some(1.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod convert;
mod eval;
mod progress;
mod report;
mod trainer;

pub use config::{LrDecay, TrainConfig};
pub use convert::{VocabBridge, model_batch, targets};
pub use eval::{PredictOptions, Predictions, churn, evaluate, label_arrays, metrics, predict};
pub use progress::ProgressMode;
pub use report::{EpochRecord, TrainReport};
pub use trainer::{Teacher, Trainer};

/// A boxed error from a caller's callback (e.g. saving a checkpoint).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad setting, or data that does not fit the model.
    #[error("configuration: {0}")]
    Config(String),
    /// Reading or batching data.
    #[error(transparent)]
    Data(#[from] closeup_data::DataError),
    /// A non-finite loss, gradient or score. The last good checkpoint is left as it was.
    #[error(
        "training diverged at epoch {epoch}, step {step}: {what} (lower the learning rate or \
         enable gradient clipping; the last good checkpoint was kept)"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// What was not finite.
        what: String,
    },
    /// Saving the best model failed.
    #[error("saving the best model: {0}")]
    Save(#[source] BoxError),
    /// Restoring the best weights.
    #[error(transparent)]
    Checkpoint(#[from] closeup_autograd::AutogradError),
}

impl TrainReport {
    /// Mean validation AUC of the kept model.
    pub fn mean_auc(&self) -> Option<f64> {
        self.valid.mean_auc
    }
}
