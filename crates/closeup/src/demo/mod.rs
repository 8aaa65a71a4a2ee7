//! `closeup demo`: the whole pipeline on the built-in simulator, in seven steps —
//!
//! 1. simulate the engagement world (train / valid / test split by time);
//! 2. train the closeup model (sequence encoder + MMoE) and the shared-bottom and single-task
//!    baselines;
//! 3. evaluate each per task on the test split (AUC, log loss, calibration) next to the Bayes
//!    ceiling (the simulator's true probabilities);
//! 4. gate utilization: the mean gate weight per task per expert;
//! 5. churn: model A (seed s), model B (seed s+1) and model B' (seed s+1, score-regularized
//!    toward A as the teacher) — churn and AUC side by side;
//! 6. the learned-utility blender: production vs learned (each convention) vs oracle reward
//!    ([`crate::blend_study`]);
//! 7. a small grid over experts and expert shapes ([`crate::grid`]).
//!
//! [`run`] computes everything in memory ([`DemoOutput`]); [`DemoOutput::write`] then writes
//! `report.md`, `metrics.json` and the SVG figures, each atomically, so a failed run writes
//! nothing. `metrics.json` holds no timings: the same seed and thread count give the same bytes.
//!
//! ```no_run
//! use closeup::demo::{DemoOptions, DemoSize, run};
//! let out = run(&DemoOptions { size: DemoSize::Quick, ..DemoOptions::default() }, &mut |line| eprintln!("{line}"))?;
//! out.write(std::path::Path::new("closeup-demo"))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod charts;
mod plan;
mod report;
mod report_steps;

pub use plan::{DemoPlan, DemoSize};

use crate::blend_study::{self, StudyReport};
use crate::data::metrics::{ChurnReport, MetricsReport};
use crate::data::sim::{ENGAGEMENT_TASKS, simulate_engagement};
use crate::data::{EngagementDataset, ReadOptions, write_atomic};
use crate::grid::{GridReport, run_grid};
use crate::model_dir::{RunConfig, shape_for};
use crate::models::{Architecture, CloseupModel};
use crate::train::{
    EpochRecord, PredictOptions, ProgressMode, Teacher, Trainer, VocabBridge, churn, label_arrays,
    metrics, predict,
};
use anyhow::{Context, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// How to run the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    /// The size.
    pub size: DemoSize,
    /// The seed of everything.
    pub seed: u64,
    /// The trainer's progress display.
    pub progress: ProgressMode,
}

impl Default for DemoOptions {
    /// Full size, seed 1, progress bars on a terminal.
    fn default() -> Self {
        DemoOptions {
            size: DemoSize::Full,
            seed: 1,
            progress: ProgressMode::Auto,
        }
    }
}

/// The data of step 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Training / validation / test impressions.
    pub train: usize,
    /// Validation impressions.
    pub valid: usize,
    /// Test impressions.
    pub test: usize,
    /// The simulator's true probabilities scored like a model on the test split: the Bayes
    /// ceiling of AUC and log loss.
    pub ceiling: MetricsReport,
}

/// One trained model and its test metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// Short name (`mmoe`, `shared-bottom`, `single-task`, `mmoe-B`, `mmoe-B-sr`).
    pub name: String,
    /// The head.
    pub architecture: Architecture,
    /// Training seed.
    pub seed: u64,
    /// λ of score regularization (0 = off).
    pub score_reg: f32,
    /// Trainable parameters.
    pub params: usize,
    /// Test-split metrics of the kept epoch.
    pub test: MetricsReport,
    /// The kept epoch.
    pub best_epoch: usize,
    /// The per-epoch training history.
    pub history: Vec<EpochRecord>,
}

/// Step 4: the mean gate weight per task per expert of the closeup model on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSummary {
    /// Row labels.
    pub tasks: Vec<String>,
    /// `mean[t][e]`: each row sums to 1.
    pub mean: Vec<Vec<f64>>,
    /// `exp(entropy)` of each task's mean gate: 1 = one expert, E = uniform.
    pub effective_experts: Vec<f64>,
}

/// Step 5: churn with and without score regularization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnSummary {
    /// λ of B'.
    pub score_reg: f32,
    /// k of the top-k flip rate.
    pub k: usize,
    /// A vs B (different seeds).
    pub a_vs_b: ChurnReport,
    /// A vs B' (B's seed, regularized toward A).
    pub a_vs_b_sr: ChurnReport,
}

