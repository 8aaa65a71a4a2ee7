//! Real data: MovieLens ml-latest-small (docs/experiments/movielens.md). Per-task test AUC of
//! single-task, shared-bottom and MMoE heads, each with and without the action-sequence
//! encoder, over several seeds.
//!
//! Input: the engagement log written by `closeup data movielens` (tasks `like`, `love`,
//! `dislike`, `tagged`; docs/data.md). The log is split by time: the latest 10% of
//! impressions are the test set, the 10% before them validation (early stopping and the kept
//! epoch), the earliest 80% training.
//!
//! "Without the sequence" builds the model for data without histories (no encoder; the
//! candidate-movie embedding and the 5 dense features remain), exactly what the model gets
//! from a log converted with `--max-history 0`.
//!
//! Every model shares one cheap configuration: the reference MMoE head (8 experts of
//! [256, 256], residual concat, expert dropout 0.2, towers [128]); single-task bottoms use
//! the expert shape and the shared bottom is sized to the experts' parameter count; the
//! sequence encoder is shrunk (20 most recent actions, `d_model` 32, one block, 2 heads,
//! 20,000 movie buckets); Adam at 1e-3, at most 2 epochs.
//!
//! Prints the markdown tables of the page and writes its SVG figure into `--figures`.
//!
//! Run:
//! ```sh
//! closeup data movielens --ratings ml-latest-small/ratings.csv \
//!     --tags ml-latest-small/tags.csv --out movielens.jsonl
//! cargo run --release --example movielens -- --data movielens.jsonl [--seeds 2] [--threads 1] \
//!     [--epochs 2] [--figures docs/experiments/figures]
//! ```

mod support;

use anyhow::{Context, Result, bail};
use closeup::autograd::init_thread_pool;
use closeup::data::{EngagementDataset, ReadOptions};
use closeup::figures::bar_chart;
use closeup::model_dir::shape_for;
use closeup::models::{Architecture, ModelConfig};
use closeup::train::TrainConfig;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use support::study::{Point, Run, Split, train_and_test};
use support::{mean_sd, pm};

struct Args {
    data: PathBuf,
    seeds: u64,
    threads: usize,
    epochs: usize,
    figures: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut data = None;
    let mut args = Args {
        data: PathBuf::new(),
        seeds: 2,
        threads: 1,
        epochs: 2,
        figures: PathBuf::from("docs/experiments/figures"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = Some(PathBuf::from(value()?)),
            "--seeds" => args.seeds = value()?.parse().context("--seeds")?,
            "--threads" => args.threads = value()?.parse().context("--threads")?,
            "--epochs" => args.epochs = value()?.parse().context("--epochs")?,
            "--figures" => args.figures = PathBuf::from(value()?),
            other => bail!(
                "unknown argument {other:?}; expected --data FILE, --seeds N, --threads N, \
                 --epochs N, --figures DIR"
            ),
        }
    }
    args.data = data.context(
        "--data FILE is required: the log written by `closeup data movielens` (see the docs)",
    )?;
    if args.seeds == 0 || args.epochs == 0 {
        bail!("--seeds and --epochs must be at least 1");
    }
    Ok(args)
}

