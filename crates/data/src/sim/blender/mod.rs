//! The blender world (SPEC §2.5): requests whose best blending weights depend on a hidden user
//! segment that the request features only partly reveal.
//!
//! # Generative model
//!
//! * **Segments.** Each request belongs to one hidden segment `g` drawn with probability
//!   `share_g`. Its features are `x = μ_g + feature_noise · N(0, I_d)`, with segment centres
//!   `μ_g = segment_separation · N(0, I_d)` drawn once per world — `x` reveals the segment
//!   only partly ([`BlenderWorld::posterior`] is the exact `P(g | x)`).
//! * **Candidates.** Each request has `num_candidates` candidates; candidate `k` has latent
//!   `z_k ~ N(0, I_L)` and per-objective probabilities (the ranking model's predictions)
//!   `p_{k,i} = σ(candidate_bias_i + candidate_loadings_i · z_k)`. With the default latents
//!   (appeal, click-bait, quality), click-bait raises click and lowers long_click and repin.
//! * **Ranking.** A policy gives a weight vector `w` per request; the single top candidate
//!   `k* = argmax_k Σ_i w_i p_{k,i}` is shown (the first on ties; a slate of one, so the
//!   expectation is exact and simple).
//! * **Feedback.** The segment responds to the shown candidate with independent events: event
//!   `e` fires with probability `base_{g,e} + Σ_i coef_{g,e,i} p_{k*,i}`, linear in `p` and
//!   in `[0, 1]` by construction (coefficients ≥ 0, `base + Σ coef ≤ 1`). Defaults: the
//!   *clickbait_averse* segment hides click-heavy candidates, the *closeup_lover* segment
//!   closes up on anything eye-catching, click-bait included (so the two disagree on the click
//!   weight), the *saver* segment's closeups follow repin appeal.
//! * **Reward.** `R = Σ_e reward(e)` over the fired events (default closeup = +1, hide = −2).
//!   Because the event probabilities are linear in `p`, candidate `k`'s expected reward in
//!   segment `g` is `V_g(k) = const_g + u_g · p_k` with the segment's *utility weights*
//!   `u_g,i = Σ_e reward(e) · coef_{g,e,i}`.
//! * **Logging.** Blend weights are randomized per request, `r = s + N(0, exploration_std²)`
//!   around the production weights `s`; the log holds `(x, r, feedback)` as a
//!   [`BlenderRecord`].
//!
//! Evaluation is exact: `E[R | request, w] = V_g(k*(w))`. The **oracle** is the best
//! candidate's `max_k V_g(k)`, reached by ranking with `u_g` ([`BlenderWorld::oracle_weights`]).
//! The best any feature-only policy `f(x)` can do is ranking with the posterior mean utility
//! `Σ_g P(g | x) u_g` ([`BlenderWorld::posterior_weights`]): for fixed `x` the candidates do not
//! depend on the segment, so `E[R | x, w] = E_cands[Σ_g P(g | x) V_g(k*(w))]`, maximised for
//! every candidate set at once by ranking with the posterior mean utility. Likewise the best
//! *fixed* weights are the prior mean utility `Σ_g share_g u_g`
//! ([`BlenderWorld::best_fixed_weights`]). In expectation: production ≤ best fixed ≤
//! posterior oracle ≤ oracle.

mod world;

pub use world::BlenderWorld;

