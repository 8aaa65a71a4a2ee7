//! Read-outs of the encoded sequence: first-K tokens, max-pool, mean and target attention, all
//! masked so padding never contributes and an empty history reads out as zeros.

use crate::config::Readout;
use closeup_autograd::{Tape, Tensor, Var};
use closeup_layers::TargetAttention;
use ndarray::{Array2, ArrayD, Axis, IxDyn};

/// `[B, L]` → `[B, L, 1]` with `true` at padding (the `masked_fill` form).
pub(crate) fn padding_mask3(mask: &Array2<bool>) -> ArrayD<bool> {
    mask.mapv(|m| !m).insert_axis(Axis(2)).into_dyn()
}

/// `[B, 1]`: `true` for examples without a single real token.
fn empty_rows(mask: &Array2<bool>) -> ArrayD<bool> {
    mask.map_axis(Axis(1), |row| !row.iter().any(|&m| m))
        .insert_axis(Axis(1))
        .into_dyn()
}

/// The width of one read-out.
pub(crate) fn width(r: Readout, d_model: usize, first_k: usize) -> usize {
    match r {
        Readout::FirstK => first_k * d_model,
        Readout::MaxPool | Readout::Mean | Readout::TargetAttention => d_model,
    }
}

/// One read-out of `hidden`.
///
/// # Shapes
/// `hidden: [B, L, D]`, `mask: [B, L]`, `candidate: [B, D]` → `[B, width(r)]`.
///
/// # Panics
/// If `r` needs a candidate and `candidate` is `None`.
pub(crate) fn readout<'t>(
    r: Readout,
    hidden: Var<'t>,
    mask: &Array2<bool>,
    candidate: Option<Var<'t>>,
    first_k: usize,
) -> Var<'t> {
    let shape = hidden.shape();
    let (batch, len, dim) = (shape[0], shape[1], shape[2]);
    let tape = hidden.tape();
    let zeros = |w: usize| tape.constant(Tensor::zeros(IxDyn(&[batch, w])));
    if len == 0 {
        assert!(
            !r.needs_candidate() || candidate.is_some(),
            "{r:?} read-out needs a candidate"
        );
        return zeros(width(r, dim, first_k));
    }
    match r {
        Readout::FirstK => {
            let k = first_k.min(len);
            let m = padding_mask3(&mask.slice(ndarray::s![.., ..k]).to_owned());
            let first = hidden.narrow(1, 0, k).masked_fill(&m, 0.0);
            let first = if k < first_k {
                let pad = tape.constant(Tensor::zeros(IxDyn(&[batch, first_k - k, dim])));
                Var::concat(&[first, pad], 1)
            } else {
                first
            };
            first.reshape(&[batch, first_k * dim])
        }
        Readout::MaxPool => hidden
            .masked_fill(&padding_mask3(mask), f32::NEG_INFINITY)
            .max_axis(1, false)
            .masked_fill(&empty_rows(mask), 0.0),
        Readout::Mean => {
            let inv_count = mask
                .map_axis(Axis(1), |row| {
                    let n = row.iter().filter(|&&m| m).count();
                    if n == 0 { 0.0 } else { 1.0 / n as f32 }
                })
                .insert_axis(Axis(1))
                .into_dyn();
            hidden
                .masked_fill(&padding_mask3(mask), 0.0)
                .sum_axis(1, false)
                .mul(tape.constant(inv_count))
        }
        Readout::TargetAttention => {
            let query = candidate.expect("the target-attention read-out needs a candidate");
            TargetAttention.forward(query, hidden, Some(&mask.clone().into_dyn()))
        }
    }
}

