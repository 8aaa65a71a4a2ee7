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
//!   closes up readily (also on repin-worthy pins), the *saver* segment's closeups follow repin
//!   appeal.
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
//! `Σ_g P(g | x) u_g` ([`BlenderWorld::posterior_weights`]), which lies between production and
//! the oracle.

use super::util::{normal, sample_cdf, sigmoid};
use crate::record::BlenderRecord;
use rand::{Rng, SeedableRng};
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
            exploration_std: 0.3,
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
                segment("closeup_lover", 0.3, [0.2, 0.0, 0.8, 0.0], 0.9, 0.01, 0.05),
                segment("saver", 0.3, [0.6, 0.0, 0.2, 0.0], 0.6, 0.02, 0.15),
            ],
            num_logged_requests: 20_000,
            num_eval_requests: 5_000,
        }
    }
}

impl BlenderConfig {
    fn validate(&self) {
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
    /// The Bayes-optimal feature-only policy, [`BlenderWorld::posterior_weights`].
    pub posterior_oracle: f64,
    /// The per-request best candidate (segment known), [`BlenderWorld::oracle_reward`].
    pub oracle: f64,
    /// Uniformly random choice among the candidates.
    pub random: f64,
}

/// A blender world: the configuration and the segment centres drawn from its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlenderWorld {
    /// The configuration.
    pub config: BlenderConfig,
    /// Segment centres `μ_g` of the request features.
    pub centers: Vec<Vec<f64>>,
}

impl BlenderWorld {
    /// Builds a world (draws the segment centres) from `seed`.
    ///
    /// # Panics
    /// If the config is inconsistent (vector lengths that do not match the objectives, event
    /// probabilities that could leave [0, 1], non-positive shares or feature noise).
    pub fn new(config: BlenderConfig, seed: u64) -> Self {
        config.validate();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers = config
            .segments
            .iter()
            .map(|_| {
                (0..config.num_features)
                    .map(|_| config.segment_separation * normal(&mut rng))
                    .collect()
            })
            .collect();
        BlenderWorld { config, centers }
    }

    /// Draws `n` requests, with ids `b<first_index>`, `b<first_index + 1>`, ...
    pub fn sample_requests<R: Rng + ?Sized>(
        &self,
        n: usize,
        first_index: usize,
        rng: &mut R,
    ) -> Vec<BlenderRequest> {
        let cfg = &self.config;
        let shares: Vec<f64> = super::util::cumulative(cfg.segments.iter().map(|s| s.share));
        (0..n)
            .map(|j| {
                let segment = sample_cdf(rng, &shares);
                let features = self.centers[segment]
                    .iter()
                    .map(|&m| m + cfg.feature_noise * normal(rng))
                    .collect();
                let latents = cfg.candidate_loadings[0].len();
                let candidates = (0..cfg.num_candidates)
                    .map(|_| {
                        let z: Vec<f64> = (0..latents).map(|_| normal(rng)).collect();
                        (0..cfg.objectives.len())
                            .map(|i| {
                                sigmoid(
                                    cfg.candidate_bias[i]
                                        + cfg.candidate_loadings[i]
                                            .iter()
                                            .zip(&z)
                                            .map(|(l, z)| l * z)
                                            .sum::<f64>(),
                                )
                            })
                            .collect()
                    })
                    .collect();
                BlenderRequest {
                    id: format!("b{}", first_index + j),
                    segment,
                    features,
                    candidates,
                }
            })
            .collect()
    }

    /// The candidate shown under weights `w`: the first maximiser of `w · p_k`.
    ///
    /// # Panics
    /// If `w` does not have one entry per objective.
    pub fn shown(&self, request: &BlenderRequest, w: &[f64]) -> usize {
        assert_eq!(
            w.len(),
            self.config.objectives.len(),
            "one weight per objective is needed"
        );
        let score = |p: &Vec<f64>| p.iter().zip(w).map(|(p, w)| p * w).sum::<f64>();
        let mut best = 0;
        let mut best_score = score(&request.candidates[0]);
        for (k, p) in request.candidates.iter().enumerate().skip(1) {
            let s = score(p);
            if s > best_score {
                best = k;
                best_score = s;
            }
        }
        best
    }

    /// `(event, probability)` for each event the request's segment can give when candidate
    /// `shown` is shown.
    pub fn event_probabilities(&self, request: &BlenderRequest, shown: usize) -> Vec<(&str, f64)> {
        let p = &request.candidates[shown];
        self.config.segments[request.segment]
            .events
            .iter()
            .map(|e| {
                (
                    e.event.as_str(),
                    e.base + e.coef.iter().zip(p).map(|(c, p)| c * p).sum::<f64>(),
                )
            })
            .collect()
    }

    fn candidate_value(&self, request: &BlenderRequest, k: usize) -> f64 {
        self.event_probabilities(request, k)
            .iter()
            .map(|(e, p)| self.reward_of(e) * p)
            .sum()
    }

    fn reward_of(&self, event: &str) -> f64 {
        self.config.rewards.get(event).copied().unwrap_or(0.0)
    }

    /// The reward of a feedback list under the config's reward map.
    pub fn reward(&self, feedback: &[String]) -> f64 {
        feedback.iter().map(|e| self.reward_of(e)).sum()
    }

