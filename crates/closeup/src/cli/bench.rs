//! `closeup bench train|serve`: throughput of the reference model (SPEC §5) on synthetic inputs,
//! in the same shape as the PyTorch peer's `train` and `infer` modes (`shared/peers/`), so the
//! two can be run interleaved and compared as a ratio (docs/performance.md).
//!
//! - `train`: training steps (forward, backward, Adam) at batch 256 with the peer's loss
//!   (weighted multi-task BCE + 0.1 · score regularization); examples/s per repetition (median,
//!   min, max) and GFLOP/s from the peer's analytic FLOP count.
//! - `serve`: one request = one user with a 100-action history and 1000 candidates through the
//!   serving path ([`CloseupModel::server`] prepared once per model; per request `encode_user`, then `score_encoded`);
//!   p50 / p99 latency over many requests.

use anyhow::{Result, ensure};
use clap::{Args, Subcommand};
use closeup_autograd::optim::{Adam, Optimizer};
use closeup_autograd::{Tape, init_thread_pool};
use closeup_layers::ForwardCtx;
use closeup_losses::{MultiTaskTargets, ScoreRegSpace, multitask_bce, score_regularization};
use closeup_models::{
    CloseupModel, ModelBatch, ModelConfig, ModelShape, RankingModel, Server, UserHistory,
};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::time::Instant;

/// Time the reference model.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Training steps (forward, backward, Adam) on synthetic batches: examples/s and GFLOP/s.
    ///
    /// Example: `closeup bench train --threads 2 --json`
    Train(TrainArgs),
    /// One request (one user, many candidates) through the serving path: p50 / p99 latency.
    ///
    /// Example: `closeup bench serve --threads 2 --candidates 1000 --json`
    Serve(ServeArgs),
}

/// Options shared by both benchmarks.
#[derive(Debug, Args)]
pub struct Common {
    /// Threads of the one thread pool (0 = one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// History length (SPEC §5: 100).
    #[arg(long, default_value_t = 100)]
    seq_len: usize,
    /// Warm-up steps / requests, not timed.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Steps / requests per repetition.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Seed of the model and of the synthetic inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
}

/// `closeup bench train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Examples per training step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

/// `closeup bench serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Candidates per request.
    #[arg(long, default_value_t = 1000)]
    candidates: usize,
}

/// Runs a `bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Train(a) => train(&a),
        BenchCommand::Serve(a) => serve(&a),
    }
}

const TASKS: [&str; 4] = ["repin", "click", "closeup", "long_click"];
const NUM_FEATURES: usize = 32;
/// 8 action types + padding + unknown.
const NUM_ACTIONS: usize = 10;
/// The peer's score-regularization weight.
const LAMBDA_SR: f32 = 0.1;

/// The reference model of SPEC §5 with history length `seq_len`.
pub(crate) fn reference_model(seq_len: usize, seed: u64) -> Result<CloseupModel> {
    let shape = ModelShape {
        tasks: TASKS.iter().map(|t| t.to_string()).collect(),
        num_actions: NUM_ACTIONS,
        num_features: NUM_FEATURES,
        has_history: true,
        has_candidate: true,
    };
    let mut config = ModelConfig::default();
    config.sequence.seq_len = seq_len;
    Ok(CloseupModel::new(&config, &shape, seed)?)
}

/// One synthetic training batch: every example its own full history, like the peer's.
pub(crate) struct TrainBatch {
    pub(crate) inputs: ModelBatch,
    targets: MultiTaskTargets,
    old_scores: Array2<f32>,
}

pub(crate) fn synthetic_batch(b: usize, seq_len: usize, rng: &mut ChaCha8Rng) -> TrainBatch {
    let t = TASKS.len();
    let inputs = ModelBatch {
        hist_pins: Array2::from_shape_simple_fn((b, seq_len), || rng.random()),
        hist_actions: Array2::from_shape_simple_fn((b, seq_len), || {
            rng.random_range(2..NUM_ACTIONS)
        }),
        hist_mask: Array2::from_elem((b, seq_len), true),
        candidates: Some(Array1::from_shape_simple_fn(b, || rng.random())),
        features: Array2::from_shape_simple_fn((b, NUM_FEATURES), || rng.random_range(-1.0..1.0)),
    };
    let targets = MultiTaskTargets {
        labels: Array2::from_shape_simple_fn((b, t), || f32::from(rng.random_bool(0.3))),
        label_mask: Array2::ones((b, t)),
        example_weights: Some(Array1::from_shape_simple_fn(b, || {
            rng.random_range(0.5..2.0)
        })),
    };
    let old_scores = Array2::from_shape_simple_fn((b, t), || rng.random_range(0.0..1.0));
    TrainBatch {
        inputs,
        targets,
        old_scores,
    }
}

