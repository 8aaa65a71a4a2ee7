//! `closeup gates`: expert utilization — the mean gate weight per task per expert over a data
//! set, as a table and an SVG heatmap (the plot Pinterest used to check its experts).

use super::common::{load, load_data, predict_options, with_threads};
use anyhow::{Result, bail};
use clap::Args;
use closeup::data::write_atomic;
use closeup::train::predict;
use ndarray::Array2;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Mean gate weight per task per expert (MMoE / OMoE models).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  closeup gates --model model --data test.jsonl --out gates.svg")]
pub struct GatesArgs {
    /// Model directory (or its model.bin).
    #[arg(long)]
    model: PathBuf,
    /// Engagement log to average the gates over.
    #[arg(long)]
    data: PathBuf,
    /// Heatmap picture (SVG), written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Kernel threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `closeup gates`.
pub fn run(args: GatesArgs) -> Result<()> {
    with_threads(args.threads, || gates_command(args))
}

fn gates_command(args: GatesArgs) -> Result<()> {
    let model = load(&args.model)?;
    let ds = load_data(&model, &args.data)?;
    let preds = predict(&model.model, &ds, predict_options(&model), None);
    let Some(gates) = preds.mean_gates else {
        bail!(
            "{}: a {} model has no gates",
            model.path.display(),
            model.config().architecture
        );
    };
    let tasks = model.vocab.tasks();
    print!("{}", table(tasks, &gates));
    write_atomic(
        &args.out,
        closeup::figures::gate_heatmap(tasks, &gates).as_bytes(),
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Rows = tasks, columns = experts.
fn table(tasks: &[String], gates: &Array2<f64>) -> String {
    let w = tasks.iter().map(String::len).max().unwrap_or(4).max(4);
    let mut out = format!("{:<w$}", "task");
    for e in 0..gates.ncols() {
        let _ = write!(out, "  {:>6}", format!("e{e}"));
    }
    out.push('\n');
    for (t, row) in tasks.iter().zip(gates.rows()) {
        let _ = write!(out, "{t:<w$}");
        for g in row {
            let _ = write!(out, "  {g:>6.3}");
        }
        out.push('\n');
    }
    out
}
