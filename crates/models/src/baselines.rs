//! The baselines the MMoE is compared against (SPEC §2.3): shared-bottom and single-task.
//! (The OMoE baseline is [`crate::Mmoe`] with one shared gate.)

use crate::config::MmoeConfig;
use crate::mmoe::{HeadOutput, run_towers, tower};
use closeup_autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Var};
use closeup_layers::{Activation, ForwardCtx, Mlp};
use rand::Rng;

/// Parameters of an MLP with biases through `hidden` sizes (no output layer).
pub fn mlp_params(inputs: usize, hidden: &[usize]) -> usize {
    let mut prev = inputs;
    let mut n = 0;
    for &h in hidden {
        n += prev * h + h;
        prev = h;
    }
    n
}

/// Hidden sizes for a shared bottom with about as many parameters as all `num_experts` experts
/// together: `expert_hidden` scaled by one common factor (found by bisection). With the
/// reference configuration (224 inputs, 8 × [256, 256]) this is `[887, 887]`.
pub fn comparable_bottom_hidden(inputs: usize, cfg: &MmoeConfig) -> Vec<usize> {
    let target = cfg.num_experts * mlp_params(inputs, &cfg.expert_hidden);
    let scaled = |s: f64| -> Vec<usize> {
        cfg.expert_hidden
            .iter()
            .map(|&h| ((h as f64 * s).round() as usize).max(1))
            .collect()
    };
    let (mut lo, mut hi) = (0.0_f64, cfg.num_experts.max(1) as f64 + 1.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if mlp_params(inputs, &scaled(mid)) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The closer of the two neighbours.
    let (a, b) = (scaled(lo), scaled(hi));
    let dist = |h: &[usize]| mlp_params(inputs, h).abs_diff(target);
    if dist(&a) <= dist(&b) { a } else { b }
}

/// Runs `bottom` on `x`, concatenating `x` to its output when `residual`.
fn bottom_forward<'t>(
    bottom: &Mlp,
    x: Var<'t>,
    residual: bool,
    ctx: &mut ForwardCtx<'_>,
) -> Var<'t> {
    let h = bottom.forward(x, ctx);
    if residual { Var::concat(&[h, x], 1) } else { h }
}

/// Shared-bottom: one MLP shared by every task (ReLU, `expert_dropout`, residual concat as the
/// experts), then one tower per task.
///
/// Parameter names: `bottom.layers.{j}.*`, `towers.{t}.layers.{j}.*`.
#[derive(Debug, Clone)]
pub struct SharedBottom {
    bottom: Mlp,
    towers: Vec<Mlp>,
    residual: bool,
}

impl SharedBottom {
    /// A shared bottom with the given hidden sizes (see [`comparable_bottom_hidden`]).
    ///
    /// # Panics
    /// If `hidden` is empty or `num_tasks` is 0.
    pub fn new(
        inputs: usize,
        num_tasks: usize,
        hidden: &[usize],
        cfg: &MmoeConfig,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(
            !hidden.is_empty() && num_tasks > 0,
            "SharedBottom::new: empty bottom or no task"
        );
        let bottom = Mlp::new(
            inputs,
            hidden,
            None,
            Activation::Relu,
            cfg.expert_dropout,
            rng,
        );
        let out = hidden[hidden.len() - 1] + if cfg.residual { inputs } else { 0 };
        let towers = (0..num_tasks).map(|_| tower(out, cfg, rng)).collect();
        SharedBottom {
            bottom,
            towers,
            residual: cfg.residual,
        }
    }

    /// The shared MLP.
    pub fn bottom(&self) -> &Mlp {
        &self.bottom
    }

    /// # Shapes
    /// `x: [B, in]` → `logits: [B, T]`, no gate weights.
    ///
    /// # Panics
    /// If `x` is not `[B, in]`.
    pub fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> HeadOutput<'t> {
        let h = bottom_forward(&self.bottom, x, self.residual, ctx);
        HeadOutput {
            logits: run_towers(&self.towers, std::iter::repeat_n(h, self.towers.len()), ctx),
            gate_weights: None,
        }
    }
}

impl Parameterized for SharedBottom {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("bottom", &self.bottom);
        v.child("towers", &self.towers);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("bottom", &mut self.bottom);
        v.child("towers", &mut self.towers);
    }
}

