//! `closeup demo`: the whole pipeline on the built-in simulator (see [`closeup::demo`]).

use super::common::with_threads;
use anyhow::Result;
use clap::Args;
use closeup::demo::{DemoOptions, DemoSize, run};
use closeup::train::ProgressMode;
use std::path::PathBuf;
use std::time::Instant;

/// Simulate → train (closeup model + baselines) → evaluate vs the Bayes ceiling → gate
/// utilization → churn with and without score regularization → blender → grid; writes
/// `DIR/report.md`, `DIR/metrics.json` and SVG figures.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  closeup demo --quick                 # about a minute on 2 cores\n  \
closeup demo --out closeup-demo      # the full demo, a few minutes\n  \
closeup demo --quick --seed 7 --threads 2 --out demo7\n\n\
The same --seed and --threads give the same metrics.json, byte for byte."
)]
pub struct DemoArgs {
    /// Output directory (created if needed); files in it are replaced atomically.
    #[arg(long, default_value = "closeup-demo")]
    out: PathBuf,
    /// A reduced run (less data, smaller models, scaled-down grid): about a minute on 2 cores.
    #[arg(long)]
    quick: bool,
    /// For tests only: an even smaller run (seconds even in a debug build; noisy numbers).
    #[arg(long, conflicts_with = "quick")]
    tiny: bool,
    /// Seed of the simulated worlds, the initializations, the shuffling and dropout.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kernel threads (default: one per core). Results are reproducible for a fixed count.
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `closeup demo`.
pub fn run_demo(args: DemoArgs) -> Result<()> {
    with_threads(args.threads, || demo_command(args))
}

fn demo_command(args: DemoArgs) -> Result<()> {
    let size = if args.tiny {
        DemoSize::Tiny
    } else if args.quick {
        DemoSize::Quick
    } else {
        DemoSize::Full
    };
    let started = Instant::now();
    eprintln!(
        "closeup demo ({size}, seed {}, {} threads) → {}",
        args.seed,
        closeup::autograd::num_threads(),
        args.out.display()
    );
    let opts = DemoOptions {
        size,
        seed: args.seed,
        progress: ProgressMode::Auto,
    };
    let out = run(&opts, &mut |line| {
        eprintln!("{line} ({:.0}s)", started.elapsed().as_secs_f64());
    })?;
    out.write(&args.out)?;
    let m = &out.metrics;
    println!(
        "closeup model test mean AUC {:.4} (Bayes ceiling {:.4}); report: {}",
        m.closeup.mean_auc.unwrap_or(f64::NAN),
        m.data.ceiling.mean_auc.unwrap_or(f64::NAN),
        args.out.join("report.md").display()
    );
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
