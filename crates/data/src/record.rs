//! The on-disk records of SPEC §4.1 (engagement log) and §4.2 (blender log), one JSON object
//! per line. These are the *raw* serde shapes: the readers validate them line by line and turn
//! them into [`crate`]'s typed, vocabulary-encoded examples; the simulators and converters build
//! them and the writers serialize them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One past action of the user, oldest first in [`EngagementRecord::history`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
