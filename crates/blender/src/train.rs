//! Training: seeded train/validation split, mini-batch Adam, validation loss every epoch, the
//! best epoch kept.

use crate::config::BlenderConfig;
use crate::data::BlenderData;
use crate::error::{BlenderError, Result};
use crate::model::Blender;
use closeup_autograd::{Adam, Optimizer, Tape};
use closeup_layers::ForwardCtx;
use ndarray::Axis;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Losses of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean total training loss over the epoch's batches.
    pub train_loss: f64,
    /// Total validation loss (None without a validation part).
    pub valid_loss: Option<f64>,
    /// Validation data term.
    pub valid_data: Option<f64>,
    /// Validation prior term.
    pub valid_prior: Option<f64>,
    /// The global bias `b` after the epoch.
    pub bias: f32,
}

/// What training did: per-epoch losses, the epoch kept, and statistics of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Requests trained on.
    pub num_train: usize,
    /// Requests held out for validation.
    pub num_valid: usize,
    /// Mean reward `R` over the whole log.
    pub mean_reward: f64,
    /// Share of requests with `R > 0`, `R < 0`, `R = 0`.
    pub reward_shares: [f64; 3],
    /// The production weights `s` used as prior mean.
    pub prior_mean: Vec<f32>,
    /// Per-epoch losses.
    pub epochs: Vec<EpochStats>,
    /// The epoch whose parameters were kept (lowest validation loss; the last without
    /// validation).
    pub best_epoch: usize,
    /// Mean `f(x)` over the training requests, per objective, of the kept model.
    pub mean_weights: Vec<f32>,
}

/// A trained blender and its report.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model (the best epoch's parameters).
    pub model: Blender,
    /// What happened.
    pub report: TrainReport,
}

/// Trains a blender on `data` with `config` (see [`train_with_progress`]).
///
/// # Errors
/// As [`train_with_progress`].
pub fn train(config: &BlenderConfig, data: &BlenderData) -> Result<Trained> {
    train_with_progress(config, data, |_| {})
}

/// Trains a blender, calling `progress` after every epoch.
///
/// The prior mean is `config.prior_mean`, or the log's mean `blend` when unset (the resolved
/// value is in the returned model's config). Validation requests are a seeded random
/// `valid_fraction` of the log; inputs are standardized with the training part's statistics.
///
/// # Errors
/// [`BlenderError::Config`] for invalid settings or a log whose `blend` width differs from the
/// objectives, [`BlenderError::Diverged`] on a non-finite loss.
pub fn train_with_progress(
    config: &BlenderConfig,
    data: &BlenderData,
    mut progress: impl FnMut(&EpochStats),
) -> Result<Trained> {
    config.validate()?;
    if data.num_objectives() != config.num_objectives() {
        return Err(BlenderError::Config(format!(
            "the log's blend has {} weights per request but {} objectives are configured {:?}",
            data.num_objectives(),
            config.num_objectives(),
            config.objectives
        )));
    }
    let mut config = config.clone();
    if config.prior_mean.is_none() {
        config.prior_mean = Some(data.mean_blend());
    }
    let opts = config.train.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(1);
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut rng);
    let n_valid = ((data.len() as f64) * opts.valid_fraction).round() as usize;
    let n_valid = n_valid.min(data.len().saturating_sub(1));
    let (valid_idx, train_idx) = order.split_at(n_valid);
    let (mut train_idx, valid_idx) = (train_idx.to_vec(), valid_idx.to_vec());
    let train_part = data.select(&train_idx);
    let valid = (!valid_idx.is_empty()).then(|| data.select(&valid_idx));

    let mut model = Blender::new(&config, data.feature_width())?;
    let mean = train_part.features.mean_axis(Axis(0)).expect("non-empty");
    let std = train_part.features.std_axis(Axis(0), 0.0);
    model.set_input_normalization(mean.as_slice().expect("1-D"), std.as_slice().expect("1-D"));
    let (y_all, w_all) = config.targets(&data.rewards);

    let mut opt = Adam::new(opts.learning_rate);
    let mut epochs = Vec::with_capacity(opts.epochs);
    let mut best: Option<(f64, usize, Blender)> = None;
    for epoch in 1..=opts.epochs {
        train_idx.shuffle(&mut rng);
        let (mut total, mut batches) = (0.0, 0usize);
        for chunk in train_idx.chunks(opts.batch_size) {
            let batch = data.select(chunk);
            let y: Vec<f32> = chunk.iter().map(|&i| y_all[i]).collect();
            let w: Vec<f32> = chunk.iter().map(|&i| w_all[i]).collect();
            let grads = {
                let tape = Tape::new();
                let obj = model.loss(
                    &tape,
                    &batch.features,
                    &batch.blend,
                    &y,
                    &w,
                    &mut ForwardCtx::train(&mut rng),
                );
                let loss = obj.total.item();
                if !loss.is_finite() {
                    return Err(BlenderError::Diverged { epoch, loss });
                }
                total += f64::from(loss);
                batches += 1;
                tape.backward(obj.total)
            };
            opt.step(&mut model, &grads);
        }
        let v = valid.as_ref().map(|v| evaluate(&model, v));
        let stats = EpochStats {
            epoch,
            train_loss: total / batches.max(1) as f64,
            valid_loss: v.map(|(d, p)| d + p),
            valid_data: v.map(|(d, _)| d),
            valid_prior: v.map(|(_, p)| p),
            bias: model.bias(),
        };
        if let Some(l) = stats.valid_loss.filter(|l| !l.is_finite()) {
            return Err(BlenderError::Diverged {
                epoch,
                loss: l as f32,
            });
        }
        progress(&stats);
        epochs.push(stats);
        let score = stats.valid_loss.unwrap_or(f64::NEG_INFINITY);
        if valid.is_none() || best.as_ref().is_none_or(|(b, _, _)| score < *b) {
            best = Some((score, epoch, model.clone()));
        }
    }
    let (best_epoch, model) = match best {
        Some((_, e, m)) => (e, m),
        None => (0, model),
    };
    let weights = model.weights(&train_part.features)?;
    let n = data.len() as f64;
    let share = |f: fn(f32) -> bool| data.rewards.iter().filter(|&&r| f(r)).count() as f64 / n;
    let report = TrainReport {
        num_train: train_idx.len(),
        num_valid: valid_idx.len(),
        mean_reward: data.mean_reward(),
        reward_shares: [share(|r| r > 0.0), share(|r| r < 0.0), share(|r| r == 0.0)],
        prior_mean: model.prior_mean().to_vec(),
        epochs,
        best_epoch,
        mean_weights: weights.mean_axis(Axis(0)).expect("non-empty").to_vec(),
    };
    Ok(Trained { model, report })
}

/// The objective's (data, prior) terms of `model` on `data` under the model's convention, in
/// evaluation mode.
pub fn evaluate(model: &Blender, data: &BlenderData) -> (f64, f64) {
    let (y, w) = model.config().targets(&data.rewards);
    let tape = Tape::no_grad();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let obj = model.loss(
        &tape,
        &data.features,
        &data.blend,
        &y,
        &w,
        &mut ForwardCtx::eval(&mut rng),
    );
    (f64::from(obj.data.item()), f64::from(obj.prior.item()))
}