/// Target attention of `C` queries against **one** shared sequence (the serving path: one
/// user's encoded history, many candidates) without tiling the sequence: `softmax(q·hᵀ/√D)·h`.
/// Equals [`TargetAttention`] on the tiled sequence up to float rounding.
///
/// # Shapes
/// `query: [C, D]`, `seq: [L, D]`, `mask: [L]` → `[C, D]`.
pub(crate) fn target_attention_shared<'t>(
    tape: &'t Tape,
    query: Var<'t>,
    seq: Var<'t>,
    mask: &[bool],
) -> Var<'t> {
    let (c, d) = (query.shape()[0], query.shape()[1]);
    if !mask.iter().any(|&m| m) {
        return tape.constant(Tensor::zeros(IxDyn(&[c, d])));
    }
    let keep = ArrayD::from_shape_vec(IxDyn(&[1, mask.len()]), mask.to_vec()).expect("[1, L]");
    query
        .matmul_t(seq)
        .mul_scalar(1.0 / (d as f32).sqrt())
        .masked_softmax(&keep)
        .matmul(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use ndarray::array;

    fn all_readouts() -> [Readout; 4] {
        [
            Readout::FirstK,
            Readout::MaxPool,
            Readout::Mean,
            Readout::TargetAttention,
        ]
    }

    #[test]
    fn values_on_a_small_example() {
        let tape = Tape::no_grad();
        // B = 1, L = 3 (last token padding), D = 2.
        let h = tape.constant(array![[[1.0_f32, -2.0], [3.0, 0.0], [100.0, 100.0]]].into_dyn());
        let mask = array![[true, true, false]];
        let get = |r, k| {
            readout(r, h, &mask, None, k)
                .value()
                .iter()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(get(Readout::MaxPool, 1), [3.0, 0.0]);
        assert_eq!(get(Readout::Mean, 1), [2.0, -1.0]);
        assert_eq!(get(Readout::FirstK, 2), [1.0, -2.0, 3.0, 0.0]);
        // K larger than L: padding and missing tokens are zeros.
        assert_eq!(
            get(Readout::FirstK, 4),
            [1.0, -2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn empty_histories_read_out_zeros_without_nan() {
        for len in [0, 3] {
            let tape = Tape::new();
            let h = tape.leaf(randn(&[2, len, 4], 1));
            let c = tape.leaf(randn(&[2, 4], 2));
            let mask = Array2::from_elem((2, len), false);
            for r in all_readouts() {
                let y = readout(r, h, &mask, Some(c), 2);
                assert_eq!(y.shape(), [2, width(r, 4, 2)]);
                assert!(y.value().iter().all(|&v| v == 0.0), "{r:?}");
                if y.requires_grad() {
                    let g = tape.backward(y.sum());
                    assert!(g.wrt(h).is_none_or(|g| g.iter().all(|v| *v == 0.0)));
                }
            }
        }
    }

    #[test]
    fn gradient_checks() {
        let mask = array![[true, true, false, true], [true, false, false, false]];
        for r in all_readouts() {
            let m = mask.clone();
            assert_gradients(&[randn(&[2, 4, 3], 5), randn(&[2, 3], 6)], move |_, v| {
                readout(r, v[0], &m, Some(v[1]), 3)
            });
        }
        let m = [true, false, true];
        assert_gradients(&[randn(&[5, 3], 1), randn(&[3, 3], 2)], move |t, v| {
            target_attention_shared(t, v[0], v[1], &m)
        });
    }

    #[test]
    fn shared_target_attention_equals_the_tiled_one() {
        let tape = Tape::no_grad();
        let q = tape.constant(randn(&[5, 4], 1));
        let h = randn(&[3, 4], 2);
        let mask = [true, true, false];
        let shared = target_attention_shared(&tape, q, tape.constant(h.clone()), &mask).value();
        let tiled = tape.constant(h.broadcast(IxDyn(&[5, 3, 4])).unwrap().to_owned());
        let m = Array2::from_shape_fn((5, 3), |(_, j)| mask[j]);
        let want = readout(Readout::TargetAttention, tiled, &m, Some(q), 1).value();
        assert!(
            shared
                .iter()
                .zip(want.iter())
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
    }
}
