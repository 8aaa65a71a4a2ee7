//! Subcommands of the `closeup` binary, one module each.

mod bench;
mod blend;
mod data;
mod simulate;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Closeup: multi-task ranking (sequence encoder + MMoE), score regularization and a learned
/// blender, on a hand-written autograd engine.
#[derive(Debug, Parser)]
#[command(name = "closeup", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a data set from one of the built-in simulators, in the SPEC §4 formats.
    Simulate(simulate::SimulateArgs),
    /// Convert public data sets to the engagement log format.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Learn, serve and evaluate the learned-utility blender.
    #[command(subcommand)]
    Blend(blend::BlendCommand),
    /// Time the reference model: training steps and serving requests (docs/performance.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Blend(cmd) => blend::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// Reads a TOML file into `T` (every field optional when `T` is `#[serde(default)]`).
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))
}
