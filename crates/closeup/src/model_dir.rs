//! A trained model's directory: `model.bin` (weights, model config, vocabulary and training
//! config, one checkpoint file), `config.toml` (the resolved [`RunConfig`], for people and for
//! re-running) and `metrics.json`.
//!
//! `model.bin` alone is enough to score: it carries the vocabulary the training data was encoded
//! with, so a file is scored exactly as training read it.

use crate::train::TrainConfig;
use closeup_data::{DatasetMeta, Vocab};
use closeup_models::{CloseupModel, ModelConfig, ModelShape, RankingModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the weights inside a model directory.
pub const MODEL_FILE: &str = "model.bin";
/// File name of the resolved configuration.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of the validation metrics.
pub const METRICS_FILE: &str = "metrics.json";

/// Metadata key of the vocabulary (JSON) in `model.bin`.
const VOCAB_KEY: &str = "closeup.vocab";
/// Metadata key of the training configuration (TOML) in `model.bin`.
const TRAIN_KEY: &str = "closeup.train";

/// What can go wrong reading or writing a model directory.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    /// The model crate refused the file or the configuration.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: closeup_models::ModelError,
    },
    /// `model.bin` lacks or has a broken Closeup entry.
    #[error("{path}: {what}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The whole configuration of a training run: `config.toml` is this, with every key written.
///
/// ```toml
/// [model]
/// architecture = "mmoe"
/// [model.mmoe]
/// num_experts = 8
/// [train]
/// epochs = 8
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The model (SPEC §5 defaults).
    pub model: ModelConfig,
    /// The trainer.
    pub train: TrainConfig,
}

impl RunConfig {
    /// The TOML text (every key written).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("run configs serialize to TOML")
    }
}

/// The model's shape for data with vocabulary `vocab` and file facts `meta`.
pub fn shape_for(vocab: &Vocab, meta: &DatasetMeta) -> ModelShape {
    ModelShape {
        tasks: vocab.tasks().to_vec(),
        num_actions: vocab.num_actions(),
        num_features: vocab.feature_width(),
        has_history: meta.has_history,
        has_candidate: meta.has_candidate,
    }
}

/// A model loaded from a directory (or a `model.bin` path).
#[derive(Debug)]
pub struct LoadedModel {
    /// The model.
    pub model: CloseupModel,
    /// The vocabulary of its training data.
    pub vocab: Vocab,
    /// How it was trained.
    pub train: TrainConfig,
    /// The `model.bin` it came from.
    pub path: PathBuf,
}

impl LoadedModel {
    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// The `seq_len` batches for this model are cut with.
    pub fn seq_len(&self) -> usize {
        self.config().sequence.seq_len
    }
}

/// The `model.bin` of `dir` (or `dir` itself when it is a file).
pub fn model_path(dir: &Path) -> PathBuf {
    if dir.is_file() {
        dir.to_path_buf()
    } else {
        dir.join(MODEL_FILE)
    }
}

/// Saves `model` to `path` atomically, with the vocabulary and the training config.
///
/// # Errors
/// [`ModelDirError::Model`] when writing fails.
pub fn save_model(
    path: &Path,
    model: &CloseupModel,
    vocab: &Vocab,
    train: &TrainConfig,
) -> Result<(), ModelDirError> {
    let mut extra = BTreeMap::new();
    extra.insert(
        VOCAB_KEY.to_string(),
        serde_json::to_string(vocab).expect("vocabularies serialize"),
    );
    extra.insert(
        TRAIN_KEY.to_string(),
        toml::to_string(train).expect("train configs serialize"),
    );
    model
        .save(path, extra)
        .map_err(|source| ModelDirError::Model {
            path: path.to_path_buf(),
            source,
        })
}

/// Loads the model of a directory (or of a `model.bin` path).
///
/// # Errors
/// [`ModelDirError`] when the file is missing, truncated, foreign, or lacks the vocabulary.
pub fn load_model(dir: &Path) -> Result<LoadedModel, ModelDirError> {
    let path = model_path(dir);
    let (model, meta) = CloseupModel::load(&path).map_err(|source| ModelDirError::Model {
        path: path.clone(),
        source,
    })?;
    let bad = |what: String| ModelDirError::Metadata {
        path: path.clone(),
        what,
    };
    let vocab_json = meta
        .get(VOCAB_KEY)
        .ok_or_else(|| bad("not a trained Closeup model (no vocabulary stored)".into()))?;
    let vocab: Vocab = serde_json::from_str(vocab_json)
        .map_err(|e| bad(format!("stored vocabulary is invalid: {e}")))?;
    let train: TrainConfig = match meta.get(TRAIN_KEY) {
        Some(t) => toml::from_str(t).map_err(|e| bad(format!("stored train config: {e}")))?,
        None => TrainConfig::default(),
    };
    if vocab.tasks() != model.tasks() {
        return Err(bad(format!(
            "vocabulary tasks [{}] differ from the model's [{}]",
            vocab.tasks().join(", "),
            model.tasks().join(", ")
        )));
    }
    Ok(LoadedModel {
        model,
        vocab,
        train,
        path,
    })
}
