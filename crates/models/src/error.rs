//! The crate's error type: what can go wrong with user-supplied configs, shapes and checkpoints.
//! Shape mismatches between a batch and the model it is fed to are programmer errors and panic
//! instead (see each `forward`'s `# Panics`).

use closeup_autograd::AutogradError;
use std::path::PathBuf;

/// Errors from model configs, data shapes and model checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A config value is out of range or inconsistent with another.
    #[error("invalid model config: `{field}`: {reason}")]
    InvalidConfig {
        /// The dotted config key, e.g. `sequence.heads`.
        field: String,
        /// What is wrong and what would be valid.
        reason: String,
    },
    /// What the data provides cannot feed the configured model (e.g. no tasks, no inputs).
    #[error("invalid model shape: {0}")]
    InvalidShape(String),
    /// The TOML text is not a model config.
    #[error("cannot parse the model config: {0}")]
    ParseConfig(#[from] toml::de::Error),
    /// Reading, writing or restoring the checkpoint failed (I/O, foreign or corrupted file,
    /// parameter mismatch).
    #[error(transparent)]
    Checkpoint(#[from] AutogradError),
    /// The checkpoint is valid but is not a Closeup ranking model, or its stored config/shape is
    /// missing or unreadable.
    #[error("{path}: not a loadable Closeup ranking model: {reason}")]
    Metadata {
        /// The checkpoint file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

/// Shorthand for [`ModelError::InvalidConfig`].
pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> ModelError {
    ModelError::InvalidConfig {
        field: field.to_string(),
        reason: reason.into(),
    }
}