/// `metrics.json`: the closeup model's test metrics in the SPEC §4.3 shape (`tasks`,
/// `mean_auc`) plus every step's numbers. Deterministic for a seed and thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoMetrics {
    /// The closeup model's test metrics.
    #[serde(flatten)]
    pub closeup: MetricsReport,
    /// Kernel threads of the run.
    pub threads: usize,
    /// What ran.
    pub plan: DemoPlan,
    /// Step 1.
    pub data: DataSummary,
    /// Steps 2, 3 and 5: every trained model (closeup A, baselines, B, B').
    pub models: Vec<ModelResult>,
    /// Step 4.
    pub gates: GateSummary,
    /// Step 5.
    pub churn: ChurnSummary,
    /// Step 6.
    pub blender: StudyReport,
    /// Step 7.
    pub grid: GridReport,
}

impl DemoMetrics {
    /// The model called `name`.
    ///
    /// # Panics
    /// If there is none (the demo always trains the five names of [`ModelResult::name`]).
    pub fn model(&self, name: &str) -> &ModelResult {
        self.models
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no model {name}"))
    }
}

/// Everything the demo produced, before writing.
#[derive(Debug, Clone)]
pub struct DemoOutput {
    /// `metrics.json`.
    pub metrics: DemoMetrics,
    /// `report.md`.
    pub report: String,
    /// `(file name, SVG)` of each figure.
    pub figures: Vec<(String, String)>,
}

impl DemoOutput {
    /// Writes the figures, `metrics.json` and `report.md` into `dir` (created if needed), each
    /// atomically (temp file + rename).
    ///
    /// # Errors
    /// If the directory cannot be created or a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, svg) in &self.figures {
            write_atomic(dir.join(name), svg.as_bytes())?;
        }
        let mut json = serde_json::to_string_pretty(&self.metrics)?;
        json.push('\n');
        write_atomic(dir.join("metrics.json"), json.as_bytes())?;
        write_atomic(dir.join("report.md"), self.report.as_bytes())?;
        Ok(())
    }
}

