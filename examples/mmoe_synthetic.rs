//! The synthetic study of the MMoE paper (Ma et al., KDD 2018, §4, Fig. 4 and Fig. 5), as a
//! regression, as in the paper: shared-bottom vs OMoE vs MMoE on two tasks whose correlation
//! is controlled exactly (`closeup_data::sim::mmoe_synthetic`, real-valued targets `yᵢ`),
//! trained with the mean squared error on Closeup's autograd engine.
//!
//! Setup (the paper's): input dimension 100; MMoE and OMoE with 8 experts of one ReLU layer of
//! 16 units (no residual concat, no dropout), towers of one ReLU layer of 8 units; the
//! shared-bottom's one hidden layer is as wide as needed to match the experts' parameters
//! (`closeup_models::baselines::comparable_bottom_hidden`: 128 units). Every run draws a new data
//! distribution (the data seed) and a new initialization (the model seed), as the paper's 200
//! runs do; this example does `--seeds` runs per correlation and model.
//!
//! Output: a markdown table (final test MSE, mean ± sd over the runs, per model and correlation;
//! the spread of the final loss) on stdout, and SVG figures in `--out`:
//! `mmoe_synthetic_curves_p{50,90,100}.svg` (mean test MSE per epoch, Fig. 4) and
//! `mmoe_synthetic_hist_p{50,90,100}.svg` (histogram of the final test MSE over runs, Fig. 5).
//!
//! Run: `cargo run --release --example mmoe_synthetic -- --threads 1 [--seeds 16 --epochs 30 --lr 3e-3
//! --out docs/experiments/figures]`

mod support;

use anyhow::{Context, Result, bail};
use closeup::autograd::optim::{Adam, Optimizer};
use closeup::autograd::{
    ParamVisitor, ParamVisitorMut, Parameterized, Tape, Var, init_thread_pool, num_threads,
};
use closeup::data::sim::{MmoeLabels, MmoeSyntheticConfig, simulate_mmoe_synthetic};
use closeup::figures::{Series, bar_chart, line_chart};
use closeup::layers::ForwardCtx;
use closeup::models::baselines::comparable_bottom_hidden;
use closeup::models::{HeadOutput, Mmoe, MmoeConfig, SharedBottom};
use ndarray::{Array2, Axis, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;
use support::{flag, mean_sd};

/// The three models of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    SharedBottom,
    Omoe,
    Mmoe,
}

impl Arch {
    const ALL: [Arch; 3] = [Arch::SharedBottom, Arch::Omoe, Arch::Mmoe];

    fn name(self) -> &'static str {
        match self {
            Arch::SharedBottom => "shared-bottom",
            Arch::Omoe => "OMoE",
            Arch::Mmoe => "MMoE",
        }
    }
}

/// A two-task regression head over the 100 inputs: the library's `SharedBottom` or `Mmoe`.
enum Head {
    Bottom(SharedBottom),
    Moe(Mmoe),
}

impl Head {
    fn new(arch: Arch, dim: usize, seed: u64) -> Self {
        let cfg = paper_config();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match arch {
            Arch::SharedBottom => {
                let hidden = comparable_bottom_hidden(dim, &cfg);
                Head::Bottom(SharedBottom::new(dim, 2, &hidden, &cfg, &mut rng))
            }
            Arch::Omoe => Head::Moe(Mmoe::new(dim, 2, &cfg, true, &mut rng)),
            Arch::Mmoe => Head::Moe(Mmoe::new(dim, 2, &cfg, false, &mut rng)),
        }
    }

    /// # Shapes
    /// `x: [B, 100]` → `[B, 2]` (one real-valued prediction per task).
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> Var<'t> {
        let out: HeadOutput<'t> = match self {
            Head::Bottom(m) => m.forward(x, ctx),
            Head::Moe(m) => m.forward(x, ctx),
        };
        out.logits
    }
}

