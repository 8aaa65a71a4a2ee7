//! The trainer's knobs: [`TrainConfig`] (the `[train]` table of a run's `config.toml`) and the
//! learning-rate schedule.

use super::TrainError;
use closeup_losses::ScoreRegSpace;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the learning rate decays after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrDecay {
    /// Constant after the warm-up.
    None,
    /// Linear from `lr` to `min_lr_fraction · lr` at the last possible step.
    Linear,
    /// Half a cosine from `lr` to `min_lr_fraction · lr` at the last possible step.
    #[default]
    Cosine,
}

/// Everything about *how* a model is trained (the model's own shape lives in the model config).
///
/// Every field has a default (`#[serde(default)]`), so a `[train]` table may name any subset.
/// Unknown keys are an error, so a typo is never silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of the model's initialization, the shuffling and dropout.
    pub seed: u64,
    /// Maximum number of passes over the training data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate of Adam.
    pub lr: f32,
    /// Decoupled (AdamW) weight decay; 0 = plain Adam.
    pub weight_decay: f32,
    /// Steps of linear warm-up from `lr / warmup_steps` to `lr` (0 = none).
    pub warmup_steps: usize,
    /// Decay after the warm-up.
    pub decay: LrDecay,
    /// Floor of the decay as a fraction of `lr`.
    pub min_lr_fraction: f32,
    /// Clip the global gradient norm to this value (0 = no clipping).
    pub max_grad_norm: f32,
    /// Stop after this many epochs without a better mean validation AUC (0 = never stop early).
    pub patience: usize,
    /// When no validation file is given: the latest fraction of the training file (by `ts`) held
    /// out for validation.
    pub valid_fraction: f64,
    /// Loss weight per task name; tasks not listed weigh 1.
    pub task_weights: BTreeMap<String, f32>,
    /// λ of score regularization, `λ · MSE(new score, old score)`; 0 = off.
    pub score_reg: f32,
    /// Where the score-regularization MSE is measured.
    pub score_reg_space: ScoreRegSpace,
}

impl Default for TrainConfig {
    /// Adam at 1e-3 (SPEC §5), batch 256, at most 8 epochs with early stopping after 2 epochs
    /// without improvement, 100 warm-up steps then a cosine decay to 10%, gradients clipped at
    /// norm 5, 10% of the training file held out by time.
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 8,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.0,
            warmup_steps: 100,
            decay: LrDecay::Cosine,
            min_lr_fraction: 0.1,
            max_grad_norm: 5.0,
            patience: 2,
            valid_fraction: 0.1,
            task_weights: BTreeMap::new(),
            score_reg: 0.0,
            score_reg_space: ScoreRegSpace::Probability,
        }
    }
}

impl TrainConfig {
    /// Checks every value's range.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, why: String| Err(TrainError::Config(format!("{field}: {why}")));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_fraction) {
            return bad(
                "min_lr_fraction",
                format!("must be in [0, 1], got {}", self.min_lr_fraction),
            );
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad(
                "max_grad_norm",
                format!("must be >= 0, got {}", self.max_grad_norm),
            );
        }
        if !(self.valid_fraction > 0.0 && self.valid_fraction < 1.0) {
            return bad(
                "valid_fraction",
                format!("must be in (0, 1), got {}", self.valid_fraction),
            );
        }
        if !(self.score_reg.is_finite() && self.score_reg >= 0.0) {
            return bad("score_reg", format!("must be >= 0, got {}", self.score_reg));
        }
        if let Some((t, w)) = self
            .task_weights
            .iter()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return bad("task_weights", format!("{t}: must be >= 0, got {w}"));
        }
        Ok(())
    }

    /// The loss weight of each of `tasks` (1 for tasks not in [`TrainConfig::task_weights`]).
    ///
    /// # Errors
    /// [`TrainError::Config`] when a weighted task is not one of `tasks` (a typo).
    pub fn task_weight_vector(&self, tasks: &[String]) -> Result<Vec<f32>, TrainError> {
        if let Some(unknown) = self.task_weights.keys().find(|k| !tasks.contains(k)) {
            return Err(TrainError::Config(format!(
                "task_weights: unknown task {unknown:?} (the tasks are {})",
                tasks.join(", ")
            )));
        }
        Ok(tasks
            .iter()
            .map(|t| self.task_weights.get(t).copied().unwrap_or(1.0))
            .collect())
    }

    /// The learning rate at 1-based `step` of a run of at most `total_steps` steps.
    pub fn lr_at(&self, step: usize, total_steps: usize) -> f32 {
        let step = step.max(1);
        if step <= self.warmup_steps {
            return self.lr * step as f32 / self.warmup_steps as f32;
        }
        let span = total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f32 / span as f32).min(1.0);
        let floor = self.min_lr_fraction;
        let factor = match self.decay {
            LrDecay::None => 1.0,
            LrDecay::Linear => 1.0 - (1.0 - floor) * progress,
            LrDecay::Cosine => {
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
        };
        self.lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let cfg = TrainConfig {
            warmup_steps: 10,
            ..TrainConfig::default()
        };
        assert!((cfg.lr_at(1, 110) - 1e-4).abs() < 1e-9);
        assert!((cfg.lr_at(10, 110) - 1e-3).abs() < 1e-9);
        assert!((cfg.lr_at(110, 110) - 1e-4).abs() < 1e-9);
        assert!(cfg.lr_at(60, 110) < 1e-3 && cfg.lr_at(60, 110) > 1e-4);
        let flat = TrainConfig {
            warmup_steps: 0,
            decay: LrDecay::None,
            ..TrainConfig::default()
        };
        assert_eq!(flat.lr_at(1, 5), flat.lr_at(5, 5));
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = TrainConfig {
            lr: f32::NAN,
            ..TrainConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("lr"));
        let cfg = TrainConfig {
            task_weights: [("nope".to_string(), 1.0)].into(),
            ..TrainConfig::default()
        };
        let err = cfg.task_weight_vector(&["click".into()]).unwrap_err();
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let cfg: TrainConfig = toml::from_str("epochs = 3\nscore_reg = 0.5").unwrap();
        assert_eq!((cfg.epochs, cfg.score_reg), (3, 0.5));
        let back: TrainConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(toml::from_str::<TrainConfig>("epoch = 3").is_err());
    }
}