    /// Exact `E[R | request, w]`: the expected reward of the candidate shown under `w`.
    pub fn expected_reward(&self, request: &BlenderRequest, w: &[f64]) -> f64 {
        self.candidate_value(request, self.shown(request, w))
    }

    /// The best achievable expected reward of the request: its best candidate's value.
    pub fn oracle_reward(&self, request: &BlenderRequest) -> f64 {
        (0..request.candidates.len())
            .map(|k| self.candidate_value(request, k))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The utility weights `u_g` of a segment: ranking by them maximises its expected reward.
    pub fn utility_weights(&self, segment: usize) -> Vec<f64> {
        let mut u = vec![0.0; self.config.objectives.len()];
        for e in &self.config.segments[segment].events {
            let r = self.reward_of(&e.event);
            u.iter_mut().zip(&e.coef).for_each(|(u, c)| *u += r * c);
        }
        u
    }

    /// Weights that reach [`BlenderWorld::oracle_reward`] on this request (its segment's
    /// utility weights; they need the hidden segment, so no feature-only policy has them).
    pub fn oracle_weights(&self, request: &BlenderRequest) -> Vec<f64> {
        self.utility_weights(request.segment)
    }

    /// The exact segment posterior `P(g | x)`.
    pub fn posterior(&self, features: &[f64]) -> Vec<f64> {
        let var = self.config.feature_noise * self.config.feature_noise;
        let logits: Vec<f64> = self
            .config
            .segments
            .iter()
            .zip(&self.centers)
            .map(|(s, mu)| {
                s.share.ln()
                    - mu.iter()
                        .zip(features)
                        .map(|(m, x)| (x - m) * (x - m))
                        .sum::<f64>()
                        / (2.0 * var)
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        exp.into_iter().map(|e| e / total).collect()
    }

    /// The Bayes-optimal weights given only the features: `Σ_g P(g | x) u_g`.
    pub fn posterior_weights(&self, features: &[f64]) -> Vec<f64> {
        let mut w = vec![0.0; self.config.objectives.len()];
        for (g, pg) in self.posterior(features).into_iter().enumerate() {
            w.iter_mut()
                .zip(self.utility_weights(g))
                .for_each(|(w, u)| *w += pg * u);
        }
        w
    }

    /// Draws the feedback events of the request when ranked with `w`.
    pub fn sample_feedback<R: Rng + ?Sized>(
        &self,
        request: &BlenderRequest,
        w: &[f64],
        rng: &mut R,
    ) -> Vec<String> {
        let shown = self.shown(request, w);
        self.event_probabilities(request, shown)
            .into_iter()
            .filter(|&(_, p)| rng.random::<f64>() < p)
            .map(|(e, _)| e.to_string())
            .collect()
    }

    /// Logs one request of the randomized slice: `r = s + N(0, exploration_std²)`, then the
    /// feedback to the candidate shown under `r`.
    pub fn log_request<R: Rng + ?Sized>(
        &self,
        request: &BlenderRequest,
        rng: &mut R,
    ) -> BlenderRecord {
        let cfg = &self.config;
        let blend: Vec<f64> = cfg
            .production_weights
            .iter()
            .map(|s| s + cfg.exploration_std * normal(rng))
            .collect();
        let feedback = self.sample_feedback(request, &blend, rng);
        BlenderRecord {
            request: Some(request.id.clone()),
            features: request.features.clone(),
            blend,
            feedback,
        }
    }

    /// Mean exact expected reward of a feature-only policy `x ↦ w` over `requests`
    /// (0 for no requests).
    pub fn mean_expected_reward<F: FnMut(&[f64]) -> Vec<f64>>(
        &self,
        requests: &[BlenderRequest],
        mut policy: F,
    ) -> f64 {
        let total: f64 = requests
            .iter()
            .map(|r| self.expected_reward(r, &policy(&r.features)))
            .sum();
        total / requests.len().max(1) as f64
    }

    /// Mean exact expected reward with one weight vector per request.
    ///
    /// # Panics
    /// If `weights` does not have one row per request.
    pub fn mean_expected_reward_weights(
        &self,
        requests: &[BlenderRequest],
        weights: &[Vec<f64>],
    ) -> f64 {
        assert_eq!(
            requests.len(),
            weights.len(),
            "one weight vector per request is needed"
        );
        let total: f64 = requests
            .iter()
            .zip(weights)
            .map(|(r, w)| self.expected_reward(r, w))
            .sum();
        total / requests.len().max(1) as f64
    }

    /// Production, feature-only oracle, oracle and random-choice mean expected rewards.
    pub fn baselines(&self, requests: &[BlenderRequest]) -> BlenderBaselines {
        let n = requests.len().max(1) as f64;
        let s = &self.config.production_weights;
        let random = requests
            .iter()
            .map(|r| {
                (0..r.candidates.len())
                    .map(|k| self.candidate_value(r, k))
                    .sum::<f64>()
                    / r.candidates.len() as f64
            })
            .sum::<f64>();
        BlenderBaselines {
            production: self.mean_expected_reward(requests, |_| s.clone()),
            posterior_oracle: self.mean_expected_reward(requests, |x| self.posterior_weights(x)),
            oracle: requests.iter().map(|r| self.oracle_reward(r)).sum::<f64>() / n,
            random: random / n,
        }
    }
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