use crate::record::BlenderRecord;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One feedback event type of a segment: fires with probability `base + coef · p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventResponse {
    /// The event name written to the log's `feedback` (e.g. `"closeup"`, `"hide"`).
    pub event: String,
    /// Probability of the event regardless of the candidate.
    pub base: f64,
    /// Per-objective coefficients (≥ 0), one per objective.
    pub coef: Vec<f64>,
}

/// How one hidden user segment responds to the shown candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentResponse {
    /// A descriptive name.
    pub name: String,
    /// Relative frequency of the segment among requests.
    pub share: f64,
    /// The events the segment can give.
    pub events: Vec<EventResponse>,
}

/// Knobs of the blender world; every field has a default (`#[serde(default)]`). The defaults
/// describe 4 objectives; with another objective list, the candidate model, production weights
/// and segment coefficients must be given for it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlenderConfig {
    /// Objective names, in the order of `blend` and of every per-objective vector.
    pub objectives: Vec<String>,
    /// Candidates per request.
    pub num_candidates: usize,
    /// Dimension of the request features `x`.
    pub num_features: usize,
    /// Std of `x` around its segment centre.
    pub feature_noise: f64,
    /// Std of the segment centres.
    pub segment_separation: f64,
    /// Production blend weights `s`.
    pub production_weights: Vec<f64>,
    /// Std of the Gaussian exploration around `s` in the logged slice.
    pub exploration_std: f64,
    /// Reward per feedback event; events not listed are worth 0.
    pub rewards: BTreeMap<String, f64>,
    /// Per-objective bias of the candidate probabilities' logits.
    pub candidate_bias: Vec<f64>,
    /// Per-objective loadings on the candidate latents (all rows the same length).
    pub candidate_loadings: Vec<Vec<f64>>,
    /// The hidden segments.
    pub segments: Vec<SegmentResponse>,
    /// Logged requests made by [`simulate_blender`].
    pub num_logged_requests: usize,
    /// Held-out evaluation requests made by [`simulate_blender`].
    pub num_eval_requests: usize,
}

fn event(name: &str, base: f64, coef: [f64; 4]) -> EventResponse {
    EventResponse {
        event: name.into(),
        base,
        coef: coef.to_vec(),
    }
}

impl Default for BlenderConfig {
    fn default() -> Self {
        let segment = |name: &str, share, closeup, click, hide_base, hide| SegmentResponse {
            name: name.into(),
            share,
            events: vec![
                event("repin", 0.0, [0.9, 0.0, 0.0, 0.0]),
                event("click", 0.0, [0.0, click, 0.0, 0.0]),
                event("closeup", 0.0, closeup),
                event("long_click", 0.0, [0.0, 0.0, 0.0, 0.9]),
                event("hide", hide_base, [0.0, hide, 0.0, 0.0]),
            ],
        };
        BlenderConfig {
            objectives: ["repin", "click", "closeup", "long_click"]
                .map(String::from)
                .to_vec(),
            num_candidates: 10,
            num_features: 6,
            feature_noise: 1.0,
            segment_separation: 0.8,
            production_weights: vec![1.0, 0.4, 0.8, 0.1],
            exploration_std: 0.5,
            rewards: BTreeMap::from([("closeup".into(), 1.0), ("hide".into(), -2.0)]),
            candidate_bias: vec![-2.0, -1.5, -1.2, -2.5],
            candidate_loadings: vec![
                vec![0.8, -0.3, 0.6],
                vec![0.6, 1.2, 0.0],
                vec![0.7, 0.2, 0.6],
                vec![0.5, -0.8, 1.0],
            ],
            segments: vec![
                segment(
                    "clickbait_averse",
                    0.4,
                    [0.0, 0.0, 0.8, 0.0],
                    0.9,
                    0.01,
                    0.8,
                ),
                segment("closeup_lover", 0.3, [0.0, 0.5, 0.5, 0.0], 0.9, 0.01, 0.02),
                segment("saver", 0.3, [0.6, 0.0, 0.2, 0.0], 0.6, 0.02, 0.15),
            ],
            num_logged_requests: 20_000,
            num_eval_requests: 5_000,
        }
    }
}

