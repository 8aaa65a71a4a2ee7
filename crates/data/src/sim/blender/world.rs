//! [`BlenderWorld`]: sampling, logging and exact evaluation of the blender world.

use super::{BlenderBaselines, BlenderConfig, BlenderRequest};
use crate::record::BlenderRecord;
use crate::sim::util::{cumulative, normal, sample_cdf, sigmoid};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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
        let shares: Vec<f64> = cumulative(cfg.segments.iter().map(|s| s.share));
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

    /// The best weights that ignore the features: the prior mean utility `Σ_g share_g u_g`.
    pub fn best_fixed_weights(&self) -> Vec<f64> {
        let total: f64 = self.config.segments.iter().map(|s| s.share).sum();
        let mut w = vec![0.0; self.config.objectives.len()];
        for (g, s) in self.config.segments.iter().enumerate() {
            let u = self.utility_weights(g);
            w.iter_mut()
                .zip(u)
                .for_each(|(w, u)| *w += s.share / total * u);
        }
        w
    }

    /// Production, best fixed, feature-only oracle, oracle and random-choice mean expected
    /// rewards over `requests`.
    pub fn baselines(&self, requests: &[BlenderRequest]) -> BlenderBaselines {
        let n = requests.len().max(1) as f64;
        let s = &self.config.production_weights;
        let fixed = self.best_fixed_weights();
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
            best_fixed: self.mean_expected_reward(requests, |_| fixed.clone()),
            posterior_oracle: self.mean_expected_reward(requests, |x| self.posterior_weights(x)),
            oracle: requests.iter().map(|r| self.oracle_reward(r)).sum::<f64>() / n,
            random: random / n,
        }
    }
}
