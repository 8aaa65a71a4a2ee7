//! The on-disk records of SPEC §4.1 (engagement log) and §4.2 (blender log), one JSON object
//! per line. These are the *raw* serde shapes: the readers validate them line by line and turn
//! them into [`crate`]'s typed, vocabulary-encoded examples; the simulators and converters build
//! them and the writers serialize them.
//!
//! Unknown keys are rejected (`deny_unknown_fields`): a typo such as `"lables"` or `"weigth"`
//! would otherwise silently train on no labels or unit weights. The value checks that serde
//! cannot express (a label is 0/1, a weight is finite and >= 0, ...) are in
//! [`EngagementRecord::check`] and [`BlenderRecord::check`]; the readers and writers run them
//! on every line.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One past action of the user, oldest first in [`EngagementRecord::history`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// The pin the user acted on (an arbitrary u64; models hash it into buckets).
    pub pin: u64,
    /// The action type, e.g. `"repin"`, `"click"`, `"hide"`; the vocabulary comes from the data.
    pub action: String,
    /// When the action happened (optional, informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

/// One impression of the engagement log (SPEC §4.1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngagementRecord {
    /// User id (optional, informational; with `ts` it forms the request key for churn metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u64>,
    /// Impression time (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// Explicit request key (optional); groups the candidates of one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The candidate pin (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<u64>,
    /// The user's recent actions, oldest first (may be empty or absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Dense context features; the same length on every line of a file.
    #[serde(default)]
    pub features: Vec<f64>,
    /// 0/1 label per task; a task absent or `null` is missing for this line.
    #[serde(default)]
    pub labels: BTreeMap<String, Option<f64>>,
    /// Example weight (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Scores logged from the previous model, per task (for score regularization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_scores: Option<BTreeMap<String, Option<f64>>>,
}

/// One logged request of the blender log (SPEC §4.2).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlenderRecord {
    /// Request id (optional, informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Request features x.
    #[serde(default)]
    pub features: Vec<f64>,
    /// The blending weights r used for this request, in the config's objective order.
    #[serde(default)]
    pub blend: Vec<f64>,
    /// Engagement events the user gave (may be empty).
    #[serde(default)]
    pub feedback: Vec<String>,
}

/// A bad value in one field of a record: the field's dotted path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted path of the field, e.g. `labels.click` or `features[3]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldProblem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Action names the vocabulary reserves for padding and unknown actions.
pub const RESERVED_ACTIONS: [&str; 2] = ["<pad>", "<unk>"];

/// Checks that every value of `values` is finite once stored as f32 (1e300 is a finite f64
/// but overflows f32).
fn check_f32(values: &[f64], name: &str) -> Result<(), FieldProblem> {
    for (i, &v) in values.iter().enumerate() {
        if !(v as f32).is_finite() {
            return Err(FieldProblem::new(
                format!("{name}[{i}]"),
                format!("value {v} is not a finite f32 number"),
            ));
        }
    }
    Ok(())
}

impl EngagementRecord {
    /// Checks the values serde cannot: features finite (as f32); labels 0, 1 or null; task
    /// names non-empty; weight finite and >= 0; old scores in [0, 1]; history actions non-empty
    /// and not one of [`RESERVED_ACTIONS`]. File-level rules (same feature width and candidate
    /// presence on every line) are the reader's.
    pub fn check(&self) -> Result<(), FieldProblem> {
        check_f32(&self.features, "features")?;
        for (task, label) in &self.labels {
            if task.is_empty() {
                return Err(FieldProblem::new("labels", "task names must not be empty"));
            }
            if let Some(v) = label
                && *v != 0.0
                && *v != 1.0
            {
                return Err(FieldProblem::new(
                    format!("labels.{task}"),
                    format!("label must be 0, 1 or null, got {v}"),
                ));
            }
        }
        if let Some(w) = self.weight
            && !(w.is_finite() && (w as f32).is_finite() && w >= 0.0)
        {
            return Err(FieldProblem::new(
                "weight",
                format!("weight must be a finite number >= 0, got {w}"),
            ));
        }
        if let Some(scores) = &self.old_scores {
            for (task, score) in scores {
                if task.is_empty() {
                    return Err(FieldProblem::new(
                        "old_scores",
                        "task names must not be empty",
                    ));
                }
                if let Some(s) = score
                    && !(0.0..=1.0).contains(s)
                {
                    return Err(FieldProblem::new(
                        format!("old_scores.{task}"),
                        format!("an old score is a probability in [0, 1], got {s}"),
                    ));
                }
            }
        }
        for (i, h) in self.history.iter().enumerate() {
            if h.action.is_empty() {
                return Err(FieldProblem::new(
                    format!("history[{i}].action"),
                    "action must not be empty",
                ));
            }
            if RESERVED_ACTIONS.contains(&h.action.as_str()) {
                return Err(FieldProblem::new(
                    format!("history[{i}].action"),
                    format!("action name {:?} is reserved", h.action),
                ));
            }
        }
        Ok(())
    }
}

impl BlenderRecord {
    /// Checks that features and blend weights are finite (as f32) and event names non-empty.
    /// File-level rules (widths, allowed events) are the reader's.
    pub fn check(&self) -> Result<(), FieldProblem> {
        check_f32(&self.features, "features")?;
        check_f32(&self.blend, "blend")?;
        for (i, e) in self.feedback.iter().enumerate() {
            if e.is_empty() {
                return Err(FieldProblem::new(
                    format!("feedback[{i}]"),
                    "event names must not be empty",
                ));
            }
        }
        Ok(())
    }
}
