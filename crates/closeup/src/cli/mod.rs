//! Subcommands of the `closeup` binary, one module each.

mod bench;
mod blend;
mod churn;
mod common;
mod data;
mod demo;
mod eval;
mod gates;
mod grid;
mod score;
mod simulate;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Closeup: multi-task ranking (sequence encoder + MMoE), score regularization and a learned
/// blender, on a hand-written autograd engine.
#[derive(Debug, Parser)]
#[command(
    name = "closeup",
    version,
    about,
    long_about = None,
    after_help = "Start here:\n  closeup demo --quick          # the whole pipeline on the simulator, about a minute\n  \
closeup <COMMAND> --help       # each command's options and an example\n\n\
Exit codes: 0 success, 1 runtime error (one `error:` line on stderr), 2 bad usage."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole pipeline on the built-in simulator: writes report.md, metrics.json and figures.
    Demo(demo::DemoArgs),
    /// Generate a data set from one of the built-in simulators, in the SPEC §4 formats.
    Simulate(simulate::SimulateArgs),
    /// Convert public data sets to the engagement log format.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Learn, serve and evaluate the learned-utility blender.
    #[command(subcommand)]
    Blend(blend::BlendCommand),
    /// Train a multi-task ranking model; writes model.bin, config.toml and metrics.json.
    Train(train::TrainArgs),
    /// Evaluate a trained model on a labelled log (AUC, log loss, calibration per task).
    Eval(eval::EvalArgs),
    /// Score a log with a trained model: one {"scores": {...}} line per input line.
    Score(score::ScoreArgs),
    /// Churn between two models on the same data (mean |Δp|, top-k flips, Kendall τ).
    Churn(churn::ChurnArgs),
    /// Expert utilization: mean gate weight per task per expert, as a table and an SVG heatmap.
    Gates(gates::GatesArgs),
    /// Grid search over experts, expert shapes and d_model: validation AUC per configuration.
    Grid(grid::GridArgs),
    /// Time the reference model: training steps and serving requests (docs/performance.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run_demo(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Blend(cmd) => blend::run(cmd),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Score(args) => score::run(args),
        Command::Churn(args) => churn::run(args),
        Command::Gates(args) => gates::run(args),
        Command::Grid(args) => grid::run(args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// Reads a TOML file into `T` (every field optional when `T` is `#[serde(default)]`).
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))
}
