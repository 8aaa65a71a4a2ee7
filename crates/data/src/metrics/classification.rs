//! Binary-classification metrics per task: exact ROC AUC with midrank ties, clipped log loss,
//! calibration, counts, and the `metrics.json` summary (SPEC §4.3).

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Probabilities are clipped into `[LOGLOSS_EPS, 1 - LOGLOSS_EPS]` before taking logs, so a
/// confidently wrong prediction costs at most `-ln(1e-7) ≈ 16.1` nats instead of infinity.
pub const LOGLOSS_EPS: f64 = 1e-7;

fn check_lengths(what: &str, n: usize, other: usize) {
    assert!(
        n == other,
        "{what} has {other} entries but there are {n} scores"
    );
}

/// Panics unless `labels` (and `weights`, when given) have one entry per score.
fn check_inputs<L>(n: usize, labels: &[L], weights: Option<&[f64]>) {
    check_lengths("labels", n, labels.len());
    if let Some(w) = weights {
        check_lengths("weights", n, w.len());
    }
}

fn weight_at(weights: Option<&[f64]>, i: usize) -> f64 {
    match weights {
        None => 1.0,
        Some(w) => {
            let wi = w[i];
            assert!(
                wi.is_finite() && wi >= 0.0,
                "example weight {i} is {wi}; weights must be finite and >= 0"
            );
            wi
        }
    }
}

/// Exact (weighted) ROC AUC: the probability that a randomly drawn positive is scored above a
/// randomly drawn negative, where tied scores count ½ (the midrank / Mann–Whitney convention).
///
/// With `weights`, every pair (positive `i`, negative `j`) counts with weight `wᵢ·wⱼ`; without,
/// every example weighs 1. Runs in O(n log n): one sort, then one sweep over groups of tied
/// scores. Scores are compared with [`f64::total_cmp`], so a NaN score sorts above `+∞`
/// (callers are expected to pass finite scores).
///
/// Returns `None` when the (weighted) positives or negatives are absent — AUC is undefined
/// with a single class.
///
/// # Panics
/// If `labels` (or `weights`) has a different length than `scores`, or a weight is negative
/// or not finite.
pub fn auc<S: Copy + Into<f64>>(
    scores: &[S],
    labels: &[bool],
    weights: Option<&[f64]>,
) -> Option<f64> {
    let n = scores.len();
    check_inputs(n, labels, weights);
    let mut order: Vec<(f64, bool, f64)> = (0..n)
        .map(|i| (scores[i].into(), labels[i], weight_at(weights, i)))
        .collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

    let (mut neg_below, mut numerator, mut pos_total) = (0.0f64, 0.0f64, 0.0f64);
    let mut start = 0;
    while start < n {
        let mut end = start;
        let (mut pos_group, mut neg_group) = (0.0, 0.0);
        while end < n && order[end].0.total_cmp(&order[start].0) == Ordering::Equal {
            if order[end].1 {
                pos_group += order[end].2;
            } else {
                neg_group += order[end].2;
            }
            end += 1;
        }
        numerator += pos_group * (neg_below + 0.5 * neg_group);
        neg_below += neg_group;
        pos_total += pos_group;
        start = end;
    }
    let denominator = pos_total * neg_below;
    (denominator > 0.0).then(|| numerator / denominator)
}

/// (Weighted) mean binary cross-entropy of probabilities `scores` against `labels`, with the
/// probabilities clipped to `[LOGLOSS_EPS, 1 − LOGLOSS_EPS]`. `None` when the total weight is 0
/// (e.g. no examples).
///
/// # Panics
/// Same as [`auc`].
pub fn logloss<S: Copy + Into<f64>>(
    scores: &[S],
    labels: &[bool],
    weights: Option<&[f64]>,
) -> Option<f64> {
    let n = scores.len();
    check_inputs(n, labels, weights);
    let (mut total, mut wsum) = (0.0, 0.0);
    for i in 0..n {
        let w = weight_at(weights, i);
        let p = scores[i].into().clamp(LOGLOSS_EPS, 1.0 - LOGLOSS_EPS);
        total -= w * if labels[i] { p.ln() } else { (1.0 - p).ln() };
        wsum += w;
    }
    (wsum > 0.0).then(|| total / wsum)
}

/// Calibration: (weighted) mean predicted probability divided by the (weighted) observed
/// positive rate; 1.0 is perfectly calibrated on average, above 1 over-predicts. `None` when
/// there are no (weighted) positives.
///
/// # Panics
/// Same as [`auc`].
pub fn calibration<S: Copy + Into<f64>>(
    scores: &[S],
    labels: &[bool],
    weights: Option<&[f64]>,
) -> Option<f64> {
    let n = scores.len();
    check_inputs(n, labels, weights);
    let (mut pred, mut obs) = (0.0, 0.0);
    for i in 0..n {
        let w = weight_at(weights, i);
        pred += w * scores[i].into();
        if labels[i] {
            obs += w;
        }
    }
    (obs > 0.0).then(|| pred / obs)
}

