//! Multi-gate mixture of experts (Ma et al., KDD 2018) with residual experts, as in Pinterest's
//! closeup model; with one shared gate it is the OMoE baseline.
//!
//! For an input `x` (`[B, in]`): `num_experts` expert MLPs `hᵢ(x)` (ReLU, dropout), each expert's
//! output concatenated with `x` ("like ResNet", when `residual`); per task `t` a softmax gate
//! `g_t = softmax(W_t x + b_t)` over the experts, the mixture `Σᵢ g_t,ᵢ [hᵢ(x) ⊕ x]`, and a tower
//! MLP → one logit.
//!
//! Two exact rewrites keep this cheap:
//! - Because a gate sums to 1, `Σᵢ gᵢ [hᵢ ⊕ x] = [Σᵢ gᵢ hᵢ] ⊕ x`: the input is concatenated once
//!   per task after mixing instead of once per expert.
//! - All experts' first layers run as **one wide matmul** `x · [W₁⁰; …; W₁^{E-1}]ᵀ` (the weights
//!   stacked on the tape, names unchanged: `experts.{i}.layers.0.weight`); deeper layers run per
//!   expert on their slice. Tests check this against the experts' own `Mlp::forward`.
//!
//! Gate dropout (YouTube, Zhao et al. RecSys 2019, against gate polarization): in training each
//! expert is dropped from each example's gate with probability `gate_dropout` (at least one is
//! always kept) and the softmax renormalizes over the remaining ones.

use crate::config::MmoeConfig;
use closeup_autograd::{LinearAct, ParamVisitor, ParamVisitorMut, Parameterized, Tensor, Var};
use closeup_layers::{Activation, Dropout, ForwardCtx, Linear, Mlp};
use ndarray::{Array2, Axis, IxDyn};
use rand::Rng;

/// The multi-task part of a model's forward pass.
#[derive(Debug)]
pub struct HeadOutput<'t> {
    /// One logit per example and task, `[B, T]`.
    pub logits: Var<'t>,
    /// Gate weights `[T, B, E]` (detached), for gated heads.
    pub gate_weights: Option<Tensor>,
}

/// The tower of one task: `tower_hidden` ReLU layers, then one logit.
pub(crate) fn tower(inputs: usize, cfg: &MmoeConfig, rng: &mut impl Rng) -> Mlp {
    Mlp::new(
        inputs,
        &cfg.tower_hidden,
        Some(1),
        Activation::Relu,
        cfg.tower_dropout,
        rng,
    )
}

/// Runs every tower on its own input and concatenates the logits to `[B, T]`.
pub(crate) fn run_towers<'t>(
    towers: &[Mlp],
    inputs: impl IntoIterator<Item = Var<'t>>,
    ctx: &mut ForwardCtx<'_>,
) -> Var<'t> {
    let logits: Vec<Var<'t>> = towers
        .iter()
        .zip(inputs)
        .map(|(t, x)| t.forward(x, ctx))
        .collect();
    if logits.len() == 1 {
        logits[0]
    } else {
        Var::concat(&logits, 1)
    }
}

/// MMoE (one gate per task) or OMoE (one gate shared by all tasks), with residual experts.
///
/// Parameter names: `experts.{i}.layers.{j}.*`, `gates.{t}.*` (only `gates.0` for OMoE),
/// `towers.{t}.layers.{j}.*`.
#[derive(Debug, Clone)]
pub struct Mmoe {
    experts: Vec<Mlp>,
    gates: Vec<Linear>,
    towers: Vec<Mlp>,
    residual: bool,
    expert_dropout: Dropout,
    gate_dropout: f32,
    num_tasks: usize,
}

impl Mmoe {
    /// An MMoE over `inputs` features for `num_tasks` tasks; `shared_gate` makes it an OMoE.
    ///
    /// # Panics
    /// If the config is invalid (see [`crate::ModelConfig::validate`]) or `num_tasks` is 0.
    pub fn new(
        inputs: usize,
        num_tasks: usize,
        cfg: &MmoeConfig,
        shared_gate: bool,
        rng: &mut impl Rng,
    ) -> Self {
        assert!(num_tasks > 0, "Mmoe::new: no task");
        let experts: Vec<Mlp> = (0..cfg.num_experts)
            .map(|_| {
                Mlp::new(
                    inputs,
                    &cfg.expert_hidden,
                    None,
                    Activation::Relu,
                    cfg.expert_dropout,
                    rng,
                )
            })
            .collect();
        let num_gates = if shared_gate { 1 } else { num_tasks };
        let gates = (0..num_gates)
            .map(|_| Linear::new(inputs, cfg.num_experts, rng))
            .collect();
        let out = Self::output_width(inputs, cfg);
        let towers = (0..num_tasks).map(|_| tower(out, cfg, rng)).collect();
        Mmoe {
            experts,
            gates,
            towers,
            residual: cfg.residual,
            expert_dropout: Dropout::new(cfg.expert_dropout),
            gate_dropout: cfg.gate_dropout,
            num_tasks,
        }
    }

