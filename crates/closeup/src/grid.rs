//! The grid search of SPEC §2.6: train one model per point of
//! `num_experts × expert hidden sizes × d_model` (every other setting from a base
//! [`RunConfig`]) and tabulate the validation AUC per configuration.
//!
//! Pinterest searched exactly these three axes for its closeup model and reported that more
//! experts helped within a range and that `[256, 256]` experts beat `[512, 512]` and
//! `[256, 256, 256]`. Every point trains with the same seed, data and trainer settings, so the
//! differences are the architecture's (plus seed noise — see the demo's churn step for its size).
//!
//! ```no_run
//! use closeup::grid::{GridSpec, run_grid, render_markdown};
//! # fn f(train: &closeup::data::EngagementDataset, valid: &closeup::data::EngagementDataset) -> anyhow::Result<()> {
//! let spec = GridSpec {
//!     experts: vec![2, 4, 8],
//!     expert_hidden: vec![vec![256, 256], vec![512, 512], vec![256, 256, 256]],
//!     d_model: vec![],
//! };
//! let report = run_grid(&spec, &Default::default(), train, valid, Default::default(), |_, _, _| {})?;
//! println!("{}", render_markdown(&report));
//! # Ok(()) }
//! ```

use crate::model_dir::{RunConfig, shape_for};
use crate::train::{ProgressMode, Trainer};
use anyhow::{Context, Result, ensure};
use closeup_data::EngagementDataset;
use closeup_data::metrics::MetricsReport;
use closeup_models::CloseupModel;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The axes of the grid; an empty axis keeps the base configuration's value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GridSpec {
    /// Numbers of experts.
    pub experts: Vec<usize>,
    /// Expert hidden sizes.
    pub expert_hidden: Vec<Vec<usize>>,
    /// Transformer widths (the sequence encoder's `d_model`, also the embedding width).
    pub d_model: Vec<usize>,
}

/// One configuration of the grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridPoint {
    /// Number of experts.
    pub experts: usize,
    /// Expert hidden sizes.
    pub expert_hidden: Vec<usize>,
    /// The encoder's `d_model`.
    pub d_model: usize,
}

impl GridPoint {
    /// `E=8 [256,256] d=64`.
    pub fn label(&self) -> String {
        format!(
            "E={} {} d={}",
            self.experts,
            hidden_label(&self.expert_hidden),
            self.d_model
        )
    }
}

/// `[256,256]`.
pub fn hidden_label(h: &[usize]) -> String {
    let parts: Vec<String> = h.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(","))
}

impl GridSpec {
    /// The points in order: experts outermost, then hidden sizes, then `d_model`.
    pub fn points(&self, base: &RunConfig) -> Vec<GridPoint> {
        let or = |v: &[usize], d: usize| if v.is_empty() { vec![d] } else { v.to_vec() };
        let experts = or(&self.experts, base.model.mmoe.num_experts);
        let hidden = if self.expert_hidden.is_empty() {
            vec![base.model.mmoe.expert_hidden.clone()]
        } else {
            self.expert_hidden.clone()
        };
        let dims = or(&self.d_model, base.model.sequence.d_model);
        let mut out = Vec::new();
        for &e in &experts {
            for h in &hidden {
                for &d in &dims {
                    out.push(GridPoint {
                        experts: e,
                        expert_hidden: h.clone(),
                        d_model: d,
                    });
                }
            }
        }
        out
    }
}

/// One trained point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridRow {
    /// The configuration.
    pub point: GridPoint,
    /// Trainable parameters.
    pub params: usize,
    /// Validation metrics of the kept (best) epoch.
    pub valid: MetricsReport,
    /// The kept epoch.
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs_run: usize,
}

/// Every point's result, in grid order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridReport {
    /// Architecture of every point.
    pub architecture: String,
    /// Training examples.
    pub train_examples: usize,
    /// Validation examples.
    pub valid_examples: usize,
    /// Seed of every point.
    pub seed: u64,
    /// One row per point.
    pub rows: Vec<GridRow>,
}

