//! Score regularization's stability/quality trade-off (SPEC §2.4): churn against a previous
//! model and test AUC as functions of λ_sr.
//!
//! On the simulator's engagement world of `closeup demo --quick` (the demo's world, model and
//! trainer settings, `closeup::demo::DemoPlan`): for each pair `i`, model A trains with seed
//! `s_A = 100 + 2i`; then model B trains with seed `s_A + 1` once per λ_sr, pulled toward A by
//! `λ · MSE(σ(z_B), p_A)` on every training batch (λ = 0: plain B, the seed-to-seed churn).
//! Churn of each B against A on the test split (mean |Δp|, top-k flip rate and Kendall τ-b per
//! request, averaged over the four tasks) and B's test AUC, mean ± sd over the pairs.
//!
//! Output: a markdown table on stdout and two SVG figures in `--out`:
//! `score_reg_churn.svg` (churn against log10 λ) and `score_reg_tradeoff.svg` (test AUC
//! against mean |Δp|, one point per λ).
//!
//! Run: `cargo run --release --example score_reg_tradeoff -- --threads 1 [--pairs 3
//! --lambdas 0,1,3,10,30,100,300,1000 --size quick --out docs/experiments/figures]`

mod support;

use anyhow::{Context, Result, bail};
use closeup::autograd::{init_thread_pool, num_threads};
use closeup::data::metrics::ChurnReport;
use closeup::data::sim::simulate_engagement;
use closeup::data::{EngagementDataset, ReadOptions};
use closeup::demo::{DemoPlan, DemoSize};
use closeup::figures::{Series, line_chart};
use closeup::model_dir::shape_for;
use closeup::models::{Architecture, CloseupModel};
use closeup::train::{
    PredictOptions, ProgressMode, Teacher, Trainer, VocabBridge, churn, metrics, predict,
};
use ndarray::Array2;
use std::path::PathBuf;
use std::time::Instant;
use support::{flag, mean_sd};

struct Sets {
    train: EngagementDataset,
    valid: EngagementDataset,
    test: EngagementDataset,
}

/// The demo's world, split by time as `closeup demo` does.
fn world(plan: &DemoPlan) -> Result<Sets> {
    let world = simulate_engagement(&plan.world, plan.seed);
    let read = ReadOptions {
        max_history: Some(plan.model.sequence.seq_len),
        tasks: None,
    };
    let train = EngagementDataset::from_records_training("sim:train", world.train, &read)?;
    let valid =
        EngagementDataset::from_records_with_vocab("sim:valid", world.valid, &train.vocab, &read)?;
    let test =
        EngagementDataset::from_records_with_vocab("sim:test", world.test, &train.vocab, &read)?;
    Ok(Sets { train, valid, test })
}

/// Trains the demo's closeup model (MMoE head) with `seed`, regularized toward `teacher` with
/// `lambda` when given; returns its probabilities on the test and on the training split.
fn train(
    plan: &DemoPlan,
    sets: &Sets,
    seed: u64,
    teacher: Option<(&CloseupModel, f32)>,
) -> Result<(CloseupModel, Array2<f32>, Array2<f32>)> {
    let cfg = plan.model_for(Architecture::Mmoe);
    let seq_len = cfg.sequence.seq_len;
    let mut model = CloseupModel::new(&cfg, &shape_for(&sets.train.vocab, &sets.train.meta), seed)?;
    let lambda = teacher.map_or(0.0, |t| t.1);
    let mut trainer =
        Trainer::new(plan.train_for(seed, lambda), seq_len)?.with_progress(ProgressMode::Off);
    if let Some((t, _)) = teacher {
        let bridge = VocabBridge::new(&sets.train.vocab, &sets.train.vocab);
        trainer = trainer.with_teacher(Teacher::new(t, bridge, seq_len)?);
    }
    trainer
        .fit(&mut model, &sets.train, &sets.valid, &mut |_, _| Ok(()))
        .with_context(|| format!("training seed {seed}, λ = {lambda}"))?;
    let opts = PredictOptions {
        batch_size: 512,
        seq_len,
    };
    let test = predict(&model, &sets.test, opts, None).scores;
    let train = predict(&model, &sets.train, opts, None).scores;
    Ok((model, test, train))
}

