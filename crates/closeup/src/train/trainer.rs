//! The training loop.

use super::config::TrainConfig;
use super::convert::{VocabBridge, model_batch, targets};
use super::eval::{PredictOptions, metrics, predict};
use super::progress::{Progress, ProgressMode};
use super::report::{EpochRecord, TrainReport, mean_logloss};
use super::{BoxError, TrainError};
use closeup_autograd::{Adam, Checkpoint, Optimizer, Tape};
use closeup_data::{Batch, BatchOptions, Batches, EngagementDataset};
use closeup_layers::ForwardCtx;
use closeup_losses::{multitask_bce, score_regularization};
use closeup_models::{ModelBatch, RankingModel};
use ndarray::{Array2, Ix2, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A previous model whose scores the student is pulled toward (score regularization).
pub struct Teacher<'a> {
    model: &'a dyn RankingModel,
    bridge: VocabBridge,
    seq_len: usize,
}

impl std::fmt::Debug for Teacher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("tasks", &self.model.tasks())
            .field("bridge", &self.bridge)
            .field("seq_len", &self.seq_len)
            .finish()
    }
}

impl<'a> Teacher<'a> {
    /// The teacher `model` with `seq_len`; `bridge` translates the training data's vocabulary
    /// into the teacher's (see [`VocabBridge::new`]).
    ///
    /// # Errors
    /// [`TrainError::Config`] when the teacher shares no task with the training data.
    pub fn new(
        model: &'a dyn RankingModel,
        bridge: VocabBridge,
        seq_len: usize,
    ) -> Result<Self, TrainError> {
        if bridge.shared_tasks() == 0 {
            return Err(TrainError::Config(
                "the teacher model has none of the training data's tasks".into(),
            ));
        }
        Ok(Self {
            model,
            bridge,
            seq_len,
        })
    }

    /// The teacher's probabilities on `batch`, aligned to the student's tasks, and their mask.
    fn scores(&self, batch: &ModelBatch) -> (Array2<f32>, Array2<f32>) {
        let mut mb = self.bridge.translate(batch);
        let keep = mb.hist_mask.ncols().min(self.seq_len);
        mb.hist_pins = mb.hist_pins.slice(s![.., ..keep]).to_owned();
        mb.hist_actions = mb.hist_actions.slice(s![.., ..keep]).to_owned();
        mb.hist_mask = mb.hist_mask.slice(s![.., ..keep]).to_owned();
        let tape = Tape::no_grad();
        let mut rng = ChaCha8Rng::seed_from_u64(0); // not drawn from in evaluation mode
        let out = self
            .model
            .forward(&tape, &mb, &mut ForwardCtx::eval(&mut rng));
        let p = out.logits.sigmoid().value();
        let p = p
            .view()
            .into_dimensionality::<Ix2>()
            .expect("logits are [B, T]")
            .to_owned();
        self.bridge.align_scores(&p)
    }
}

/// Trains a [`RankingModel`]: epochs of seeded shuffled mini-batches, Adam with an optional
/// warm-up/decay schedule and global-norm clipping, validation and early stopping on the mean
/// validation AUC, score regularization, and a divergence guard. See `docs/training.md`.
#[derive(Debug)]
pub struct Trainer<'a> {
    config: TrainConfig,
    seq_len: usize,
    progress: ProgressMode,
    teacher: Option<Teacher<'a>>,
}

/// Steps, loss sums and per-task sums of one epoch.
#[derive(Default)]
struct EpochSums {
    steps: usize,
    total: f64,
    tasks: Vec<f64>,
    score_reg: f64,
}

