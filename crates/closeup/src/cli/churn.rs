//! `closeup churn`: how differently two models score the same data (SPEC §2.4).

use super::common::{load, load_data, predict_options, with_threads};
use anyhow::{Result, bail};
use clap::Args;
use closeup::train::{PredictOptions, VocabBridge, churn, predict};
use std::path::PathBuf;

/// Churn between two models on the same data: mean |Δp| per task, top-k flip rate per request
/// and Kendall τ-b per request (requests: the `request` field, or `user` + `ts`).
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  closeup churn --a model_seed1 --b model_seed2 --data test.jsonl --k 3"
)]
pub struct ChurnArgs {
    /// First model directory.
    #[arg(long)]
    a: PathBuf,
    /// Second model directory.
    #[arg(long)]
    b: PathBuf,
    /// Engagement log both models score.
    #[arg(long)]
    data: PathBuf,
    /// The k of the top-k flip rate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    k: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Kernel threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.4}"))
}

/// Runs `closeup churn`.
pub fn run(args: ChurnArgs) -> Result<()> {
    with_threads(args.threads, || churn_command(args))
}

fn churn_command(args: ChurnArgs) -> Result<()> {
    let a = load(&args.a)?;
    let b = load(&args.b)?;
    if a.vocab.feature_width() != b.vocab.feature_width() {
        bail!(
            "the models read different numbers of dense features ({} and {})",
            a.vocab.feature_width(),
            b.vocab.feature_width()
        );
    }
    let (mut ta, mut tb) = (a.vocab.tasks().to_vec(), b.vocab.tasks().to_vec());
    ta.sort();
    tb.sort();
    if ta != tb {
        bail!(
            "the models have different tasks ([{}] and [{}])",
            a.vocab.tasks().join(", "),
            b.vocab.tasks().join(", ")
        );
    }
    let ds = load_data(&a, &args.data)?;
    let pa = predict(&a.model, &ds, predict_options(&a), None);
    let bridge = VocabBridge::new(&ds.vocab, &b.vocab);
    let opts_b = PredictOptions {
        seq_len: b.seq_len(),
        ..predict_options(&b)
    };
    let pb = predict(&b.model, &ds, opts_b, Some(&bridge));
    let report = churn(&ds, &pa.scores, &pb.scores, args.k as usize);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "churn between {} and {} on {} examples ({})",
        args.a.display(),
        args.b.display(),
        ds.len(),
        args.data.display()
    );
    let w = report
        .tasks
        .iter()
        .map(|(t, _)| t.len())
        .max()
        .unwrap_or(4)
        .max(8);
    let k = args.k;
    println!(
        "{:<w$}  {:>10}  {:>12}  {:>10}  {:>9}  {:>9}",
        "task",
        "mean |Δp|",
        format!("top-{k} flips"),
        "requests",
        "Kendall τ",
        "requests"
    );
    for (task, m) in &report.tasks {
        println!(
            "{task:<w$}  {:>10}  {:>12}  {:>10}  {:>9}  {:>9}",
            fmt(m.mean_abs_delta),
            fmt(m.topk_flip_rate),
            m.topk_requests,
            fmt(m.kendall_tau),
            m.tau_requests
        );
    }
    Ok(())
}
