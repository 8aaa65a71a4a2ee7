//! What a training run reports: `metrics.json` ([`TrainReport`]) and its per-epoch history.

use closeup_data::metrics::MetricsReport;
use serde::{Deserialize, Serialize};

/// One epoch of training and its validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps in this epoch.
    pub steps: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
    /// Mean over the epoch's steps of the total training loss (BCE + score regularization).
    pub train_loss: f64,
    /// Mean over the epoch's steps of each task's BCE, in task order.
    pub train_task_loss: Vec<f64>,
    /// Mean over the epoch's steps of the score-regularization term, when it is on.
    pub score_reg_loss: Option<f64>,
    /// Mean validation AUC after the epoch (what early stopping watches).
    pub valid_mean_auc: Option<f64>,
    /// Mean validation log loss over the tasks after the epoch.
    pub valid_logloss: Option<f64>,
}

/// `metrics.json` of a training run: the SPEC §4.3 shape (`tasks`, `mean_auc` — of the kept,
/// best model on the validation data) plus the run's history. Contains no timing, so the same
/// seed, data and thread count give the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Validation metrics of the best model.
    #[serde(flatten)]
    pub valid: MetricsReport,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs_run: usize,
    /// Whether early stopping ended the run before the configured number of epochs.
    pub stopped_early: bool,
    /// Training examples.
    pub train_examples: usize,
    /// Validation examples.
    pub valid_examples: usize,
    /// Task names, in the order of the per-task vectors in `history`.
    pub task_order: Vec<String>,
    /// One record per epoch.
    pub history: Vec<EpochRecord>,
}

impl TrainReport {
    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("reports serialize");
        s.push('\n');
        s
    }
}

/// Mean log loss over the tasks that have one.
pub(crate) fn mean_logloss(report: &MetricsReport) -> Option<f64> {
    let v: Vec<f64> = report.tasks.iter().filter_map(|(_, m)| m.logloss).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}
