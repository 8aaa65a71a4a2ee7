//! Same seed, same inputs, same thread count → bit-identical training; and, for the engine's
//! kernels, the same result on 1 and 2 threads too (docs/autograd.md, "Threads and determinism").

use closeup_autograd::gradcheck::randn;
use closeup_autograd::optim::{Adam, Optimizer};
use closeup_autograd::{Param, ParamVisitor, ParamVisitorMut, Parameterized, Tape, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A small transformer-flavoured model touching every op family: an embedding table (sparse
/// gradients), matmuls, layer norm, softmax attention, GELU, dropout, reductions.
struct Toy {
    table: Param,
    w_qk: Param,
    gamma: Param,
    beta: Param,
    head: Param,
}

impl Parameterized for Toy {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.param("table", &self.table);
        v.param("w_qk", &self.w_qk);
        v.param("gamma", &self.gamma);
        v.param("beta", &self.beta);
        v.param("head", &self.head);
    }
    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.param("table", &mut self.table);
        v.param("w_qk", &mut self.w_qk);
        v.param("gamma", &mut self.gamma);
        v.param("beta", &mut self.beta);
        v.param("head", &mut self.head);
    }
}

fn train(seed: u64, steps: usize) -> Vec<Tensor> {
    let (batch, len, dim, rows) = (64, 20, 32, 500);
    let mut model = Toy {
        table: Param::new(randn(&[rows, dim], seed)),
        w_qk: Param::new(randn(&[dim, dim], seed + 1) * 0.2),
        gamma: Param::new(Tensor::ones(ndarray::IxDyn(&[dim]))),
        beta: Param::new(Tensor::zeros(ndarray::IxDyn(&[dim]))),
        head: Param::new(randn(&[1, dim], seed + 2) * 0.1),
    };
    let mut adam = Adam::new(1e-2);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for step in 0..steps {
        let ids = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[batch, len]), |i| {
            (i[0] * 31 + i[1] * 7 + step * 13) % rows
        });
        let target = randn(&[batch, 1], 1000 + step as u64);
        let tape = Tape::new();
        let x = tape.param(&model.table).embedding(&ids); // [B, L, D]
        let x = x.layer_norm(tape.param(&model.gamma), tape.param(&model.beta), 1e-5);
        let q = x.matmul(tape.param(&model.w_qk));
        let att = q
            .matmul_t(x)
            .mul_scalar(1.0 / (dim as f32).sqrt())
            .softmax(2);
        let h = att.matmul(x).gelu().dropout(0.1, &mut rng); // [B, L, D]
        let pooled = h.mean_axis(1, false); // [B, D]
        let pred = pooled.matmul_t(tape.param(&model.head)); // [B, 1]
        let err = pred - tape.constant(target);
        let loss = (err * err).mean();
        let grads = tape.backward(loss);
        drop(tape);
        adam.step(&mut model, &grads);
    }
    model
        .named_params()
        .into_iter()
        .map(|(_, p)| p.value().clone())
        .collect()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

#[test]
fn same_seed_same_threads_is_bit_identical() {
    let a = in_pool(2, || train(7, 5));
    let b = in_pool(2, || train(7, 5));
    assert_eq!(a, b);
    let c = in_pool(2, || train(8, 5));
    assert_ne!(a, c, "a different seed trains differently");
}

#[test]
fn one_and_two_threads_agree() {
    let a = in_pool(1, || train(3, 4));
    let b = in_pool(2, || train(3, 4));
    assert_eq!(a, b);
}
