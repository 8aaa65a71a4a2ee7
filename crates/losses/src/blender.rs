//! The learned-utility blender's objective pieces (SPEC §2 item 5): a weighted logistic loss on
//! `g(x, r) = σ(rᵀ f(x) + b)` and the Gaussian prior penalty that keeps `f(x)` near the
//! production weights.

use closeup_autograd::Var;
use ndarray::Array1;

/// `mean_j weight_j · BCE(z_j, y_j)` from logits (stable). Weights may be negative — the
/// post's objective `R · l(g, y)` with a negative reward — in which case the loss is unbounded
/// below in that term: the blender documents how each convention handles it.
///
/// # Shapes
/// `logits: [N]`, `targets: [N]`, `weights: [N]` → `[]`. With `N = 0` the loss is 0.
///
/// # Panics
/// If the lengths differ or `logits` is not 1-D.
pub fn weighted_logistic<'t>(logits: Var<'t>, targets: &[f32], weights: &[f32]) -> Var<'t> {
    let shape = logits.shape();
    assert!(
        shape.len() == 1 && targets.len() == shape[0] && weights.len() == shape[0],
        "weighted_logistic: logits {shape:?}, {} targets, {} weights",
        targets.len(),
        weights.len()
    );
    let n = shape[0].max(1) as f32;
    let y = Array1::from(targets.to_vec()).into_dyn();
    let w = Array1::from(weights.iter().map(|w| w / n).collect::<Vec<f32>>()).into_dyn();
    let tape = logits.tape();
    (crate::bce_with_logits(logits, &y) * tape.constant(w)).sum()
}

/// `λ = 1 / (2θ²)`: the penalty weight of a Gaussian prior `w ~ N(s, θ²)` (its negative log
/// density up to a constant is `(w − s)² / (2θ²)`). The post's λ = 2 is θ = ½.
///
/// # Panics
/// If `theta` is not positive and finite.
pub fn lambda_from_theta(theta: f32) -> f32 {
    assert!(
        theta > 0.0 && theta.is_finite(),
        "lambda_from_theta: θ must be > 0, got {theta}"
    );
    1.0 / (2.0 * theta * theta)
}

/// `mean_j Σ_i λ_i (w_ji − s_i)²`: the Gaussian prior around the production weights `s`,
/// averaged over the requests `j` so λ means the same whatever the batch or log size.
///
/// # Shapes
/// `weights: [N, n]` (per-request blending weights `f(x_j)`), `prior_mean: [n]`,
/// `lambda: [n]` → `[]`.
///
/// # Panics
/// If the shapes disagree.
pub fn gaussian_prior<'t>(weights: Var<'t>, prior_mean: &[f32], lambda: &[f32]) -> Var<'t> {
    let shape = weights.shape();
    assert!(
        shape.len() == 2 && prior_mean.len() == shape[1] && lambda.len() == shape[1],
        "gaussian_prior: weights {shape:?}, {} prior means, {} lambdas",
        prior_mean.len(),
        lambda.len()
    );
    let n = shape[0].max(1) as f32;
    let tape = weights.tape();
    let s = tape.constant(Array1::from(prior_mean.to_vec()).into_dyn());
    let l =
        tape.constant(Array1::from(lambda.iter().map(|l| l / n).collect::<Vec<f32>>()).into_dyn());
    ((weights - s).square() * l).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use ndarray::array;

    #[test]
    fn closed_forms() {
        let tape = Tape::new();
        let z = tape.leaf(array![0.0_f32, 1.0].into_dyn());
        let l = weighted_logistic(z, &[1.0, 0.0], &[2.0, -1.0]);
        let want = (2.0 * 2f32.ln() - (1.0 + (-1f32).exp()).ln() - 1.0) / 2.0;
        approx::assert_abs_diff_eq!(l.item(), want, epsilon = 1e-6);
        let w = tape.leaf(array![[1.0_f32, 0.0], [0.5, 1.0]].into_dyn());
        let p = gaussian_prior(w, &[1.0, 0.5], &[2.0, 4.0]);
        approx::assert_abs_diff_eq!(
            p.item(),
            (4.0 * 0.25 + 2.0 * 0.25 + 4.0 * 0.25) / 2.0,
            epsilon = 1e-6
        );
        assert_eq!(lambda_from_theta(0.5), 2.0);
    }

    #[test]
    fn gradient_checks() {
        assert_gradients(&[randn(&[5], 1)], |_, v| {
            weighted_logistic(
                v[0],
                &[1.0, 0.0, 1.0, 1.0, 0.0],
                &[1.0, -2.0, 0.5, 3.0, 1.0],
            )
        });
        assert_gradients(&[randn(&[4, 3], 2)], |_, v| {
            gaussian_prior(v[0], &[1.0, 0.4, 0.8], &[2.0, 2.0, 0.5])
        });
    }
}
