//! Multi-task binary cross-entropy from logits, with label masks, per-example weights and
//! per-task loss weights.

use closeup_autograd::{Tensor, Var};
use ndarray::{Array1, Array2, Axis};

/// Element-wise binary cross-entropy from logits, `softplus(z) − y·z`
/// (= `−y·log σ(z) − (1−y)·log(1−σ(z))`, stable for any `z`).
///
/// # Shapes
/// `logits` any shape, `labels` the same shape (constant) → the same shape.
///
/// # Panics
/// If the shapes differ.
pub fn bce_with_logits<'t>(logits: Var<'t>, labels: &Tensor) -> Var<'t> {
    assert_eq!(
        logits.shape(),
        labels.shape(),
        "bce_with_logits: logits shape {:?} vs labels shape {:?}",
        logits.shape(),
        labels.shape()
    );
    let y = logits.tape().constant(labels.clone());
    logits.softplus() - y * logits
}

/// The targets of a multi-task batch.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiTaskTargets {
    /// 0/1 labels `[B, T]` (any value where the mask is 0).
    pub labels: Array2<f32>,
    /// `[B, T]`: 1 where the label is present, 0 where it is missing.
    pub label_mask: Array2<f32>,
    /// Per-example weights `[B]` (default 1).
    pub example_weights: Option<Array1<f32>>,
}

/// The multi-task loss and its parts.
#[derive(Debug)]
pub struct MultiTaskLoss<'t> {
    /// `Σ_t task_weight_t · loss_t` — what to back-propagate.
    pub total: Var<'t>,
    /// Each task's (unweighted by task weight) loss value, for logging.
    pub per_task: Vec<f32>,
    /// Number of present labels per task in this batch.
    pub present: Vec<usize>,
}

