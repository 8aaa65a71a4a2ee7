//! # closeup-losses
//!
//! The objectives of Closeup (SPEC §2 items 1, 4, 5), built from [`closeup_autograd`] ops so
//! their gradients come from the engine's checked backward passes. It sits beside the layers
//! crate, directly on the autograd engine: the trainer combines [`multitask_bce`] with
//! [`score_regularization`]; the blender uses [`weighted_logistic`] and [`gaussian_prior`].
//!
//! Every loss is numerically stable: binary cross-entropy is computed from logits as
//! `softplus(z) − y·z` (never `log(σ(z))`), so a logit of ±1000 gives a finite loss and gradient.
//!
//! ```
//! use closeup_autograd::Tape;
//! use closeup_losses::{MultiTaskTargets, multitask_bce};
//! use ndarray::array;
//!
//! let tape = Tape::new();
//! let logits = tape.leaf(array![[2.0_f32, -1.0], [0.5, 0.0]].into_dyn());
//! let targets = MultiTaskTargets {
//!     labels: array![[1.0, 0.0], [0.0, 1.0]],
//!     label_mask: array![[1.0, 1.0], [1.0, 0.0]], // example 1's task 1 label is missing
//!     example_weights: None,
//! };
//! let loss = multitask_bce(logits, &targets, &[1.0, 1.0]);
//! assert_eq!(loss.per_task.len(), 2);
//! let grads = tape.backward(loss.total);
//! // The missing label contributes no gradient.
//! assert_eq!(grads.wrt(logits).unwrap()[[1, 1]], 0.0);
//! ```
#![deny(missing_docs)]

mod bce;
mod blender;
mod score_reg;

pub use bce::{MultiTaskLoss, MultiTaskTargets, bce_with_logits, multitask_bce};
pub use blender::{gaussian_prior, lambda_from_theta, weighted_logistic};
pub use score_reg::{ScoreRegSpace, score_regularization};
