//! Evaluation metrics, independent of any model or autograd.
//!
//! * [`classification`] — per-task binary metrics: exact ROC AUC with midrank ties (optionally
//!   weighted), clipped log loss, calibration and counts, with missing labels masked out, and
//!   the `metrics.json` summary ([`MetricsReport`], SPEC §4.3).
//! * [`churn`] — disagreement between two models' scores on the same examples (SPEC §2.4):
//!   mean |Δp|, top-k flips per request and Kendall τ-b per request.

pub mod churn;
pub mod classification;
mod ordered_map;

pub use churn::{
    ChurnMetrics, ChurnReport, TopKChurn, group_by_request, kendall_tau_b, mean_abs_delta,
    mean_kendall_tau, topk_churn,
};
pub use classification::{
    LOGLOSS_EPS, MetricsReport, TaskMetrics, auc, calibration, logloss, mean_auc,
};

#[cfg(test)]
mod tests;
