use super::*;
use closeup_autograd::Tape;
use closeup_autograd::gradcheck::{assert_gradients, randn};
use rand::SeedableRng;

fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

fn tiny_cfg() -> MmoeConfig {
    MmoeConfig {
        num_experts: 3,
        expert_hidden: vec![6, 5],
        expert_dropout: 0.2,
        residual: true,
        gate_dropout: 0.0,
        tower_hidden: vec![4],
        tower_dropout: 0.0,
    }
}

fn eval<'t>(m: &Mmoe, x: Var<'t>) -> HeadOutput<'t> {
    let mut r = rng(0);
    m.forward(x, &mut ForwardCtx::eval(&mut r))
}

#[test]
fn shapes_gates_and_names() {
    for shared in [false, true] {
        let m = Mmoe::new(7, 2, &tiny_cfg(), shared, &mut rng(1));
        let tape = Tape::no_grad();
        let out = eval(&m, tape.constant(randn(&[4, 7], 2)));
        assert_eq!(out.logits.shape(), [4, 2]);
        let g = out.gate_weights.unwrap();
        assert_eq!(g.shape(), [2, 4, 3]);
        for row in g.lanes(Axis(2)) {
            assert!((row.sum() - 1.0).abs() < 1e-6 && row.iter().all(|&w| w > 0.0));
        }
        let names: Vec<_> = m.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "experts.0.layers.0.weight");
        assert_eq!(names.contains(&"gates.1.weight".to_string()), !shared);
        assert!(names.contains(&"towers.1.layers.1.bias".to_string()));
        if shared {
            assert!(m.shared_gate());
            let (a, b) = (g.index_axis(Axis(0), 0), g.index_axis(Axis(0), 1));
            assert_eq!(a, b);
        }
    }
}

#[test]
fn residual_width_and_parameter_counts() {
    let mut cfg = tiny_cfg();
    assert_eq!(Mmoe::output_width(7, &cfg), 5 + 7);
    cfg.residual = false;
    assert_eq!(Mmoe::output_width(7, &cfg), 5);
    let m = Mmoe::new(7, 2, &cfg, false, &mut rng(1));
    let expert = 7 * 6 + 6 + 6 * 5 + 5;
    let gate = 7 * 3 + 3;
    let tower = 5 * 4 + 4 + 4 + 1;
    assert_eq!(m.num_params(), 3 * expert + 2 * gate + 2 * tower);
    // The reference MMoE head (SPEC §5): input 3·64 + 32 = 224, 8 experts [256, 256] with
    // residual concat (480 wide), 4 gates, 4 towers [128].
    let m = Mmoe::new(224, 4, &MmoeConfig::default(), false, &mut rng(1));
    let expert = 224 * 256 + 256 + 256 * 256 + 256;
    let tower = 480 * 128 + 128 + 128 + 1;
    assert_eq!(m.num_params(), 8 * expert + 4 * (224 * 8 + 8) + 4 * tower);
    assert_eq!(m.num_params(), 1_241_124);
}

#[test]
fn wide_first_layer_equals_the_experts_own_forward() {
    let m = Mmoe::new(7, 2, &tiny_cfg(), false, &mut rng(3));
    let tape = Tape::no_grad();
    let x = tape.constant(randn(&[4, 7], 4));
    let out = eval(&m, x);
    let mut r = rng(0);
    let mut ctx = ForwardCtx::eval(&mut r);
    for t in 0..2 {
        let g = m.gates[t].forward(x).softmax(1).value();
        let mut mixed = Tensor::zeros(IxDyn(&[4, 5]));
        for (i, e) in m.experts.iter().enumerate() {
            let h = e.forward(x, &mut ctx).value();
            let gi = g.index_axis(Axis(1), i).insert_axis(Axis(1)).to_owned();
            mixed = mixed + &*h * &gi;
        }
        let input = Var::concat(&[tape.constant(mixed), x], 1);
        let want = m.towers[t].forward(input, &mut ctx).value();
        let got = out.logits.value();
        for b in 0..4 {
            assert!((got[[b, t]] - want[[b, 0]]).abs() < 1e-5);
        }
    }
}

#[test]
fn gradient_checks_in_eval_and_train() {
    for shared in [false, true] {
        let mut cfg = tiny_cfg();
        cfg.gate_dropout = 0.3;
        let m = Mmoe::new(5, 3, &cfg, shared, &mut rng(5));
        let me = m.clone();
        assert_gradients(&[randn(&[4, 5], 6)], move |_, v| eval(&me, v[0]).logits);
        assert_gradients(&[randn(&[4, 5], 7)], move |_, v| {
            let mut r = rng(11);
            m.forward(v[0], &mut ForwardCtx::train(&mut r)).logits
        });
    }
}

#[test]
fn every_parameter_gets_a_gradient() {
    let m = Mmoe::new(5, 3, &tiny_cfg(), false, &mut rng(5));
    let tape = Tape::new();
    let mut r = rng(1);
    let out = m.forward(
        tape.constant(randn(&[8, 5], 1)),
        &mut ForwardCtx::train(&mut r),
    );
    let grads = tape.backward(out.logits.sum());
    for (name, p) in m.named_params() {
        let g = grads
            .param(p)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(
            g.to_dense().iter().any(|&v| v != 0.0),
            "zero gradient for {name}"
        );
    }
}

#[test]
fn dropout_is_the_identity_in_eval_only() {
    let mut cfg = tiny_cfg();
    cfg.gate_dropout = 0.5;
    let m = Mmoe::new(5, 2, &cfg, false, &mut rng(5));
    let x = randn(&[16, 5], 1);
    let run = |train: bool, seed: u64| {
        let tape = Tape::no_grad();
        let mut r = rng(seed);
        let mut ctx = if train {
            ForwardCtx::train(&mut r)
        } else {
            ForwardCtx::eval(&mut r)
        };
        let out = m.forward(tape.constant(x.clone()), &mut ctx);
        ((*out.logits.value()).clone(), out.gate_weights.unwrap())
    };
    assert_eq!(run(false, 1), run(false, 2));
    assert_eq!(run(true, 1), run(true, 1));
    assert_ne!(run(true, 1).0, run(true, 2).0);
    // Gate dropout: some experts get exactly 0, every gate still sums to 1, at least one kept.
    let (_, g) = run(true, 3);
    assert!(g.iter().any(|&w| w == 0.0));
    for row in g.lanes(Axis(2)) {
        assert!((row.sum() - 1.0).abs() < 1e-6);
    }
    assert!(run(false, 3).1.iter().all(|&w| w > 0.0));
}

#[test]
fn distinct_experts_get_distinct_initial_weights_and_seeds_reproduce() {
    let m = Mmoe::new(7, 2, &tiny_cfg(), false, &mut rng(1));
    let firsts: Vec<_> = m
        .experts()
        .iter()
        .map(|e| e.layers()[0].weight().value().clone())
        .collect();
    for i in 0..firsts.len() {
        for j in i + 1..firsts.len() {
            assert_ne!(firsts[i], firsts[j], "experts {i} and {j} start identical");
        }
    }
    // Symmetric experts would receive identical gradients and never specialise; the same seed
    // must still give the same initialisation.
    let again = Mmoe::new(7, 2, &tiny_cfg(), false, &mut rng(1));
    let (a, b) = (m.named_params(), again.named_params());
    assert!(
        a.iter()
            .zip(&b)
            .all(|((na, pa), (nb, pb))| na == nb && pa.value() == pb.value())
    );
}
