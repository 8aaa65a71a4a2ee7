//! The explicit forward context: whether the pass is training, and the RNG that stochastic
//! layers (dropout, TransAct's random time-window masking) draw from. No globals: the caller
//! owns the RNG, so the same seed gives the same masks.

use rand::RngCore;
use std::fmt;

/// Training/evaluation mode and the RNG for one forward pass.
///
/// ```
/// use closeup_layers::ForwardCtx;
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
/// let mut ctx = ForwardCtx::train(&mut rng);
/// assert!(ctx.is_training());
/// let _draw: u64 = ctx.rng().next_u64();
/// ```
pub struct ForwardCtx<'r> {
    training: bool,
    rng: &'r mut dyn RngCore,
}

impl fmt::Debug for ForwardCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardCtx")
            .field("training", &self.training)
            .finish()
    }
}

impl<'r> ForwardCtx<'r> {
    /// A training pass: dropout and other stochastic regularizers are active.
    pub fn train(rng: &'r mut dyn RngCore) -> Self {
        ForwardCtx {
            training: true,
            rng,
        }
    }

    /// An evaluation pass: every stochastic layer is the identity (the RNG is not drawn from).
    pub fn eval(rng: &'r mut dyn RngCore) -> Self {
        ForwardCtx {
            training: false,
            rng,
        }
    }

    /// Whether this is a training pass.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The RNG stochastic layers draw from.
    pub fn rng(&mut self) -> &mut dyn RngCore {
        self.rng
    }
}
