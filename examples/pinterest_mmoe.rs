//! Pinterest's MMoE findings, re-run on the simulator's engagement world
//! (docs/experiments/pinterest_mmoe.md): validation and test AUC against the number of experts
//! (1, 2, 4, 8, 16), against the expert shape ([256,256] vs [512,512] vs [256,256,256]), with
//! and without the residual concatenation and the 20% expert dropout, over several seeds; and
//! the mean gate weight per task per expert (the heatmap Pinterest used to check its experts).
//!
//! The model is a cheap proxy of the reference closeup model: the MMoE head is the reference
//! one (8 experts of [256, 256], residual concat, expert dropout 0.2, towers [128]), but the
//! sequence encoder is shrunk (20 actions, `d_model` 32, one block, 2 heads, 20,000 pin
//! buckets) and training stops after 3 epochs (early stopping after 1 epoch without a better
//! validation AUC). The world is the simulator's default (`closeup simulate`, seed 1).
//!
//! Prints the markdown tables of the page and writes its SVG figures into `--figures`.
//!
//! Run: `cargo run --release --example pinterest_mmoe -- [--seeds 3] [--threads 1]
//! [--figures docs/experiments/figures] [--quick]`
//! (`--quick`: a small world, one seed, two points per axis, to check the pipeline.)

mod support;

use anyhow::{Context, Result, bail};
use closeup::autograd::init_thread_pool;
use closeup::data::metrics::MetricsReport;
use closeup::data::sim::{EngagementConfig, SimulatedEngagement, simulate_engagement};
use closeup::data::{EngagementDataset, ReadOptions};
use closeup::figures::{Series, bar_chart, gate_heatmap, line_chart};
use closeup::model_dir::shape_for;
use closeup::models::{Architecture, ModelConfig};
use closeup::train::{TrainConfig, label_arrays};
use ndarray::Array2;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use support::study::{Point, Run, Split, train_and_test};
use support::{mean_sd, pm};

/// Seed of the simulated world (the same world for every run).
const WORLD_SEED: u64 = 1;

struct Args {
    seeds: u64,
    threads: usize,
    figures: PathBuf,
    quick: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        seeds: 3,
        threads: 1,
        figures: PathBuf::from("docs/experiments/figures"),
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seeds" => args.seeds = value()?.parse().context("--seeds")?,
            "--threads" => args.threads = value()?.parse().context("--threads")?,
            "--figures" => args.figures = PathBuf::from(value()?),
            "--quick" => args.quick = true,
            other => bail!(
                "unknown argument {other:?}; expected --seeds N, --threads N, --figures DIR, --quick"
            ),
        }
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    Ok(args)
}

/// The proxy model: the reference MMoE head on a shrunk sequence encoder.
fn base_model() -> ModelConfig {
    let mut m = ModelConfig {
        architecture: Architecture::Mmoe,
        ..ModelConfig::default()
    };
    let s = &mut m.sequence;
    s.seq_len = 20;
    s.pin_buckets = 20_000;
    s.d_model = 32;
    s.layers = 1;
    s.heads = 2;
    s.ffn_hidden = 64;
    m
}

fn train_config(seed: u64) -> TrainConfig {
    TrainConfig {
        seed,
        epochs: 3,
        patience: 1,
        ..TrainConfig::default()
    }
}

fn load(world: &SimulatedEngagement, seq_len: usize) -> Result<Split> {
    let read = ReadOptions {
        max_history: Some(seq_len),
        tasks: None,
    };
    let train = EngagementDataset::from_records_training("sim:train", world.train.clone(), &read)?;
    let with_vocab = |name: &str, recs: &[closeup::data::record::EngagementRecord]| {
        EngagementDataset::from_records_with_vocab(name, recs.to_vec(), &train.vocab, &read)
    };
    let valid = with_vocab("sim:valid", &world.valid)?;
    let test = with_vocab("sim:test", &world.test)?;
    Ok(Split { train, valid, test })
}