/// The metrics of one task over one data set; serializes to the `metrics.json` task shape
/// `{"auc": .., "logloss": .., "n": .., "positives": ..}` plus calibration fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// ROC AUC (`null` when only one class is present).
    pub auc: Option<f64>,
    /// Mean clipped log loss (`null` when there are no labelled examples).
    pub logloss: Option<f64>,
    /// Number of examples with a label for this task (masked examples excluded).
    pub n: usize,
    /// Number of positive labels among them.
    pub positives: usize,
    /// (Weighted) mean predicted probability.
    #[serde(default)]
    pub mean_prediction: Option<f64>,
    /// (Weighted) observed positive rate.
    #[serde(default)]
    pub observed_rate: Option<f64>,
    /// `mean_prediction / observed_rate`, see [`calibration`].
    #[serde(default)]
    pub calibration: Option<f64>,
}

impl TaskMetrics {
    /// Computes every metric of one task. `labels[i] == None` marks a missing label: that
    /// example is excluded from all metrics (never read as a negative). `scores` are
    /// probabilities in `[0, 1]`.
    ///
    /// # Panics
    /// If the lengths differ or a weight is negative or not finite.
    pub fn compute<S: Copy + Into<f64>>(
        scores: &[S],
        labels: &[Option<bool>],
        weights: Option<&[f64]>,
    ) -> Self {
        let n_all = scores.len();
        check_inputs(n_all, labels, weights);
        let kept: Vec<usize> = (0..n_all).filter(|&i| labels[i].is_some()).collect();
        let s: Vec<f64> = kept.iter().map(|&i| scores[i].into()).collect();
        let y: Vec<bool> = kept.iter().map(|&i| labels[i] == Some(true)).collect();
        let w: Option<Vec<f64>> = weights.map(|w| kept.iter().map(|&i| w[i]).collect());
        let w = w.as_deref();
        let wsum: f64 = (0..kept.len()).map(|i| weight_at(w, i)).sum();
        let mean_prediction = (wsum > 0.0)
            .then(|| (0..kept.len()).map(|i| weight_at(w, i) * s[i]).sum::<f64>() / wsum);
        let observed_rate = (wsum > 0.0).then(|| {
            (0..kept.len())
                .filter(|&i| y[i])
                .map(|i| weight_at(w, i))
                .sum::<f64>()
                / wsum
        });
        TaskMetrics {
            auc: auc(&s, &y, w),
            logloss: logloss(&s, &y, w),
            n: kept.len(),
            positives: y.iter().filter(|&&b| b).count(),
            mean_prediction,
            observed_rate,
            calibration: calibration(&s, &y, w),
        }
    }
}

/// Mean of the defined AUCs (tasks whose AUC is `None` are skipped); `None` if there is none.
pub fn mean_auc<I: IntoIterator<Item = Option<f64>>>(aucs: I) -> Option<f64> {
    let (sum, count) = aucs
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(s, c), a| (s + a, c + 1));
    (count > 0).then(|| sum / count as f64)
}

/// Per-task metrics of a model on one data set, in the task order of the configuration.
///
/// Serializes to the `metrics.json` shape of SPEC §4.3:
/// `{"tasks": {"repin": {"auc": .., "logloss": .., "n": .., "positives": ..}, ..},
/// "mean_auc": ..}`, keeping the task order in the JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    /// `(task name, metrics)` in task order.
    #[serde(with = "super::ordered_map")]
    pub tasks: Vec<(String, TaskMetrics)>,
    /// [`mean_auc`] over the tasks.
    #[serde(default)]
    pub mean_auc: Option<f64>,
}

impl MetricsReport {
    /// Builds the report and its `mean_auc` from per-task metrics.
    pub fn new(tasks: Vec<(String, TaskMetrics)>) -> Self {
        let mean_auc = mean_auc(tasks.iter().map(|(_, m)| m.auc));
        MetricsReport { tasks, mean_auc }
    }

    /// Metrics of every task from `[N, T]` arrays laid out like a batch: `scores` are
    /// probabilities, `labels` 0/1 (> 0.5 is positive), `mask` non-zero where the label is
    /// present (masked examples are excluded from that task), `weights` per example.
    ///
    /// # Panics
    /// If the shapes disagree with each other or with `tasks`, or a weight is invalid.
    pub fn from_arrays<S, L, M>(
        tasks: &[String],
        scores: ArrayView2<'_, S>,
        labels: ArrayView2<'_, L>,
        mask: ArrayView2<'_, M>,
        weights: Option<&[f64]>,
    ) -> Self
    where
        S: Copy + Into<f64>,
        L: Copy + Into<f64>,
        M: Copy + Into<f64>,
    {
        let (n, t) = scores.dim();
        assert_eq!(
            t,
            tasks.len(),
            "scores have {t} columns for {} tasks",
            tasks.len()
        );
        assert_eq!(labels.dim(), (n, t), "labels and scores differ in shape");
        assert_eq!(mask.dim(), (n, t), "mask and scores differ in shape");
        let per_task = tasks
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let s: Vec<f64> = scores.column(k).iter().map(|&x| x.into()).collect();
                let y: Vec<Option<bool>> = labels
                    .column(k)
                    .iter()
                    .zip(mask.column(k))
                    .map(|(&l, &m)| (m.into() != 0.0).then(|| l.into() > 0.5))
                    .collect();
                (name.clone(), TaskMetrics::compute(&s, &y, weights))
            })
            .collect();
        MetricsReport::new(per_task)
    }

    /// The metrics of the task called `name`, if present.
    pub fn task(&self, name: &str) -> Option<&TaskMetrics> {
        self.tasks.iter().find(|(t, _)| t == name).map(|(_, m)| m)
    }
}