impl GridReport {
    /// The row with the best mean validation AUC.
    pub fn best(&self) -> Option<&GridRow> {
        self.rows.iter().max_by(|a, b| {
            let (x, y) = (a.valid.mean_auc, b.valid.mean_auc);
            x.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&y.unwrap_or(f64::NEG_INFINITY))
        })
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("grid reports serialize");
        s.push('\n');
        s
    }
}

/// Trains every point of `spec` on `train`, validating on `valid` (early stopping and the kept
/// epoch as in [`Trainer`]), with `base` for everything else. `on_point(i, n, point)` is called
/// before point `i` (0-based) of `n`; `progress` is the trainer's progress mode.
///
/// # Errors
/// An invalid configuration at some point (named), or a training failure.
pub fn run_grid(
    spec: &GridSpec,
    base: &RunConfig,
    train: &EngagementDataset,
    valid: &EngagementDataset,
    progress: ProgressMode,
    mut on_point: impl FnMut(usize, usize, &GridPoint),
) -> Result<GridReport> {
    let points = spec.points(base);
    ensure!(!points.is_empty(), "the grid is empty");
    let shape = shape_for(&train.vocab, &train.meta);
    let seq_len = base.model.sequence.seq_len;
    let mut rows = Vec::with_capacity(points.len());
    // Validate every point before training any, so a typo fails fast.
    let configs = points
        .iter()
        .map(|p| {
            let mut cfg = base.model.clone();
            cfg.mmoe.num_experts = p.experts;
            cfg.mmoe.expert_hidden = p.expert_hidden.clone();
            cfg.sequence.d_model = p.d_model;
            cfg.validate()
                .and_then(|()| cfg.validate_for(&shape))
                .with_context(|| format!("grid point {}", p.label()))?;
            Ok(cfg)
        })
        .collect::<Result<Vec<_>>>()?;
    let trainer = Trainer::new(base.train.clone(), seq_len)?.with_progress(progress);
    for (i, (point, cfg)) in points.iter().zip(configs).enumerate() {
        on_point(i, points.len(), point);
        let mut model = CloseupModel::new(&cfg, &shape, base.train.seed)?;
        let params = model.num_params();
        let report = trainer
            .fit(&mut model, train, valid, &mut |_, _| Ok(()))
            .with_context(|| format!("grid point {}", point.label()))?;
        rows.push(GridRow {
            point: point.clone(),
            params,
            valid: report.valid,
            best_epoch: report.best_epoch,
            epochs_run: report.epochs_run,
        });
    }
    Ok(GridReport {
        architecture: base.model.architecture.to_string(),
        train_examples: train.len(),
        valid_examples: valid.len(),
        seed: base.train.seed,
        rows,
    })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.4}"))
}

/// The grid as a markdown table: one row per point, per-task and mean validation AUC, the best
/// mean in bold.
pub fn render_markdown(r: &GridReport) -> String {
    let tasks: Vec<&str> = r
        .rows
        .first()
        .map(|row| row.valid.tasks.iter().map(|(t, _)| t.as_str()).collect())
        .unwrap_or_default();
    let best = r.best().map(|b| b.point.clone());
    let mut out = format!(
        "Grid: {} points, {}, {} training / {} validation examples, seed {}. Validation AUC of \
         each point's kept epoch.\n\n| experts | expert hidden | d_model | params | {} | mean AUC | best epoch |\n|---|---|---|---|{}---|---|\n",
        r.rows.len(),
        r.architecture,
        r.train_examples,
        r.valid_examples,
        r.seed,
        tasks.join(" | "),
        "---|".repeat(tasks.len())
    );
    for row in &r.rows {
        let cells: Vec<String> = row.valid.tasks.iter().map(|(_, m)| fmt(m.auc)).collect();
        let mean = fmt(row.valid.mean_auc);
        let mean = if best.as_ref() == Some(&row.point) {
            format!("**{mean}**")
        } else {
            mean
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {mean} | {} of {} |",
            row.point.experts,
            hidden_label(&row.point.expert_hidden),
            row.point.d_model,
            row.params,
            cells.join(" | "),
            row.best_epoch,
            row.epochs_run
        );
    }
    out
}
