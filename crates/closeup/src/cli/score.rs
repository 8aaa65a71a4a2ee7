//! `closeup score`: one `{"scores": {...}}` line per input line.

use super::common::{load, load_data, predict_options, with_threads};
use anyhow::Result;
use clap::Args;
use closeup::data::write_jsonl;
use closeup::train::predict;
use serde::Serialize;
use std::path::PathBuf;

/// Score an engagement log: per line, each task's probability.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  closeup score --model model --data test.jsonl --out scores.jsonl"
)]
pub struct ScoreArgs {
    /// Model directory (or its model.bin).
    #[arg(long)]
    model: PathBuf,
    /// Engagement log (labels are not needed).
    #[arg(long)]
    data: PathBuf,
    /// Output JSON Lines, written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Kernel threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// `{"scores": {task: p, ...}}` with the tasks in the model's order.
struct ScoreLine<'a> {
    scores: Vec<(&'a str, f32)>,
}

impl Serialize for ScoreLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Scores<'b>(&'b [(&'b str, f32)]);
        impl Serialize for Scores<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("scores", &Scores(&self.scores))?;
        m.end()
    }
}

/// Runs `closeup score`.
pub fn run(args: ScoreArgs) -> Result<()> {
    with_threads(args.threads, || score_command(args))
}

fn score_command(args: ScoreArgs) -> Result<()> {
    let model = load(&args.model)?;
    let ds = load_data(&model, &args.data)?;
    let preds = predict(&model.model, &ds, predict_options(&model), None);
    let tasks = ds.vocab.tasks();
    let lines = preds.scores.rows().into_iter().map(|row| ScoreLine {
        scores: tasks
            .iter()
            .map(String::as_str)
            .zip(row.iter().copied())
            .collect(),
    });
    let n = write_jsonl(&args.out, lines)?;
    eprintln!("wrote {n} lines to {}", args.out.display());
    Ok(())
}
