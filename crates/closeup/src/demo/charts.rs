//! The demo's figures, from its metrics ([`crate::figures`] draws them).

use super::DemoMetrics;
use crate::figures::{Series, bar_chart, gate_heatmap, hbar_chart, line_chart};
use crate::grid::hidden_label;
use ndarray::Array2;

/// File names of the figures, in the order of the report.
pub(crate) const TRAINING: &str = "training_curves.svg";
pub(crate) const LOSS: &str = "training_loss.svg";
pub(crate) const AUC: &str = "auc_vs_ceiling.svg";
pub(crate) const GATES: &str = "gates.svg";
pub(crate) const CHURN: &str = "churn.svg";
pub(crate) const BLENDER: &str = "blender_reward.svg";
pub(crate) const GRID: &str = "grid.svg";

const BASE_MODELS: [&str; 3] = ["mmoe", "shared-bottom", "single-task"];

fn nan(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// Every figure as `(file name, SVG)`.
pub(crate) fn all(m: &DemoMetrics) -> Vec<(String, String)> {
    let tasks: Vec<String> = m
        .data
        .ceiling
        .tasks
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    let curves: Vec<Series> = BASE_MODELS
        .iter()
        .map(|name| {
            let h = &m.model(name).history;
            Series::new(
                *name,
                h.iter()
                    .map(|e| (e.epoch as f64, nan(e.valid_mean_auc)))
                    .collect(),
            )
        })
        .collect();
    let ceiling = nan(m.data.ceiling.mean_auc);
    let training = line_chart(
        "validation mean AUC per epoch",
        "epoch",
        "mean AUC",
        &curves,
        &[("Bayes ceiling (test)", ceiling)],
    );
    let losses: Vec<Series> = BASE_MODELS
        .iter()
        .map(|name| {
            let h = &m.model(name).history;
            Series::new(
                *name,
                h.iter().map(|e| (e.epoch as f64, e.train_loss)).collect(),
            )
        })
        .collect();
    let loss = line_chart(
        "training loss (sum of the task BCEs) per epoch",
        "epoch",
        "loss",
        &losses,
        &[],
    );

    let mut cats = tasks.clone();
    cats.push("mean".into());
    let per_task = |r: &crate::data::metrics::MetricsReport| -> Vec<f64> {
        r.tasks
            .iter()
            .map(|(_, t)| nan(t.auc))
            .chain([nan(r.mean_auc)])
            .collect()
    };
    let mut auc_series: Vec<(String, Vec<f64>)> = BASE_MODELS
        .iter()
        .map(|n| ((*n).to_string(), per_task(&m.model(n).test)))
        .collect();
    auc_series.push(("Bayes ceiling".into(), per_task(&m.data.ceiling)));
    let auc = bar_chart(
        "test AUC per task vs the Bayes ceiling",
        "AUC",
        &cats,
        &auc_series,
        Some(0.5),
    );

    let g = &m.gates;
    let experts = g.mean.first().map_or(0, Vec::len);
    let gates = Array2::from_shape_fn((g.mean.len(), experts), |(t, e)| g.mean[t][e]);
    let gates = gate_heatmap(&g.tasks, &gates);

    let c = &m.churn;
    let delta = |r: &crate::data::metrics::ChurnReport| -> Vec<f64> {
        r.tasks.iter().map(|(_, t)| nan(t.mean_abs_delta)).collect()
    };
    let flips = |r: &crate::data::metrics::ChurnReport| -> Vec<f64> {
        r.tasks.iter().map(|(_, t)| nan(t.topk_flip_rate)).collect()
    };
    let churn = bar_chart(
        &format!(
            "churn vs model A: mean |Δp| and top-{} flip rate (λ_sr = {})",
            c.k, c.score_reg
        ),
        "churn",
        &tasks,
        &[
            ("B: mean |Δp|".into(), delta(&c.a_vs_b)),
            ("B': mean |Δp|".into(), delta(&c.a_vs_b_sr)),
            (format!("B: top-{} flips", c.k), flips(&c.a_vs_b)),
            (format!("B': top-{} flips", c.k), flips(&c.a_vs_b_sr)),
        ],
        None,
    );

    let b = &m.blender;
    let base = &b.baselines;
    let mut rows = vec![
        ("random candidate".to_string(), base.random),
        ("production weights s".to_string(), base.production),
        ("best fixed weights".to_string(), base.best_fixed),
    ];
    for r in &b.rows {
        rows.push((
            format!("learned f(x), {}, λ={}", r.convention, r.lambda),
            r.reward,
        ));
    }
    let learned: Vec<usize> = (3..rows.len()).collect();
    rows.push((
        "posterior oracle (feature-only)".into(),
        base.posterior_oracle,
    ));
    rows.push(("oracle (segment known)".into(), base.oracle));
    let blender = hbar_chart(
        "blender: expected reward per request (held-out requests)",
        "expected reward",
        &rows,
        &learned,
    );

    let shapes: Vec<Vec<usize>> = m.plan.grid.expert_hidden.clone();
    let mut experts: Vec<usize> = m.grid.rows.iter().map(|r| r.point.experts).collect();
    experts.dedup();
    let grid_series: Vec<(String, Vec<f64>)> = experts
        .iter()
        .map(|&e| {
            let vals = shapes
                .iter()
                .map(|h| {
                    m.grid
                        .rows
                        .iter()
                        .find(|r| r.point.experts == e && &r.point.expert_hidden == h)
                        .map_or(f64::NAN, |r| nan(r.valid.mean_auc))
                })
                .collect();
            (format!("{e} experts"), vals)
        })
        .collect();
    let shape_labels: Vec<String> = shapes.iter().map(|h| hidden_label(h)).collect();
    let grid = bar_chart(
        "grid: validation mean AUC per expert shape",
        "mean AUC",
        &shape_labels,
        &grid_series,
        Some(0.5),
    );

    [
        (TRAINING, training),
        (LOSS, loss),
        (AUC, auc),
        (GATES, gates),
        (CHURN, churn),
        (BLENDER, blender),
        (GRID, grid),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect()
}
