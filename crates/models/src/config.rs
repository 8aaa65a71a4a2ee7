//! The model configuration (a TOML file, every knob of SPEC §5 with the reference values as
//! defaults) and what comes from the data ([`ModelShape`]).
//!
//! ```toml
//! architecture = "mmoe"          # mmoe | omoe | shared-bottom | single-task
//!
//! [sequence]
//! seq_len = 100                  # most recent actions kept
//! pin_buckets = 100000           # pin-id hash buckets (shared with the candidate)
//! d_model = 64
//! layers = 2
//! heads = 4
//! ffn_hidden = 256
//! dropout = 0.1
//! early_fusion = false           # TransAct: candidate concatenated to every token
//! readouts = ["mean", "target_attention"]   # or ["first_k", "max_pool"] (TransAct)
//! first_k = 10
//! [sequence.time_window_mask]
//! probability = 0.0              # off
//! max_window = 10
//!
//! [mmoe]
//! num_experts = 8
//! expert_hidden = [256, 256]
//! expert_dropout = 0.2
//! residual = true
//! gate_dropout = 0.0
//! tower_hidden = [128]
//! tower_dropout = 0.0
//!
//! [shared_bottom]
//! hidden = []                    # [] = sized to the experts' parameter count
//! ```

use crate::error::{ModelError, Result, invalid};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// Which multi-task head sits on top of the shared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Multi-gate mixture of experts: one softmax gate per task (Ma et al., KDD 2018).
    #[default]
    Mmoe,
    /// One-gate mixture of experts: one gate shared by every task (the MMoE paper's baseline).
    Omoe,
    /// One shared MLP (of comparable parameter count) + one tower per task.
    SharedBottom,
    /// One independent bottom MLP + tower per task (no sharing above the input).
    SingleTask,
}

impl Architecture {
    /// Every architecture, in config-name order.
    pub const ALL: [Architecture; 4] = [
        Architecture::Mmoe,
        Architecture::Omoe,
        Architecture::SharedBottom,
        Architecture::SingleTask,
    ];

    /// The config / command-line name (`mmoe`, `omoe`, `shared-bottom`, `single-task`), also
    /// the parameter-name prefix of the head with `-` replaced by `_`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Mmoe => "mmoe",
            Architecture::Omoe => "omoe",
            Architecture::SharedBottom => "shared-bottom",
            Architecture::SingleTask => "single-task",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        Architecture::ALL
            .into_iter()
            .find(|a| a.name() == s || a.name().replace('-', "_") == s)
            .ok_or_else(|| {
                invalid(
                    "architecture",
                    format!("unknown architecture {s:?}; expected mmoe, omoe, shared-bottom or single-task"),
                )
            })
    }
}

/// How the encoded action sequence becomes a fixed-width vector (several may be concatenated,
/// in the configured order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// TransAct: the first `first_k` output tokens (the most recent actions), flattened;
    /// padded / missing tokens are zeros. Width `first_k · d_model`.
    FirstK,
    /// TransAct: max-pool over the real tokens (zeros for an empty history). Width `d_model`.
    MaxPool,
    /// Mean over the real tokens (zeros for an empty history). Width `d_model`.
    Mean,
    /// Target attention with the candidate pin embedding as the query (the PyTorch peer's
    /// `attn_pool`); needs a candidate. Width `d_model`.
    TargetAttention,
}

impl Readout {
    /// Whether the read-out depends on the candidate (then it is computed per candidate at
    /// serving time).
    pub fn needs_candidate(self) -> bool {
        matches!(self, Readout::TargetAttention)
    }
}

/// TransAct's random time-window mask: during training, with probability `probability` per
/// example, the most recent `w ~ U{1..=max_window}` actions are hidden from the encoder, so the
/// model does not over-rely on the very latest actions. Never applied in evaluation or serving.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeWindowMask {
    /// Probability that an example's recent window is masked (0 = off).
    pub probability: f32,
    /// Largest window, in tokens (actions are most recent first).
    pub max_window: usize,
}

impl Default for TimeWindowMask {
    fn default() -> Self {
        TimeWindowMask {
            probability: 0.0,
            max_window: 10,
        }
    }
}

