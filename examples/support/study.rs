//! Train-and-evaluate helpers shared by the model studies (`pinterest_mmoe`, `movielens`): one
//! trained model's numbers ([`Run`]) and one configuration over several seeds ([`Point`]).

use super::mean_sd;
use anyhow::Result;
use closeup::data::EngagementDataset;
use closeup::data::metrics::MetricsReport;
use closeup::models::{CloseupModel, ModelConfig, ModelShape};
use closeup::train::{PredictOptions, ProgressMode, TrainConfig, Trainer, metrics, predict};
use ndarray::Array2;
use std::time::Instant;

/// Train / validation / test splits encoded with the training split's vocabulary.
pub struct Split {
    pub train: EngagementDataset,
    pub valid: EngagementDataset,
    pub test: EngagementDataset,
}

/// One trained model's numbers.
#[derive(Clone)]
pub struct Run {
    pub params: usize,
    pub valid: MetricsReport,
    pub test: MetricsReport,
    /// Mean gate weights on the test split (MMoE heads only).
    pub gates: Option<Array2<f64>>,
    pub best_epoch: usize,
    pub seconds: f64,
}

/// Trains a model of `cfg` and `shape` with `train` (early stopping on the validation split,
/// no progress output) and scores it on the test split.
pub fn train_and_test(
    cfg: &ModelConfig,
    shape: &ModelShape,
    train: TrainConfig,
    data: &Split,
) -> Result<Run> {
    let started = Instant::now();
    let seed = train.seed;
    let mut model = CloseupModel::new(cfg, shape, seed)?;
    let trainer = Trainer::new(train, cfg.sequence.seq_len)?.with_progress(ProgressMode::Off);
    let report = trainer.fit(&mut model, &data.train, &data.valid, &mut |_, _| Ok(()))?;
    let opts = PredictOptions {
        batch_size: 512,
        seq_len: cfg.sequence.seq_len,
    };
    let preds = predict(&model, &data.test, opts, None);
    Ok(Run {
        params: model.num_params(),
        valid: report.valid,
        test: metrics(&data.test, &preds.scores, None),
        gates: preds.mean_gates,
        best_epoch: report.best_epoch,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One configuration over every seed.
pub struct Point {
    pub label: String,
    pub runs: Vec<Run>,
}

impl Point {
    /// `f` of every run (NaN where it is undefined).
    pub fn collect(&self, f: impl Fn(&Run) -> Option<f64>) -> Vec<f64> {
        self.runs.iter().map(|r| f(r).unwrap_or(f64::NAN)).collect()
    }
    /// Mean ± sd over seeds of the mean validation AUC.
    pub fn valid_mean(&self) -> (f64, f64) {
        mean_sd(&self.collect(|r| r.valid.mean_auc))
    }
    /// Mean ± sd over seeds of the mean test AUC.
    pub fn test_mean(&self) -> (f64, f64) {
        mean_sd(&self.collect(|r| r.test.mean_auc))
    }
    /// Mean ± sd over seeds of task `k`'s validation AUC.
    pub fn valid_task(&self, k: usize) -> (f64, f64) {
        mean_sd(&self.collect(|r| r.valid.tasks[k].1.auc))
    }
    /// Mean ± sd over seeds of task `k`'s test AUC.
    pub fn test_task(&self, k: usize) -> (f64, f64) {
        mean_sd(&self.collect(|r| r.test.tasks[k].1.auc))
    }
}
