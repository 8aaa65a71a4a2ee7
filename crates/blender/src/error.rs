//! The blender's error type: what can go wrong with user-supplied settings, logs and model files.

use std::path::PathBuf;

/// Errors of the blender crate.
#[derive(Debug, thiserror::Error)]
pub enum BlenderError {
    /// A setting is invalid (a length that does not match the objectives, a negative λ, ...).
    #[error("invalid blender configuration: {0}")]
    Config(String),
    /// A reward-map specification (`closeup=1,hide=-2`) could not be parsed.
    #[error("invalid reward map {spec:?}: {reason}")]
    RewardSpec {
        /// The specification as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A feedback event the strict reward map does not know.
    #[error("{location}: unknown feedback event {event:?}; the reward map knows {known:?}")]
    UnknownEvent {
        /// Where: `line 12` of the log, or `request 12` when no line numbers are known.
        location: String,
        /// The event.
        event: String,
        /// The events the reward map knows.
        known: Vec<String>,
    },
    /// The training data does not fit the model (widths, lengths, non-finite values).
    #[error("invalid training data: {0}")]
    Data(String),
    /// Training produced a non-finite loss.
    #[error(
        "training diverged at epoch {epoch}: the loss is {loss}; lower the learning rate or raise λ"
    )]
    Diverged {
        /// The epoch (1-based).
        epoch: usize,
        /// The non-finite loss.
        loss: f32,
    },
    /// The checkpoint could not be read, written or restored.
    #[error(transparent)]
    Checkpoint(#[from] closeup_autograd::AutogradError),
    /// The file is a valid Closeup checkpoint but not a blender, or its metadata is unusable.
    #[error("{path}: {reason}")]
    NotABlender {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with [`BlenderError`].
pub type Result<T> = std::result::Result<T, BlenderError>;
