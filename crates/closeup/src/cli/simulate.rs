//! `closeup simulate`: write a simulated engagement log, blender log or the MMoE paper's
//! synthetic data set.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use closeup_data::record::EngagementRecord;
use closeup_data::sim::{
    BlenderConfig, EngagementConfig, MmoeSyntheticConfig, simulate_blender, simulate_engagement,
    simulate_mmoe_synthetic,
};
use closeup_data::{write_blender_log, write_engagement_log};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// The engagement world: users, pins, histories and four task labels (SPEC §4.1).
    Engagement,
    /// The blender world's randomized log (SPEC §4.2).
    Blender,
    /// The MMoE paper's two-task synthetic data (Ma et al. 2018, §4.1), binarized labels.
    MmoeSynthetic,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Split {
    /// All impressions, in time order.
    All,
    /// The earliest part.
    Train,
    /// The middle part.
    Valid,
    /// The latest part.
    Test,
}

/// Generate a data set from a built-in simulator.
///
/// Example: `closeup simulate --kind engagement --requests 2000 --out train.jsonl`
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  closeup simulate --out world.jsonl\n  \
closeup simulate --kind engagement --split test --requests 2000 --out test.jsonl\n  \
closeup simulate --kind blender --requests 20000 --out blender.jsonl\n  \
closeup simulate --kind mmoe-synthetic --correlation 0.9 --out mmoe.jsonl")]
pub struct SimulateArgs {
    /// Output file (JSON Lines), written atomically.
    #[arg(long)]
    out: PathBuf,
    /// Which simulator.
    #[arg(long, value_enum, default_value_t = Kind::Engagement)]
    kind: Kind,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A TOML file with the simulator's knobs (any subset; the rest keep their defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Number of requests (engagement), logged requests (blender) or examples (mmoe-synthetic).
    #[arg(long)]
    requests: Option<usize>,
    /// Engagement only: which time-ordered split to write.
    #[arg(long, value_enum, default_value_t = Split::All)]
    split: Split,
    /// mmoe-synthetic only: cosine correlation of the two tasks' weight vectors.
    #[arg(long)]
    correlation: Option<f64>,
}

fn load<T: Default + serde::de::DeserializeOwned>(path: &Option<PathBuf>) -> Result<T> {
    match path {
        Some(p) => super::read_toml(p),
        None => Ok(T::default()),
    }
}

/// Runs `closeup simulate`.
pub fn run(args: SimulateArgs) -> Result<()> {
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    let n = match args.kind {
        Kind::Engagement => {
            let mut config: EngagementConfig = load(&args.config)?;
            if let Some(r) = args.requests {
                config.num_requests = r;
            }
            let world = simulate_engagement(&config, args.seed);
            let records: Vec<&EngagementRecord> = match args.split {
                Split::All => world
                    .train
                    .iter()
                    .chain(&world.valid)
                    .chain(&world.test)
                    .collect(),
                Split::Train => world.train.iter().collect(),
                Split::Valid => world.valid.iter().collect(),
                Split::Test => world.test.iter().collect(),
            };
            let ceiling = world.ceiling_auc();
            let tasks = world.tasks();
            let summary: Vec<String> = tasks
                .iter()
                .zip(ceiling)
                .map(|(t, a)| format!("{t} {}", a.map_or("n/a".into(), |a| format!("{a:.3}"))))
                .collect();
            eprintln!(
                "Bayes-ceiling AUC on the test split: {}",
                summary.join(", ")
            );
            write_engagement_log(&args.out, records)?
        }
        Kind::Blender => {
            let mut config: BlenderConfig = load(&args.config)?;
            if let Some(r) = args.requests {
                config.num_logged_requests = r;
            }
            let sim = simulate_blender(&config, args.seed);
            write_blender_log(&args.out, &sim.logs)?
        }
        Kind::MmoeSynthetic => {
            let mut config: MmoeSyntheticConfig = load(&args.config)?;
            if let Some(r) = args.requests {
                config.num_examples = r;
            }
            if let Some(p) = args.correlation {
                if !(-1.0..=1.0).contains(&p) {
                    bail!("--correlation must be in [-1, 1], got {p}");
                }
                config.correlation = p;
            }
            let sim = simulate_mmoe_synthetic(&config, args.seed);
            write_engagement_log(&args.out, &sim.records)?
        }
    };
    eprintln!("wrote {n} lines to {}", args.out.display());
    Ok(())
}
