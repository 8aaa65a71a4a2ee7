//! Inference over a whole data set: probabilities, metrics, churn and gate utilization.

use super::convert::{VocabBridge, model_batch};
use closeup_autograd::Tape;
use closeup_data::metrics::{ChurnReport, MetricsReport};
use closeup_data::{BatchOptions, Batches, EngagementDataset};
use closeup_layers::ForwardCtx;
use closeup_models::RankingModel;
use ndarray::{Array2, Axis, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How to run a model over a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictOptions {
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Most recent history actions fed to the model (the model's `seq_len`).
    pub seq_len: usize,
}

impl Default for PredictOptions {
    /// Batches of 512, `seq_len` 100.
    fn default() -> Self {
        Self {
            batch_size: 512,
            seq_len: 100,
        }
    }
}

/// A model's outputs over a data set, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Probabilities `[N, T]`, columns in the **data set's** task order.
    pub scores: Array2<f32>,
    /// 1 where the model has the data set's task, 0 where it does not `[N, T]` (all 1 unless a
    /// [`VocabBridge`] drops a task).
    pub mask: Array2<f32>,
    /// Mean gate weight per task (the **model's** task order) and expert `[T_model, E]`, for
    /// models with gates.
    pub mean_gates: Option<Array2<f64>>,
}

/// Runs `model` in evaluation mode (no dropout, no gradient tape) over every example of `ds`.
///
/// With a `bridge` (data vocabulary → model vocabulary) the data's action ids are translated
/// and the model's columns re-ordered to the data set's tasks; without one, the data set must
/// be encoded with the model's own vocabulary.
///
/// # Panics
/// Without a bridge, if the model's task count differs from the data set's.
pub fn predict<M: RankingModel + ?Sized>(
    model: &M,
    ds: &EngagementDataset,
    opts: PredictOptions,
    bridge: Option<&VocabBridge>,
) -> Predictions {
    let t = ds.vocab.num_tasks();
    let batch_opts = BatchOptions {
        batch_size: opts.batch_size.max(1),
        seq_len: opts.seq_len,
        ..BatchOptions::default()
    };
    let batches = Batches::sequential(ds, batch_opts).expect("batch size is at least 1");
    let mut scores = Array2::<f32>::zeros((ds.len(), t));
    let mut mask = Array2::<f32>::ones((ds.len(), t));
    let mut gate_sum: Option<Array2<f64>> = None;
    let mut rng = ChaCha8Rng::seed_from_u64(0); // never drawn from in evaluation mode
    let mut row = 0;
    for batch in batches {
        let mut mb = model_batch(&batch);
        if let Some(b) = bridge {
            mb = b.translate(&mb);
        }
        let tape = Tape::no_grad();
        let out = model.forward(&tape, &mb, &mut ForwardCtx::eval(&mut rng));
        let probs = out.logits.sigmoid().value();
        let probs = probs
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("logits are [B, T]")
            .to_owned();
        let n = probs.nrows();
        let rows = s![row..row + n, ..];
        match bridge {
            Some(b) => {
                let (aligned, m) = b.align_scores(&probs);
                scores.slice_mut(rows).assign(&aligned);
                mask.slice_mut(rows).assign(&m);
            }
            None => {
                assert_eq!(
                    probs.ncols(),
                    t,
                    "model has {} tasks, data {t}",
                    probs.ncols()
                );
                scores.slice_mut(rows).assign(&probs);
            }
        }
        if let Some(g) = out.gate_weights {
            // [T, B, E] → sum over the batch → [T, E].
            let g = g.mapv(f64::from).sum_axis(Axis(1));
            let g = g
                .into_dimensionality::<ndarray::Ix2>()
                .expect("gates are [T, B, E]");
            match gate_sum.as_mut() {
                Some(acc) => *acc += &g,
                None => gate_sum = Some(g),
            }
        }
        row += n;
    }
    let n = ds.len().max(1) as f64;
    Predictions {
        scores,
        mask,
        mean_gates: gate_sum.map(|g| g / n),
    }
}

/// Labels `[N, T]` and label mask `[N, T]` of a data set (missing labels: mask 0).
pub fn label_arrays(ds: &EngagementDataset) -> (Array2<f32>, Array2<f32>) {
    let t = ds.vocab.num_tasks();
    let mut labels = Array2::zeros((ds.len(), t));
    let mut mask = Array2::zeros((ds.len(), t));
    for (i, ex) in ds.examples.iter().enumerate() {
        for (k, l) in ex.labels.iter().enumerate() {
            if let Some(v) = l {
                labels[[i, k]] = *v;
                mask[[i, k]] = 1.0;
            }
        }
    }
    (labels, mask)
}

/// Per-task AUC (exact, midrank ties), log loss, calibration and counts of `scores` against the
/// labels of `ds`. Examples are unweighted; a label the model cannot score (mask 0 in
/// `score_mask`) or that is missing is left out of its task.
pub fn metrics(
    ds: &EngagementDataset,
    scores: &Array2<f32>,
    score_mask: Option<&Array2<f32>>,
) -> MetricsReport {
    let (labels, mut mask) = label_arrays(ds);
    if let Some(m) = score_mask {
        mask *= m;
    }
    MetricsReport::from_arrays(
        ds.vocab.tasks(),
        scores.view(),
        labels.view(),
        mask.view(),
        None,
    )
}

/// [`predict`] then [`metrics`].
pub fn evaluate<M: RankingModel + ?Sized>(
    model: &M,
    ds: &EngagementDataset,
    opts: PredictOptions,
    bridge: Option<&VocabBridge>,
) -> MetricsReport {
    let p = predict(model, ds, opts, bridge);
    metrics(ds, &p.scores, bridge.map(|_| &p.mask))
}

/// Churn between two models' probabilities on the same examples of `ds` (mean |Δp| per task,
/// top-`k` flips and Kendall τ-b per request; requests are the data's `request` field, or
/// `user` + `ts`).
///
/// # Panics
/// If the score arrays are not `[N, T]` for `ds`, or `k == 0`.
pub fn churn(ds: &EngagementDataset, a: &Array2<f32>, b: &Array2<f32>, k: usize) -> ChurnReport {
    let requests: Vec<_> = ds.examples.iter().map(|e| &e.request).collect();
    ChurnReport::from_arrays(ds.vocab.tasks(), a.view(), b.view(), &requests, k)
}
