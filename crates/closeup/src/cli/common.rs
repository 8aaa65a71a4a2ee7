//! Helpers shared by the model commands (train, eval, score, churn, gates, grid, demo).

use anyhow::{Context, Result};
use closeup::data::metrics::MetricsReport;
use closeup::data::{EngagementDataset, ReadOptions};
use closeup::model_dir::{LoadedModel, load_model};
use closeup::train::PredictOptions;
use std::path::Path;

/// Sizes the kernel thread pool once (0 = one thread per core).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    closeup::autograd::init_thread_pool(threads.unwrap_or(0)).context("--threads")
}

/// Sizes the pool ([`init_threads`]) and runs the command `f` on one of its threads, so each
/// parallel op starts from a worker instead of waking the pool from outside and sleeping
/// until it is done (see `closeup_autograd::run_in_pool`).
pub fn with_threads(threads: Option<usize>, f: impl FnOnce() -> Result<()> + Send) -> Result<()> {
    init_threads(threads)?;
    closeup::autograd::run_in_pool(f)
}

/// Loads a model directory.
pub fn load(dir: &Path) -> Result<LoadedModel> {
    Ok(load_model(dir)?)
}

/// Reads `data` with the model's vocabulary (a different feature width is an error naming the
/// file and line).
pub fn load_data(model: &LoadedModel, data: &Path) -> Result<EngagementDataset> {
    let opts = ReadOptions {
        max_history: Some(model.seq_len()),
        tasks: None,
    };
    Ok(EngagementDataset::load_with_vocab(
        data,
        &model.vocab,
        &opts,
    )?)
}

/// Evaluation batches for a model.
pub fn predict_options(model: &LoadedModel) -> PredictOptions {
    PredictOptions {
        batch_size: 512,
        seq_len: model.seq_len(),
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.digits$}"))
}

/// The metrics as an aligned text table.
pub fn metrics_table(report: &MetricsReport) -> String {
    let width = report
        .tasks
        .iter()
        .map(|(t, _)| t.len())
        .max()
        .unwrap_or(4)
        .max(8);
    let mut out = format!(
        "{:<width$}  {:>7}  {:>8}  {:>8}  {:>10}  {:>9}\n",
        "task", "AUC", "logloss", "n", "positives", "pred/obs"
    );
    for (task, m) in &report.tasks {
        out.push_str(&format!(
            "{task:<width$}  {:>7}  {:>8}  {:>8}  {:>10}  {:>9}\n",
            fmt(m.auc, 4),
            fmt(m.logloss, 4),
            m.n,
            m.positives,
            fmt(m.calibration, 3),
        ));
    }
    out.push_str(&format!(
        "{:<width$}  {:>7}\n",
        "mean",
        fmt(report.mean_auc, 4)
    ));
    out
}
