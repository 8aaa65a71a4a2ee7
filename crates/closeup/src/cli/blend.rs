//! `closeup blend train|score|eval`: learn the blender from a blender log, serve its weights,
//! and run the blender study on the simulator (SPEC §2 item 5, §4.2, §4.3).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use closeup::blend_study::{StudyConfig, render_markdown, run_with_progress};
use closeup::blender::{Blender, BlenderConfig, BlenderData, Convention, train_with_progress};
use closeup_data::{BlenderReadOptions, read_blender_features, read_blender_log};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Learn, serve and evaluate the learned-utility blender.
#[derive(Debug, Subcommand)]
pub enum BlendCommand {
    /// Learn per-request blending weights f(x) from a randomized-weight blender log.
    #[command(
        after_help = "Example:\n  closeup simulate --kind blender --out log.jsonl\n  \
closeup blend train --logs log.jsonl --out blender --prior 1,0.4,0.8,0.1 --lambda 2"
    )]
    Train(TrainArgs),
    /// Write the learned weights, one {\"weights\": [...]} line per input line.
    #[command(
        after_help = "Example:\n  closeup blend score --model blender --data log.jsonl --out weights.jsonl\n\n\
Only each line's `features` is read."
    )]
    Score(ScoreArgs),
    /// Run the blender study on the simulator's blender world and print the table.
    #[command(after_help = "Examples:\n  closeup blend eval --quick\n  \
closeup blend eval --requests 20000 --lambdas 0,0.03,2 --json > study.json")]
    Eval(EvalArgs),
}

/// `closeup blend train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The blender log (JSON Lines, SPEC §4.2).
    #[arg(long)]
    logs: PathBuf,
    /// Output directory: model.bin, config.toml (resolved) and metrics.json.
    #[arg(long)]
    out: PathBuf,
    /// A TOML file with blender settings (any subset; flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Objective names, in the order of `blend`.
    #[arg(long, value_delimiter = ',')]
    objectives: Option<Vec<String>>,
    /// Production weights s (the prior mean); default: the mean logged blend.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    prior: Option<Vec<f32>>,
    /// Prior strength λ: one value or one per objective (λ = 1/(2θ²)).
    #[arg(long, value_delimiter = ',')]
    lambda: Option<Vec<f32>>,
    /// Rewards of feedback events on top of the default closeup=1,hide=-2.
    #[arg(long, allow_hyphen_values = true)]
    reward: Option<String>,
    /// Feedback events missing from the reward map are errors.
    #[arg(long)]
    strict_rewards: bool,
    /// How R enters the logistic loss: post | well-posed.
    #[arg(long)]
    convention: Option<Convention>,
    /// Hidden sizes of f.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Training epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Requests per Adam step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Seed of initialisation, split and batch order.
    #[arg(long)]
    seed: Option<u64>,
}

/// `closeup blend score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A directory written by `closeup blend train`.
    #[arg(long)]
    model: PathBuf,
    /// Requests in the blender-log format (only `features` is read).
    #[arg(long)]
    data: PathBuf,
    /// Output JSON Lines file, written atomically.
    #[arg(long)]
    out: PathBuf,
}

/// `closeup blend eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Logged requests of the simulated world (main table).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Held-out requests the policies are evaluated on.
    #[arg(long, default_value_t = 5_000)]
    eval_requests: usize,
    /// Seed of the world, the log and training.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Training epochs per learned policy.
    #[arg(long)]
    epochs: Option<usize>,
    /// Prior strengths λ of the main table.
    #[arg(long, value_delimiter = ',')]
    lambdas: Option<Vec<f32>>,
    /// λ of the sensitivity runs.
    #[arg(long)]
    sensitivity_lambda: Option<f32>,
    /// A small, fast study (smaller world and sensitivity grid).
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of markdown.
    #[arg(long)]
    json: bool,
}

/// Runs a `closeup blend` subcommand.
pub fn run(cmd: BlendCommand) -> Result<()> {
    match cmd {
        BlendCommand::Train(a) => train(a),
        BlendCommand::Score(a) => score(a),
        BlendCommand::Eval(a) => eval(a),
    }
}

fn resolve_config(a: &TrainArgs) -> Result<BlenderConfig> {
    let mut c: BlenderConfig = match &a.config {
        Some(p) => super::read_toml(p)?,
        None => BlenderConfig::default(),
    };
    if let Some(o) = &a.objectives {
        c.objectives = o.iter().map(|s| s.trim().to_string()).collect();
    }
    if a.prior.is_some() {
        c.prior_mean = a.prior.clone();
    }
    if let Some(l) = &a.lambda {
        c.lambda = l.clone();
    }
    if let Some(spec) = &a.reward {
        c.rewards.apply_spec(spec)?;
    }
    c.rewards.strict |= a.strict_rewards;
    if let Some(v) = a.convention {
        c.convention = v;
    }
    if let Some(h) = &a.hidden {
        c.hidden = h.clone();
    }
    let t = &mut c.train;
    t.epochs = a.epochs.unwrap_or(t.epochs);
    t.batch_size = a.batch_size.unwrap_or(t.batch_size);
    t.learning_rate = a.lr.unwrap_or(t.learning_rate);
    t.seed = a.seed.unwrap_or(t.seed);
    c.validate()?;
    Ok(c)
}