impl Parameterized for Head {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        match self {
            Head::Bottom(m) => m.visit_params(v),
            Head::Moe(m) => m.visit_params(v),
        }
    }
    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        match self {
            Head::Bottom(m) => m.visit_params_mut(v),
            Head::Moe(m) => m.visit_params_mut(v),
        }
    }
}

/// The paper's MMoE: 8 experts × [16], towers [8], no residual concat, no dropout.
fn paper_config() -> MmoeConfig {
    MmoeConfig {
        num_experts: 8,
        expert_hidden: vec![16],
        expert_dropout: 0.0,
        residual: false,
        gate_dropout: 0.0,
        tower_hidden: vec![8],
        tower_dropout: 0.0,
    }
}

struct Options {
    seeds: u64,
    epochs: usize,
    batch: usize,
    lr: f32,
    train: usize,
    test: usize,
    out: PathBuf,
}

/// One run's result: the mean (over both tasks) test MSE after every epoch.
struct Run {
    curve: Vec<f64>,
}

impl Run {
    fn last(&self) -> f64 {
        self.curve.last().copied().unwrap_or(f64::NAN)
    }
}

struct Data {
    x_train: Array2<f32>,
    y_train: Array2<f32>,
    x_test: Array2<f32>,
    y_test: Array2<f32>,
}

fn data(o: &Options, correlation: f64, seed: u64) -> Data {
    let cfg = MmoeSyntheticConfig {
        num_examples: o.train + o.test,
        correlation,
        labels: MmoeLabels::Regression,
        ..MmoeSyntheticConfig::default()
    };
    let sim = simulate_mmoe_synthetic(&cfg, seed);
    let x = Array2::from_shape_fn((cfg.num_examples, cfg.dim), |(i, j)| {
        sim.records[i].features[j] as f32
    });
    let y = Array2::from_shape_fn((cfg.num_examples, 2), |(i, t)| sim.scores[i][t] as f32);
    Data {
        x_train: x.slice(s![..o.train, ..]).to_owned(),
        y_train: y.slice(s![..o.train, ..]).to_owned(),
        x_test: x.slice(s![o.train.., ..]).to_owned(),
        y_test: y.slice(s![o.train.., ..]).to_owned(),
    }
}

fn test_mse(model: &Head, d: &Data) -> f64 {
    let tape = Tape::no_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pred = model.forward(
        tape.constant(d.x_test.clone().into_dyn()),
        &mut ForwardCtx::eval(&mut rng),
    );
    let p = pred.value();
    let err = p
        .view()
        .into_shape_with_order(d.y_test.raw_dim())
        .expect("[B, 2] predictions")
        .to_owned()
        - &d.y_test;
    f64::from(err.mapv(|e| e * e).mean().unwrap_or(f32::NAN))
}

/// Trains one model with Adam on the mean squared error of both tasks (equal weights).
fn train(arch: Arch, d: &Data, seed: u64, o: &Options) -> Result<Run> {
    let mut model = Head::new(arch, d.x_train.ncols(), seed);
    let mut adam = Adam::new(o.lr);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..d.x_train.nrows()).collect();
    let mut curve = Vec::with_capacity(o.epochs);
    for epoch in 1..=o.epochs {
        order.shuffle(&mut rng);
        for idx in order.chunks(o.batch) {
            let xb = d.x_train.select(Axis(0), idx);
            let yb = d.y_train.select(Axis(0), idx);
            let tape = Tape::new();
            let pred = model.forward(
                tape.constant(xb.into_dyn()),
                &mut ForwardCtx::train(&mut rng),
            );
            let err = pred - tape.constant(yb.into_dyn());
            let loss = (err * err).mean();
            if !loss.item().is_finite() {
                bail!("{} (seed {seed}) diverged at epoch {epoch}", arch.name());
            }
            let grads = tape.backward(loss);
            drop(tape);
            adam.step(&mut model, &grads);
        }
        curve.push(test_mse(&model, d));
    }
    Ok(Run { curve })
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// The epochs the curve table reports: 1, 5, 10, 20, ... and the last.
fn checkpoints(epochs: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [1, 5, 10, 20, 40, 80]
        .into_iter()
        .filter(|&e| e < epochs)
        .collect();
    v.push(epochs);
    v
}

