//! The autograd engine end to end: a two-hidden-layer MLP learns a non-linear function of two
//! inputs, y = sin(3·x₁)·cos(2·x₂) + ½·x₁², with Adam on mini-batches, and the loss falls.
//! It then checkpoints the model, reloads it into a fresh model and checks the predictions are
//! bit-identical.
//!
//! Run: `cargo run --release --example mlp_regression [-- --epochs 40 --seed 7 --threads 2]`

mod support;

use anyhow::{Result, bail};
use closeup::autograd::checkpoint::Checkpoint;
use closeup::autograd::optim::{Adam, Optimizer};
use closeup::autograd::{
    Param, ParamVisitor, ParamVisitorMut, Parameterized, Tape, Tensor, Var, init_thread_pool,
};
use ndarray::{Array2, Axis, Ix2};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::flag;

/// `y = x · Wᵀ + b` with weights stored `[out, in]` (He-uniform initialisation).
struct Dense {
    weight: Param,
    bias: Param,
}

impl Dense {
    fn new(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        let bound = (6.0 / inputs as f32).sqrt();
        let w = Array2::from_shape_simple_fn((outputs, inputs), || rng.random_range(-bound..bound));
        Dense {
            weight: Param::new(w.into_dyn()),
            bias: Param::new(Tensor::zeros(ndarray::IxDyn(&[outputs]))),
        }
    }

    fn forward<'t>(&self, x: Var<'t>) -> Var<'t> {
        let tape = x.tape();
        x.matmul_t(tape.param(&self.weight)) + tape.param(&self.bias)
    }
}

impl Parameterized for Dense {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.param("weight", &self.weight);
        v.param("bias", &self.bias);
    }
    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.param("weight", &mut self.weight);
        v.param("bias", &mut self.bias);
    }
}

struct Mlp {
    layers: Vec<Dense>,
}

impl Mlp {
    fn new(sizes: &[usize], rng: &mut impl Rng) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| Dense::new(w[0], w[1], rng))
            .collect();
        Mlp { layers }
    }

    fn forward<'t>(&self, mut x: Var<'t>) -> Var<'t> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = x.gelu();
            }
        }
        x
    }

    fn predict(&self, x: &Array2<f32>) -> Tensor {
        let tape = Tape::no_grad();
        (*self.forward(tape.constant(x.clone().into_dyn())).value()).clone()
    }
}

impl Parameterized for Mlp {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("layers", &self.layers);
    }
    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("layers", &mut self.layers);
    }
}

fn target(x1: f32, x2: f32) -> f32 {
    (3.0 * x1).sin() * (2.0 * x2).cos() + 0.5 * x1 * x1
}

fn dataset(n: usize, rng: &mut impl Rng) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_simple_fn((n, 2), || rng.random_range(-1.5f32..1.5));
    let y = x
        .map_axis(Axis(1), |r| target(r[0], r[1]))
        .insert_axis(Axis(1));
    (x, y)
}

fn mse(pred: &Tensor, y: &Array2<f32>) -> f32 {
    let p = pred
        .view()
        .into_dimensionality::<Ix2>()
        .expect("2-D predictions");
    (&p - y).mapv(|e| e * e).mean().unwrap_or(f32::NAN)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = flag(&args, "--epochs", 40)?;
    let seed: u64 = flag(&args, "--seed", 7)?;
    init_thread_pool(flag(&args, "--threads", 0)?)?;

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (x_train, y_train) = dataset(4096, &mut rng);
    let (x_test, y_test) = dataset(1024, &mut rng);
    let mut model = Mlp::new(&[2, 64, 64, 1], &mut rng);
    let mut adam = Adam::new(3e-3);
    let batch = 128;
    println!(
        "MLP {} parameters; target y = sin(3·x1)·cos(2·x2) + x1²/2; baseline MSE (predict the mean) {:.4}",
        model.num_params(),
        y_test.var(0.0)
    );

    let mut order: Vec<usize> = (0..x_train.nrows()).collect();
    let first_test = mse(&model.predict(&x_test), &y_test);
    for epoch in 1..=epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0f64;
        for idx in order.chunks(batch) {
            let xb = x_train.select(Axis(0), idx);
            let yb = y_train.select(Axis(0), idx);
            let tape = Tape::new();
            let pred = model.forward(tape.constant(xb.into_dyn()));
            let err = pred - tape.constant(yb.into_dyn());
            let loss = (err * err).mean();
            total += f64::from(loss.item()) * idx.len() as f64;
            let grads = tape.backward(loss);
            drop(tape);
            adam.step(&mut model, &grads);
        }
        if epoch == 1 || epoch % 5 == 0 || epoch == epochs {
            let test = mse(&model.predict(&x_test), &y_test);
            println!(
                "epoch {epoch:>3}  train MSE {:.5}  test MSE {test:.5}",
                total / x_train.nrows() as f64
            );
        }
    }
    let final_test = mse(&model.predict(&x_test), &y_test);
    let converged = final_test < 0.1 * first_test; // false for NaN too
    if !converged {
        bail!("training did not converge: test MSE {first_test:.4} → {final_test:.4}");
    }

    // Checkpoint round trip: a fresh model with other weights predicts identically after loading.
    let dir = std::env::temp_dir().join(format!("closeup-mlp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("model.bin");
    Checkpoint::from_module(&model).save(&path)?;
    let mut reloaded = Mlp::new(&[2, 64, 64, 1], &mut ChaCha8Rng::seed_from_u64(seed + 1));
    Checkpoint::load(&path)?.restore_into(&mut reloaded)?;
    let same = model.predict(&x_test) == reloaded.predict(&x_test);
    std::fs::remove_dir_all(&dir)?;
    println!(
        "test MSE {first_test:.4} → {final_test:.5}; checkpoint round trip bit-identical: {same}"
    );
    if !same {
        bail!("reloaded model predicts differently");
    }
    Ok(())
}
