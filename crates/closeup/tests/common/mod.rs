//! A small dense multi-task model (shared MLP bottom + one linear tower per task) and tiny data
//! sets for the trainer's tests.
#![allow(dead_code)]

use closeup::autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Tape, Var};
use closeup::data::record::EngagementRecord;
use closeup::data::{EngagementDataset, ReadOptions};
use closeup::layers::{Activation, ForwardCtx, Linear, Mlp};
use closeup::models::{ModelBatch, ModelOutput, RankingModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Shared bottom `[F] → [16]` (ReLU, dropout 0.1), then one linear tower per task.
#[derive(Debug, Clone)]
pub struct DenseMtl {
    pub tasks: Vec<String>,
    pub bottom: Mlp,
    pub towers: Vec<Linear>,
}

impl DenseMtl {
    pub fn new(tasks: &[String], features: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bottom = Mlp::new(features, &[16], None, Activation::Relu, 0.1, &mut rng);
        let towers = tasks.iter().map(|_| Linear::new(16, 1, &mut rng)).collect();
        Self {
            tasks: tasks.to_vec(),
            bottom,
            towers,
        }
    }
}

impl Parameterized for DenseMtl {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("bottom", &self.bottom);
        for (i, t) in self.towers.iter().enumerate() {
            v.child(&format!("tower{i}"), t);
        }
    }
    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("bottom", &mut self.bottom);
        for (i, t) in self.towers.iter_mut().enumerate() {
            v.child(&format!("tower{i}"), t);
        }
    }
}

impl RankingModel for DenseMtl {
    fn tasks(&self) -> &[String] {
        &self.tasks
    }
    fn forward<'t>(
        &self,
        tape: &'t Tape,
        batch: &ModelBatch,
        ctx: &mut ForwardCtx<'_>,
    ) -> ModelOutput<'t> {
        let x = tape.constant(batch.features.clone().into_dyn());
        let h = self.bottom.forward(x, ctx);
        let logits: Vec<Var<'t>> = self.towers.iter().map(|t| t.forward(h)).collect();
        ModelOutput {
            logits: Var::concat(&logits, 1),
            gate_weights: None,
        }
    }
}

/// `n` lines with 3 features; "a" = 1[x0 + x1 > 0], "b" = 1[x2 > 0] (or null when
/// `mask_b`); ts increasing; request = every 4 lines.
pub fn learnable_records(n: usize, seed: u64, mask_b: bool) -> Vec<EngagementRecord> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let x: Vec<f64> = (0..3).map(|_| rng.random_range(-1.0..1.0)).collect();
            let a = u8::from(x[0] + x[1] > 0.0);
            let b = if mask_b {
                serde_json::Value::Null
            } else {
                serde_json::json!(u8::from(x[2] > 0.0))
            };
            serde_json::from_value(serde_json::json!({
                "user": i % 7, "ts": 1000 + i, "request": format!("r{}", i / 4),
                "features": x, "labels": {"a": a, "b": b}
            }))
            .unwrap()
        })
        .collect()
}

pub fn dataset(records: Vec<EngagementRecord>) -> EngagementDataset {
    EngagementDataset::from_records_training("mem", records, &ReadOptions::default()).unwrap()
}
