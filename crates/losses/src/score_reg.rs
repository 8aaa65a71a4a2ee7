//! Score regularization against a previous model (SPEC §2 item 4): `λ · MSE(new, old)`, which
//! pulls a retrained model's scores toward the production model's so rankings churn less.

use closeup_autograd::Var;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Where the squared difference is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreRegSpace {
    /// `(σ(z) − old)²` — Pinterest's form: the scores users' rankings are built from.
    #[default]
    Probability,
    /// `(z − logit(old))²`, with `old` clipped to `[1e-6, 1 − 1e-6]` — stronger in the tails.
    Logit,
}

/// `Σ_{b,t} λ_t · m_bt · d(z_bt, old_bt)² / Σ_{b,t} m_bt`: the mean squared difference between the
/// new model's scores and the old ones over the present entries, each task scaled by its
/// `lambda` (one λ for all tasks: pass `[λ; T]`). With every entry present and one λ this is the
/// PyTorch peer's `λ · mean_{b,t}((σ(z) − old)²)`. Entries with `mask = 0` (no old score logged)
/// contribute nothing; an all-zero mask gives 0.
///
/// `old_scores` are probabilities from a previous model — a teacher checkpoint run in inference
/// during training, or `old_scores` logged with the data. They are constants: no gradient flows
/// into the old model.
///
/// # Shapes
/// `logits: [B, T]`, `old_scores, mask: [B, T]`, `lambda: [T]` → `[]`.
///
/// # Panics
/// If the shapes disagree.
pub fn score_regularization<'t>(
    logits: Var<'t>,
    old_scores: &Array2<f32>,
    mask: &Array2<f32>,
    lambda: &[f32],
    space: ScoreRegSpace,
) -> Var<'t> {
    let shape = logits.shape();
    assert!(
        shape.len() == 2
            && old_scores.shape() == shape.as_slice()
            && mask.shape() == shape.as_slice()
            && lambda.len() == shape[1],
        "score_regularization: logits {shape:?}, old scores {:?}, mask {:?}, {} lambdas",
        old_scores.shape(),
        mask.shape(),
        lambda.len()
    );
    let tape = logits.tape();
    let count = mask.sum().max(1.0);
    let coef = mask * &Array1::from(lambda.to_vec()) / count;
    let (new, old) = match space {
        ScoreRegSpace::Probability => (logits.sigmoid(), old_scores.clone()),
        ScoreRegSpace::Logit => (
            logits,
            old_scores.mapv(|p| {
                let p = p.clamp(1e-6, 1.0 - 1e-6);
                (p / (1.0 - p)).ln()
            }),
        ),
    };
    let diff = new - tape.constant(old.into_dyn());
    (diff.square() * tape.constant(coef.into_dyn())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use ndarray::array;

    #[test]
    fn closed_form_and_mask() {
        let tape = Tape::new();
        let z = tape.leaf(array![[0.0_f32, 2.0], [-1.0, 0.5]].into_dyn());
        let old = array![[0.3_f32, 0.9], [0.5, 0.1]];
        let mask = array![[1.0_f32, 1.0], [0.0, 1.0]];
        let v = score_regularization(z, &old, &mask, &[2.0, 1.0], ScoreRegSpace::Probability);
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        let want =
            (2.0 * (s(0.0) - 0.3).powi(2) + (s(2.0) - 0.9).powi(2) + (s(0.5) - 0.1).powi(2)) / 3.0;
        approx::assert_abs_diff_eq!(v.item(), want, epsilon = 1e-6);
        let g = tape.backward(v).wrt(z).unwrap();
        assert_eq!(g[[1, 0]], 0.0, "a masked entry has no gradient");
        let zero = score_regularization(
            tape.constant(randn(&[2, 2], 1)),
            &old,
            &Array2::zeros((2, 2)),
            &[1.0, 1.0],
            ScoreRegSpace::Logit,
        );
        assert_eq!(zero.item(), 0.0);
    }

    #[test]
    fn gradient_checks_both_spaces() {
        let old = array![[0.2_f32, 0.7, 0.5], [0.9, 0.01, 0.4]];
        let mask = array![[1.0_f32, 1.0, 0.0], [1.0, 1.0, 1.0]];
        for space in [ScoreRegSpace::Probability, ScoreRegSpace::Logit] {
            let (o, m) = (old.clone(), mask.clone());
            assert_gradients(&[randn(&[2, 3], 3)], move |_, v| {
                score_regularization(v[0], &o, &m, &[1.0, 0.5, 2.0], space)
            });
        }
    }

    #[test]
    fn minimised_at_the_old_scores() {
        let old = array![[0.2_f32, 0.7]];
        let logits = old.mapv(|p| (p / (1.0 - p)).ln());
        for space in [ScoreRegSpace::Probability, ScoreRegSpace::Logit] {
            let tape = Tape::new();
            let z = tape.leaf(logits.clone().into_dyn());
            let v = score_regularization(z, &old, &Array2::ones((1, 2)), &[1.0, 1.0], space);
            assert!(v.item() < 1e-10);
            assert!(
                tape.backward(v)
                    .wrt(z)
                    .unwrap()
                    .iter()
                    .all(|g| g.abs() < 1e-5)
            );
        }
    }
}
