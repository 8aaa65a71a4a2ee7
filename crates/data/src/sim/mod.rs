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
//!
//! ```
//! use closeup_data::sim::{BlenderConfig, EngagementConfig, simulate_blender, simulate_engagement};
//!
//! let config = EngagementConfig { num_users: 50, num_pins: 300, num_requests: 200, ..Default::default() };
//! let sim = simulate_engagement(&config, 7);
//! assert_eq!(sim.train.len() + sim.valid.len() + sim.test.len(), 200 * config.candidates_per_request);
//! let ceiling = sim.ceiling_auc(); // AUC of the true probabilities on the test split
//! assert!(ceiling.iter().all(|a| a.is_some_and(|a| a > 0.5)));
//!
//! let blender = simulate_blender(&BlenderConfig { num_logged_requests: 100, num_eval_requests: 500, ..Default::default() }, 7);
//! let b = blender.world.baselines(&blender.eval_requests);
//! assert!(b.production <= b.oracle);
//! // Any feature-only policy x ↦ w can be scored exactly:
//! let mine = blender.world.mean_expected_reward(&blender.eval_requests, |_x| vec![0.0, -1.0, 1.0, 0.0]);
//! assert!(mine <= b.oracle);
//! ```

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
#[cfg(test)]
mod tests_roundtrip;
