//! What the demo runs at each size: the simulated world, the model, the trainer, the churn
//! experiment, the blender study and the grid — explicit values chosen here, independent of the
//! library defaults (which follow SPEC §5's reference configuration and take minutes per model
//! on 2 cores), so the demo's cost and numbers do not move when the defaults are retuned.

use crate::blend_study::StudyConfig;
use crate::blender::TrainOptions;
use crate::data::sim::EngagementConfig;
use crate::grid::GridSpec;
use crate::models::{Architecture, ModelConfig, Readout};
use crate::train::{LrDecay, TrainConfig};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How big a run the demo does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoSize {
    /// For tests only: seconds in a debug build; numbers are noisy.
    Tiny,
    /// `--quick`: about a minute on 2 cores (release build).
    Quick,
    /// The default: a few minutes on 2 cores (release build).
    Full,
}

impl fmt::Display for DemoSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DemoSize::Tiny => "tiny",
            DemoSize::Quick => "quick",
            DemoSize::Full => "full",
        })
    }
}

/// Everything the demo runs, resolved for one size and seed (written into `metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoPlan {
    /// The size.
    pub size: DemoSize,
    /// The seed of the world; model A trains with `seed`, models B and B' with `seed + 1`.
    pub seed: u64,
    /// The simulated engagement world.
    pub world: EngagementConfig,
    /// The closeup model (sequence encoder + MMoE); the baselines change only the architecture.
    pub model: ModelConfig,
    /// The trainer (its `seed` is overridden per model).
    pub train: TrainConfig,
    /// λ of score regularization for model B'.
    pub score_reg: f32,
    /// k of the top-k flip rate.
    pub churn_k: usize,
    /// The blender study.
    pub blender: StudyConfig,
    /// The grid (experts × expert hidden sizes).
    pub grid: GridSpec,
    /// Pinterest's shapes the grid's shapes stand for (same order as `grid.expert_hidden`).
    pub grid_pinterest_shapes: Vec<Vec<usize>>,
    /// Epochs of each grid point.
    pub grid_epochs: usize,
}

impl DemoPlan {
    /// The plan for `size` and `seed`.
    pub fn new(size: DemoSize, seed: u64) -> Self {
        // Sizes: (requests, users, pins, seq_len, d_model, layers, experts, hidden, epochs,
        // pin buckets, lr). The worlds are smaller than the simulator's default (fewer pins
        // and users), so that every pin is seen often enough in a short run for its embedding
        // to be learned; the learning rate is high for the same reason.
        let (requests, users, pins, seq_len, d_model, layers, experts, unit, epochs, buckets, lr) =
            match size {
                DemoSize::Tiny => (700, 150, 300, 8, 16, 1, 2, 16, 4, 1_000, 1e-2),
                DemoSize::Quick => (1_400, 300, 800, 20, 32, 1, 4, 64, 4, 5_000, 1e-2),
                DemoSize::Full => (4_000, 800, 2_000, 32, 32, 1, 8, 64, 5, 10_000, 5e-3),
            };
        let world = EngagementConfig {
            num_requests: requests,
            num_users: users,
            num_pins: pins,
            ..EngagementConfig::default()
        };
        let mut model = ModelConfig {
            architecture: Architecture::Mmoe,
            ..ModelConfig::default()
        };
        let s = &mut model.sequence;
        s.seq_len = seq_len;
        s.pin_buckets = buckets;
        s.d_model = d_model;
        s.layers = layers;
        s.heads = 2;
        s.ffn_hidden = 2 * d_model;
        s.dropout = 0.1;
        s.early_fusion = false;
        s.readouts = vec![Readout::Mean, Readout::TargetAttention];
        let m = &mut model.mmoe;
        m.num_experts = experts;
        m.expert_hidden = vec![unit, unit];
        m.expert_dropout = 0.2;
        m.residual = true;
        m.tower_hidden = vec![unit / 2];
        let train = TrainConfig {
            seed,
            epochs,
            batch_size: 256,
            lr,
            weight_decay: 0.0,
            warmup_steps: 20,
            decay: LrDecay::Cosine,
            min_lr_fraction: 0.1,
            max_grad_norm: 5.0,
            patience: 1,
            ..TrainConfig::default()
        };
        let mut blender = match size {
            DemoSize::Full => StudyConfig {
                lambdas: vec![0.0, 0.03, 0.5, 2.0],
                log_sizes: vec![2_000, 5_000, 20_000],
                exploration_stds: vec![0.25, 0.5, 1.0],
                ..StudyConfig::default()
            },
            _ => StudyConfig::quick(),
        };
        if size == DemoSize::Tiny {
            blender.world.num_logged_requests = 1_000;
            blender.world.num_eval_requests = 300;
            blender.blender.train = TrainOptions {
                epochs: 3,
                ..blender.blender.train.clone()
            };
            blender.log_sizes = vec![500];
            blender.exploration_stds = vec![];
        }
        blender.seed = seed;
        let pinterest = vec![vec![256, 256], vec![512, 512], vec![256, 256, 256]];
        let grid = GridSpec {
            experts: match size {
                DemoSize::Tiny => vec![2],
                DemoSize::Quick => vec![2, 4],
                DemoSize::Full => vec![2, 4],
            },
            expert_hidden: match size {
                // The Full demo runs Pinterest's shapes; the smaller sizes scale them down by
                // the same ratios (h,h) vs (2h,2h) vs (h,h,h).
                DemoSize::Full => pinterest.clone(),
                _ => vec![
                    vec![unit, unit],
                    vec![2 * unit, 2 * unit],
                    vec![unit, unit, unit],
                ],
            },
            d_model: vec![],
        };
        DemoPlan {
            size,
            seed,
            world,
            model,
            train,
            // The tiny (test-only) models differ by little, so the pull toward A needs a larger λ
            // to show; probability-space MSE gradients scale with |Δp|.
            score_reg: if size == DemoSize::Tiny { 100.0 } else { 20.0 },
            churn_k: 3,
            blender,
            grid,
            grid_pinterest_shapes: pinterest,
            grid_epochs: 2,
        }
    }

    /// The model configuration of `architecture` (the closeup model's with another head).
    pub fn model_for(&self, architecture: Architecture) -> ModelConfig {
        ModelConfig {
            architecture,
            ..self.model.clone()
        }
    }

    /// The trainer configuration with `seed` and `score_reg`.
    pub fn train_for(&self, seed: u64, score_reg: f32) -> TrainConfig {
        TrainConfig {
            seed,
            score_reg,
            ..self.train.clone()
        }
    }
}
