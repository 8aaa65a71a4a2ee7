//! `closeup data`: converters from public data sets to the engagement log.

use anyhow::Result;
use clap::{Args, Subcommand};
use closeup_data::movielens::{MovieLensOptions, convert_movielens};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// MovieLens ratings (and tags) → engagement log: each rating is an impression whose
    /// history is the user's earlier ratings; tasks like (≥4), love (5), dislike (≤2), tagged.
    Movielens(MovieLensArgs),
}

/// Convert MovieLens `ratings.csv` (and optionally `tags.csv`).
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  closeup data movielens --ratings ml-latest-small/ratings.csv \
--tags ml-latest-small/tags.csv --out movielens.jsonl"
)]
pub struct MovieLensArgs {
    /// `ratings.csv` (userId,movieId,rating,timestamp).
    #[arg(long)]
    ratings: PathBuf,
    /// `tags.csv` (userId,movieId,tag,timestamp); adds the `tagged` task and `tag` actions.
    #[arg(long)]
    tags: Option<PathBuf>,
    /// Output engagement log (JSON Lines), written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Sampled negative impressions per rating ≥ 4.
    #[arg(long, default_value_t = 1)]
    neg_per_pos: usize,
    /// Most recent actions kept in each history.
    #[arg(long, default_value_t = 100)]
    max_history: usize,
    /// Seed of the negative sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `closeup data ...`.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Movielens(a) => {
            let opts = MovieLensOptions {
                max_history: a.max_history,
                neg_per_pos: a.neg_per_pos,
                seed: a.seed,
            };
            let stats = convert_movielens(&a.ratings, a.tags.as_deref(), &a.out, &opts)?;
            let positives: Vec<String> = stats
                .positives
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            eprintln!(
                "{} users, {} movies, {} ratings, {} tags → {} impressions ({} sampled negatives), \
                 mean history {:.1}; positives: {}",
                stats.users,
                stats.movies,
                stats.ratings,
                stats.tags,
                stats.impressions,
                stats.negatives,
                stats.mean_history,
                positives.join(", ")
            );
            eprintln!("wrote {}", a.out.display());
            Ok(())
        }
    }
}
