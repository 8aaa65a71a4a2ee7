//! `closeup eval`: metrics of a trained model on a labelled engagement log.

use super::common::{load, load_data, metrics_table, predict_options, with_threads};
use anyhow::Result;
use clap::Args;
use closeup::train::evaluate;
use std::path::PathBuf;

/// Evaluate a model: AUC (exact, ties), log loss, calibration and counts per task.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  closeup eval --model model --data test.jsonl --json")]
pub struct EvalArgs {
    /// Model directory (or its model.bin).
    #[arg(long)]
    model: PathBuf,
    /// Labelled engagement log.
    #[arg(long)]
    data: PathBuf,
    /// Print metrics.json instead of a table.
    #[arg(long)]
    json: bool,
    /// Kernel threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `closeup eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    with_threads(args.threads, || eval_command(args))
}

fn eval_command(args: EvalArgs) -> Result<()> {
    let model = load(&args.model)?;
    let ds = load_data(&model, &args.data)?;
    let report = evaluate(&model.model, &ds, predict_options(&model), None);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} examples of {}", ds.len(), args.data.display());
        print!("{}", metrics_table(&report));
    }
    Ok(())
}