/// The action-sequence encoder (SPEC §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequenceConfig {
    /// Most recent actions kept (longer histories are truncated to the most recent).
    pub seq_len: usize,
    /// Pin-id hash buckets of the pin embedding table (shared by history and candidate).
    pub pin_buckets: usize,
    /// Token / embedding width (also the candidate embedding width).
    pub d_model: usize,
    /// Pre-LN transformer blocks.
    pub layers: usize,
    /// Attention heads (must divide `d_model`).
    pub heads: usize,
    /// Width of the GELU feed-forward layer.
    pub ffn_hidden: usize,
    /// Dropout on attention weights, residual branches and inside the FFN.
    pub dropout: f32,
    /// TransAct's early fusion: concatenate the candidate embedding to every token and project
    /// back to `d_model` (then the encoder runs once per candidate at serving time).
    pub early_fusion: bool,
    /// Read-outs, concatenated in this order.
    pub readouts: Vec<Readout>,
    /// `K` of [`Readout::FirstK`].
    pub first_k: usize,
    /// Random time-window masking during training.
    pub time_window_mask: TimeWindowMask,
}

impl Default for SequenceConfig {
    fn default() -> Self {
        SequenceConfig {
            seq_len: 100,
            pin_buckets: 100_000,
            d_model: 64,
            layers: 2,
            heads: 4,
            ffn_hidden: 256,
            dropout: 0.1,
            early_fusion: false,
            readouts: vec![Readout::Mean, Readout::TargetAttention],
            first_k: 10,
            time_window_mask: TimeWindowMask::default(),
        }
    }
}

/// The experts, gates and towers (SPEC §2.3); towers are shared by every architecture, and
/// single-task bottoms use `expert_hidden` / `expert_dropout` / `residual`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MmoeConfig {
    /// Number of experts.
    pub num_experts: usize,
    /// Hidden sizes of each expert MLP (ReLU).
    pub expert_hidden: Vec<usize>,
    /// Dropout after each expert layer.
    pub expert_dropout: f32,
    /// Concatenate each expert's output with its input ("like ResNet").
    pub residual: bool,
    /// Gate dropout (YouTube's remedy for gate polarization): during training each expert is
    /// dropped from each gate with this probability and the gate renormalized over the rest.
    pub gate_dropout: f32,
    /// Hidden sizes of each task tower (ReLU), followed by one logit.
    pub tower_hidden: Vec<usize>,
    /// Dropout after each tower hidden layer.
    pub tower_dropout: f32,
}

impl Default for MmoeConfig {
    fn default() -> Self {
        MmoeConfig {
            num_experts: 8,
            expert_hidden: vec![256, 256],
            expert_dropout: 0.2,
            residual: true,
            gate_dropout: 0.0,
            tower_hidden: vec![128],
            tower_dropout: 0.0,
        }
    }
}

/// The shared-bottom baseline.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedBottomConfig {
    /// Hidden sizes of the shared MLP; empty = `mmoe.expert_hidden` scaled so the bottom has
    /// about as many parameters as all `num_experts` experts together.
    pub hidden: Vec<usize>,
}

/// The whole model configuration; see the [module docs](self) for the TOML form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The multi-task head.
    pub architecture: Architecture,
    /// The action-sequence encoder.
    pub sequence: SequenceConfig,
    /// Experts, gates and towers.
    pub mmoe: MmoeConfig,
    /// The shared-bottom baseline.
    pub shared_bottom: SharedBottomConfig,
}

/// What the data provides: task names, the action vocabulary, the dense features, and whether
/// there are histories and candidates at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    /// Task names, in logit-column order.
    pub tasks: Vec<String>,
    /// Size of the action-id space **including** the reserved ids 0 (padding) and 1 (unknown)
    /// — the data vocabulary's `num_actions()`; the action embedding has this many rows.
    pub num_actions: usize,
    /// Number of dense features per example.
    pub num_features: usize,
    /// Whether examples carry an action history (else no encoder is built).
    pub has_history: bool,
    /// Whether examples carry a candidate pin (else no candidate embedding / target attention).
    pub has_candidate: bool,
}

impl ModelShape {
    /// A dense-only shape (the MMoE paper's setting): no history, no candidate.
    pub fn dense_only(tasks: &[&str], num_features: usize) -> Self {
        ModelShape {
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            num_actions: 0,
            num_features,
            has_history: false,
            has_candidate: false,
        }
    }
}

fn check_dropout(field: &str, p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be in [0, 1), got {p}")))
    }
}

fn check_sizes(field: &str, sizes: &[usize], allow_empty: bool) -> Result<()> {
    if !allow_empty && sizes.is_empty() {
        return Err(invalid(field, "must list at least one hidden size"));
    }
    if sizes.contains(&0) {
        return Err(invalid(
            field,
            format!("hidden sizes must be > 0, got {sizes:?}"),
        ));
    }
    Ok(())
}