#[derive(Serialize)]
struct Metrics<'a> {
    logs: String,
    num_requests: usize,
    feature_width: usize,
    objectives: &'a [String],
    convention: Convention,
    lambda: &'a [f32],
    mean_reward: f64,
    train_loss: Option<f64>,
    valid_loss: Option<f64>,
    report: &'a closeup::blender::TrainReport,
}

fn train(a: TrainArgs) -> Result<()> {
    let config = resolve_config(&a)?;
    let opts = BlenderReadOptions {
        num_objectives: Some(config.num_objectives()),
        feature_width: None,
        allowed_events: config
            .rewards
            .strict
            .then(|| config.rewards.events.keys().cloned().collect()),
    };
    let log = read_blender_log(&a.logs, &opts)?;
    let data = BlenderData::from_feedback(
        log.features.clone(),
        log.blend.clone(),
        &log.feedback,
        &config.rewards,
        Some(&log.lines),
    )
    .with_context(|| a.logs.display().to_string())?;
    eprintln!(
        "{}: {} requests, {} features, mean reward {:.4}",
        a.logs.display(),
        data.len(),
        data.feature_width(),
        data.mean_reward()
    );
    let trained = train_with_progress(&config, &data, |e| {
        let v = e.valid_loss.map_or("–".into(), |v| format!("{v:.5}"));
        eprintln!(
            "epoch {:>3}: train loss {:.5}, valid loss {v}",
            e.epoch, e.train_loss
        );
    })?;
    let model = &trained.model;
    let best = trained
        .report
        .epochs
        .iter()
        .find(|e| e.epoch == trained.report.best_epoch);
    let metrics = Metrics {
        logs: a.logs.display().to_string(),
        num_requests: data.len(),
        feature_width: data.feature_width(),
        objectives: model.objectives(),
        convention: model.config().convention,
        lambda: model.lambda(),
        mean_reward: data.mean_reward(),
        train_loss: best.map(|e| e.train_loss),
        valid_loss: best.and_then(|e| e.valid_loss),
        report: &trained.report,
    };
    // Everything succeeded: only now touch the output directory.
    std::fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;
    model.save(a.out.join("model.bin"))?;
    closeup_data::write_atomic(
        a.out.join("config.toml"),
        model.config().to_toml().as_bytes(),
    )?;
    let json = serde_json::to_string_pretty(&metrics)?;
    closeup_data::write_atomic(a.out.join("metrics.json"), json.as_bytes())?;
    eprintln!(
        "kept epoch {}; mean weights {:?}; wrote {}",
        trained.report.best_epoch,
        trained.report.mean_weights,
        a.out.display()
    );
    Ok(())
}

fn load_model(dir: &Path) -> Result<Blender> {
    let path = dir.join("model.bin");
    if !path.exists() {
        bail!(
            "{}: no model.bin (expected a directory written by `closeup blend train`)",
            dir.display()
        );
    }
    Ok(Blender::load(&path)?)
}

fn score(a: ScoreArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let (_, features) = read_blender_features(&a.data, Some(model.feature_width()))?;
    let weights = model.weights(&features)?;
    let n = closeup_data::write_jsonl(
        &a.out,
        weights
            .rows()
            .into_iter()
            .map(|r| serde_json::json!({ "weights": r.to_vec() })),
    )?;
    eprintln!("wrote {n} lines to {}", a.out.display());
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    if a.requests < 2 || a.eval_requests == 0 {
        bail!("--requests must be at least 2 and --eval-requests at least 1");
    }
    let mut config = if a.quick {
        StudyConfig::quick()
    } else {
        StudyConfig::default()
    };
    config.seed = a.seed;
    if !a.quick || a.requests != 20_000 {
        config.world.num_logged_requests = a.requests;
    }
    if !a.quick || a.eval_requests != 5_000 {
        config.world.num_eval_requests = a.eval_requests;
    }
    if let Some(e) = a.epochs {
        config.blender.train.epochs = e;
    }
    if let Some(l) = a.lambdas {
        config.lambdas = l;
    }
    if let Some(l) = a.sensitivity_lambda {
        config.sensitivity_lambda = l;
    }
    let report = run_with_progress(&config, |what| eprintln!("training: {what}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_markdown(&report));
    }
    Ok(())
}
