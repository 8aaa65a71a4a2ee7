//! `closeup gates`: expert utilization — the mean gate weight per task per expert over a data
//! set, as a table and an SVG heatmap (the plot Pinterest used to check its experts).

use super::common::{init_threads, load, load_data, predict_options};
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
    init_threads(args.threads)?;
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
    write_atomic(&args.out, heatmap(tasks, &gates).as_bytes())?;
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

/// A heatmap as plain SVG: one cell per (task, expert), darker = more weight, values printed
/// in the cells. The colour scale runs from 0 to the largest mean weight.
fn heatmap(tasks: &[String], gates: &Array2<f64>) -> String {
    let (cell, left, top) = (56.0, 110.0, 40.0);
    let (rows, cols) = gates.dim();
    let width = left + cell * cols as f64 + 20.0;
    let height = top + cell * rows as f64 + 20.0;
    let max = gates.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"16\">mean gate weight per task (rows) and expert (columns)</text>\n"
    );
    for e in 0..cols {
        let x = left + cell * (e as f64 + 0.5);
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">e{e}</text>",
            top - 6.0
        );
    }
    for (r, task) in tasks.iter().enumerate() {
        let y = top + cell * r as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + cell / 2.0 + 4.0,
            escape(task)
        );
        for e in 0..cols {
            let v = gates[[r, e]];
            let shade = (v / max).clamp(0.0, 1.0);
            let (cr, cg, cb) = (
                (255.0 - 225.0 * shade) as u8,
                (255.0 - 170.0 * shade) as u8,
                (255.0 - 75.0 * shade) as u8,
            );
            let x = left + cell * e as f64;
            let ink = if shade > 0.6 { "white" } else { "black" };
            let _ = writeln!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" \
                 fill=\"rgb({cr},{cg},{cb})\" stroke=\"white\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\">{v:.2}</text>",
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
