//! Inverted dropout as a layer: active only in a training [`ForwardCtx`].

use crate::ForwardCtx;
use closeup_autograd::Var;

/// Zeroes each element with probability `p` during training and scales the kept ones by
/// `1/(1-p)`; the identity in evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// A dropout layer with drop probability `p`.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1)`.
    pub fn new(p: f32) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout::new: p must be in [0, 1), got {p}"
        );
        Dropout { p }
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// Applies dropout when training (drawing the mask from `ctx`'s RNG), the identity otherwise.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    pub fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> Var<'t> {
        if ctx.is_training() && self.p > 0.0 {
            let mut rng = ctx.rng();
            x.dropout(self.p, &mut rng)
        } else {
            x
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::randn;
    use rand::SeedableRng;

    #[test]
    fn identity_in_eval_and_stochastic_in_train() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let tape = Tape::new();
        let x = tape.constant(randn(&[64, 32], 1));
        let d = Dropout::new(0.5);
        let y = d.forward(x, &mut ForwardCtx::eval(&mut rng));
        assert_eq!(*y.value(), *x.value());
        let y = d.forward(x, &mut ForwardCtx::train(&mut rng));
        let zeros = y.value().iter().filter(|&&v| v == 0.0).count();
        assert!(
            zeros > 800 && zeros < 1250,
            "about half dropped, got {zeros} of 2048"
        );
    }
}
