//! Converts MovieLens `ratings.csv` (+ optional `tags.csv`) to an engagement log, then reads it
//! back with the strict loader and prints statistics.
//!
//! `cargo run --release -p closeup-data --example convert_movielens -- RATINGS.csv [TAGS.csv] OUT.jsonl`

use closeup_data::movielens::{MovieLensOptions, convert_movielens};
use closeup_data::{EngagementDataset, ReadOptions};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (ratings, tags, out) = match args.as_slice() {
        [r, o] => (r, None, o),
        [r, t, o] => (r, Some(t.as_path()), o),
        _ => return Err("usage: convert_movielens RATINGS.csv [TAGS.csv] OUT.jsonl".into()),
    };
    let t0 = Instant::now();
    let stats = convert_movielens(ratings, tags, out, &MovieLensOptions::default())?;
    let convert_s = t0.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string_pretty(&stats)?);
    let bytes = std::fs::metadata(out)?.len();
    let t1 = Instant::now();
    let ds = EngagementDataset::load_training(out, &ReadOptions::default())?;
    let load_s = t1.elapsed().as_secs_f64();
    println!(
        "converted in {convert_s:.2}s; {:.1} MB; loaded {} examples in {load_s:.2}s ({:.0} MB/s)",
        bytes as f64 / 1e6,
        ds.len(),
        bytes as f64 / 1e6 / load_s
    );
    println!(
        "tasks {:?}, actions {:?}, features {}",
        ds.vocab.tasks(),
        ds.vocab.learned_actions(),
        ds.vocab.feature_width()
    );
    for (task, (n, pos)) in ds.vocab.tasks().iter().zip(ds.label_counts()) {
        println!(
            "  {task:8} labelled {n:7}  positive {pos:7} ({:.1}%)",
            100.0 * pos as f64 / n.max(1) as f64
        );
    }
    println!("requests (user, ts): {}", ds.requests().len());
    Ok(())
}
