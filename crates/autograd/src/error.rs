//! The crate's error type, for what can go wrong with user-supplied files and settings.
//! Shape mismatches between tensors are programmer errors and panic instead (see each op's
//! `# Panics`).

use std::path::PathBuf;

/// Errors from checkpoints, optimizer state and runtime settings.
#[derive(Debug, thiserror::Error)]
pub enum AutogradError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid checkpoint (foreign, truncated, corrupted, wrong version).
    #[error("{path}: not a valid Closeup checkpoint: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint is valid but does not fit the model it is loaded into.
    #[error("{path}: checkpoint does not match the model: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which parameter differs and how.
        reason: String,
    },
    /// Optimizer state (e.g. from a checkpoint) does not fit the optimizer or the model.
    #[error("optimizer state does not match: {reason}")]
    OptimizerState {
        /// Which parameter or slot differs and how.
        reason: String,
    },
    /// The thread pool could not be configured.
    #[error("thread pool: {0}")]
    ThreadPool(String),
}

/// `Result` with [`AutogradError`].
pub type Result<T> = std::result::Result<T, AutogradError>;