impl BlenderConfig {
    pub(super) fn validate(&self) {
        let n = self.objectives.len();
        assert!(n > 0, "the blender world needs at least one objective");
        assert!(self.num_candidates > 0, "num_candidates must be > 0");
        assert_eq!(
            self.production_weights.len(),
            n,
            "production_weights needs one entry per objective"
        );
        assert_eq!(
            self.candidate_bias.len(),
            n,
            "candidate_bias needs one entry per objective"
        );
        assert_eq!(
            self.candidate_loadings.len(),
            n,
            "candidate_loadings needs one row per objective"
        );
        let latents = self.candidate_loadings[0].len();
        assert!(
            self.candidate_loadings.iter().all(|r| r.len() == latents),
            "candidate_loadings rows differ in length"
        );
        assert!(
            self.feature_noise > 0.0 && self.feature_noise.is_finite(),
            "feature_noise must be > 0"
        );
        assert!(
            self.exploration_std >= 0.0 && self.segment_separation >= 0.0,
            "stds must be >= 0"
        );
        assert!(
            !self.segments.is_empty(),
            "the blender world needs at least one segment"
        );
        for s in &self.segments {
            assert!(
                s.share > 0.0 && s.share.is_finite(),
                "segment {} needs a share > 0",
                s.name
            );
            for e in &s.events {
                assert_eq!(
                    e.coef.len(),
                    n,
                    "event {} of segment {} needs one coef per objective",
                    e.event,
                    s.name
                );
                let total = e.base + e.coef.iter().sum::<f64>();
                assert!(
                    e.base >= 0.0 && e.coef.iter().all(|&c| c >= 0.0) && total <= 1.0 + 1e-12,
                    "event {} of segment {}: base and coef must be >= 0 with base + Σ coef <= 1",
                    e.event,
                    s.name
                );
            }
        }
    }
}

/// One request: its hidden segment, its features and its candidates' objective probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlenderRequest {
    /// Request id (`"b<index>"`).
    pub id: String,
    /// The hidden segment (index into the config's segments).
    pub segment: usize,
    /// The features `x` a policy sees.
    pub features: Vec<f64>,
    /// `candidates[k][i]` = probability of objective `i` for candidate `k`.
    pub candidates: Vec<Vec<f64>>,
}

/// Mean expected reward of reference policies over a set of requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlenderBaselines {
    /// Fixed production weights `s` for every request.
    pub production: f64,
    /// The best fixed weights (same for every request), [`BlenderWorld::best_fixed_weights`].
    pub best_fixed: f64,
    /// The Bayes-optimal feature-only policy, [`BlenderWorld::posterior_weights`].
    pub posterior_oracle: f64,
    /// The per-request best candidate (segment known), [`BlenderWorld::oracle_reward`].
    pub oracle: f64,
    /// Uniformly random choice among the candidates.
    pub random: f64,
}

/// A blender world with a randomized log and held-out evaluation requests.
#[derive(Debug, Clone)]
pub struct SimulatedBlender {
    /// The world (for exact evaluation).
    pub world: BlenderWorld,
    /// The requests behind `logs` (same order).
    pub logged_requests: Vec<BlenderRequest>,
    /// The randomized log, one record per logged request.
    pub logs: Vec<BlenderRecord>,
    /// Held-out requests to evaluate policies on.
    pub eval_requests: Vec<BlenderRequest>,
}

/// Builds a world from `seed`, draws `num_logged_requests` requests and logs them with
/// randomized weights, and draws `num_eval_requests` evaluation requests. Deterministic by seed.
///
/// # Panics
/// As [`BlenderWorld::new`].
pub fn simulate_blender(config: &BlenderConfig, seed: u64) -> SimulatedBlender {
    let world = BlenderWorld::new(config.clone(), seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let logged_requests = world.sample_requests(config.num_logged_requests, 0, &mut rng);
    let logs = logged_requests
        .iter()
        .map(|r| world.log_request(r, &mut rng))
        .collect();
    let eval_requests = world.sample_requests(
        config.num_eval_requests,
        config.num_logged_requests,
        &mut rng,
    );
    SimulatedBlender {
        world,
        logged_requests,
        logs,
        eval_requests,
    }
}
