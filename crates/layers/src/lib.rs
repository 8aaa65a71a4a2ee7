//! # closeup-layers
//!
//! The second layer of Closeup (SPEC §3): neural-network building blocks on
//! [`closeup_autograd`] — [`Linear`], [`Mlp`], [`Dropout`], [`LayerNorm`], [`Embedding`] and
//! [`HashEmbedding`] (arbitrary u64 ids hashed into buckets, sparse gradients),
//! [`MultiHeadAttention`] with a key-padding mask, [`TargetAttention`] and
//! [`PositionalEmbedding`]. The models crate assembles them into the action-sequence encoder and
//! the MMoE.
//!
//! Layers are plain structs with a `forward`; each documents its `# Shapes`. Stochastic layers
//! take a [`ForwardCtx`] carrying the train/eval flag and the caller's RNG — no globals. Every
//! layer implements [`closeup_autograd::Parameterized`], so optimizers and checkpoints see
//! dotted names such as `attn.q.weight`.
//!
//! ```
//! use closeup_layers::{Activation, ForwardCtx, Mlp};
//! use closeup_autograd::{Tape, gradcheck::randn};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let expert = Mlp::new(224, &[256, 256], None, Activation::Relu, 0.2, &mut rng);
//! let tape = Tape::new();
//! let x = tape.constant(randn(&[32, 224], 1));
//! let h = expert.forward(x, &mut ForwardCtx::train(&mut rng));
//! assert_eq!(h.shape(), [32, 256]);
//! ```
#![deny(missing_docs)]

mod activation;
mod attention;
mod context;
mod dropout;
mod embedding;
pub mod init;
mod linear;
mod mlp;
mod norm;

pub use activation::Activation;
pub use attention::{MultiHeadAttention, PositionalEmbedding, TargetAttention};
pub use context::ForwardCtx;
pub use dropout::Dropout;
pub use embedding::{Embedding, HashEmbedding, hash_bucket};
pub use linear::Linear;
pub use mlp::Mlp;
pub use norm::LayerNorm;
