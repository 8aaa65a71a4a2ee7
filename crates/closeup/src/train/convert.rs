//! From the data layer's [`Batch`] to what a model and the losses read.

use closeup_data::{Batch, Vocab};
use closeup_losses::MultiTaskTargets;
use closeup_models::ModelBatch;
use ndarray::{Array1, Array2};

/// The model's view of a batch: history, candidates and features (labels stay out).
pub fn model_batch(batch: &Batch) -> ModelBatch {
    ModelBatch {
        hist_pins: batch.hist_pins.clone(),
        hist_actions: batch.hist_actions.mapv(|a| a as usize),
        hist_mask: batch.hist_mask.clone(),
        candidates: batch.candidates.as_ref().map(|c| Array1::from(c.clone())),
        features: batch.features.clone(),
    }
}

/// The loss's view of a batch: labels, label mask and example weights (omitted when all 1, so
/// the unweighted loss is exactly the plain masked mean).
pub fn targets(batch: &Batch) -> MultiTaskTargets {
    let weighted = batch.weights.iter().any(|&w| w != 1.0);
    MultiTaskTargets {
        labels: batch.labels.clone(),
        label_mask: batch.label_mask.clone(),
        example_weights: weighted.then(|| batch.weights.clone()),
    }
}

/// Translates a batch encoded with one vocabulary into another model's vocabulary: action ids
/// by action name, and logits columns by task name. Used to run a teacher model (or the other
/// model of a churn comparison) on data encoded with the student's vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct VocabBridge {
    /// `actions[id]` = the other vocabulary's id of this vocabulary's action `id`.
    actions: Vec<usize>,
    /// `columns[t]` = the other model's column of this vocabulary's task `t`, if it has it.
    columns: Vec<Option<usize>>,
}

impl VocabBridge {
    /// The bridge from `from` (the data's encoding) to `to` (the other model's vocabulary).
    pub fn new(from: &Vocab, to: &Vocab) -> Self {
        let actions = (0..from.num_actions() as u32)
            .map(|id| match from.action_name(id) {
                Some(name) if id >= 2 => to.action_id(name) as usize,
                _ => id as usize, // padding and unknown are the same in every vocabulary
            })
            .collect();
        let columns = from.tasks().iter().map(|t| to.task_index(t)).collect();
        Self { actions, columns }
    }

    /// Whether translation changes nothing (same actions, same task order).
    pub fn is_identity(&self) -> bool {
        self.actions.iter().enumerate().all(|(i, &a)| i == a)
            && self.columns.iter().enumerate().all(|(i, c)| *c == Some(i))
    }

    /// The tasks of the data vocabulary the other model scores.
    pub fn shared_tasks(&self) -> usize {
        self.columns.iter().flatten().count()
    }

    /// Re-encodes the action ids of `batch` for the other model.
    pub fn translate(&self, batch: &ModelBatch) -> ModelBatch {
        let mut out = batch.clone();
        out.hist_actions
            .mapv_inplace(|a| self.actions.get(a).copied().unwrap_or(1));
        out
    }

    /// The other model's probabilities `[B, T_other]` laid out as this vocabulary's `[B, T]`,
    /// with a mask that is 0 for tasks the other model does not have.
    pub fn align_scores(&self, other: &Array2<f32>) -> (Array2<f32>, Array2<f32>) {
        let b = other.nrows();
        let t = self.columns.len();
        let mut scores = Array2::zeros((b, t));
        let mut mask = Array2::zeros((b, t));
        for (k, col) in self.columns.iter().enumerate() {
            if let Some(c) = *col {
                scores.column_mut(k).assign(&other.column(c));
                mask.column_mut(k).fill(1.0);
            }
        }
        (scores, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tasks: &[&str], actions: &[&str]) -> Vocab {
        Vocab::new(
            tasks.iter().map(|s| s.to_string()).collect(),
            actions.iter().map(|s| s.to_string()).collect(),
            0,
        )
        .unwrap()
    }

    #[test]
    fn bridge_maps_actions_and_tasks_by_name() {
        let from = vocab(&["repin", "click"], &["click", "repin", "hide"]);
        let to = vocab(&["click", "closeup"], &["repin", "click"]);
        let bridge = VocabBridge::new(&from, &to);
        assert!(!bridge.is_identity());
        assert_eq!(bridge.actions, vec![0, 1, 3, 2, 1]);
        assert_eq!(bridge.columns, vec![None, Some(0)]);
        let (s, m) = bridge.align_scores(&ndarray::array![[0.25, 0.5]]);
        assert_eq!(s, ndarray::array![[0.0, 0.25]]);
        assert_eq!(m, ndarray::array![[0.0, 1.0]]);
        let same = VocabBridge::new(&from, &from);
        assert!(same.is_identity());
        assert_eq!(same.shared_tasks(), 2);
    }
}
