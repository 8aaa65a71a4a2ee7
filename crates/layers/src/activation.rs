//! Activation functions as a serde-configurable enum.

use closeup_autograd::Var;
use serde::{Deserialize, Serialize};

/// A point-wise non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)` — the MMoE experts' and towers' activation.
    #[default]
    Relu,
    /// The exact (erf) GELU — the transformer FFN's activation.
    Gelu,
    /// `tanh(x)`.
    Tanh,
    /// `σ(x)`.
    Sigmoid,
    /// The identity.
    Identity,
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn apply<'t>(self, x: Var<'t>) -> Var<'t> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Identity => x,
        }
    }
}
