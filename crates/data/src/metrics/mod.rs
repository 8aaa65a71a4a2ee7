//! Evaluation metrics, independent of any model or autograd.
//!
//! * [`classification`] — per-task binary metrics: exact ROC AUC with midrank ties (optionally
//!   weighted), clipped log loss, calibration and counts, with missing labels masked out, and
//!   the `metrics.json` summary ([`MetricsReport`], SPEC §4.3).
//! * [`churn`] — disagreement between two models' scores on the same examples (SPEC §2.4):
//!   mean |Δp|, top-k flips per request and Kendall τ-b per request.
//!
//! ```
//! use closeup_data::metrics::{ChurnMetrics, TaskMetrics, auc};
//!
//! assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true], None), Some(0.75));
//! // A missing label (None) is left out, never read as a negative.
//! let m = TaskMetrics::compute(&[0.2f32, 0.7, 0.9], &[Some(false), Some(true), None], None);
//! assert_eq!((m.n, m.positives, m.auc), (2, 1, Some(1.0)));
//! let churn = ChurnMetrics::compute(&[0.1, 0.5, 0.3], &[0.2, 0.4, 0.6], &["r1", "r1", "r1"], 1);
//! assert_eq!(churn.topk_flip_rate, Some(1.0));
//! ```

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