/// The AUC of the simulator's true probabilities on `ds` (the best any model can do).
fn ceiling(ds: &EngagementDataset, truth: &[[f64; 4]], world_tasks: &[String]) -> MetricsReport {
    let tasks = ds.vocab.tasks();
    let p = Array2::from_shape_fn((ds.len(), tasks.len()), |(i, k)| {
        let col = world_tasks.iter().position(|t| *t == tasks[k]);
        col.map_or(f64::NAN, |c| truth[i][c])
    });
    let (labels, mask) = label_arrays(ds);
    MetricsReport::from_arrays(tasks, p.view(), labels.view(), mask.view(), None)
}

fn run(cfg: &ModelConfig, seed: u64, data: &Split) -> Result<Run> {
    let shape = shape_for(&data.train.vocab, &data.train.meta);
    train_and_test(cfg, &shape, train_config(seed), data)
}

/// A markdown table: one row per point, validation AUC per task (seed mean), mean validation
/// and test AUC (mean ± sd over seeds), parameters, kept epochs and seconds per run.
fn table(first: &str, points: &[Point], tasks: &[String]) -> String {
    let mut out = format!(
        "| {first} | params | {} | valid mean AUC | test mean AUC | kept epochs | s / run |\n|---|---|{}---|---|---|---|\n",
        tasks
            .iter()
            .map(|t| format!("valid {t}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(tasks.len())
    );
    for p in points {
        let cells: Vec<String> = (0..tasks.len())
            .map(|k| format!("{:.4}", p.valid_task(k).0))
            .collect();
        let epochs: Vec<String> = p.runs.iter().map(|r| r.best_epoch.to_string()).collect();
        let secs = mean_sd(&p.collect(|r| Some(r.seconds))).0;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {secs:.0} |",
            p.label,
            p.runs[0].params,
            cells.join(" | "),
            pm(p.valid_mean()),
            pm(p.test_mean()),
            epochs.join(",")
        );
    }
    out
}

fn sweep(
    name: &str,
    configs: Vec<(String, ModelConfig)>,
    seeds: &[u64],
    data: &Split,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for (label, cfg) in configs {
        let mut runs = Vec::new();
        for &seed in seeds {
            let r = run(&cfg, seed, data).with_context(|| format!("{name} {label} seed {seed}"))?;
            eprintln!(
                "{name}: {label} seed {seed}: valid mean AUC {:.4}, test {:.4} ({:.0}s)",
                r.valid.mean_auc.unwrap_or(f64::NAN),
                r.test.mean_auc.unwrap_or(f64::NAN),
                r.seconds
            );
            runs.push(r);
        }
        points.push(Point { label, runs });
    }
    Ok(points)
}

fn hidden_label(h: &[usize]) -> String {
    let parts: Vec<String> = h.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(","))
}