/// Mean over tasks of one churn metric (tasks where it is undefined are skipped).
fn task_mean(
    r: &ChurnReport,
    f: impl Fn(&closeup::data::metrics::ChurnMetrics) -> Option<f64>,
) -> f64 {
    let v: Vec<f64> = r.tasks.iter().filter_map(|(_, m)| f(m)).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// One point of the sweep, over all pairs.
#[derive(Default)]
struct Point {
    abs_delta: Vec<f64>,
    train_abs_delta: Vec<f64>,
    flips: Vec<f64>,
    tau: Vec<f64>,
    auc: Vec<f64>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pairs: u64 = flag(&args, "--pairs", 3)?;
    let lambdas: Vec<f32> = flag(&args, "--lambdas", "0,1,3,10,30,100,300,1000".to_string())?
        .split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .context("--lambdas: a comma-separated list of numbers")?;
    if pairs == 0 || lambdas.iter().any(|l| !(l.is_finite() && *l >= 0.0)) {
        bail!("--pairs must be >= 1 and every λ finite and >= 0");
    }
    let size = match flag(&args, "--size", "quick".to_string())?.as_str() {
        "quick" => DemoSize::Quick,
        "full" => DemoSize::Full,
        other => bail!("--size: quick or full, not {other:?}"),
    };
    let seed: u64 = flag(&args, "--seed", 1)?;
    let out = PathBuf::from(flag(
        &args,
        "--out",
        "docs/experiments/figures".to_string(),
    )?);
    init_thread_pool(flag(&args, "--threads", 0)?)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();

    let plan = DemoPlan::new(size, seed);
    let sets = world(&plan)?;
    let k = plan.churn_k;
    println!(
        "Score regularization sweep on the world of `closeup demo` at size {size} (seed {seed}): {} train / \
         {} valid / {} test impressions; {} pair(s) of models (A: seed 100 + 2i, B: seed \
         101 + 2i), {} epochs at most, probability-space MSE toward A; top-{k} flips; {} kernel \
         thread(s).\n",
        sets.train.len(),
        sets.valid.len(),
        sets.test.len(),
        pairs,
        plan.train.epochs,
        num_threads()
    );

    let mut points: Vec<Point> = lambdas.iter().map(|_| Point::default()).collect();
    let mut auc_a = Vec::new();
    for i in 0..pairs {
        let seed_a = 100 + 2 * i;
        let (model_a, scores_a, train_a) = train(&plan, &sets, seed_a, None)?;
        auc_a.push(
            metrics(&sets.test, &scores_a, None)
                .mean_auc
                .unwrap_or(f64::NAN),
        );
        for (l, point) in lambdas.iter().zip(&mut points) {
            let teacher = (*l > 0.0).then_some((&model_a, *l));
            let (_, scores_b, train_b) = train(&plan, &sets, seed_a + 1, teacher)?;
            let on_train = churn(&sets.train, &train_a, &train_b, k);
            point
                .train_abs_delta
                .push(task_mean(&on_train, |m| m.mean_abs_delta));
            let c = churn(&sets.test, &scores_a, &scores_b, k);
            point.abs_delta.push(task_mean(&c, |m| m.mean_abs_delta));
            point.flips.push(task_mean(&c, |m| m.topk_flip_rate));
            point.tau.push(task_mean(&c, |m| m.kendall_tau));
            point.auc.push(
                metrics(&sets.test, &scores_b, None)
                    .mean_auc
                    .unwrap_or(f64::NAN),
            );
            eprintln!(
                "pair {} of {pairs}, λ = {l}: done ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }

    let (a_m, a_sd) = mean_sd(&auc_a);
    println!(
        "Churn of B against A (mean over tasks; on the test split unless noted) and B's test mean AUC, mean ± sd \
         over {pairs} pair(s); A's own test mean AUC {a_m:.4} ± {a_sd:.4}.\n"
    );
    println!(
        "| λ_sr | mean \\|Δp\\| | top-{k} flip rate | Kendall τ | test mean AUC | mean \\|Δp\\| on the training split |"
    );
    println!("|---|---|---|---|---|---|");
    let cell = |v: &[f64]| {
        let (m, sd) = mean_sd(v);
        format!("{m:.4} ± {sd:.4}")
    };
    for (l, p) in lambdas.iter().zip(&points) {
        println!(
            "| {l} | {} | {} | {} | {} | {} |",
            cell(&p.abs_delta),
            cell(&p.flips),
            cell(&p.tau),
            cell(&p.auc),
            cell(&p.train_abs_delta)
        );
    }

    // Churn against log10 λ (λ > 0), with λ = 0 as dashed reference lines.
    let mean = |v: &[f64]| mean_sd(v).0;
    let positive: Vec<(f64, &Point)> = lambdas
        .iter()
        .zip(&points)
        .filter(|(l, _)| **l > 0.0)
        .map(|(l, p)| (f64::from(*l).log10(), p))
        .collect();
    let series = vec![
        Series::new(
            format!("top-{k} flip rate"),
            positive.iter().map(|(x, p)| (*x, mean(&p.flips))).collect(),
        ),
        Series::new(
            "1 − Kendall τ",
            positive
                .iter()
                .map(|(x, p)| (*x, 1.0 - mean(&p.tau)))
                .collect(),
        ),
        Series::new(
            "mean |Δp| × 10",
            positive
                .iter()
                .map(|(x, p)| (*x, 10.0 * mean(&p.abs_delta)))
                .collect(),
        ),
    ];
    let zero = lambdas.iter().position(|l| *l == 0.0).map(|i| &points[i]);
    let mut hlines = Vec::new();
    if let Some(p) = zero {
        hlines.push(("flips at λ = 0", mean(&p.flips)));
        hlines.push(("1 − τ at λ = 0", 1.0 - mean(&p.tau)));
    }
    let svg = line_chart(
        &format!("Churn of B against A ({pairs} pairs, mean)"),
        "log10 λ_sr",
        "churn",
        &series,
        &hlines,
    );
    std::fs::write(out.join("score_reg_churn.svg"), svg)?;
    let tradeoff = Series::new(
        "B at λ_sr (left: larger λ)",
        lambdas
            .iter()
            .zip(&points)
            .map(|(_, p)| (mean(&p.abs_delta), mean(&p.auc)))
            .collect(),
    );
    let svg = line_chart(
        "Test mean AUC against churn (mean |Δp|), one point per λ_sr",
        "mean |Δp| against A",
        "test mean AUC",
        &[tradeoff],
        &[("A", a_m)],
    );
    std::fs::write(out.join("score_reg_tradeoff.svg"), svg)?;
    println!(
        "\nWall time {:.0} s; figures in {}.",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