impl<'a> Trainer<'a> {
    /// A trainer with `config`, feeding the model the `seq_len` most recent history actions.
    ///
    /// # Errors
    /// [`TrainError::Config`] when the configuration is invalid.
    pub fn new(config: TrainConfig, seq_len: usize) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Self {
            config,
            seq_len,
            progress: ProgressMode::Off,
            teacher: None,
        })
    }

    /// Reports progress on stderr (default: off).
    pub fn with_progress(mut self, mode: ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// Regularizes toward `teacher`'s scores instead of the data's logged `old_scores`.
    pub fn with_teacher(mut self, teacher: Teacher<'a>) -> Self {
        self.teacher = Some(teacher);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains `model` on `train`, validating on `valid` after every epoch. Each time the mean
    /// validation AUC improves, `on_best` is called with the model (e.g. to save `model.bin`
    /// atomically). At the end the best epoch's weights are restored into `model`.
    ///
    /// # Errors
    /// - [`TrainError::Config`]: the data sets do not match the model, or score regularization
    ///   has no old scores to use.
    /// - [`TrainError::Diverged`]: a non-finite loss, gradient or validation score; the model is
    ///   left with the weights of the failing step, and `on_best` has only ever seen finite models.
    /// - [`TrainError::Save`]: `on_best` failed.
    pub fn fit<M: RankingModel>(
        &self,
        model: &mut M,
        train: &EngagementDataset,
        valid: &EngagementDataset,
        on_best: &mut dyn FnMut(&M, &EpochRecord) -> Result<(), BoxError>,
    ) -> Result<TrainReport, TrainError> {
        let cfg = &self.config;
        let tasks = train.vocab.tasks().to_vec();
        if model.tasks() != tasks.as_slice() || valid.vocab.tasks() != tasks.as_slice() {
            return Err(TrainError::Config(format!(
                "tasks differ: model [{}], training data [{}], validation data [{}]",
                model.tasks().join(", "),
                tasks.join(", "),
                valid.vocab.tasks().join(", ")
            )));
        }
        let lambda = cfg.score_reg;
        if lambda > 0.0 && self.teacher.is_none() && !train.meta.has_old_scores {
            return Err(TrainError::Config(format!(
                "score regularization needs a teacher model or `old_scores` in {}",
                train.meta.path.display()
            )));
        }
        let task_weights = cfg.task_weight_vector(&tasks)?;
        let batch_opts = BatchOptions {
            batch_size: cfg.batch_size,
            seq_len: self.seq_len,
            ..BatchOptions::default()
        };
        let predict_opts = PredictOptions {
            batch_size: cfg.batch_size.max(512),
            seq_len: self.seq_len,
        };
        let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
        let total_steps = steps_per_epoch * cfg.epochs;
        let mut opt = Adam::adamw(cfg.lr, cfg.weight_decay);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(u64::MAX); // dropout draws, apart from the shuffling streams
        let mut progress = Progress::new(self.progress);
        let mut history = Vec::new();
        let mut best: Option<(usize, Option<f64>, Checkpoint)> = None;
        let mut since_best = 0;
        let mut step = 0;
        for epoch in 1..=cfg.epochs {
            progress.start_epoch(epoch, cfg.epochs, steps_per_epoch);
            let batches = Batches::seeded(train, batch_opts, cfg.seed, epoch as u64)?;
            let mut sums = EpochSums {
                tasks: vec![0.0; tasks.len()],
                ..EpochSums::default()
            };
            for (i, batch) in batches.enumerate() {
                step += 1;
                opt.set_learning_rate(cfg.lr_at(step, total_steps));
                let result = self.step(model, &mut opt, &batch, &task_weights, &mut rng);
                let (loss, per_task, reg) = result.map_err(|what| {
                    progress.abandon();
                    TrainError::Diverged {
                        epoch,
                        step: i + 1,
                        what,
                    }
                })?;
                sums.steps += 1;
                sums.total += f64::from(loss);
                sums.score_reg += f64::from(reg);
                for (s, l) in sums.tasks.iter_mut().zip(per_task) {
                    *s += f64::from(l);
                }
                progress.step(i + 1, batch.len(), loss);
            }
            let preds = predict(model, valid, predict_opts, None);
            if preds.scores.iter().any(|p| !p.is_finite()) {
                progress.abandon();
                return Err(TrainError::Diverged {
                    epoch,
                    step: sums.steps,
                    what: "validation scores are not finite".into(),
                });
            }
            let report = metrics(valid, &preds.scores, None);
            let n = sums.steps.max(1) as f64;
            let record = EpochRecord {
                epoch,
                steps: sums.steps,
                lr: opt.learning_rate(),
                train_loss: sums.total / n,
                train_task_loss: sums.tasks.iter().map(|s| s / n).collect(),
                score_reg_loss: (lambda > 0.0).then(|| sums.score_reg / n),
                valid_mean_auc: report.mean_auc,
                valid_logloss: mean_logloss(&report),
            };
            let improved = match &best {
                None => true,
                Some((_, b, _)) => {
                    record.valid_mean_auc.unwrap_or(f64::NEG_INFINITY)
                        > b.unwrap_or(f64::NEG_INFINITY)
                }
            };
            progress.end_epoch(&format!(
                "train loss {:.4}, valid mean AUC {}, log loss {}{}",
                record.train_loss,
                fmt_opt(record.valid_mean_auc),
                fmt_opt(record.valid_logloss),
                if improved { " (best)" } else { "" }
            ));
            if improved {
                on_best(model, &record).map_err(TrainError::Save)?;
                best = Some((epoch, record.valid_mean_auc, Checkpoint::from_module(model)));
                since_best = 0;
            } else {
                since_best += 1;
            }
            history.push(record);
            if cfg.patience > 0 && since_best >= cfg.patience && epoch < cfg.epochs {
                progress.note(&format!(
                    "early stopping: no better validation AUC for {since_best} epochs"
                ));
                break;
            }
        }
        let (best_epoch, _, snapshot) = best.expect("at least one epoch ran");
        snapshot.restore_into(model)?;
        let valid_report = predict(model, valid, predict_opts, None);
        let epochs_run = history.len();
        Ok(TrainReport {
            valid: metrics(valid, &valid_report.scores, None),
            best_epoch,
            epochs_run,
            stopped_early: epochs_run < cfg.epochs,
            train_examples: train.len(),
            valid_examples: valid.len(),
            task_order: tasks,
            history,
        })
    }

    /// One optimizer step; returns (total loss, per-task BCE, score-reg term) or what diverged.
    fn step<M: RankingModel>(
        &self,
        model: &mut M,
        opt: &mut Adam,
        batch: &Batch,
        task_weights: &[f32],
        rng: &mut ChaCha8Rng,
    ) -> Result<(f32, Vec<f32>, f32), String> {
        let mb = model_batch(batch);
        let tape = Tape::new();
        let out = model.forward(&tape, &mb, &mut ForwardCtx::train(rng));
        let bce = multitask_bce(out.logits, &targets(batch), task_weights);
        let lambda = self.config.score_reg;
        let mut total = bce.total;
        let mut reg_value = 0.0;
        if lambda > 0.0 {
            let old = match (&self.teacher, &batch.old_scores) {
                (Some(t), _) => Some(t.scores(&mb)),
                (None, Some((scores, mask))) => Some((scores.clone(), mask.clone())),
                (None, None) => None,
            };
            if let Some((scores, mask)) = old {
                let lambdas = vec![lambda; task_weights.len()];
                let reg = score_regularization(
                    out.logits,
                    &scores,
                    &mask,
                    &lambdas,
                    self.config.score_reg_space,
                );
                reg_value = reg.item();
                total = total + reg;
            }
        }
        let loss = total.item();
        if !loss.is_finite() {
            return Err(format!("the loss is {loss}"));
        }
        let mut grads = tape.backward(total);
        if !grads.all_finite() {
            return Err("a gradient is not finite".into());
        }
        if self.config.max_grad_norm > 0.0 {
            let norm = grads.clip_global_norm(self.config.max_grad_norm);
            if !norm.is_finite() {
                return Err(format!("the gradient norm is {norm}"));
            }
        }
        opt.step(model, &grads);
        Ok((loss, bce.per_task, reg_value))
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.4}"))
}
