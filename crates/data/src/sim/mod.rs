//! Simulators: seeded, deterministic worlds that produce the SPEC §4 log formats together with
//! the ground truth needed to judge a model against the best possible one.
//!
//! * [`engagement`] — the demo's default: users with slowly drifting topic interests, pins with
//!   topic mixtures, quality and click-bait, time-consistent action histories, several
//!   candidates per request and four task labels (repin, click, closeup, long_click) drawn from
//!   kept ground-truth probabilities (for the Bayes-ceiling AUC), split train/valid/test by
//!   time. [`simulate_engagement`].
//! * [`mmoe_synthetic`] — the two-task synthetic data of the MMoE paper (§4.1) with an exactly
//!   controlled task correlation, dense features only. [`simulate_mmoe_synthetic`].
//! * [`blender`] — the learned-utility blender's world (SPEC §2.5): requests with hidden user
//!   segments partly revealed by the features, candidates with per-objective probabilities,
//!   randomized-weight logging, and exact expected-reward evaluation of any blending policy
//!   against production weights and an oracle. [`simulate_blender`], [`BlenderWorld`].
//!
//! Every random draw comes from a `ChaCha8Rng` seeded from the seed passed in, so the same
//! config and seed always give the same output.

pub mod blender;
pub mod engagement;
pub mod mmoe_synthetic;
mod util;

pub use blender::{
    BlenderBaselines, BlenderConfig, BlenderRequest, BlenderWorld, EventResponse, SegmentResponse,
    SimulatedBlender, simulate_blender,
};
pub use engagement::{
    ENGAGEMENT_TASKS, EngagementConfig, PinTruth, SimulatedEngagement, bayes_auc,
    simulate_engagement,
};
pub use mmoe_synthetic::{
    MMOE_TASKS, MmoeLabels, MmoeSynthetic, MmoeSyntheticConfig, pearson, simulate_mmoe_synthetic,
};

#[cfg(test)]
mod tests_blender;
#[cfg(test)]
mod tests_engagement;
#[cfg(test)]
mod tests_mmoe;
