//! The blender study (SPEC §2 item 5): on the simulator's blender world, how much expected
//! reward per request do the learned weights `f(x)` earn, per loss [`Convention`] and prior
//! strength λ, against the fixed production weights `s` and the oracle — and how does that
//! change with the exploration width of the logged slice and the log size?
//!
//! Evaluation is exact (no sampling): [`BlenderWorld::mean_expected_reward_weights`] on
//! held-out requests. "Gap closed" is `(learned − production) / (oracle − production)`; the
//! oracle knows the hidden user segment, so the feature-only ceiling (the posterior oracle) is
//! reported too, with the gap share relative to it.
//!
//! ```no_run
//! use closeup::blend_study::{StudyConfig, run, render_markdown};
//! let report = run(&StudyConfig::default()).unwrap();
//! println!("{}", render_markdown(&report));
//! ```

use crate::blender::{BlenderConfig, BlenderData, Convention, RewardMap, TrainOptions, train};
use crate::data::BlenderRecord;
use crate::data::sim::{
    BlenderBaselines, BlenderConfig as WorldConfig, BlenderWorld, simulate_blender,
};
use anyhow::Result;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What the study runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StudyConfig {
    /// The simulated world (its log size, exploration width, reward map, ...).
    pub world: WorldConfig,
    /// Seed of the world, the log and training.
    pub seed: u64,
    /// Conventions compared.
    pub conventions: Vec<Convention>,
    /// Prior strengths λ compared.
    pub lambdas: Vec<f32>,
    /// The blender settings shared by every run (network, training); convention, λ, prior mean,
    /// objectives and reward map are set by the study.
    pub blender: BlenderConfig,
    /// Exploration stds of the sensitivity study.
    pub exploration_stds: Vec<f64>,
    /// Log sizes of the sensitivity study.
    pub log_sizes: Vec<usize>,
    /// λ of the sensitivity runs.
    pub sensitivity_lambda: f32,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            world: WorldConfig::default(),
            seed: 1,
            conventions: Convention::ALL.to_vec(),
            lambdas: vec![0.0, 0.01, 0.03, 0.1, 0.5, 2.0, 8.0],
            blender: BlenderConfig::default(),
            exploration_stds: vec![0.1, 0.25, 0.5, 1.0],
            log_sizes: vec![2_000, 5_000, 20_000],
            sensitivity_lambda: 0.03,
        }
    }
}

impl StudyConfig {
    /// A small, fast configuration (seconds in a debug build) for tests and `--quick` runs.
    pub fn quick() -> Self {
        StudyConfig {
            world: WorldConfig {
                num_logged_requests: 3_000,
                num_eval_requests: 1_000,
                ..WorldConfig::default()
            },
            blender: BlenderConfig {
                hidden: vec![16],
                train: TrainOptions {
                    epochs: 8,
                    ..TrainOptions::default()
                },
                ..BlenderConfig::default()
            },
            lambdas: vec![0.0, 0.03, 2.0],
            exploration_stds: vec![0.25, 1.0],
            log_sizes: vec![1_000, 3_000],
            ..StudyConfig::default()
        }
    }
}

/// One learned policy's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRow {
    /// The convention.
    pub convention: Convention,
    /// λ (one global value).
    pub lambda: f32,
    /// Mean exact expected reward per held-out request.
    pub reward: f64,
    /// `(reward − production) / (oracle − production)`.
    pub gap_closed: f64,
    /// `(reward − production) / (posterior oracle − production)`: the share of what any
    /// feature-only policy could gain.
    pub gap_closed_feature_only: f64,
    /// Mean learned weights over the held-out requests.
    pub mean_weights: Vec<f64>,
    /// Mean over held-out requests of `‖f(x) − s‖₂`.
    pub mean_shift: f64,
    /// The learned global bias `b`.
    pub bias: f32,
    /// Validation loss of the kept epoch.
    pub valid_loss: Option<f64>,
}

/// One point of the sensitivity study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityRow {
    /// `"exploration_std"` or `"log_size"`.
    pub factor: String,
    /// The factor's value.
    pub value: f64,
    /// Baselines on that setting's held-out requests.
    pub baselines: BlenderBaselines,
    /// The learned policies (one per convention, at the sensitivity λ).
    pub learned: Vec<StudyRow>,
}

/// Everything the study measured; serializable to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyReport {
    /// The configuration.
    pub config: StudyConfig,
    /// Logged requests trained on (main table).
    pub num_logged: usize,
    /// Held-out requests evaluated on.
    pub num_eval: usize,
    /// Mean reward in the log.
    pub log_mean_reward: f64,
    /// Production, best fixed, posterior oracle, oracle and random rewards.
    pub baselines: BlenderBaselines,
    /// The production weights `s`.
    pub production_weights: Vec<f64>,
    /// The best fixed weights.
    pub best_fixed_weights: Vec<f64>,
    /// Learned policies per convention and λ.
    pub rows: Vec<StudyRow>,
    /// The sensitivity study.
    pub sensitivity: Vec<SensitivityRow>,
}