/// Wall time of each step, for the report (never in `metrics.json`).
pub(crate) type Timings = Vec<(&'static str, f64)>;

struct Trained {
    result: ModelResult,
    model: CloseupModel,
}

fn train_one(
    plan: &DemoPlan,
    name: &str,
    arch: Architecture,
    seed: u64,
    teacher: Option<&CloseupModel>,
    sets: [&EngagementDataset; 3],
    progress: ProgressMode,
) -> Result<Trained> {
    let [train, valid, test] = sets;
    let score_reg = if teacher.is_some() {
        plan.score_reg
    } else {
        0.0
    };
    let cfg = plan.model_for(arch);
    let shape = shape_for(&train.vocab, &train.meta);
    let mut model = CloseupModel::new(&cfg, &shape, seed)?;
    let seq_len = cfg.sequence.seq_len;
    let mut trainer =
        Trainer::new(plan.train_for(seed, score_reg), seq_len)?.with_progress(progress);
    if let Some(t) = teacher {
        let bridge = VocabBridge::new(&train.vocab, &train.vocab);
        trainer = trainer.with_teacher(Teacher::new(t, bridge, seq_len)?);
    }
    let report = trainer
        .fit(&mut model, train, valid, &mut |_, _| Ok(()))
        .with_context(|| format!("training {name}"))?;
    let preds = predict(&model, test, predict_opts(plan), None);
    Ok(Trained {
        result: ModelResult {
            name: name.into(),
            architecture: arch,
            seed,
            score_reg,
            params: model.num_params(),
            test: metrics(test, &preds.scores, None),
            best_epoch: report.best_epoch,
            history: report.history,
        },
        model,
    })
}

fn predict_opts(plan: &DemoPlan) -> PredictOptions {
    PredictOptions {
        batch_size: 512,
        seq_len: plan.model.sequence.seq_len,
    }
}

/// Runs the demo; `log` receives one line per step and sub-step.
///
/// # Errors
/// A training failure (divergence) or an invalid plan.
pub fn run(opts: &DemoOptions, log: &mut dyn FnMut(&str)) -> Result<DemoOutput> {
    let plan = DemoPlan::new(opts.size, opts.seed);
    let progress = opts.progress;
    let mut timings: Timings = Vec::new();
    let started = Instant::now();
    let mut clock = Instant::now();
    let mut lap = |name: &'static str, timings: &mut Timings| {
        timings.push((name, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    log("[1/7] simulating the engagement world");
    let world = simulate_engagement(&plan.world, plan.seed);
    let read = ReadOptions {
        max_history: Some(plan.model.sequence.seq_len),
        tasks: None,
    };
    let train = EngagementDataset::from_records_training("sim:train", world.train.clone(), &read)?;
    let valid = EngagementDataset::from_records_with_vocab(
        "sim:valid",
        world.valid.clone(),
        &train.vocab,
        &read,
    )?;
    let test = EngagementDataset::from_records_with_vocab(
        "sim:test",
        world.test.clone(),
        &train.vocab,
        &read,
    )?;
    let tasks = test.vocab.tasks().to_vec();
    let truth = Array2::from_shape_fn((test.len(), tasks.len()), |(i, k)| {
        let col = ENGAGEMENT_TASKS.iter().position(|t| *t == tasks[k]);
        col.map_or(f64::NAN, |c| world.test_truth[i][c])
    });
    let (labels, mask) = label_arrays(&test);
    let ceiling =
        MetricsReport::from_arrays(&tasks, truth.view(), labels.view(), mask.view(), None);
    let data = DataSummary {
        train: train.len(),
        valid: valid.len(),
        test: test.len(),
        ceiling,
    };
    log(&format!(
        "      {} train / {} valid / {} test impressions; Bayes-ceiling mean AUC {:.4}",
        data.train,
        data.valid,
        data.test,
        data.ceiling.mean_auc.unwrap_or(f64::NAN)
    ));
    lap("simulate", &mut timings);

    let sets = [&train, &valid, &test];
    let mut trained = Vec::new();
    for (i, (name, arch)) in [
        ("mmoe", Architecture::Mmoe),
        ("shared-bottom", Architecture::SharedBottom),
        ("single-task", Architecture::SingleTask),
    ]
    .into_iter()
    .enumerate()
    {
        log(&format!("[2/7] training {name} ({} of 3)", i + 1));
        trained.push(train_one(
            &plan, name, arch, plan.seed, None, sets, progress,
        )?);
    }
    lap("train", &mut timings);

    log("[3/7] evaluating on the test split");
    for t in &trained {
        log(&format!(
            "      {:<14} test mean AUC {:.4}",
            t.result.name,
            t.result.test.mean_auc.unwrap_or(f64::NAN)
        ));
    }
    lap("evaluate", &mut timings);

    log("[4/7] gate utilization of the closeup model");
    let model_a = &trained[0].model;
    let preds_a = predict(model_a, &test, predict_opts(&plan), None);
    let gates = preds_a
        .mean_gates
        .as_ref()
        .context("the MMoE model returned no gate weights")?;
    let gates = GateSummary {
        tasks: tasks.clone(),
        mean: gates.rows().into_iter().map(|r| r.to_vec()).collect(),
        effective_experts: gates
            .rows()
            .into_iter()
            .map(|r| {
                (-r.iter()
                    .filter(|&&g| g > 0.0)
                    .map(|g| g * g.ln())
                    .sum::<f64>())
                .exp()
            })
            .collect(),
    };
    lap("gates", &mut timings);

    log("[5/7] churn: model B (another seed) and B' (score-regularized toward A)");
    let seed_b = plan.seed + 1;
    let b = train_one(
        &plan,
        "mmoe-B",
        Architecture::Mmoe,
        seed_b,
        None,
        sets,
        progress,
    )?;
    let b_sr = train_one(
        &plan,
        "mmoe-B-sr",
        Architecture::Mmoe,
        seed_b,
        Some(model_a),
        sets,
        progress,
    )?;
    let preds_b = predict(&b.model, &test, predict_opts(&plan), None);
    let preds_b_sr = predict(&b_sr.model, &test, predict_opts(&plan), None);
    let churn = ChurnSummary {
        score_reg: plan.score_reg,
        k: plan.churn_k,
        a_vs_b: churn(&test, &preds_a.scores, &preds_b.scores, plan.churn_k),
        a_vs_b_sr: churn(&test, &preds_a.scores, &preds_b_sr.scores, plan.churn_k),
    };
    lap("churn", &mut timings);

    log("[6/7] the learned-utility blender");
    let blender = blend_study::run_with_progress(&plan.blender, |what| {
        if progress != ProgressMode::Off {
            eprintln!("      blender: {what}");
        }
    })?;
    lap("blender", &mut timings);

    log("[7/7] grid over experts and expert shapes");
    let base = RunConfig {
        model: plan.model.clone(),
        train: crate::train::TrainConfig {
            epochs: plan.grid_epochs,
            ..plan.train.clone()
        },
    };
    let grid = run_grid(&plan.grid, &base, &train, &valid, progress, |i, n, p| {
        if progress != ProgressMode::Off {
            eprintln!("      grid point {} of {n}: {}", i + 1, p.label());
        }
    })?;
    lap("grid", &mut timings);
    timings.push(("total", started.elapsed().as_secs_f64()));

    let mut models: Vec<ModelResult> = trained.into_iter().map(|t| t.result).collect();
    models.push(b.result);
    models.push(b_sr.result);
    let metrics = DemoMetrics {
        closeup: models[0].test.clone(),
        threads: closeup_autograd::num_threads(),
        plan,
        data,
        models,
        gates,
        churn,
        blender,
        grid,
    };
    let figures = charts::all(&metrics);
    let report = report::render(&metrics, &timings);
    Ok(DemoOutput {
        metrics,
        report,
        figures,
    })
}
