//! Vocabularies learned from the **training** data and stored with the model, so that scoring
//! and evaluation encode a file exactly as training did.
//!
//! - **Tasks** (the label keys): the default Pinterest tasks `repin, click, closeup,
//!   long_click` come first, in that order, for those present; then every other task in order
//!   of first appearance in the file (within one line, alphabetical, as `labels` is a map). A
//!   task whose labels are all `null` still counts as present. An explicit list (from a
//!   config) overrides all of this.
//! - **Action types**: id [`PAD_ACTION`] = 0 is padding, id [`UNKNOWN_ACTION`] = 1 is any
//!   action not seen in training; learned actions get ids 2, 3, ... in order of first
//!   appearance in the file.
//! - **Feature width**: the number of dense features; scoring a file of another width is a
//!   [`DataError::FeatureWidth`] error.

use crate::error::{DataError, Result};
use crate::record::RESERVED_ACTIONS;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Pinterest's closeup tasks, the default task order.
pub const DEFAULT_TASKS: [&str; 4] = ["repin", "click", "closeup", "long_click"];
/// Action id of padding tokens.
pub const PAD_ACTION: u32 = 0;
/// Action id of actions not in the training vocabulary.
pub const UNKNOWN_ACTION: u32 = 1;

/// The serialized form: reserved action ids are implicit.
#[derive(Serialize, Deserialize)]
struct VocabRepr {
    tasks: Vec<String>,
    actions: Vec<String>,
    feature_width: usize,
}

/// Task names, action types and feature width of a training set (serde-serializable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "VocabRepr", into = "VocabRepr")]
pub struct Vocab {
    tasks: Vec<String>,
    /// Learned action names; id = index + 2.
    actions: Vec<String>,
    feature_width: usize,
    task_index: HashMap<String, usize>,
    action_index: HashMap<String, u32>,
}

impl From<Vocab> for VocabRepr {
    fn from(v: Vocab) -> Self {
        Self {
            tasks: v.tasks,
            actions: v.actions,
            feature_width: v.feature_width,
        }
    }
}

impl TryFrom<VocabRepr> for Vocab {
    type Error = DataError;
    fn try_from(r: VocabRepr) -> Result<Self> {
        Vocab::new(r.tasks, r.actions, r.feature_width)
    }
}

impl Vocab {
    /// Builds a vocabulary from task names, learned action names (ids 2, 3, ... in this
    /// order) and the dense feature width. Names must be non-empty and unique, and actions
    /// must not be the reserved `<pad>`/`<unk>`.
    pub fn new(tasks: Vec<String>, actions: Vec<String>, feature_width: usize) -> Result<Self> {
        let mut task_index = HashMap::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            if t.is_empty() || task_index.insert(t.clone(), i).is_some() {
                return Err(DataError::Invalid(format!(
                    "vocabulary: bad or duplicate task {t:?}"
                )));
            }
        }
        let mut action_index = HashMap::with_capacity(actions.len());
        for (i, a) in actions.iter().enumerate() {
            let id = u32::try_from(i + 2)
                .map_err(|_| DataError::Invalid("vocabulary: too many action types".into()))?;
            if a.is_empty()
                || RESERVED_ACTIONS.contains(&a.as_str())
                || action_index.insert(a.clone(), id).is_some()
            {
                return Err(DataError::Invalid(format!(
                    "vocabulary: bad, reserved or duplicate action {a:?}"
                )));
            }
        }
        Ok(Self {
            tasks,
            actions,
            feature_width,
            task_index,
            action_index,
        })
    }

    /// Task names in model order.
    pub fn tasks(&self) -> &[String] {
        &self.tasks
    }

    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Index of a task in [`Vocab::tasks`].
    pub fn task_index(&self, task: &str) -> Option<usize> {
        self.task_index.get(task).copied()
    }

    /// Id of an action type; [`UNKNOWN_ACTION`] for one not seen in training.
    pub fn action_id(&self, action: &str) -> u32 {
        self.action_index
            .get(action)
            .copied()
            .unwrap_or(UNKNOWN_ACTION)
    }

    /// Size of the action-id space including the two reserved ids (an embedding table needs
    /// this many rows).
    pub fn num_actions(&self) -> usize {
        self.actions.len() + 2
    }

    /// Name of an action id (`<pad>` and `<unk>` for the reserved ones).
    pub fn action_name(&self, id: u32) -> Option<&str> {
        match id {
            PAD_ACTION => Some(RESERVED_ACTIONS[0]),
            UNKNOWN_ACTION => Some(RESERVED_ACTIONS[1]),
            _ => self.actions.get(id as usize - 2).map(String::as_str),
        }
    }

    /// The learned action names (ids 2, 3, ...).
    pub fn learned_actions(&self) -> &[String] {
        &self.actions
    }

    /// The dense feature width.
    pub fn feature_width(&self) -> usize {
        self.feature_width
    }

    /// Errors with [`DataError::FeatureWidth`] unless `found` equals the vocabulary's width.
    pub fn check_feature_width(&self, path: &Path, line: usize, found: usize) -> Result<()> {
        if found == self.feature_width {
            Ok(())
        } else {
            Err(DataError::FeatureWidth {
                path: path.to_path_buf(),
                line,
                expected: self.feature_width,
                found,
            })
        }
    }
}