    /// Width of an expert's output as the towers see it: the last expert hidden size, plus the
    /// input width with the residual concatenation.
    pub fn output_width(inputs: usize, cfg: &MmoeConfig) -> usize {
        cfg.expert_hidden.last().copied().unwrap_or(inputs) + if cfg.residual { inputs } else { 0 }
    }

    /// Number of experts.
    pub fn num_experts(&self) -> usize {
        self.experts.len()
    }

    /// Number of tasks (towers).
    pub fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    /// Whether one gate is shared by every task (OMoE).
    pub fn shared_gate(&self) -> bool {
        self.gates.len() == 1 && self.num_tasks > 1
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.gates[0].inputs()
    }

    /// The expert MLPs.
    pub fn experts(&self) -> &[Mlp] {
        &self.experts
    }

    /// Every expert's output (without the residual input), `[B, E, H]`: the first layers as
    /// one wide matmul, deeper layers per expert.
    fn expert_outputs<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> Var<'t> {
        let tape = x.tape();
        let first: Vec<&Linear> = self.experts.iter().map(|e| &e.layers()[0]).collect();
        let h1 = first[0].outputs();
        let stack = |f: &dyn Fn(&Linear) -> Var<'t>| {
            let parts: Vec<Var<'t>> = first.iter().map(|l| f(l)).collect();
            if parts.len() == 1 {
                parts[0]
            } else {
                Var::concat(&parts, 0)
            }
        };
        let w = stack(&|l| tape.param(l.weight()));
        let b = stack(&|l| tape.param(l.bias().expect("expert layers have biases")));
        // ReLU and the expert dropout fused into the wide product (same values and draws as
        // the dropout layer after it).
        let p = self.expert_dropout.p();
        let wide = if ctx.is_training() && p > 0.0 {
            let mut rng = ctx.rng();
            x.linear_dropout(w, Some(b), LinearAct::Relu, p, &mut rng)
        } else {
            x.linear(w, Some(b), LinearAct::Relu)
        };
        let outs: Vec<Var<'t>> = self
            .experts
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut h = wide.narrow(1, i * h1, h1);
                for layer in &e.layers()[1..] {
                    let dropout = Some((&self.expert_dropout, &mut *ctx));
                    h = layer.forward_act_dropout(h, Activation::Relu, dropout);
                }
                h.unsqueeze(1)
            })
            .collect();
        if outs.len() == 1 {
            outs[0]
        } else {
            Var::concat(&outs, 1)
        }
    }

    /// The gate of one gate index, `[B, E]`, with gate dropout in training.
    fn gate<'t>(&self, g: usize, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> Var<'t> {
        let logits = self.gates[g].forward(x);
        if !(ctx.is_training() && self.gate_dropout > 0.0) {
            return logits.softmax(1);
        }
        let (batch, e) = (x.shape()[0], self.num_experts());
        let rng = ctx.rng();
        let mut keep =
            Array2::from_shape_simple_fn((batch, e), || rng.random::<f32>() >= self.gate_dropout);
        for mut row in keep.rows_mut() {
            if !row.iter().any(|&k| k) {
                row.fill(true);
            }
        }
        logits.masked_softmax(&keep.into_dyn())
    }

    /// Runs the experts, gates and towers.
    ///
    /// # Shapes
    /// `x: [B, in]` → `logits: [B, T]`, `gate_weights: [T, B, E]`.
    ///
    /// # Panics
    /// If `x` is not `[B, in]`.
    pub fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> HeadOutput<'t> {
        let shape = x.shape();
        assert!(
            shape.len() == 2 && shape[1] == self.inputs(),
            "Mmoe::forward: input shape {shape:?} is not [batch, {}]",
            self.inputs()
        );
        let batch = shape[0];
        let experts = self.expert_outputs(x, ctx); // [B, E, H]
        let h = experts.shape()[2];
        let gates: Vec<Var<'t>> = (0..self.gates.len())
            .map(|g| self.gate(g, x, ctx))
            .collect();
        let mixed: Vec<Var<'t>> = (0..self.num_tasks)
            .map(|t| {
                let g = gates[t.min(gates.len() - 1)];
                let m = g.unsqueeze(1).matmul(experts).reshape(&[batch, h]);
                if self.residual {
                    Var::concat(&[m, x], 1)
                } else {
                    m
                }
            })
            .collect();
        let logits = run_towers(&self.towers, mixed, ctx);
        let e = self.num_experts();
        let mut weights = Tensor::zeros(IxDyn(&[self.num_tasks, batch, e]));
        for t in 0..self.num_tasks {
            let g = gates[t.min(gates.len() - 1)].value();
            weights.index_axis_mut(Axis(0), t).assign(&*g);
        }
        HeadOutput {
            logits,
            gate_weights: Some(weights),
        }
    }
}

impl Parameterized for Mmoe {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("experts", &self.experts);
        v.child("gates", &self.gates);
        v.child("towers", &self.towers);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("experts", &mut self.experts);
        v.child("gates", &mut self.gates);
        v.child("towers", &mut self.towers);
    }
}

#[path = "mmoe_split.rs"]
mod split;
pub use split::{SplitHead, SplitInput, join_split};

#[cfg(test)]
#[path = "mmoe_tests.rs"]
mod tests;
