//! Saving and loading a blender with [`closeup_autograd::Checkpoint`]: versioned, CRC-checked,
//! written atomically. The metadata holds everything needed to rebuild the model — the resolved
//! config (TOML, including the objectives, prior, convention and reward map), the feature
//! width — plus the objectives and reward map on their own for tools that only inspect.

use crate::config::BlenderConfig;
use crate::error::{BlenderError, Result};
use crate::model::Blender;
use closeup_autograd::Checkpoint;
use std::path::Path;

/// The metadata value of `kind` in a blender checkpoint.
pub const CHECKPOINT_KIND: &str = "closeup-blender";

/// The blender metadata layout version this build writes and reads.
pub const BLENDER_FORMAT: u32 = 1;

impl Blender {
    /// The model as a checkpoint (parameters plus metadata).
    pub fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint::from_module(self)
            .with_metadata("kind", CHECKPOINT_KIND)
            .with_metadata("blender_format", BLENDER_FORMAT.to_string())
            .with_metadata("config", self.config().to_toml())
            .with_metadata("feature_width", self.feature_width().to_string())
            .with_metadata(
                "objectives",
                serde_json::to_string(self.objectives()).expect("strings serialize"),
            )
            .with_metadata(
                "rewards",
                serde_json::to_string(&self.config().rewards).expect("reward maps serialize"),
            )
    }

    /// Saves atomically (temporary file, fsync, rename): a failure leaves any file already at
    /// `path` as it was.
    ///
    /// # Errors
    /// [`BlenderError::Checkpoint`] if writing fails.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        Ok(self.to_checkpoint().save(path)?)
    }

    /// Loads a blender saved by [`Blender::save`].
    ///
    /// # Errors
    /// [`BlenderError::Checkpoint`] for a missing, foreign, truncated or corrupted file;
    /// [`BlenderError::NotABlender`] for a Closeup checkpoint of another kind or with unusable
    /// metadata.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_checkpoint(&Checkpoint::load(path)?, path)
    }

    /// Rebuilds a blender from a loaded checkpoint (`path` is used in error messages).
    ///
    /// # Errors
    /// As [`Blender::load`].
    pub fn from_checkpoint(ckpt: &Checkpoint, path: &Path) -> Result<Self> {
        let bad = |reason: String| BlenderError::NotABlender {
            path: path.to_path_buf(),
            reason,
        };
        match ckpt.metadata("kind") {
            Some(CHECKPOINT_KIND) => {}
            Some(other) => {
                return Err(bad(format!(
                    "a Closeup checkpoint of kind {other:?}, not a blender model"
                )));
            }
            None => {
                return Err(bad(
                    "a Closeup checkpoint without blender metadata, not a blender model".into(),
                ));
            }
        }
        let version = ckpt.metadata("blender_format").unwrap_or("?");
        if version != BLENDER_FORMAT.to_string() {
            return Err(bad(format!(
                "blender format {version}, this build reads {BLENDER_FORMAT}"
            )));
        }
        let config = ckpt
            .metadata("config")
            .ok_or_else(|| bad("no config in the metadata".into()))
            .and_then(|t| {
                BlenderConfig::from_toml(t).map_err(|e| bad(format!("stored config: {e}")))
            })?;
        let width: usize = ckpt
            .metadata("feature_width")
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad("no valid feature_width in the metadata".into()))?;
        if config.prior_mean.is_none() {
            return Err(bad("the stored config has no prior_mean".into()));
        }
        let mut model = Blender::new(&config, width).map_err(|e| bad(e.to_string()))?;
        ckpt.restore_into(&mut model)?;
        Ok(model)
    }
}