fn to_data(logs: &[BlenderRecord], rewards: &RewardMap) -> Result<BlenderData> {
    let (n, w, k) = (logs.len(), logs[0].features.len(), logs[0].blend.len());
    let features = Array2::from_shape_fn((n, w), |(j, i)| logs[j].features[i] as f32);
    let blend = Array2::from_shape_fn((n, k), |(j, i)| logs[j].blend[i] as f32);
    let feedback: Vec<Vec<String>> = logs.iter().map(|l| l.feedback.clone()).collect();
    Ok(BlenderData::from_feedback(
        features, blend, &feedback, rewards, None,
    )?)
}

/// The reward map the world pays out with, as the blender's reward map.
pub fn world_reward_map(world: &WorldConfig) -> RewardMap {
    RewardMap {
        events: world
            .rewards
            .iter()
            .map(|(e, r)| (e.clone(), *r as f32))
            .collect(),
        strict: false,
    }
}

struct Setting {
    world: BlenderWorld,
    data: BlenderData,
    eval: Vec<crate::data::sim::BlenderRequest>,
    eval_features: Array2<f32>,
    baselines: BlenderBaselines,
}

fn setting(world: &WorldConfig, seed: u64) -> Result<Setting> {
    anyhow::ensure!(
        world.num_logged_requests >= 2 && world.num_eval_requests >= 1,
        "the study needs at least 2 logged and 1 evaluation request"
    );
    let sim = simulate_blender(world, seed);
    let data = to_data(&sim.logs, &world_reward_map(world))?;
    let eval = sim.eval_requests;
    let width = world.num_features;
    let eval_features =
        Array2::from_shape_fn((eval.len(), width), |(j, i)| eval[j].features[i] as f32);
    let baselines = sim.world.baselines(&eval);
    Ok(Setting {
        world: sim.world,
        data,
        eval,
        eval_features,
        baselines,
    })
}

fn learn(
    s: &Setting,
    study: &StudyConfig,
    convention: Convention,
    lambda: f32,
) -> Result<StudyRow> {
    let wc = &s.world.config;
    let config = BlenderConfig {
        objectives: wc.objectives.clone(),
        prior_mean: Some(wc.production_weights.iter().map(|&v| v as f32).collect()),
        lambda: vec![lambda],
        convention,
        rewards: world_reward_map(wc),
        train: TrainOptions {
            seed: study.seed,
            ..study.blender.train.clone()
        },
        ..study.blender.clone()
    };
    let trained = train(&config, &s.data)?;
    let w = trained.model.weights(&s.eval_features)?;
    let weights: Vec<Vec<f64>> = w
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let reward = s.world.mean_expected_reward_weights(&s.eval, &weights);
    let b = &s.baselines;
    let share = |top: f64| {
        let gap = top - b.production;
        if gap.abs() < 1e-12 {
            0.0
        } else {
            (reward - b.production) / gap
        }
    };
    let n = weights.len().max(1) as f64;
    let k = wc.objectives.len();
    let mean_weights = (0..k)
        .map(|i| weights.iter().map(|w| w[i]).sum::<f64>() / n)
        .collect();
    let mean_shift = weights
        .iter()
        .map(|w| {
            w.iter()
                .zip(&wc.production_weights)
                .map(|(a, s)| (a - s) * (a - s))
                .sum::<f64>()
                .sqrt()
        })
        .sum::<f64>()
        / n;
    let kept = trained
        .report
        .epochs
        .iter()
        .find(|e| e.epoch == trained.report.best_epoch);
    Ok(StudyRow {
        convention,
        lambda,
        reward,
        gap_closed: share(b.oracle),
        gap_closed_feature_only: share(b.posterior_oracle),
        mean_weights,
        mean_shift,
        bias: trained.model.bias(),
        valid_loss: kept.and_then(|e| e.valid_loss),
    })
}

/// Runs the study: the main table (every convention × λ on `config.world`), then the
/// sensitivity to the exploration std and to the log size (every convention at
/// `sensitivity_lambda`). Deterministic by `config.seed`.
///
/// # Errors
/// If a blender setting is invalid or training diverges.
///
/// # Panics
/// If the world configuration is inconsistent (see [`BlenderWorld::new`]).
pub fn run(config: &StudyConfig) -> Result<StudyReport> {
    run_with_progress(config, |_| {})
}

