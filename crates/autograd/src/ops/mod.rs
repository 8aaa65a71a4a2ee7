//! The differentiable ops, one family per file, each with its forward, its backward and its
//! gradient-check tests. Ops are methods on [`crate::Var`].

mod attention;
mod binary;
pub(crate) mod broadcast;
mod dropout;
mod gather;
mod layer_norm;
pub(crate) mod linear;
mod matmul;
mod reduce;
mod scalar;
mod select;
mod shape;
mod softmax;
mod unary;
pub use linear::LinearAct;
