//! `closeup train`: train a model on an engagement log and write `model.bin`, the resolved
//! `config.toml` and `metrics.json` into a directory.

use super::common::{metrics_table, with_threads};
use anyhow::{Context, Result, bail};
use clap::Args;
use closeup::data::{EngagementDataset, ReadOptions, write_atomic};
use closeup::model_dir::{
    CONFIG_FILE, METRICS_FILE, MODEL_FILE, RunConfig, load_model, save_model, shape_for,
};
use closeup::models::{Architecture, CloseupModel};
use closeup::train::{ProgressMode, Teacher, Trainer, VocabBridge};
use std::path::PathBuf;
use std::time::Instant;

/// Train a multi-task ranking model.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  closeup simulate --out world.jsonl\n  \
closeup train --train world.jsonl --out model\n  \
closeup train --train world.jsonl --out student --seed 2 --score-reg 1.0 --teacher model")]
pub struct TrainArgs {
    /// Training engagement log (JSON Lines, SPEC §4.1).
    #[arg(long)]
    train: PathBuf,
    /// Validation log; without it the latest `valid_fraction` of the training file (by `ts`) is
    /// held out.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// A TOML file with `[model]` and `[train]` tables (any subset of keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Architecture: mmoe, omoe, shared-bottom or single-task.
    #[arg(long)]
    model: Option<String>,
    /// Number of experts.
    #[arg(long)]
    experts: Option<usize>,
    /// Expert hidden sizes, e.g. 256,256.
    #[arg(long, value_delimiter = ',')]
    expert_hidden: Option<Vec<usize>>,
    /// Maximum number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of initialization, shuffling and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Kernel threads (default: one per core). Results are reproducible for a fixed count.
    #[arg(long)]
    threads: Option<usize>,
    /// λ of score regularization toward old scores (the teacher's, or the data's `old_scores`).
    #[arg(long)]
    score_reg: Option<f32>,
    /// A previous model directory whose scores regularize training (needs --score-reg).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Examples per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f32>,
}

/// The configuration file (if any) with the flags applied on top.
fn resolve(args: &TrainArgs) -> Result<RunConfig> {
    let mut cfg: RunConfig = match &args.config {
        Some(p) => super::read_toml(p)?,
        None => RunConfig::default(),
    };
    if let Some(m) = &args.model {
        cfg.model.architecture = m.parse::<Architecture>().context("--model")?;
    }
    if let Some(e) = args.experts {
        cfg.model.mmoe.num_experts = e;
    }
    if let Some(h) = &args.expert_hidden {
        cfg.model.mmoe.expert_hidden = h.clone();
    }
    let t = &mut cfg.train;
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.seed = args.seed.unwrap_or(t.seed);
    t.score_reg = args.score_reg.unwrap_or(t.score_reg);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    t.lr = args.lr.unwrap_or(t.lr);
    cfg.model.validate().context("model configuration")?;
    cfg.train.validate()?;
    Ok(cfg)
}

/// Runs `closeup train`.
pub fn run(args: TrainArgs) -> Result<()> {
    with_threads(args.threads, || train_command(args))
}

fn train_command(args: TrainArgs) -> Result<()> {
    let cfg = resolve(&args)?;
    let seq_len = cfg.model.sequence.seq_len;
    let read = ReadOptions {
        max_history: Some(seq_len),
        tasks: None,
    };
    // Every input is read and validated before anything is written.
    let full = EngagementDataset::load_training(&args.train, &read)?;
    let (train, valid) = match &args.valid {
        Some(v) => {
            let valid = EngagementDataset::load_with_vocab(v, &full.vocab, &read)?;
            (full, valid)
        }
        None => full
            .split_by_time(cfg.train.valid_fraction)
            .with_context(|| {
                format!("holding out validation data from {}", args.train.display())
            })?,
    };
    let teacher = match &args.teacher {
        Some(dir) => Some(load_model(dir).context("--teacher")?),
        None => None,
    };
    if teacher.is_some() && cfg.train.score_reg == 0.0 {
        bail!("--teacher needs --score-reg LAMBDA > 0");
    }
    if cfg.train.score_reg > 0.0 && teacher.is_none() && !train.meta.has_old_scores {
        bail!(
            "--score-reg needs --teacher DIR or `old_scores` in {}",
            args.train.display()
        );
    }
    let shape = shape_for(&train.vocab, &train.meta);
    cfg.model
        .validate_for(&shape)
        .context("model configuration")?;
    let mut model = CloseupModel::new(&cfg.model, &shape, cfg.train.seed)?;
    let mut trainer = Trainer::new(cfg.train.clone(), seq_len)?.with_progress(ProgressMode::Auto);
    if let Some(t) = &teacher {
        if t.vocab.feature_width() != train.vocab.feature_width() {
            bail!(
                "--teacher: the teacher reads {} dense features, the data has {}",
                t.vocab.feature_width(),
                train.vocab.feature_width()
            );
        }
        let bridge = VocabBridge::new(&train.vocab, &t.vocab);
        trainer = trainer.with_teacher(Teacher::new(&t.model, bridge, t.seq_len())?);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let model_path = args.out.join(MODEL_FILE);
    eprintln!(
        "training {} ({} parameters) on {} examples, validating on {}; {} threads",
        cfg.model.architecture,
        closeup::autograd::Parameterized::num_params(&model),
        train.len(),
        valid.len(),
        closeup::autograd::num_threads()
    );
    let started = Instant::now();
    let vocab = train.vocab.clone();
    let report = trainer.fit(&mut model, &train, &valid, &mut |m, _| {
        save_model(&model_path, m, &vocab, &cfg.train).map_err(Into::into)
    })?;
    let elapsed = started.elapsed();
    write_atomic(args.out.join(CONFIG_FILE), cfg.to_toml_string().as_bytes())?;
    write_atomic(args.out.join(METRICS_FILE), report.to_json().as_bytes())?;
    println!(
        "best epoch {} of {} (validation, {} examples):",
        report.best_epoch, report.epochs_run, report.valid_examples
    );
    print!("{}", metrics_table(&report.valid));
    println!(
        "trained in {:.1}s; wrote {}",
        elapsed.as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