fn model_config(architecture: Architecture) -> ModelConfig {
    let mut m = ModelConfig {
        architecture,
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

/// 80 / 10 / 10 by time.
fn split(path: &std::path::Path, seq_len: usize) -> Result<Split> {
    let read = ReadOptions {
        max_history: Some(seq_len),
        tasks: None,
    };
    let full = EngagementDataset::load_training(path, &read)?;
    if !full.meta.has_history || !full.meta.has_candidate {
        bail!(
            "{}: expected a log with histories and candidates (convert with `closeup data \
             movielens` and the default --max-history)",
            path.display()
        );
    }
    let (rest, test) = full.split_by_time(0.1)?;
    let (train, valid) = rest.split_by_time(1.0 / 9.0)?;
    Ok(Split { train, valid, test })
}

fn run(cfg: &ModelConfig, sequence: bool, seed: u64, epochs: usize, data: &Split) -> Result<Run> {
    let mut shape = shape_for(&data.train.vocab, &data.train.meta);
    shape.has_history = sequence;
    let train = TrainConfig {
        seed,
        epochs,
        patience: 1,
        ..TrainConfig::default()
    };
    train_and_test(cfg, &shape, train, data)
}

fn counts(ds: &EngagementDataset) -> String {
    let cells: Vec<String> = ds
        .vocab
        .tasks()
        .iter()
        .zip(ds.label_counts())
        .map(|(t, (n, pos))| format!("{t} {pos}/{n}"))
        .collect();
    cells.join(", ")
}

fn main() -> Result<()> {
    let args = parse_args()?;
    init_thread_pool(args.threads)?;
    let started = Instant::now();
    let seq_len = model_config(Architecture::Mmoe).sequence.seq_len;
    let data = split(&args.data, seq_len)?;
    let tasks = data.train.vocab.tasks().to_vec();
    let seeds: Vec<u64> = (0..args.seeds).collect();
    eprintln!(
        "{} train / {} valid / {} test impressions",
        data.train.len(),
        data.valid.len(),
        data.test.len()
    );
    let mut points = Vec::new();
    for arch in [
        Architecture::SingleTask,
        Architecture::SharedBottom,
        Architecture::Mmoe,
    ] {
        for sequence in [false, true] {
            let label = format!(
                "{arch}, {}",
                if sequence {
                    "with sequence"
                } else {
                    "no sequence"
                }
            );
            let cfg = model_config(arch);
            let mut runs = Vec::new();
            for &seed in &seeds {
                let r = run(&cfg, sequence, seed, args.epochs, &data)
                    .with_context(|| format!("{label} seed {seed}"))?;
                eprintln!(
                    "{label} seed {seed}: valid mean AUC {:.4}, test mean AUC {:.4} ({:.0}s)",
                    r.valid.mean_auc.unwrap_or(f64::NAN),
                    r.test.mean_auc.unwrap_or(f64::NAN),
                    r.seconds
                );
                runs.push(r);
            }
            points.push(Point { label, runs });
        }
    }

    println!(
        "Data: {}; {} train / {} valid / {} test impressions by time. Positives/impressions: \
         train {}; test {}. Seeds {seeds:?}, at most {} epochs, {} kernel thread(s).\n",
        args.data.display(),
        data.train.len(),
        data.valid.len(),
        data.test.len(),
        counts(&data.train),
        counts(&data.test),
        args.epochs,
        args.threads
    );
    let mut out = format!(
        "| model | params | {} | test mean AUC | valid mean AUC | kept epochs | s / run |\n|---|---|{}---|---|---|---|\n",
        tasks
            .iter()
            .map(|t| format!("test {t}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(tasks.len())
    );
    for p in &points {
        let cells: Vec<String> = (0..tasks.len()).map(|k| pm(p.test_task(k))).collect();
        let epochs: Vec<String> = p.runs.iter().map(|r| r.best_epoch.to_string()).collect();
        let secs = mean_sd(&p.collect(|r| Some(r.seconds))).0;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {secs:.0} |",
            p.label,
            p.runs[0].params,
            cells.join(" | "),
            pm(p.test_mean()),
            pm(p.valid_mean()),
            epochs.join(",")
        );
    }
    println!("{out}");

    std::fs::create_dir_all(&args.figures)
        .with_context(|| format!("creating {}", args.figures.display()))?;
    let mut categories = tasks.clone();
    categories.push("mean".into());
    let series: Vec<(String, Vec<f64>)> = points
        .iter()
        .map(|p| {
            let mut v: Vec<f64> = (0..tasks.len()).map(|k| p.test_task(k).0).collect();
            v.push(p.test_mean().0);
            (p.label.clone(), v)
        })
        .collect();
    let path = args.figures.join("movielens_auc.svg");
    std::fs::write(
        &path,
        bar_chart(
            "MovieLens ml-latest-small: test AUC per task (seed mean)",
            "test AUC",
            &categories,
            &series,
            Some(0.5),
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    println!(
        "Wall time: {:.1} min.",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
