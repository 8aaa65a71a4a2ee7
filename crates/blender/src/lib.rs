//! # closeup-blender
//!
//! The learned-utility blender of Closeup (SPEC §2 item 5). The final ranking score of a
//! candidate is `Σᵢ wᵢ pᵢ` over the ranking model's task probabilities; instead of hand-tuned
//! fixed weights `s`, the blender learns per-request weights `w = f(x)` from a log in which a
//! slice of traffic was ranked with randomized weights `r` (around `s`) and the user's feedback
//! was recorded:
//!
//! - `f(x)`: an MLP ([`closeup_layers::Mlp`]) from request features to one weight per objective;
//! - `g(x, r) = σ(rᵀ f(x) + b)` with a learned global bias `b`;
//! - `L = mean_j[wt_j · l(g(x_j, r_j), y_j)] + mean_j Σᵢ λᵢ (f(x_j)ᵢ − sᵢ)²` — a weighted
//!   logistic loss ([`closeup_losses::weighted_logistic`]) plus a Gaussian prior around the
//!   production weights ([`closeup_losses::gaussian_prior`], `λᵢ = 1/(2θᵢ²)`), both means over
//!   requests;
//! - the target `y` and weight `wt` come from the request's reward `R` (a [`RewardMap`] over the
//!   feedback events) through a [`Convention`]: the post's literal objective or a well-posed
//!   variant;
//! - serving uses only `f(x)` ([`Blender::weights`]).
//!
//! ## Layering
//!
//! `closeup-autograd` (tape, Adam, checkpoints) → `closeup-layers` (the MLP) and
//! `closeup-losses` (the two loss terms) → **this crate** → the `closeup` facade and CLI
//! (`closeup blend train|score|eval`). The blender reads no files: the data crate parses blender
//! logs (`closeup_data::read_blender_log`) and the caller turns them into [`BlenderData`].
//! See `docs/blender.md` for the method, the conventions and the simulated study.
//!
//! ```
//! use closeup_blender::{BlenderConfig, BlenderData, Blender, RewardMap, TrainOptions, train};
//! use ndarray::{Array2, array};
//!
//! // A tiny log: feature x₀ > 0 requests rewarded when ranked with more weight on objective 0.
//! let n = 64;
//! let features = Array2::from_shape_fn((n, 1), |(j, _)| if j % 2 == 0 { 1.0 } else { -1.0 });
//! let blend = Array2::from_shape_fn((n, 2), |(j, i)| 1.0 + 0.5 * (((j * 7 + i * 3) % 5) as f32 - 2.0) / 2.0);
//! let feedback: Vec<Vec<String>> = (0..n)
//!     .map(|j| if blend[[j, 0]] > 1.0 && j % 2 == 0 { vec!["closeup".into()] } else { vec![] })
//!     .collect();
//! let data = BlenderData::from_feedback(features, blend, &feedback, &RewardMap::default(), None)?;
//! let config = BlenderConfig {
//!     objectives: vec!["repin".into(), "click".into()],
//!     hidden: vec![8],
//!     prior_mean: Some(vec![1.0, 1.0]),
//!     lambda: vec![0.5],
//!     train: TrainOptions { epochs: 30, batch_size: 16, learning_rate: 1e-2, ..Default::default() },
//!     ..Default::default()
//! };
//! let trained = train(&config, &data)?;
//! let w = trained.model.weights(&array![[1.0_f32], [-1.0]])?; // serving: f(x) only
//! assert_eq!(w.dim(), (2, 2));
//! assert!(w[[0, 0]] > w[[1, 0]]); // the rewarded segment leans to objective 0
//! # Ok::<(), closeup_blender::BlenderError>(())
//! ```
#![deny(missing_docs)]

mod config;
mod data;
mod error;
mod model;
mod persist;
mod reward;
mod train;

pub use config::{BlenderConfig, Convention, TrainOptions};
pub use data::BlenderData;
pub use error::{BlenderError, Result};
pub use model::{Blender, Objective, objective};
pub use persist::{BLENDER_FORMAT, CHECKPOINT_KIND};
pub use reward::RewardMap;
pub use train::{EpochStats, TrainReport, Trained, evaluate, train, train_with_progress};

#[cfg(test)]
mod tests;