/// Masked, weighted multi-task BCE.
///
/// For task `t`, with `m_bt` the label mask and `w_b` the example weight:
///
/// `loss_t = Σ_b w_b · m_bt · BCE(z_bt, y_bt) / Σ_b m_bt`
///
/// — the mean over the examples whose label is **present** (a missing label contributes
/// nothing, neither to the sum nor to the count; it is never read as 0). With no missing labels
/// and unit weights this is PyTorch's `mean_b BCEWithLogits`. A task with no present label in
/// the batch contributes 0. `total = Σ_t task_weights[t] · loss_t`.
///
/// # Shapes
/// `logits: [B, T]`, targets `[B, T]` and `[B]`, `task_weights: [T]` → `total: []`.
///
/// # Panics
/// If the shapes disagree.
pub fn multitask_bce<'t>(
    logits: Var<'t>,
    targets: &MultiTaskTargets,
    task_weights: &[f32],
) -> MultiTaskLoss<'t> {
    let shape = logits.shape();
    assert!(
        shape.len() == 2
            && targets.labels.shape() == shape.as_slice()
            && targets.label_mask.shape() == shape.as_slice()
            && task_weights.len() == shape[1],
        "multitask_bce: logits {shape:?}, labels {:?}, mask {:?}, {} task weights",
        targets.labels.shape(),
        targets.label_mask.shape(),
        task_weights.len()
    );
    let (batch, tasks) = (shape[0], shape[1]);
    let present: Vec<f32> = targets.label_mask.sum_axis(Axis(0)).to_vec();
    // Coefficient of each element: w_b · m_bt · λ_t / max(n_t, 1).
    let mut coef = targets.label_mask.clone();
    if let Some(w) = &targets.example_weights {
        assert_eq!(
            w.len(),
            batch,
            "multitask_bce: {} example weights for {batch} examples",
            w.len()
        );
        coef *= &w.view().insert_axis(Axis(1));
    }
    let per_task_coef = Array1::from_shape_fn(tasks, |t| 1.0 / present[t].max(1.0));
    let weighted_coef = &coef * &per_task_coef;
    let tape = logits.tape();
    let elementwise = bce_with_logits(logits, &targets.labels.clone().into_dyn());
    // Per-task losses (for logging): Σ_b coef · bce over the batch axis.
    let per_task_var = (elementwise * tape.constant(weighted_coef.into_dyn())).sum_axis(0, false);
    let per_task: Vec<f32> = per_task_var.value().iter().copied().collect();
    let lambda = tape.constant(Array1::from(task_weights.to_vec()).into_dyn());
    let total = (per_task_var * lambda).sum();
    MultiTaskLoss {
        total,
        per_task,
        present: present.iter().map(|&n| n as usize).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use ndarray::array;

    fn reference_bce(z: f64, y: f64) -> f64 {
        let p = 1.0 / (1.0 + (-z).exp());
        -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
    }

    #[test]
    fn closed_form_values_with_masks_and_weights() {
        let z = array![[2.0_f32, -1.0, 0.3], [0.5, 0.0, -2.0], [-0.7, 1.5, 0.1]];
        let y = array![[1.0_f32, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]];
        let m = array![[1.0_f32, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let w = array![1.0_f32, 2.0, 0.5];
        let targets = MultiTaskTargets {
            labels: y.clone(),
            label_mask: m.clone(),
            example_weights: Some(w.clone()),
        };
        let tape = Tape::new();
        let loss = multitask_bce(tape.leaf(z.clone().into_dyn()), &targets, &[1.0, 0.5, 3.0]);
        let mut want_total = 0.0;
        for (t, lam) in [1.0, 0.5, 3.0].iter().enumerate() {
            let (mut s, mut n) = (0.0, 0.0);
            for b in 0..3 {
                if m[[b, t]] > 0.0 {
                    s +=
                        f64::from(w[b]) * reference_bce(f64::from(z[[b, t]]), f64::from(y[[b, t]]));
                    n += 1.0;
                }
            }
            let lt = if n > 0.0 { s / n } else { 0.0 };
            approx::assert_abs_diff_eq!(f64::from(loss.per_task[t]), lt, epsilon = 1e-5);
            want_total += lam * lt;
        }
        approx::assert_abs_diff_eq!(f64::from(loss.total.item()), want_total, epsilon = 1e-5);
        assert_eq!(loss.present, [2, 2, 0]);
    }

    #[test]
    fn gradient_check_and_missing_labels_get_no_gradient() {
        let y = array![[1.0_f32, 0.0], [0.0, 1.0], [1.0, 0.0]];
        let m = array![[1.0_f32, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let targets = MultiTaskTargets {
            labels: y,
            label_mask: m.clone(),
            example_weights: Some(array![0.5, 1.0, 2.0]),
        };
        let t2 = targets.clone();
        assert_gradients(&[randn(&[3, 2], 1)], move |_, v| {
            multitask_bce(v[0], &t2, &[1.0, 2.0]).total
        });
        let tape = Tape::new();
        let z = tape.leaf(randn(&[3, 2], 2));
        let g = tape
            .backward(multitask_bce(z, &targets, &[1.0, 1.0]).total)
            .wrt(z)
            .unwrap();
        for ((b, t), &mask) in m.indexed_iter() {
            assert_eq!(g[[b, t]] == 0.0, mask == 0.0, "gradient at ({b},{t})");
        }
    }

    #[test]
    fn stable_for_extreme_logits_and_matches_pytorch_mean_without_masks() {
        let tape = Tape::new();
        let z = tape.leaf(array![[1000.0_f32], [-1000.0], [30.0]].into_dyn());
        let targets = MultiTaskTargets {
            labels: array![[0.0], [1.0], [1.0]],
            label_mask: Array2::ones((3, 1)),
            example_weights: None,
        };
        let loss = multitask_bce(z, &targets, &[1.0]);
        approx::assert_abs_diff_eq!(loss.total.item(), 2000.0 / 3.0, epsilon = 1e-2);
        let g = tape.backward(loss.total).wrt(z).unwrap();
        assert!(g.iter().all(|v| v.is_finite()));
        approx::assert_abs_diff_eq!(g[[0, 0]], 1.0 / 3.0, epsilon = 1e-6);
    }
}
