//! # closeup-data — Closeup's data layer
//!
//! Log formats, validation, vocabularies, batching, converters, simulators and metrics for the
//! closeup multi-task ranking system. In the workspace's layering (SPEC §3) this crate sits
//! **beside** the model stack (autograd → layers → models/losses → blender) and **below** the
//! `closeup` CLI: it depends on no autograd crate, only on `ndarray`, `serde`, `rand`. Batches
//! are plain ndarray arrays that the model crates turn into tensors.
//!
//! - [`record`]: the raw on-disk records of the engagement log (SPEC §4.1) and blender log
//!   (§4.2).
//! - [`reader`] / [`blender_log`]: strict line-level readers; every bad line is a
//!   [`DataError`] naming the file, the 1-based line and the field.
//! - [`vocab`]: tasks, action types and feature width learned from training data and stored
//!   with the model.
//! - [`dataset`]: the typed, encoded [`EngagementDataset`], time split, request grouping.
//! - [`batch`]: seeded shuffling and padded/masked mini-batches.
//! - [`writer`]: atomic (temp file + fsync + rename) JSON Lines writers.
//! - [`movielens`]: MovieLens `ratings.csv`/`tags.csv` → engagement log.
//! - [`sim`], [`metrics`]: simulators and evaluation metrics.
//!
//! ```
//! use closeup_data::{EngagementDataset, ReadOptions, batch::{BatchOptions, Batches}};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("train.jsonl");
//! std::fs::write(
//!     &path,
//!     concat!(
//!         r#"{"user": 1, "ts": 10, "candidate": 7, "history": [{"pin": 3, "action": "repin"}],"#,
//!         r#" "features": [0.5], "labels": {"click": 1, "repin": 0}}"#,
//!         "\n",
//!         r#"{"user": 2, "ts": 11, "candidate": 8, "features": [-1.0], "labels": {"click": null}}"#,
//!         "\n",
//!     ),
//! )?;
//! let ds = EngagementDataset::load_training(&path, &ReadOptions::default())?;
//! assert_eq!(ds.vocab.tasks(), ["repin", "click"]); // default Pinterest order first
//! assert_eq!(ds.vocab.action_id("repin"), 2); // 0 = padding, 1 = unknown
//! let batch = Batches::sequential(&ds, BatchOptions::default())?.next().unwrap();
//! assert_eq!(batch.hist_actions.row(0).to_vec(), [2]);
//! assert_eq!(batch.hist_mask.row(1).to_vec(), [false]); // empty history: all padding
//! assert_eq!(batch.label_mask.row(1).to_vec(), [0.0, 0.0]); // null / absent = missing
//!
//! // A bad line names the file, the line and the field.
//! std::fs::write(&path, "{\"features\": [1.0], \"labels\": {\"click\": 2}}\n")?;
//! let err = EngagementDataset::load_training(&path, &ReadOptions::default()).unwrap_err();
//! assert!(err.to_string().ends_with(":1: field \"labels.click\": label must be 0, 1 or null, got 2"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod batch;
pub mod blender_log;
mod csv;
pub mod dataset;
pub mod error;
pub mod movielens;
pub mod reader;
pub mod record;
pub mod vocab;
pub mod writer;

// Owned by the simulators/metrics helper.
pub mod metrics;
pub mod sim;

pub use batch::{Batch, BatchOptions, Batches};
pub use blender_log::{BlenderLog, BlenderReadOptions, read_blender_features, read_blender_log};
pub use dataset::{DatasetMeta, EngagementDataset, Example, HistoryToken, ReadOptions, RequestKey};
pub use error::{DataError, Result};
pub use reader::{EngagementReader, read_engagement_log};
pub use record::{BlenderRecord, EngagementRecord, HistoryEntry};
pub use vocab::{Vocab, VocabBuilder};
pub use writer::{
    AtomicFile, JsonlWriter, write_atomic, write_blender_log, write_engagement_log, write_jsonl,
};
