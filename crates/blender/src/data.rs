//! [`BlenderData`]: a blender log as arrays — features `x`, the blend weights `r` used, and the
//! reward `R` of each request. The blender does not read files itself (the data crate does);
//! [`BlenderData::from_feedback`] applies a [`RewardMap`] to the logged feedback.

use crate::error::{BlenderError, Result};
use crate::reward::RewardMap;
use ndarray::{Array2, Axis};

/// Logged requests ready for training: `features: [N, F]`, `blend: [N, n]`, `rewards: N`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlenderData {
    /// Request features `x`.
    pub features: Array2<f32>,
    /// Blend weights `r` used for each request.
    pub blend: Array2<f32>,
    /// Reward `R` of each request.
    pub rewards: Vec<f32>,
}

impl BlenderData {
    /// Checks the shapes and that every value is finite.
    ///
    /// # Errors
    /// [`BlenderError::Data`] naming the problem (and the request index of a non-finite value).
    pub fn new(features: Array2<f32>, blend: Array2<f32>, rewards: Vec<f32>) -> Result<Self> {
        let n = rewards.len();
        if features.nrows() != n || blend.nrows() != n {
            return Err(BlenderError::Data(format!(
                "{} feature rows, {} blend rows and {n} rewards",
                features.nrows(),
                blend.nrows()
            )));
        }
        if n == 0 {
            return Err(BlenderError::Data("no logged requests".into()));
        }
        if blend.ncols() == 0 {
            return Err(BlenderError::Data("blend has no objectives".into()));
        }
        let bad_row = |m: &Array2<f32>| {
            m.axis_iter(Axis(0))
                .position(|row| row.iter().any(|v| !v.is_finite()))
        };
        for (name, m) in [("features", &features), ("blend", &blend)] {
            if let Some(j) = bad_row(m) {
                return Err(BlenderError::Data(format!(
                    "request {j}: {name} has a non-finite value"
                )));
            }
        }
        if let Some(j) = rewards.iter().position(|r| !r.is_finite()) {
            return Err(BlenderError::Data(format!(
                "request {j}: the reward is not finite"
            )));
        }
        Ok(BlenderData {
            features,
            blend,
            rewards,
        })
    }

    /// Rewards from feedback with `map` (`lines` name log lines in errors), then
    /// [`BlenderData::new`].
    ///
    /// # Errors
    /// [`BlenderError::UnknownEvent`] in strict mode, or as [`BlenderData::new`].
    pub fn from_feedback(
        features: Array2<f32>,
        blend: Array2<f32>,
        feedback: &[Vec<String>],
        map: &RewardMap,
        lines: Option<&[usize]>,
    ) -> Result<Self> {
        let rewards = map.rewards(feedback, lines)?;
        Self::new(features, blend, rewards)
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    /// Whether there is no request (never after [`BlenderData::new`]).
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// Number of request features.
    pub fn feature_width(&self) -> usize {
        self.features.ncols()
    }

    /// Number of objectives (columns of `blend`).
    pub fn num_objectives(&self) -> usize {
        self.blend.ncols()
    }

    /// Mean reward over the requests.
    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / self.len().max(1) as f64
    }

    /// Mean logged blend weight per objective (an estimate of the production weights when
    /// the log's randomization is centred on them).
    pub fn mean_blend(&self) -> Vec<f32> {
        self.blend
            .mean_axis(Axis(0))
            .map(|m| m.to_vec())
            .unwrap_or_default()
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> BlenderData {
        BlenderData {
            features: self.features.select(Axis(0), idx),
            blend: self.blend.select(Axis(0), idx),
            rewards: idx.iter().map(|&i| self.rewards[i]).collect(),
        }
    }
}