/// Learns a [`Vocab`] incrementally while a training file is read.
#[derive(Debug, Clone, Default)]
pub struct VocabBuilder {
    explicit_tasks: Option<Vec<String>>,
    seen_tasks: Vec<String>,
    seen_index: HashMap<String, usize>,
    actions: Vec<String>,
    action_index: HashMap<String, u32>,
    feature_width: usize,
}

impl VocabBuilder {
    /// A builder that learns tasks from the data.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder whose task list is fixed (e.g. from a config); labels of other tasks are
    /// then ignored by the dataset.
    pub fn with_tasks(tasks: Vec<String>) -> Self {
        Self {
            explicit_tasks: Some(tasks),
            ..Self::default()
        }
    }

    /// Records the dense feature width.
    pub fn set_feature_width(&mut self, width: usize) {
        self.feature_width = width;
    }

    /// Notes a task name; returns its provisional index (order of first appearance).
    pub fn observe_task(&mut self, task: &str) -> usize {
        if let Some(&i) = self.seen_index.get(task) {
            return i;
        }
        let i = self.seen_tasks.len();
        self.seen_tasks.push(task.to_string());
        self.seen_index.insert(task.to_string(), i);
        i
    }

    /// The tasks noted so far, in order of first appearance (provisional indices).
    pub fn seen_tasks(&self) -> &[String] {
        &self.seen_tasks
    }

    /// The id of an action type, assigning the next free id on first appearance.
    pub fn action_id(&mut self, action: &str) -> u32 {
        if let Some(&id) = self.action_index.get(action) {
            return id;
        }
        let id = u32::try_from(self.actions.len() + 2).unwrap_or(UNKNOWN_ACTION);
        if id == UNKNOWN_ACTION {
            return id;
        }
        self.actions.push(action.to_string());
        self.action_index.insert(action.to_string(), id);
        id
    }

    /// The final task order: explicit tasks if given, else the default Pinterest tasks that
    /// were seen (in default order), then the others in order of first appearance.
    pub fn task_order(&self) -> Vec<String> {
        if let Some(t) = &self.explicit_tasks {
            return t.clone();
        }
        let mut order: Vec<String> = DEFAULT_TASKS
            .iter()
            .filter(|t| self.seen_index.contains_key(**t))
            .map(|t| t.to_string())
            .collect();
        for t in &self.seen_tasks {
            if !DEFAULT_TASKS.contains(&t.as_str()) {
                order.push(t.clone());
            }
        }
        order
    }

    /// Finishes the vocabulary.
    pub fn build(&self) -> Result<Vocab> {
        Vocab::new(self.task_order(), self.actions.clone(), self.feature_width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tasks_first_then_first_appearance() {
        let mut b = VocabBuilder::new();
        for t in ["zeta", "click", "alpha", "repin", "hide"] {
            b.observe_task(t);
        }
        let v = b.build().unwrap();
        assert_eq!(v.tasks(), ["repin", "click", "zeta", "alpha", "hide"]);
        assert_eq!(v.task_index("zeta"), Some(2));
        assert_eq!(v.task_index("closeup"), None);
    }

    #[test]
    fn explicit_tasks_win() {
        let mut b = VocabBuilder::with_tasks(vec!["b".into(), "a".into()]);
        b.observe_task("repin");
        assert_eq!(b.build().unwrap().tasks(), ["b", "a"]);
    }

    #[test]
    fn action_ids_reserve_pad_and_unknown() {
        let mut b = VocabBuilder::new();
        assert_eq!(b.action_id("repin"), 2);
        assert_eq!(b.action_id("hide"), 3);
        assert_eq!(b.action_id("repin"), 2);
        let v = b.build().unwrap();
        assert_eq!(v.action_id("hide"), 3);
        assert_eq!(v.action_id("never-seen"), UNKNOWN_ACTION);
        assert_eq!(v.num_actions(), 4);
        assert_eq!(v.action_name(0), Some("<pad>"));
        assert_eq!(v.action_name(1), Some("<unk>"));
        assert_eq!(v.action_name(3), Some("hide"));
        assert_eq!(v.action_name(4), None);
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let v = Vocab::new(vec!["click".into()], vec!["repin".into()], 3).unwrap();
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            json,
            r#"{"tasks":["click"],"actions":["repin"],"feature_width":3}"#
        );
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.action_id("repin"), 2);
        let dup = r#"{"tasks":["a","a"],"actions":[],"feature_width":0}"#;
        assert!(serde_json::from_str::<Vocab>(dup).is_err());
        let reserved = r#"{"tasks":[],"actions":["<pad>"],"feature_width":0}"#;
        assert!(serde_json::from_str::<Vocab>(reserved).is_err());
    }

    #[test]
    fn feature_width_mismatch_is_an_error() {
        let v = Vocab::new(vec![], vec![], 4).unwrap();
        assert!(v.check_feature_width(Path::new("f"), 1, 4).is_ok());
        let e = v
            .check_feature_width(Path::new("f.jsonl"), 3, 2)
            .unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("trained with 4"), "{e}");
    }
}
