//! # closeup-autograd
//!
//! The bottom of Closeup's layering (SPEC §3): f32 tensors over [`ndarray`], a reverse-mode
//! tape, the differentiable ops every model above needs, optimizers with sparse (lazy)
//! embedding updates, and versioned checkpoints. Nothing here knows about ranking: the layers
//! crate builds linear layers, attention and MLPs from these ops; the models, losses and blender
//! crates build on those.
//!
//! - [`Tape`] / [`Var`]: a per-step Wengert list; ops are methods on `Var`.
//! - [`Param`] / [`Parameterized`]: trainable tensors with stable dotted names.
//! - [`Gradients`]: what [`Tape::backward`] returns, dense or row-sparse per parameter.
//! - [`optim`]: [`Sgd`] and [`Adam`] / AdamW behind the [`Optimizer`] trait, with lazy updates
//!   of row-sparse embedding gradients.
//! - [`Checkpoint`]: versioned, checksummed, atomically written named tensors plus metadata.
//!
//! See `docs/autograd.md` for the design.
//!
//! ```
//! use closeup_autograd::{Tape, Param, gradcheck::randn};
//!
//! // One step of least squares on y = x·wᵀ.
//! let w = Param::new(randn(&[1, 3], 0));
//! let x = randn(&[8, 3], 1);
//! let y = randn(&[8, 1], 2);
//! let tape = Tape::new();
//! let pred = tape.constant(x).matmul_t(tape.param(&w));
//! let err = pred - tape.constant(y);
//! let loss = (err * err).sum();
//! let grads = tape.backward(loss);
//! assert_eq!(grads.param_dense(&w).unwrap().shape(), &[1, 3]);
//! ```
#![deny(missing_docs)]

pub mod checkpoint;
pub mod error;
pub mod gradcheck;
pub mod grads;
pub mod kernels;
pub mod ops;
pub use ops::LinearAct;
pub mod optim;
pub mod parallel;
pub mod param;
pub mod tape;

pub use checkpoint::Checkpoint;
pub use error::{AutogradError, Result};
pub use grads::{Grad, Gradients, RowGrad};
pub use optim::{Adam, Optimizer, Sgd};
pub use parallel::{init_thread_pool, num_threads, run_in_pool};
pub use param::{Param, ParamId, ParamVisitor, ParamVisitorMut, Parameterized};
pub use tape::{Tape, Var};

/// The tensor type of the engine: a dynamically shaped f32 array in standard layout.
pub type Tensor = ndarray::ArrayD<f32>;
