//! The figures of docs/experiments/sequence_encoder.md, drawn from the outputs of the page's
//! reproduce script: each run's `closeup eval --json` report (`RUNS/NAME.test.json`) and each
//! sequence length's `closeup bench train --json` line (`RUNS/benchL.json`).
//!
//! Output: `sequence_encoder_auc.svg` (test mean AUC per configuration, the default
//! highlighted) and `sequence_encoder_length.svg` (test mean AUC and relative training cost
//! against `seq_len`) in `--out`; the table behind them on stdout.
//!
//! Run (after the script on the page): `cargo run --release --example sequence_encoder_figures
//! -- --runs seqexp --out docs/experiments/figures`

use anyhow::{Context, Result, bail};
use closeup::figures::{Series, hbar_chart, line_chart};
use std::path::{Path, PathBuf};

/// The script's run names and how the figure labels them.
const CONFIGS: [(&str, &str); 11] = [
    ("dense", "dense features only"),
    ("nohist", "candidate + dense (no history)"),
    ("default", "default: mean + target attention"),
    ("mean", "mean"),
    ("ta", "target attention"),
    ("maxpool", "max-pool"),
    ("firstk", "first_k (K = 10)"),
    ("firstk2", "first_k (K = 2)"),
    ("transact_late", "first_k + max-pool (late fusion)"),
    ("transact", "TransAct: early fusion, first_k + max-pool"),
    ("fusion", "early fusion, default read-outs"),
];

const LENGTHS: [usize; 3] = [25, 50, 100];

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn field(v: &serde_json::Value, name: &str, path: &Path) -> Result<f64> {
    v.get(name)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{}: no numeric field `{name}`", path.display()))
}

fn mean_auc(runs: &Path, name: &str) -> Result<f64> {
    let path = runs.join(format!("{name}.test.json"));
    field(&read_json(&path)?, "mean_auc", &path)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Result<Option<PathBuf>> {
        match args.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => match args.get(i + 1) {
                Some(v) => Ok(Some(PathBuf::from(v))),
                None => bail!("{flag} needs a value"),
            },
        }
    };
    let runs = value("--runs")?.unwrap_or_else(|| PathBuf::from("seqexp"));
    let out = value("--out")?.unwrap_or_else(|| PathBuf::from("docs/experiments/figures"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    println!("| configuration | test mean AUC |\n|---|---|");
    let mut rows = Vec::new();
    for (name, label) in CONFIGS {
        let auc = mean_auc(&runs, name)?;
        println!("| {label} | {auc:.4} |");
        rows.push((label.to_string(), auc));
    }
    let default = CONFIGS.iter().position(|c| c.0 == "default").unwrap_or(0);
    let svg = hbar_chart(
        "Sequence encoder: test mean AUC (seq_len = 20 proxy)",
        "test mean AUC",
        &rows,
        &[default],
    );
    std::fs::write(out.join("sequence_encoder_auc.svg"), svg)?;

    println!(
        "\n| seq_len | test mean AUC | bench train examples/s | relative cost |\n|---|---|---|---|"
    );
    let mut speed = Vec::new();
    let mut quality = Vec::new();
    for l in LENGTHS {
        let bench = runs.join(format!("bench{l}.json"));
        speed.push(field(&read_json(&bench)?, "samples_per_s", &bench)?);
        quality.push(mean_auc(&runs, &format!("seq{l}"))?);
    }
    let longest = speed[speed.len() - 1];
    let mut auc_points = Vec::new();
    let mut cost_points = Vec::new();
    for ((l, s), q) in LENGTHS.iter().zip(&speed).zip(&quality) {
        let cost = longest / s;
        println!("| {l} | {q:.4} | {s:.0} | {cost:.2} |");
        auc_points.push((*l as f64, *q));
        cost_points.push((*l as f64, cost));
    }
    let svg = line_chart(
        "Sequence length: quality and training cost",
        "seq_len",
        "test mean AUC / cost relative to seq_len = 100",
        &[
            Series::new("test mean AUC", auc_points),
            Series::new("training time per example (÷ seq_len 100)", cost_points),
        ],
        &[],
    );
    std::fs::write(out.join("sequence_encoder_length.svg"), svg)?;
    println!("\nfigures written to {}", out.display());
    Ok(())
}