/// The peer's analytic multiply-accumulate count (`closeup_torch.py analytic_macs`): the
/// GEMM-like work only. Returns `(encoder per example, head per candidate)`.
pub(crate) fn analytic_macs(config: &ModelConfig, input_width: usize) -> (f64, f64) {
    let s = &config.sequence;
    let (l, d, f) = (s.seq_len as f64, s.d_model as f64, s.ffn_hidden as f64);
    let per_token_layer = d * 3.0 * d + 2.0 * l * d + d * d + 2.0 * d * f;
    let encoder = s.layers as f64 * l * per_token_layer;
    let m = &config.mmoe;
    let mut dims = vec![input_width];
    dims.extend(&m.expert_hidden);
    let expert: usize = dims.windows(2).map(|w| w[0] * w[1]).sum();
    let expert_out =
        m.expert_hidden.last().copied().unwrap_or(0) + if m.residual { input_width } else { 0 };
    let tasks = TASKS.len();
    let mut tdims = vec![expert_out];
    tdims.extend(&m.tower_hidden);
    tdims.push(1);
    let tower: usize = tdims.windows(2).map(|w| w[0] * w[1]).sum();
    let head = 2.0 * l * d
        + (m.num_experts * expert) as f64
        + (tasks * input_width * m.num_experts) as f64
        + (tasks * m.num_experts * expert_out) as f64
        + (tasks * tower) as f64;
    (encoder, head)
}

/// Median, minimum and maximum.
fn summary(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    };
    (median, v[0], v[n - 1])
}

/// The `q`-quantile (nearest rank) of a sorted slice.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn check_common(c: &Common) -> Result<()> {
    ensure!(
        c.reps > 0 && c.steps > 0,
        "--reps and --steps must be positive"
    );
    ensure!(c.seq_len > 0, "--seq-len must be positive");
    init_thread_pool(c.threads)?;
    Ok(())
}

/// One training step; returns the loss.
pub(crate) fn train_step(
    model: &mut CloseupModel,
    adam: &mut Adam,
    batch: &TrainBatch,
    rng: &mut ChaCha8Rng,
) -> f32 {
    let t = TASKS.len();
    let (loss, grads) = {
        let tape = Tape::new();
        let out = model.forward(&tape, &batch.inputs, &mut ForwardCtx::train(rng));
        let bce = multitask_bce(out.logits, &batch.targets, &[1.0; 4]).total;
        let sr = score_regularization(
            out.logits,
            &batch.old_scores,
            &Array2::ones((batch.inputs.len(), t)),
            &[LAMBDA_SR; 4],
            ScoreRegSpace::Probability,
        );
        let loss = bce + sr;
        (loss.value().iter().sum::<f32>(), tape.backward(loss))
    };
    adam.step(model, &grads);
    loss
}

fn train(a: &TrainArgs) -> Result<()> {
    check_common(&a.common)?;
    // The steps run on a pool thread, so each parallel op starts from a worker instead of
    // waking the pool and sleeping (27 k → 1.4 k context switches for 4 steps at 2 threads).
    closeup_autograd::run_in_pool(|| train_in_pool(a))
}

