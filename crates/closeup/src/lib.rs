//! # closeup
//!
//! The top of Closeup's layering (SPEC §3): one crate that re-exports the others under short
//! names, so an application can depend on `closeup` alone, and that hosts the repository's
//! runnable `examples/`. Each layer is also usable on its own:
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`autograd`] | `closeup-autograd` | tensors, reverse-mode tape, ops, optimizers, checkpoints |
//! | [`data`] | `closeup-data` | log formats and validation, batching, simulators, metrics |
//! | [`layers`] | `closeup-layers` | linear, MLP, dropout, layer norm, embeddings, attention |
//! | [`models`] | `closeup-models` | sequence encoder, MMoE, baselines, the closeup model |
//! | [`losses`] | `closeup-losses` | masked multi-task BCE, score regularization, blender losses |
//! | [`blender`] | `closeup-blender` | the learned-utility blender `f(x)`, `g(x, r)`, reward map |
//! | [`train`] | (this crate) | the trainer, evaluation, churn and gate utilization |
//! | [`model_dir`] | (this crate) | a trained model's directory: model.bin, config.toml, metrics.json |
//! | [`blend_study`] | (this crate) | the blender study on the simulator (`closeup blend eval`) |
//! | [`grid`] | (this crate) | the grid search over experts, expert shapes and `d_model` (`closeup grid`) |
//! | [`demo`] | (this crate) | the whole pipeline on the simulator, with its report (`closeup demo`) |
//! | [`figures`] | (this crate) | hand-written SVG charts and the gate heatmap |
//!
//! ```
//! use closeup::autograd::{Tape, gradcheck::randn};
//! let tape = Tape::new();
//! let x = tape.leaf(randn(&[2, 3], 0));
//! let y = (x * x).sum();
//! let grads = tape.backward(y);
//! assert_eq!(grads.wrt(x).unwrap(), randn(&[2, 3], 0) * 2.0);
//! ```
#![deny(missing_docs)]

pub use closeup_autograd as autograd;
pub use closeup_blender as blender;
pub use closeup_data as data;
pub use closeup_layers as layers;
pub use closeup_losses as losses;
pub use closeup_models as models;

pub mod blend_study;
pub mod demo;
pub mod figures;
pub mod grid;
pub mod model_dir;
pub mod train;