/// Histogram of the final losses (one series per model, common bins per correlation).
fn histogram(title: &str, finals: &[(Arch, Vec<f64>)], bins: usize) -> String {
    let all: Vec<f64> = finals.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = ((hi - lo) / bins as f64).max(1e-9);
    let categories: Vec<String> = (0..bins)
        .map(|b| format!("{:.2}", lo + width * (b as f64 + 0.5)))
        .collect();
    let series: Vec<(String, Vec<f64>)> = finals
        .iter()
        .map(|(arch, v)| {
            let mut counts = vec![0.0; bins];
            for &x in v {
                let b = (((x - lo) / width) as usize).min(bins - 1);
                counts[b] += 1.0;
            }
            (arch.name().to_string(), counts)
        })
        .collect();
    bar_chart(title, "runs", &categories, &series, Some(0.0))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = Options {
        seeds: flag(&args, "--seeds", 16)?,
        epochs: flag(&args, "--epochs", 30)?,
        batch: flag(&args, "--batch", 128)?,
        lr: flag(&args, "--lr", 3e-3)?,
        train: flag(&args, "--train", 10_000)?,
        test: flag(&args, "--test", 2_000)?,
        out: PathBuf::from(flag(
            &args,
            "--out",
            "docs/experiments/figures".to_string(),
        )?),
    };
    if o.seeds < 2 || o.epochs == 0 || o.batch == 0 || o.train == 0 || o.test == 0 {
        bail!("--seeds must be >= 2 and --epochs, --batch, --train, --test >= 1");
    }
    init_thread_pool(flag(&args, "--threads", 0)?)?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let started = Instant::now();

    let params: Vec<String> = Arch::ALL
        .iter()
        .map(|&a| format!("{} {}", a.name(), Head::new(a, 100, 0).num_params()))
        .collect();
    println!(
        "MMoE synthetic study (Ma et al. 2018, §4): {} train / {} test examples per run, \
         {} runs per model and correlation (run r: data seed r, model seed 1000 + r), {} epochs \
         of Adam (lr {}, batch {}) on the MSE of both tasks; {} kernel thread(s).\n\
         Parameters: {}.\n",
        o.train,
        o.test,
        o.seeds,
        o.epochs,
        o.lr,
        o.batch,
        num_threads(),
        params.join(", ")
    );

    let correlations = [0.5, 0.9, 1.0];
    let mut table = Vec::new();
    for &p in &correlations {
        let mut runs: Vec<(Arch, Vec<Run>)> = Arch::ALL.iter().map(|&a| (a, Vec::new())).collect();
        let mut target_var = Vec::new();
        for r in 0..o.seeds {
            let d = data(&o, p, r);
            target_var.push(f64::from(
                d.y_test.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0),
            ));
            for (arch, list) in &mut runs {
                list.push(train(*arch, &d, 1000 + r, &o)?);
            }
            eprintln!(
                "correlation {p}: run {} of {} done ({:.0} s)",
                r + 1,
                o.seeds,
                started.elapsed().as_secs_f64()
            );
        }
        let tag = format!("p{:.0}", p * 100.0);
        let curves: Vec<Series> = runs
            .iter()
            .map(|(arch, list)| {
                let pts = (0..o.epochs)
                    .map(|e| {
                        let v: Vec<f64> = list.iter().map(|r| r.curve[e]).collect();
                        ((e + 1) as f64, mean_sd(&v).0.log10())
                    })
                    .collect();
                Series::new(arch.name(), pts)
            })
            .collect();
        let svg = line_chart(
            &format!("Test MSE, correlation {p} (mean of {} runs)", o.seeds),
            "epoch",
            "log10 test MSE",
            &curves,
            &[],
        );
        std::fs::write(o.out.join(format!("mmoe_synthetic_curves_{tag}.svg")), svg)?;
        let finals: Vec<(Arch, Vec<f64>)> = runs
            .iter()
            .map(|(a, list)| (*a, list.iter().map(Run::last).collect()))
            .collect();
        let svg = histogram(
            &format!("Final test MSE over {} runs, correlation {p}", o.seeds),
            &finals,
            10,
        );
        std::fs::write(o.out.join(format!("mmoe_synthetic_hist_{tag}.svg")), svg)?;
        let checkpoints: Vec<(usize, Vec<f64>)> = checkpoints(o.epochs)
            .into_iter()
            .map(|e| {
                let means = runs
                    .iter()
                    .map(|(_, list)| {
                        mean_sd(&list.iter().map(|r| r.curve[e - 1]).collect::<Vec<_>>()).0
                    })
                    .collect();
                (e, means)
            })
            .collect();
        table.push((p, mean_sd(&target_var).0, finals, checkpoints));
    }

    println!("Final test MSE (mean of the two tasks), mean ± sd over runs:\n");
    println!("| correlation | target variance | shared-bottom | OMoE | MMoE |");
    println!("|---|---|---|---|---|");
    for (p, var, finals, _) in &table {
        let cells: Vec<String> = finals
            .iter()
            .map(|(_, v)| {
                let (m, sd) = mean_sd(v);
                format!("{m:.4} ± {sd:.4}")
            })
            .collect();
        println!("| {p} | {var:.3} | {} |", cells.join(" | "));
    }
    println!("\nTrainability: spread of the final test MSE over runs (min / median / max):\n");
    println!("| correlation | shared-bottom | OMoE | MMoE |");
    println!("|---|---|---|---|");
    for (p, _, finals, _) in &table {
        let cells: Vec<String> = finals
            .iter()
            .map(|(_, v)| {
                format!(
                    "{:.4} / {:.4} / {:.4}",
                    quantile(v, 0.0),
                    quantile(v, 0.5),
                    quantile(v, 1.0)
                )
            })
            .collect();
        println!("| {p} | {} |", cells.join(" | "));
    }
    println!(
        "\nPaired by run (same data and model seed): mean difference of the final test MSE \
         ± its standard error, and in how many runs the second model has the lower loss:\n"
    );
    println!(
        "| correlation | OMoE − MMoE | MMoE wins | shared-bottom − MMoE | MMoE wins | shared-bottom − OMoE | OMoE wins |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (p, _, finals, _) in &table {
        let pair = |a: usize, b: usize| {
            let d: Vec<f64> = finals[a]
                .1
                .iter()
                .zip(&finals[b].1)
                .map(|(x, y)| x - y)
                .collect();
            let (m, sd) = mean_sd(&d);
            let wins = d.iter().filter(|&&x| x > 0.0).count();
            format!(
                "{m:+.4} ± {:.4} | {wins} of {} ",
                sd / (d.len() as f64).sqrt(),
                d.len()
            )
        };
        // Columns of `finals`: shared-bottom, OMoE, MMoE.
        println!("| {p} | {}| {}| {}|", pair(1, 2), pair(0, 2), pair(0, 1));
    }
    println!("\nTraining curves (Fig. 4): mean test MSE over runs after some epochs:\n");
    println!("| correlation | epoch | shared-bottom | OMoE | MMoE |");
    println!("|---|---|---|---|---|");
    for (p, _, _, checkpoints) in &table {
        for (e, means) in checkpoints {
            let cells: Vec<String> = means.iter().map(|m| format!("{m:.4}")).collect();
            println!("| {p} | {e} | {} |", cells.join(" | "));
        }
    }
    println!(
        "\nWall time {:.0} s; figures in {}.",
        started.elapsed().as_secs_f64(),
        o.out.display()
    );
    Ok(())
}
