//! The reference model of SPEC §5 (seq_len 100, 100,000 pin buckets, d 64, 8 action types,
//! 32 dense features, 2-layer pre-LN transformer, MMoE 8 × [256, 256] with residual concat,
//! 4 towers [128]) at batch 256: forward only, forward + backward, and a full training step
//! (forward, backward, Adam).
//!
//! Run: `cargo bench -p closeup-models --bench reference_step`. `closeup bench train` and
//! docs/performance.md compare the same step with the PyTorch peer.

use closeup_autograd::Tape;
use closeup_autograd::optim::{Adam, Optimizer};
use closeup_layers::ForwardCtx;
use closeup_losses::{MultiTaskTargets, multitask_bce};
use closeup_models::{CloseupModel, ModelBatch, ModelConfig, ModelShape, RankingModel};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const BATCH: usize = 256;

fn reference() -> (CloseupModel, ModelBatch, MultiTaskTargets) {
    let tasks = ["repin", "click", "closeup", "long_click"];
    let shape = ModelShape {
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        num_actions: 10, // 8 action types + padding + unknown
        num_features: 32,
        has_history: true,
        has_candidate: true,
    };
    let model = CloseupModel::new(&ModelConfig::default(), &shape, 1).expect("reference config");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let len = 100;
    let batch = ModelBatch {
        hist_pins: Array2::from_shape_simple_fn((BATCH, len), || rng.random()),
        hist_actions: Array2::from_shape_simple_fn((BATCH, len), || rng.random_range(2..10)),
        hist_mask: Array2::from_elem((BATCH, len), true),
        candidates: Some(Array1::from_shape_simple_fn(BATCH, || rng.random())),
        features: Array2::from_shape_simple_fn((BATCH, 32), || rng.random_range(-1.0..1.0)),
    };
    let targets = MultiTaskTargets {
        labels: Array2::from_shape_simple_fn((BATCH, 4), || f32::from(rng.random_bool(0.2))),
        label_mask: Array2::ones((BATCH, 4)),
        example_weights: None,
    };
    (model, batch, targets)
}

fn reference_step(c: &mut Criterion) {
    let (mut model, batch, targets) = reference();
    let mut g = c.benchmark_group("reference model, batch 256");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    g.bench_function("forward (eval)", |b| {
        b.iter(|| {
            let tape = Tape::no_grad();
            let out = model.forward(&tape, &batch, &mut ForwardCtx::eval(&mut rng));
            black_box(out.logits.id())
        })
    });
    g.bench_function("forward + backward (train)", |b| {
        b.iter(|| {
            let tape = Tape::new();
            let out = model.forward(&tape, &batch, &mut ForwardCtx::train(&mut rng));
            let loss = multitask_bce(out.logits, &targets, &[1.0; 4]).total;
            black_box(tape.backward(loss).num_params())
        })
    });
    let mut adam = Adam::new(1e-3);
    g.bench_function("training step (forward, backward, Adam)", |b| {
        b.iter(|| {
            let grads = {
                let tape = Tape::new();
                let out = model.forward(&tape, &batch, &mut ForwardCtx::train(&mut rng));
                let loss = multitask_bce(out.logits, &targets, &[1.0; 4]).total;
                tape.backward(loss)
            };
            adam.step(&mut model, &grads);
        })
    });
    g.finish();
}

criterion_group!(benches, reference_step);
criterion_main!(benches);