/// Single-task: per task an independent bottom (one expert-sized MLP: `expert_hidden`, ReLU,
/// `expert_dropout`, residual concat) and tower — nothing shared above the model input. (The
/// sequence encoder and embeddings below the input stay shared, so the models differ only in
/// the multi-task part; train separate `CloseupModel`s for fully independent models.)
///
/// Parameter names: `bottoms.{t}.layers.{j}.*`, `towers.{t}.layers.{j}.*`.
#[derive(Debug, Clone)]
pub struct SingleTask {
    bottoms: Vec<Mlp>,
    towers: Vec<Mlp>,
    residual: bool,
}

impl SingleTask {
    /// One bottom + tower per task.
    ///
    /// # Panics
    /// If `num_tasks` is 0 or the config is invalid.
    pub fn new(inputs: usize, num_tasks: usize, cfg: &MmoeConfig, rng: &mut impl Rng) -> Self {
        assert!(num_tasks > 0, "SingleTask::new: no task");
        let out = crate::Mmoe::output_width(inputs, cfg);
        let mut bottoms = Vec::with_capacity(num_tasks);
        let mut towers = Vec::with_capacity(num_tasks);
        for _ in 0..num_tasks {
            bottoms.push(Mlp::new(
                inputs,
                &cfg.expert_hidden,
                None,
                Activation::Relu,
                cfg.expert_dropout,
                rng,
            ));
            towers.push(tower(out, cfg, rng));
        }
        SingleTask {
            bottoms,
            towers,
            residual: cfg.residual,
        }
    }

    /// # Shapes
    /// `x: [B, in]` → `logits: [B, T]`, no gate weights.
    ///
    /// # Panics
    /// If `x` is not `[B, in]`.
    pub fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> HeadOutput<'t> {
        let hs: Vec<Var<'t>> = self
            .bottoms
            .iter()
            .map(|b| bottom_forward(b, x, self.residual, ctx))
            .collect();
        HeadOutput {
            logits: run_towers(&self.towers, hs, ctx),
            gate_weights: None,
        }
    }
}

impl Parameterized for SingleTask {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("bottoms", &self.bottoms);
        v.child("towers", &self.towers);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("bottoms", &mut self.bottoms);
        v.child("towers", &mut self.towers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::Tape;
    use closeup_autograd::gradcheck::{assert_gradients, randn};
    use rand::SeedableRng;

    fn cfg() -> MmoeConfig {
        MmoeConfig {
            num_experts: 4,
            expert_hidden: vec![6],
            tower_hidden: vec![3],
            ..MmoeConfig::default()
        }
    }

    #[test]
    fn comparable_sizes() {
        let h = comparable_bottom_hidden(224, &MmoeConfig::default());
        assert_eq!(h, [887, 887]);
        let target = 8 * mlp_params(224, &[256, 256]);
        assert!(mlp_params(224, &h).abs_diff(target) < target / 100);
        assert_eq!(comparable_bottom_hidden(5, &cfg()), [24]); // 4·(5·6 + 6) = 144 = 5·24 + 24
    }

    #[test]
    fn shapes_counts_and_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let sb = SharedBottom::new(5, 3, &[7], &cfg(), &mut rng);
        let st = SingleTask::new(5, 3, &cfg(), &mut rng);
        assert_eq!(sb.num_params(), 5 * 7 + 7 + 3 * ((7 + 5) * 3 + 3 + 3 + 1));
        assert_eq!(st.num_params(), 3 * (5 * 6 + 6 + (6 + 5) * 3 + 3 + 3 + 1));
        let names: Vec<_> = st.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "bottoms.0.layers.0.weight");
        let tape = Tape::no_grad();
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut ctx = ForwardCtx::eval(&mut r);
        let x = tape.constant(randn(&[4, 5], 1));
        for out in [sb.forward(x, &mut ctx), st.forward(x, &mut ctx)] {
            assert_eq!(out.logits.shape(), [4, 3]);
            assert!(out.gate_weights.is_none());
        }
        assert_gradients(&[randn(&[4, 5], 2)], move |_, v| {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let mut ctx = ForwardCtx::train(&mut r);
            let a = sb.forward(v[0], &mut ctx).logits;
            let b = st.forward(v[0], &mut ctx).logits;
            Var::concat(&[a, b], 1)
        });
    }
}
