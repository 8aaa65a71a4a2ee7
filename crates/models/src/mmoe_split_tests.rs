//! Tests of the split (serving) head: against `Mmoe::forward` on the joined input, reuse of a
//! prepared head, row blocks and thread counts, and the shape checks.

use super::*;
use crate::config::MmoeConfig;
use closeup_autograd::gradcheck::randn;
use closeup_layers::ForwardCtx;
use rand::SeedableRng;

#[test]
fn split_head_equals_the_full_head() {
    for (residual, shared_gate, tower_hidden) in [
        (true, false, vec![4]),
        (false, false, vec![4]),
        (true, true, vec![]),
    ] {
        let cfg = MmoeConfig {
            num_experts: 3,
            expert_hidden: vec![6, 5],
            expert_dropout: 0.2,
            residual,
            gate_dropout: 0.3,
            tower_hidden,
            tower_dropout: 0.1,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let m = Mmoe::new(9, 2, &cfg, shared_gate, &mut rng);
        // Shared columns scattered through the input, not only a prefix.
        let user_cols = [0, 1, 5];
        let cand_cols = [2, 3, 4, 6, 7, 8];
        let user = [0.5_f32, -1.25, 2.0];
        let split = SplitInput {
            user_cols: &user_cols,
            user: &user,
            cand_cols: &cand_cols,
        };
        let cand = randn(&[11, 6], 4);
        let cand2 = cand.view().into_dimensionality::<Ix2>().unwrap();
        let fast = m.forward_split(cand2, &split);
        let slow = full_forward(&m, &cand, &split);
        assert_eq!(fast.shape(), slow.shape());
        let fast = fast.into_dyn();
        for (a, b) in fast.iter().zip(slow.iter()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

#[test]
fn a_prepared_head_serves_many_requests() {
    let cfg = residual_eval_cfg(4, vec![6, 5], vec![3]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let m = Mmoe::new(7, 3, &cfg, false, &mut rng);
    let (user_cols, cand_cols) = ([1, 4], [0, 2, 3, 5, 6]);
    let head = m.split_head(&user_cols, &cand_cols);
    assert_eq!(
        (head.user_cols(), head.cand_cols()),
        (&user_cols[..], &cand_cols[..])
    );
    for (seed, user) in [(1, [0.3_f32, -2.0]), (2, [1.5, 0.25]), (3, [0.0, 0.0])] {
        let cand = randn(&[9, 5], seed);
        let cand = cand.view().into_dimensionality::<Ix2>().unwrap();
        let split = SplitInput {
            user_cols: &user_cols,
            user: &user,
            cand_cols: &cand_cols,
        };
        assert_eq!(head.forward(cand, &user), m.forward_split(cand, &split));
    }
}

#[test]
fn row_blocks_are_equal_and_at_most_the_maximum() {
    assert_eq!(row_block(0), 1);
    assert_eq!(row_block(7), 7);
    assert_eq!(row_block(512), 512);
    assert_eq!(row_block(513), 257);
    assert_eq!(row_block(1000), 500);
    assert_eq!(row_block(1100), 367);
}

#[test]
fn many_blocks_equal_the_full_head_on_any_thread_count() {
    let cfg = residual_eval_cfg(3, vec![5, 4], vec![3]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let m = Mmoe::new(6, 2, &cfg, false, &mut rng);
    let (user_cols, cand_cols, user) = ([0, 3], [1, 2, 4, 5], [0.7_f32, -0.4]);
    let cand = randn(&[1100, 4], 9); // three blocks of 367, 367 and 366 rows
    assert_head_equals_forward_on_1_2_3_threads(&m, &user_cols, &cand_cols, &user, &cand);
}

#[test]
#[should_panic(
    expected = "SplitHead::forward: cand shape [2, 4] and 1 shared values vs 3 \
                           per-row and 1 shared columns"
)]
fn a_prepared_head_checks_the_request_widths() {
    let cfg = residual_eval_cfg(2, vec![4], vec![3]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let m = Mmoe::new(4, 1, &cfg, false, &mut rng);
    let head = m.split_head(&[0], &[1, 2, 3]);
    head.forward(ndarray::Array2::zeros((2, 4)).view(), &[1.0]);
}

#[test]
#[should_panic(expected = "do not partition 9 inputs")]
fn columns_must_partition_the_input() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let cfg = residual_eval_cfg(2, vec![4], vec![3]);
    let m = Mmoe::new(9, 1, &cfg, false, &mut rng);
    let split = SplitInput {
        user_cols: &[0],
        user: &[1.0],
        cand_cols: &[1, 2, 3],
    };
    m.forward_split(ndarray::Array2::zeros((2, 3)).view(), &split);
}

#[test]
fn deep_experts_through_the_sparse_product_equal_the_full_head_on_any_thread_count() {
    // Three expert layers of widths that are not multiples of the vector width: the second
    // and third read ReLU outputs (about half zeros at this initialization, below the
    // sparse product's density threshold), the second one into an intermediate array.
    let cfg = residual_eval_cfg(3, vec![40, 37, 19], vec![5]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let m = Mmoe::new(10, 3, &cfg, false, &mut rng);
    let (user_cols, cand_cols, user) = ([2, 7], [0, 1, 3, 4, 5, 6, 8, 9], [0.9_f32, -0.3]);
    let cand = randn(&[600, 8], 12); // two blocks of 300 rows
    assert_head_equals_forward_on_1_2_3_threads(&m, &user_cols, &cand_cols, &user, &cand);
}

/// The split head of `m` on `cand` (rows) equals `Mmoe::forward` on the joined input within
/// 1e-5, with bit-identical scores on pools of 1, 2 and 3 threads.
fn assert_head_equals_forward_on_1_2_3_threads(
    m: &Mmoe,
    user_cols: &[usize],
    cand_cols: &[usize],
    user: &[f32],
    cand: &closeup_autograd::Tensor,
) {
    let head = m.split_head(user_cols, cand_cols);
    let cand2 = cand.view().into_dimensionality::<Ix2>().unwrap();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| head.forward(cand2, user))
    };
    let one = on(1);
    assert_eq!(on(2), one);
    assert_eq!(on(3), one);
    let split = SplitInput {
        user_cols,
        user,
        cand_cols,
    };
    let slow = full_forward(m, cand, &split);
    for (a, b) in one.iter().zip(slow.iter()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// `Mmoe::forward` (evaluation mode) on the joined input: the reference the split head is
/// compared with.
fn full_forward(
    m: &Mmoe,
    cand: &closeup_autograd::Tensor,
    split: &SplitInput<'_>,
) -> closeup_autograd::Tensor {
    let tape = closeup_autograd::Tape::no_grad();
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let logits = m
        .forward(
            tape.constant(join_split(cand, split)),
            &mut ForwardCtx::eval(&mut r),
        )
        .logits
        .value();
    (*logits).clone()
}

/// A residual MMoE configuration without dropout (the split head is evaluation-only).
fn residual_eval_cfg(
    num_experts: usize,
    expert_hidden: Vec<usize>,
    tower_hidden: Vec<usize>,
) -> MmoeConfig {
    MmoeConfig {
        num_experts,
        expert_hidden,
        expert_dropout: 0.0,
        residual: true,
        gate_dropout: 0.0,
        tower_hidden,
        tower_dropout: 0.0,
    }
}
