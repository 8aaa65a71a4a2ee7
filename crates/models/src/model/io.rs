//! Saving and loading a [`CloseupModel`] through a [`Checkpoint`]: the parameters plus the
//! model's config (TOML) and data shape (TOML) in the checkpoint metadata, so a model file is
//! self-describing and is rebuilt exactly on load.

use super::CloseupModel;
use crate::config::{ModelConfig, ModelShape};
use crate::error::{ModelError, Result};
use closeup_autograd::Checkpoint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The metadata value of [`METADATA_KIND`] in a Closeup ranking-model checkpoint.
pub const MODEL_KIND: &str = "closeup-ranking-model";
/// Metadata key: what the checkpoint holds ([`MODEL_KIND`]).
pub const METADATA_KIND: &str = "closeup.model.kind";
/// Metadata key: the model-metadata format version (`"1"`).
pub const METADATA_FORMAT: &str = "closeup.model.format";
/// Metadata key: the [`ModelConfig`] as TOML.
pub const METADATA_CONFIG: &str = "closeup.model.config";
/// Metadata key: the [`ModelShape`] as TOML.
pub const METADATA_SHAPE: &str = "closeup.model.shape";

const FORMAT: &str = "1";
const RESERVED_PREFIX: &str = "closeup.model.";

fn meta_err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Metadata {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl CloseupModel {
    /// A checkpoint of the parameters with the config, shape and `extra` metadata (e.g. the
    /// vocabularies or training metrics of the pipeline).
    ///
    /// # Errors
    /// [`ModelError::Metadata`] if an `extra` key uses the reserved `closeup.model.` prefix.
    pub fn to_checkpoint(&self, extra: &BTreeMap<String, String>) -> Result<Checkpoint> {
        let mut ckpt = Checkpoint::from_module(self);
        for (k, v) in extra {
            if k.starts_with(RESERVED_PREFIX) {
                return Err(meta_err(
                    Path::new("<model checkpoint>"),
                    format!(
                        "extra metadata key {k:?} uses the reserved prefix {RESERVED_PREFIX:?}"
                    ),
                ));
            }
            ckpt.set_metadata(k.clone(), v.clone());
        }
        let shape = toml::to_string(&self.shape).expect("a model shape serializes to TOML");
        Ok(ckpt
            .with_metadata(METADATA_KIND, MODEL_KIND)
            .with_metadata(METADATA_FORMAT, FORMAT)
            .with_metadata(METADATA_CONFIG, self.config.to_toml_string())
            .with_metadata(METADATA_SHAPE, shape))
    }

    /// Saves the model atomically to `path` (see [`Checkpoint::save`]) with `extra` metadata.
    ///
    /// # Errors
    /// [`ModelError::Checkpoint`] on I/O errors (an existing file is left as it was);
    /// [`ModelError::Metadata`] for a reserved `extra` key.
    pub fn save(&self, path: impl AsRef<Path>, extra: BTreeMap<String, String>) -> Result<()> {
        self.to_checkpoint(&extra)?.save(path)?;
        Ok(())
    }

    /// Loads a model saved by [`CloseupModel::save`]: rebuilds it from the stored config and
    /// shape, then restores every parameter. Returns the model and the `extra` metadata.
    ///
    /// # Errors
    /// [`ModelError::Checkpoint`] if the file cannot be read, is not a valid checkpoint, or its
    /// parameters do not fit the stored config; [`ModelError::Metadata`] if it is a checkpoint of
    /// something else (no model metadata), of another model-format version, or its stored config
    /// or shape is unreadable.
    pub fn load(path: impl AsRef<Path>) -> Result<(CloseupModel, BTreeMap<String, String>)> {
        let ckpt = Checkpoint::load(path.as_ref())?;
        Self::from_checkpoint(&ckpt)
    }

    /// [`CloseupModel::load`] from an in-memory checkpoint.
    ///
    /// # Errors
    /// As [`CloseupModel::load`].
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<(CloseupModel, BTreeMap<String, String>)> {
        let path: PathBuf = ckpt.source().map_or_else(
            || PathBuf::from("<in-memory checkpoint>"),
            Path::to_path_buf,
        );
        let path = path.as_path();
        match ckpt.metadata(METADATA_KIND) {
            Some(MODEL_KIND) => {}
            Some(other) => {
                return Err(meta_err(
                    path,
                    format!("it holds a {other:?}, not a {MODEL_KIND:?}"),
                ));
            }
            None => {
                return Err(meta_err(
                    path,
                    format!("no {METADATA_KIND:?} metadata (a checkpoint of another module?)"),
                ));
            }
        }
        match ckpt.metadata(METADATA_FORMAT) {
            Some(FORMAT) => {}
            other => {
                return Err(meta_err(
                    path,
                    format!("model format {other:?}; this build reads {FORMAT:?}"),
                ));
            }
        }
        let text = |key: &str| {
            ckpt.metadata(key)
                .ok_or_else(|| meta_err(path, format!("the {key:?} metadata is missing")))
        };
        let config = ModelConfig::from_toml_str(text(METADATA_CONFIG)?)
            .map_err(|e| meta_err(path, format!("stored config: {e}")))?;
        let shape: ModelShape = toml::from_str(text(METADATA_SHAPE)?)
            .map_err(|e| meta_err(path, format!("stored shape: {e}")))?;
        let mut model = CloseupModel::new(&config, &shape, 0)
            .map_err(|e| meta_err(path, format!("stored config/shape: {e}")))?;
        ckpt.restore_into(&mut model)?;
        let extra = ckpt
            .metadata_map()
            .iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok((model, extra))
    }
}
