//! `closeup grid`: the grid search of SPEC §2.6 — validation AUC per number of experts, expert
//! shape and transformer width.

use super::common::with_threads;
use anyhow::{Context, Result, bail};
use clap::Args;
use closeup::data::{EngagementDataset, ReadOptions, write_atomic};
use closeup::grid::{GridSpec, render_markdown, run_grid};
use closeup::model_dir::RunConfig;
use closeup::models::Architecture;
use closeup::train::ProgressMode;
use std::path::PathBuf;

/// Train one model per grid point and tabulate validation AUC.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  closeup simulate --split train --out train.jsonl\n  \
closeup simulate --split valid --out valid.jsonl\n  \
closeup grid --train train.jsonl --valid valid.jsonl --experts 1,2,4,8 \\\n      \
--expert-hidden \"256,256;512,512;256,256,256\" --d-model 32,64 --epochs 3 --out grid.md\n\n\
Points are trained in order experts × expert shapes × d_model, each with the same seed."
)]
pub struct GridArgs {
    /// Training engagement log (JSON Lines, SPEC §4.1).
    #[arg(long)]
    train: PathBuf,
    /// Validation log; without it the latest `valid_fraction` of the training file is held out.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Numbers of experts, e.g. 1,2,4,8.
    #[arg(long, value_delimiter = ',', required = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    experts: Vec<u64>,
    /// Expert shapes separated by `;`, each a comma list, e.g. "256,256;512,512".
    #[arg(long, value_parser = parse_shapes)]
    expert_hidden: Option<Shapes>,
    /// Transformer widths (d_model), e.g. 32,64.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    d_model: Vec<u64>,
    /// A TOML file with `[model]` and `[train]` tables for everything else.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Architecture of every point: mmoe or omoe.
    #[arg(long)]
    model: Option<String>,
    /// Maximum epochs per point.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of every point.
    #[arg(long)]
    seed: Option<u64>,
    /// Kernel threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the table here too: markdown for `.md`, the full report for `.json` (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Expert shapes, e.g. `[[256, 256], [512, 512]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shapes(Vec<Vec<usize>>);

/// Parses "256,256;512,512" (a bad value is a usage error: exit code 2).
fn parse_shapes(text: &str) -> std::result::Result<Shapes, String> {
    text.split(';')
        .map(|shape| {
            shape
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("{v:?} in {shape:?} is not a positive size"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Shapes)
}

/// Runs `closeup grid`.
pub fn run(args: GridArgs) -> Result<()> {
    with_threads(args.threads, || grid_command(args))
}

fn grid_command(args: GridArgs) -> Result<()> {
    let mut base: RunConfig = match &args.config {
        Some(p) => super::read_toml(p)?,
        None => RunConfig::default(),
    };
    if let Some(m) = &args.model {
        base.model.architecture = m.parse::<Architecture>().context("--model")?;
    }
    if !matches!(
        base.model.architecture,
        Architecture::Mmoe | Architecture::Omoe
    ) {
        bail!(
            "--model: the grid varies experts, so it needs mmoe or omoe, not {}",
            base.model.architecture
        );
    }
    base.train.epochs = args.epochs.unwrap_or(base.train.epochs);
    base.train.seed = args.seed.unwrap_or(base.train.seed);
    base.train.validate()?;
    let spec = GridSpec {
        experts: args.experts.iter().map(|&e| e as usize).collect(),
        expert_hidden: args.expert_hidden.clone().map(|s| s.0).unwrap_or_default(),
        d_model: args.d_model.iter().map(|&d| d as usize).collect(),
    };
    if let Some(out) = &args.out {
        let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "md" && ext != "json" {
            bail!("--out: {} must end in .md or .json", out.display());
        }
    }
    let read = ReadOptions {
        max_history: Some(base.model.sequence.seq_len),
        tasks: None,
    };
    let full = EngagementDataset::load_training(&args.train, &read)?;
    let (train, valid) = match &args.valid {
        Some(v) => {
            let valid = EngagementDataset::load_with_vocab(v, &full.vocab, &read)?;
            (full, valid)
        }
        None => full.split_by_time(base.train.valid_fraction)?,
    };
    let n = spec.points(&base).len();
    eprintln!(
        "grid of {n} points on {} training / {} validation examples",
        train.len(),
        valid.len()
    );
    let report = run_grid(
        &spec,
        &base,
        &train,
        &valid,
        ProgressMode::Auto,
        |i, n, p| {
            eprintln!("point {} of {n}: {}", i + 1, p.label());
        },
    )?;
    let table = render_markdown(&report);
    print!("{table}");
    if let Some(out) = &args.out {
        let text = if out.extension().is_some_and(|e| e == "json") {
            report.to_json()
        } else {
            table
        };
        write_atomic(out, text.as_bytes())?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