fn train_in_pool(a: &TrainArgs) -> Result<()> {
    let c = &a.common;
    ensure!(a.batch > 0, "--batch must be positive");
    let mut model = reference_model(c.seq_len, c.seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    let batches: Vec<TrainBatch> = (0..4)
        .map(|_| synthetic_batch(a.batch, c.seq_len, &mut rng))
        .collect();
    let mut adam = Adam::new(1e-3);
    let start = Instant::now();
    for i in 0..c.warmup {
        train_step(&mut model, &mut adam, &batches[i % 4], &mut rng);
    }
    let warmup_s = start.elapsed().as_secs_f64();
    let (mut reps, mut step_ms, mut loss) = (Vec::new(), Vec::new(), 0.0);
    for _ in 0..c.reps {
        let t0 = Instant::now();
        for i in 0..c.steps {
            let ts = Instant::now();
            loss = train_step(&mut model, &mut adam, &batches[i % 4], &mut rng);
            step_ms.push(ts.elapsed().as_secs_f64() * 1e3);
        }
        reps.push((c.steps * a.batch) as f64 / t0.elapsed().as_secs_f64());
    }
    let (median, min, max) = summary(&reps);
    let (enc, head) = analytic_macs(model.config(), model.input_width());
    let flop_per_example = 3.0 * 2.0 * (enc + head);
    let gflops = median * flop_per_example / 1e9;
    let (step_p50, _, _) = summary(&step_ms);
    if c.json {
        let out = json!({
            "bench": "train", "threads": closeup_autograd::num_threads(), "batch": a.batch,
            "seq_len": c.seq_len, "samples_per_s": median, "samples_per_s_min": min,
            "samples_per_s_max": max, "step_ms_median": step_p50, "gflop_s": gflops,
            "train_flop_per_example": flop_per_example, "warmup_s": warmup_s,
            "final_loss": loss, "reps": c.reps, "steps": c.steps,
        });
        println!("{out}");
    } else {
        println!(
            "train: batch {}, seq_len {}, {} threads: {median:.1} examples/s (min {min:.1}, max {max:.1}), \
             {step_p50:.1} ms/step, {gflops:.1} GFLOP/s ({:.1} MFLOP per example)",
            a.batch,
            c.seq_len,
            closeup_autograd::num_threads(),
            flop_per_example / 1e6
        );
    }
    Ok(())
}

/// A synthetic request: one user's full history, `c` candidates and their dense features.
pub(crate) struct Request {
    pub(crate) history: UserHistory,
    pub(crate) candidates: Vec<u64>,
    pub(crate) features: Array2<f32>,
}

pub(crate) fn synthetic_request(c: usize, seq_len: usize, rng: &mut ChaCha8Rng) -> Request {
    Request {
        history: UserHistory::new(
            (0..seq_len).map(|_| rng.random()).collect(),
            (0..seq_len)
                .map(|_| rng.random_range(2..NUM_ACTIONS))
                .collect(),
        ),
        candidates: (0..c).map(|_| rng.random()).collect(),
        features: Array2::from_shape_simple_fn((c, NUM_FEATURES), || rng.random_range(-1.0..1.0)),
    }
}

/// Scores a request through the serving path of a prepared [`Server`]: logits `[C, T]`.
pub(crate) fn serve_request(server: &Server<'_>, q: &Request) -> Array2<f32> {
    let user = server.encode_user(&q.history);
    server.score_encoded(&user, Some(&q.candidates), q.features.view())
}

/// The same request as a plain batch forward (history tiled to every candidate), eval mode.
pub(crate) fn batch_forward(model: &CloseupModel, q: &Request) -> Array2<f32> {
    let c = q.candidates.len();
    let l = q.history.len();
    let batch = ModelBatch {
        hist_pins: Array2::from_shape_fn((c, l), |(_, j)| q.history.pins[j]),
        hist_actions: Array2::from_shape_fn((c, l), |(_, j)| q.history.actions[j]),
        hist_mask: Array2::from_elem((c, l), true),
        candidates: Some(Array1::from(q.candidates.clone())),
        features: q.features.clone(),
    };
    let tape = Tape::no_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let logits = model
        .forward(&tape, &batch, &mut ForwardCtx::eval(&mut rng))
        .logits
        .value();
    (*logits).clone().into_dimensionality().expect("[C, T]")
}

fn serve(a: &ServeArgs) -> Result<()> {
    check_common(&a.common)?;
    ensure!(a.candidates > 0, "--candidates must be positive");
    // Requests are served from a pool thread (as a serving process's request threads would
    // be pool workers): see `run_in_pool`.
    closeup_autograd::run_in_pool(|| serve_in_pool(a))
}

fn serve_in_pool(a: &ServeArgs) -> Result<()> {
    let c = &a.common;
    let model = reference_model(c.seq_len, c.seed)?;
    // Prepared once per model, as a serving process would (the split head's weight columns).
    let server = model.server();
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    let requests: Vec<Request> = (0..4)
        .map(|_| synthetic_request(a.candidates, c.seq_len, &mut rng))
        .collect();
    // Sanity: the serving path agrees with the batch forward (on a slice of the candidates).
    let check = Request {
        history: requests[0].history.clone(),
        candidates: requests[0].candidates.iter().take(64).copied().collect(),
        features: requests[0]
            .features
            .slice(ndarray::s![..a.candidates.min(64), ..])
            .to_owned(),
    };
    let max_diff = serve_request(&server, &check)
        .iter()
        .zip(batch_forward(&model, &check).iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0_f32, f32::max);
    let start = Instant::now();
    for i in 0..c.warmup {
        serve_request(&server, &requests[i % 4]);
    }
    let warmup_s = start.elapsed().as_secs_f64();
    let (mut ms, mut encode_ms) = (Vec::new(), Vec::new());
    for i in 0..c.reps * c.steps {
        // serve_request's two steps, timed separately.
        let q = &requests[i % 4];
        let t0 = Instant::now();
        let user = server.encode_user(&q.history);
        let t1 = Instant::now();
        std::hint::black_box(server.score_encoded(&user, Some(&q.candidates), q.features.view()));
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        encode_ms.push((t1 - t0).as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    encode_ms.sort_by(f64::total_cmp);
    let encode_p50 = summary(&encode_ms).0;
    let (p50, min, max) = summary(&ms);
    let p99 = quantile(&ms, 0.99);
    let (enc, head) = analytic_macs(model.config(), model.input_width());
    let flop = 2.0 * (enc + a.candidates as f64 * head);
    let gflops = flop / (p50 * 1e-3) / 1e9;
    if c.json {
        let out = json!({
            "bench": "serve", "threads": closeup_autograd::num_threads(),
            "candidates": a.candidates, "seq_len": c.seq_len, "ms_per_request_p50": p50,
            "ms_per_request_p99": p99, "encode_user_ms_p50": encode_p50, "ms_per_request_min": min, "ms_per_request_max": max,
            "requests": ms.len(), "gflop_s": gflops, "flop_per_request": flop,
            "max_abs_diff_vs_forward": max_diff, "warmup_s": warmup_s,
        });
        println!("{out}");
    } else {
        println!(
            "serve: {} candidates, seq_len {}, {} threads: p50 {p50:.2} ms, p99 {p99:.2} ms \
             (min {min:.2}, max {max:.2}; encode_user p50 {encode_p50:.2} ms) over {} requests, \
             {gflops:.1} GFLOP/s; \
             max |serve − forward| = {max_diff:.2e}",
            a.candidates,
            c.seq_len,
            closeup_autograd::num_threads(),
            ms.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flop_count_matches_the_peer() {
        let m = reference_model(100, 0).unwrap();
        let (enc, head) = analytic_macs(m.config(), m.input_width());
        let fwd = 2.0 * (enc + head);
        // closeup_torch.py flops: 27.3 MFLOP forward, 81.9 MFLOP per training example.
        assert!((fwd / 1e6 - 27.3).abs() < 0.05, "{fwd}");
        assert!((3.0 * fwd / 1e6 - 81.9).abs() < 0.1);
    }

    #[test]
    fn serving_scores_equal_the_batch_forward() {
        let model = reference_model(100, 3).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let q = synthetic_request(40, 100, &mut rng);
        let served = serve_request(&model.server(), &q);
        let forward = batch_forward(&model, &q);
        assert_eq!(served.shape(), [40, 4]);
        for (a, b) in served.iter().zip(forward.iter()) {
            assert!((a - b).abs() < 1e-5, "serving {a} vs forward {b}");
        }
    }

    #[test]
    fn a_training_step_runs_and_is_finite() {
        let mut model = reference_model(8, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let batch = synthetic_batch(4, 8, &mut rng);
        let mut adam = Adam::new(1e-3);
        let l1 = train_step(&mut model, &mut adam, &batch, &mut rng);
        let l2 = train_step(&mut model, &mut adam, &batch, &mut rng);
        assert!(l1.is_finite() && l2.is_finite());
    }

    #[test]
    fn summary_and_quantiles() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.5), 50.0);
    }
}