fn write_figure(dir: &std::path::Path, name: &str, svg: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    init_thread_pool(args.threads)?;
    let started = Instant::now();
    let seeds: Vec<u64> = if args.quick {
        vec![0]
    } else {
        (0..args.seeds).collect()
    };
    let world_cfg = if args.quick {
        EngagementConfig {
            num_requests: 800,
            num_users: 200,
            num_pins: 600,
            ..EngagementConfig::default()
        }
    } else {
        EngagementConfig::default()
    };
    let world = simulate_engagement(&world_cfg, WORLD_SEED);
    let base = base_model();
    let data = load(&world, base.sequence.seq_len)?;
    let tasks = data.train.vocab.tasks().to_vec();
    let world_tasks = world.tasks();
    let ceil_valid = ceiling(&data.valid, &world.valid_truth, &world_tasks);
    let ceil_test = ceiling(&data.test, &world.test_truth, &world_tasks);
    eprintln!(
        "world: {} train / {} valid / {} test impressions; Bayes ceiling mean AUC valid {:.4}, test {:.4}",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        ceil_valid.mean_auc.unwrap_or(f64::NAN),
        ceil_test.mean_auc.unwrap_or(f64::NAN)
    );

    // 1. Number of experts (expert shape [256, 256]).
    let experts: Vec<usize> = if args.quick {
        vec![1, 8]
    } else {
        vec![1, 2, 4, 8, 16]
    };
    let with = |f: &dyn Fn(&mut ModelConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let expert_points = sweep(
        "experts",
        experts
            .iter()
            .map(|&e| (e.to_string(), with(&|c| c.mmoe.num_experts = e)))
            .collect(),
        &seeds,
        &data,
    )?;
    // The reference point (8 experts, [256, 256], residual, dropout 0.2) is shared by all
    // three studies.
    let reference = expert_points
        .iter()
        .position(|p| p.label == "8")
        .context("the experts axis must contain 8")?;

    // 2. Expert shapes (8 experts).
    let shapes: Vec<Vec<usize>> = if args.quick {
        vec![vec![512, 512]]
    } else {
        vec![vec![512, 512], vec![256, 256, 256]]
    };
    let mut shape_points = vec![Point {
        label: hidden_label(&base.mmoe.expert_hidden),
        runs: Vec::new(),
    }];
    shape_points.extend(sweep(
        "shape",
        shapes
            .iter()
            .map(|h| (hidden_label(h), with(&|c| c.mmoe.expert_hidden = h.clone())))
            .collect(),
        &seeds,
        &data,
    )?);

    // 3. Residual concat and expert dropout (8 experts, [256, 256]).
    let ablations: Vec<(&str, bool, f32)> = if args.quick {
        vec![("no residual, no dropout", false, 0.0)]
    } else {
        vec![
            ("no residual, dropout 0.2", false, 0.2),
            ("residual, no dropout", true, 0.0),
            ("no residual, no dropout", false, 0.0),
        ]
    };
    let mut ablation_points = vec![Point {
        label: "residual, dropout 0.2 (reference)".into(),
        runs: Vec::new(),
    }];
    ablation_points.extend(sweep(
        "ablation",
        ablations
            .iter()
            .map(|&(label, residual, dropout)| {
                (
                    label.to_string(),
                    with(&|c| {
                        c.mmoe.residual = residual;
                        c.mmoe.expert_dropout = dropout;
                    }),
                )
            })
            .collect(),
        &seeds,
        &data,
    )?);
    // The reference runs are also the first rows of the other two tables.
    shape_points[0].runs = expert_points[reference].runs.clone();
    ablation_points[0].runs = expert_points[reference].runs.clone();

    // Output.
    println!(
        "World: simulator defaults, seed {WORLD_SEED}: {} train / {} valid / {} test impressions. \
         Bayes-ceiling AUC (true probabilities) valid {}, test {}. Seeds {:?}; {} kernel thread(s).\n",
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        ceiling_cells(&ceil_valid),
        ceiling_cells(&ceil_test),
        seeds,
        args.threads
    );
    println!("### Number of experts (expert shape [256,256])\n");
    println!("{}", table("experts", &expert_points, &tasks));
    println!("### Expert shape (8 experts)\n");
    println!("{}", table("expert hidden", &shape_points, &tasks));
    println!("### Residual concat and expert dropout (8 experts, [256,256])\n");
    println!("{}", table("variant", &ablation_points, &tasks));

    let gate_run = &expert_points[reference].runs[0];
    let gates = gate_run
        .gates
        .as_ref()
        .context("an MMoE model always reports gates")?;
    println!(
        "### Mean gate weight per task per expert (8 experts, seed {}, test split)\n",
        seeds[0]
    );
    println!("{}", gate_table(&tasks, gates));
    let bigger = expert_points.iter().rfind(|p| p.label != "8");
    let big_gates = bigger.and_then(|p| p.runs[0].gates.clone().map(|g| (p.label.clone(), g)));
    if let Some((label, g)) = &big_gates {
        println!(
            "### Mean gate weight per task per expert ({label} experts, seed {}, test split)\n",
            seeds[0]
        );
        println!("{}", gate_table(&tasks, g));
    }

    std::fs::create_dir_all(&args.figures)
        .with_context(|| format!("creating {}", args.figures.display()))?;
    let series = |f: &dyn Fn(&Point) -> (f64, f64), name: &str| Series {
        name: name.into(),
        points: expert_points
            .iter()
            .map(|p| (p.label.parse::<f64>().unwrap_or(f64::NAN).log2(), f(p).0))
            .collect(),
    };
    let ceil_mean = ceil_valid.mean_auc.unwrap_or(f64::NAN);
    write_figure(
        &args.figures,
        "pinterest_mmoe_experts.svg",
        &line_chart(
            "Mean AUC vs number of experts (seed mean)",
            "log2(number of experts)",
            "mean AUC",
            &[
                series(&|p| p.valid_mean(), "validation"),
                series(&|p| p.test_mean(), "test"),
            ],
            &[("Bayes ceiling (valid)", ceil_mean)],
        ),
    )?;
    let bars = |points: &[Point]| {
        vec![
            (
                "validation".to_string(),
                points.iter().map(|p| p.valid_mean().0).collect::<Vec<_>>(),
            ),
            (
                "test".to_string(),
                points.iter().map(|p| p.test_mean().0).collect::<Vec<_>>(),
            ),
        ]
    };
    let labels = |points: &[Point]| points.iter().map(|p| p.label.clone()).collect::<Vec<_>>();
    write_figure(
        &args.figures,
        "pinterest_mmoe_shapes.svg",
        &bar_chart(
            "Mean AUC by expert shape (8 experts, seed mean)",
            "mean AUC",
            &labels(&shape_points),
            &bars(&shape_points),
            Some(0.6),
        ),
    )?;
    write_figure(
        &args.figures,
        "pinterest_mmoe_residual_dropout.svg",
        &bar_chart(
            "Mean AUC: residual concat and expert dropout (seed mean)",
            "mean AUC",
            &labels(&ablation_points),
            &bars(&ablation_points),
            Some(0.6),
        ),
    )?;
    write_figure(
        &args.figures,
        "pinterest_mmoe_gates.svg",
        &gate_heatmap(&tasks, gates),
    )?;
    if let Some((label, g)) = &big_gates {
        write_figure(
            &args.figures,
            &format!("pinterest_mmoe_gates_{label}.svg"),
            &gate_heatmap(&tasks, g),
        )?;
    }
    println!(
        "Wall time: {:.1} min.",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

fn ceiling_cells(r: &MetricsReport) -> String {
    let cells: Vec<String> = r
        .tasks
        .iter()
        .map(|(t, m)| format!("{t} {:.3}", m.auc.unwrap_or(f64::NAN)))
        .collect();
    format!(
        "{} (mean {:.4})",
        cells.join(", "),
        r.mean_auc.unwrap_or(f64::NAN)
    )
}

/// Rows = tasks, columns = experts, plus the gate's entropy in nats (ln E = uniform).
fn gate_table(tasks: &[String], gates: &Array2<f64>) -> String {
    let e = gates.ncols();
    let mut out = format!(
        "| task | {} | entropy (max {:.2}) |\n|---|{}---|\n",
        (0..e)
            .map(|i| format!("e{i}"))
            .collect::<Vec<_>>()
            .join(" | "),
        (e as f64).ln(),
        "---|".repeat(e)
    );
    for (t, row) in tasks.iter().zip(gates.rows()) {
        let cells: Vec<String> = row.iter().map(|g| format!("{g:.3}")).collect();
        let entropy = row
            .iter()
            .filter(|&&g| g > 0.0)
            .map(|g| -g * g.ln())
            .sum::<f64>()
            .max(0.0);
        let _ = writeln!(out, "| {t} | {} | {entropy:.2} |", cells.join(" | "));
    }
    out
}