impl ModelConfig {
    /// Parses a TOML config (missing keys take their defaults; unknown keys are errors) and
    /// validates it.
    ///
    /// # Errors
    /// [`ModelError::ParseConfig`] for malformed TOML or unknown keys,
    /// [`ModelError::InvalidConfig`] for out-of-range values.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let cfg: ModelConfig = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config as TOML (every key written, so the file documents the resolved values).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a model config always serializes to TOML")
    }

    /// Checks every value on its own (use [`ModelConfig::validate_for`] to also check it
    /// against the data).
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the first offending key.
    pub fn validate(&self) -> Result<()> {
        let s = &self.sequence;
        for (field, v) in [
            ("sequence.seq_len", s.seq_len),
            ("sequence.pin_buckets", s.pin_buckets),
            ("sequence.d_model", s.d_model),
            ("sequence.heads", s.heads),
            ("sequence.ffn_hidden", s.ffn_hidden),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be > 0"));
            }
        }
        if !s.d_model.is_multiple_of(s.heads) {
            return Err(invalid(
                "sequence.heads",
                format!(
                    "d_model {} is not divisible by {} heads",
                    s.d_model, s.heads
                ),
            ));
        }
        check_dropout("sequence.dropout", s.dropout)?;
        if s.readouts.is_empty() {
            return Err(invalid(
                "sequence.readouts",
                "must list at least one read-out",
            ));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = s.readouts.iter().find(|r| !seen.insert(**r)) {
            return Err(invalid(
                "sequence.readouts",
                format!("{dup:?} is listed twice"),
            ));
        }
        if s.readouts.contains(&Readout::FirstK) && s.first_k == 0 {
            return Err(invalid(
                "sequence.first_k",
                "must be > 0 with the first_k read-out",
            ));
        }
        let tw = &s.time_window_mask;
        if !(0.0..=1.0).contains(&tw.probability) {
            return Err(invalid(
                "sequence.time_window_mask.probability",
                format!("must be in [0, 1], got {}", tw.probability),
            ));
        }
        if tw.max_window == 0 {
            return Err(invalid(
                "sequence.time_window_mask.max_window",
                "must be > 0",
            ));
        }
        let m = &self.mmoe;
        if m.num_experts == 0 {
            return Err(invalid("mmoe.num_experts", "must be > 0"));
        }
        check_sizes("mmoe.expert_hidden", &m.expert_hidden, false)?;
        check_sizes("mmoe.tower_hidden", &m.tower_hidden, true)?;
        check_sizes("shared_bottom.hidden", &self.shared_bottom.hidden, true)?;
        check_dropout("mmoe.expert_dropout", m.expert_dropout)?;
        check_dropout("mmoe.gate_dropout", m.gate_dropout)?;
        check_dropout("mmoe.tower_dropout", m.tower_dropout)
    }

    /// [`ModelConfig::validate`], then checks the config against the data's shape.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] or [`ModelError::InvalidShape`].
    pub fn validate_for(&self, shape: &ModelShape) -> Result<()> {
        self.validate()?;
        if shape.tasks.is_empty() {
            return Err(ModelError::InvalidShape("the task list is empty".into()));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = shape.tasks.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(ModelError::InvalidShape(format!(
                "task {dup:?} is listed twice"
            )));
        }
        if shape.has_history {
            if shape.num_actions < 2 {
                return Err(ModelError::InvalidShape(format!(
                    "num_actions {} must count the reserved ids 0 (padding) and 1 (unknown)",
                    shape.num_actions
                )));
            }
            if self.active_readouts(shape).is_empty() {
                return Err(invalid(
                    "sequence.readouts",
                    "every configured read-out needs a candidate, but the data has none",
                ));
            }
        }
        if !shape.has_history && !shape.has_candidate && shape.num_features == 0 {
            return Err(ModelError::InvalidShape(
                "the data has no history, no candidate and no dense features: nothing to model"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The read-outs actually used for this data: the configured ones, minus those that need a
    /// candidate when the data has none; empty when the data has no history.
    pub fn active_readouts(&self, shape: &ModelShape) -> Vec<Readout> {
        if !shape.has_history {
            return Vec::new();
        }
        self.sequence
            .readouts
            .iter()
            .copied()
            .filter(|r| shape.has_candidate || !r.needs_candidate())
            .collect()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