/// [`run`], calling `progress` with a short description before each training.
///
/// # Errors
/// As [`run`].
pub fn run_with_progress(
    config: &StudyConfig,
    mut progress: impl FnMut(&str),
) -> Result<StudyReport> {
    let main = setting(&config.world, config.seed)?;
    let mut rows = Vec::new();
    for &c in &config.conventions {
        for &l in &config.lambdas {
            progress(&format!("{c}, λ = {l}"));
            rows.push(learn(&main, config, c, l)?);
        }
    }
    let mut sensitivity = Vec::new();
    let factors = config
        .exploration_stds
        .iter()
        .map(|&v| ("exploration_std", v))
        .chain(config.log_sizes.iter().map(|&v| ("log_size", v as f64)));
    for (factor, value) in factors {
        let mut world = config.world.clone();
        if factor == "exploration_std" {
            world.exploration_std = value;
        } else {
            world.num_logged_requests = value as usize;
        }
        let s = setting(&world, config.seed)?;
        let mut learned = Vec::new();
        for &c in &config.conventions {
            progress(&format!("{factor} = {value}: {c}"));
            learned.push(learn(&s, config, c, config.sensitivity_lambda)?);
        }
        sensitivity.push(SensitivityRow {
            factor: factor.into(),
            value,
            baselines: s.baselines,
            learned,
        });
    }
    Ok(StudyReport {
        config: config.clone(),
        num_logged: main.data.len(),
        num_eval: main.eval.len(),
        log_mean_reward: main.data.mean_reward(),
        baselines: main.baselines,
        production_weights: main.world.config.production_weights.clone(),
        best_fixed_weights: main.world.best_fixed_weights(),
        rows,
        sensitivity,
    })
}

fn fmt_w(w: &[f64]) -> String {
    let parts: Vec<String> = w.iter().map(|v| format!("{v:.2}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The report as markdown: the main table and the sensitivity tables.
pub fn render_markdown(r: &StudyReport) -> String {
    let b = &r.baselines;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Blender world, seed {}: {} logged requests (mean reward {:.4}), {} held-out requests; \
         exploration std {}. Expected reward per request (exact).\n",
        r.config.seed, r.num_logged, r.log_mean_reward, r.num_eval, r.config.world.exploration_std
    );
    let _ = writeln!(
        out,
        "| policy | λ | reward | gap closed (oracle) | gap closed (feature-only ceiling) | mean weights |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let gap = |v: f64, top: f64| {
        let g = top - b.production;
        if g.abs() < 1e-12 {
            "–".to_string()
        } else {
            format!("{:.1}%", 100.0 * (v - b.production) / g)
        }
    };
    let fixed = |name: &str, v: f64, w: Option<&[f64]>| {
        format!(
            "| {name} | – | {v:.4} | {} | {} | {} |\n",
            gap(v, b.oracle),
            gap(v, b.posterior_oracle),
            w.map_or("–".into(), fmt_w)
        )
    };
    out += &fixed("random candidate", b.random, None);
    out += &fixed(
        "production weights s",
        b.production,
        Some(&r.production_weights),
    );
    out += &fixed(
        "best fixed weights",
        b.best_fixed,
        Some(&r.best_fixed_weights),
    );
    for row in &r.rows {
        let _ = writeln!(
            out,
            "| learned f(x), {} | {} | {:.4} | {:.1}% | {:.1}% | {} |",
            row.convention,
            row.lambda,
            row.reward,
            100.0 * row.gap_closed,
            100.0 * row.gap_closed_feature_only,
            fmt_w(&row.mean_weights)
        );
    }
    out += &fixed(
        "posterior oracle (feature-only ceiling)",
        b.posterior_oracle,
        None,
    );
    out += &fixed("oracle (segment known)", b.oracle, None);
    for factor in ["exploration_std", "log_size"] {
        let rows: Vec<&SensitivityRow> = r
            .sensitivity
            .iter()
            .filter(|s| s.factor == factor)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\nSensitivity to {} (λ = {}; gap closed towards the oracle):\n",
            factor.replace('_', " "),
            r.config.sensitivity_lambda
        );
        let convs: Vec<String> = rows[0]
            .learned
            .iter()
            .map(|l| format!(" {} |", l.convention))
            .collect();
        let _ = writeln!(
            out,
            "| {} | production | oracle |{}",
            factor.replace('_', " "),
            convs.concat()
        );
        let _ = writeln!(out, "|---|---|---|{}", "---|".repeat(convs.len()));
        for s in rows {
            let cells: Vec<String> = s
                .learned
                .iter()
                .map(|l| format!(" {:.4} ({:.1}%) |", l.reward, 100.0 * l.gap_closed))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {:.4} | {:.4} |{}",
                s.value,
                s.baselines.production,
                s.baselines.oracle,
                cells.concat()
            );
        }
    }
    out
}
