//! Settings of the blender: objectives, the network, the prior, the loss convention, the reward
//! map and training. Serializable to the resolved `config.toml` the CLI writes.

use crate::error::{BlenderError, Result};
use crate::reward::RewardMap;
use closeup_layers::Activation;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a request's reward `R` becomes the target `y` and weight of the logistic term
/// `weight · l(g(x, r), y)`; the post leaves both open. Every request counts in the mean over
/// requests (SPEC normalization), also one whose weight is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Convention {
    /// The post's objective taken literally: `y = 1` for every logged request, weight `R`.
    /// Positive `R` pushes `g` (so `rᵀf(x) + b`) up, negative `R` pushes it down. Because a
    /// negative weight on `−log σ(z)` rewards `z → −∞` without bound, the loss is unbounded
    /// below: only the Gaussian prior keeps `f` finite, and nothing keeps `b` finite when the
    /// mean reward is negative. The reward also has a component along `s` (`E[R]·s`), which
    /// rescales — and with a negative mean reward and a weak prior can flip — the weights.
    /// A request with `R = 0` has weight 0: it does not enter the data term at all.
    Post,
    /// A proper weighted logistic regression: `y = 1[R > 0]`, weight `|R|`. A positive reward
    /// is evidence for "good outcome" with strength `R`, a negative one evidence for "bad
    /// outcome" with strength `|R|`; a request with `R = 0` is a "not good" outcome (`y = 0`)
    /// of weight [`BlenderConfig::zero_reward_weight`] (default 1; 0 excludes such requests).
    /// The loss is bounded below (cross-entropy ≥ 0) and the bias `b` absorbs the base rate,
    /// so `f` only moves in directions of `r` that change the outcome.
    #[default]
    WellPosed,
}

impl Convention {
    /// Every convention, in a fixed order (for studies and help texts).
    pub const ALL: [Convention; 2] = [Convention::Post, Convention::WellPosed];

    /// The name used in configs and on the command line (`post`, `well-posed`).
    pub fn name(self) -> &'static str {
        match self {
            Convention::Post => "post",
            Convention::WellPosed => "well-posed",
        }
    }

    /// The targets `y` and weights of the logistic term for these rewards; `zero_weight` is
    /// the weight of an `R = 0` request under [`Convention::WellPosed`].
    ///
    /// ```
    /// use closeup_blender::Convention;
    /// let (y, w) = Convention::Post.targets(&[1.0, -2.0, 0.0], 1.0);
    /// assert_eq!((y, w), (vec![1.0, 1.0, 1.0], vec![1.0, -2.0, 0.0]));
    /// let (y, w) = Convention::WellPosed.targets(&[1.0, -2.0, 0.0], 1.0);
    /// assert_eq!((y, w), (vec![1.0, 0.0, 0.0], vec![1.0, 2.0, 1.0]));
    /// ```
    pub fn targets(self, rewards: &[f32], zero_weight: f32) -> (Vec<f32>, Vec<f32>) {
        match self {
            Convention::Post => (vec![1.0; rewards.len()], rewards.to_vec()),
            Convention::WellPosed => rewards
                .iter()
                .map(|&r| match r {
                    r if r > 0.0 => (1.0, r),
                    r if r < 0.0 => (0.0, -r),
                    _ => (0.0, zero_weight),
                })
                .unzip(),
        }
    }
}

impl fmt::Display for Convention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Convention {
    type Err = BlenderError;

    fn from_str(s: &str) -> Result<Self> {
        Convention::ALL
            .into_iter()
            .find(|c| c.name() == s || (s == "well_posed" && *c == Convention::WellPosed))
            .ok_or_else(|| {
                BlenderError::Config(format!(
                    "unknown convention {s:?} (expected post or well-posed)"
                ))
            })
    }
}

/// Mini-batch training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Passes over the training part of the log.
    pub epochs: usize,
    /// Requests per Adam step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub learning_rate: f32,
    /// Share of the log held out for validation (the best epoch by validation loss is kept);
    /// 0 keeps the last epoch.
    pub valid_fraction: f64,
    /// Seed of the initialisation, the train/validation split and the batch order.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 20,
            batch_size: 256,
            learning_rate: 3e-3,
            valid_fraction: 0.1,
            seed: 0,
        }
    }
}

/// Everything that defines a blender model and how it is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlenderConfig {
    /// Objective names: the order of `blend`, of `f(x)` and of every per-objective vector.
    pub objectives: Vec<String>,
    /// Hidden sizes of the MLP `f`.
    pub hidden: Vec<usize>,
    /// Hidden activation of `f`.
    pub activation: Activation,
    /// Production weights `s`, the prior mean. `None` = the mean logged `blend` (the
    /// randomization is centred on production), fixed at training time.
    pub prior_mean: Option<Vec<f32>>,
    /// Prior strength λ: one global value or one per objective (`λᵢ = 1/(2θᵢ²)`; the post's
    /// λ = 2 is θ = ½). 0 disables the prior.
    pub lambda: Vec<f32>,
    /// How `R` enters the logistic loss.
    pub convention: Convention,
    /// [`Convention::WellPosed`]: the weight of a request with `R = 0` as a `y = 0` example
    /// (0 excludes such requests from the data term).
    pub zero_reward_weight: f32,
    /// Feedback events → reward.
    pub rewards: RewardMap,
    /// Training settings.
    pub train: TrainOptions,
}

impl Default for BlenderConfig {
    fn default() -> Self {
        BlenderConfig {
            objectives: ["repin", "click", "closeup", "long_click"]
                .map(String::from)
                .to_vec(),
            hidden: vec![32, 32],
            activation: Activation::Relu,
            prior_mean: None,
            lambda: vec![2.0],
            convention: Convention::default(),
            zero_reward_weight: 1.0,
            rewards: RewardMap::default(),
            train: TrainOptions::default(),
        }
    }
}

impl BlenderConfig {
    /// Number of objectives.
    pub fn num_objectives(&self) -> usize {
        self.objectives.len()
    }

    /// The targets `y` and weights of the logistic term for these rewards under this config's
    /// convention.
    pub fn targets(&self, rewards: &[f32]) -> (Vec<f32>, Vec<f32>) {
        self.convention.targets(rewards, self.zero_reward_weight)
    }

    /// λ per objective (a single value is broadcast).
    pub fn lambdas(&self) -> Vec<f32> {
        match self.lambda.as_slice() {
            [l] => vec![*l; self.num_objectives()],
            ls => ls.to_vec(),
        }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`BlenderError::Config`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        let n = self.num_objectives();
        let bad = |m: String| Err(BlenderError::Config(m));
        if n == 0 {
            return bad("at least one objective is needed".into());
        }
        let mut names = self.objectives.clone();
        names.sort();
        names.dedup();
        if names.len() != n || self.objectives.iter().any(|o| o.trim().is_empty()) {
            return bad(format!(
                "objective names must be unique and non-empty, got {:?}",
                self.objectives
            ));
        }
        if self.hidden.contains(&0) {
            return bad(format!("hidden sizes must be > 0, got {:?}", self.hidden));
        }
        if let Some(s) = &self.prior_mean {
            if s.len() != n {
                return bad(format!(
                    "prior_mean has {} values but there are {n} objectives {:?}",
                    s.len(),
                    self.objectives
                ));
            }
            if s.iter().any(|v| !v.is_finite()) {
                return bad(format!("prior_mean must be finite, got {s:?}"));
            }
        }
        if self.lambda.len() != 1 && self.lambda.len() != n {
            return bad(format!(
                "lambda needs 1 value or one per objective ({n}), got {}",
                self.lambda.len()
            ));
        }
        if self.lambda.iter().any(|l| !(l.is_finite() && *l >= 0.0)) {
            return bad(format!(
                "lambda must be finite and >= 0, got {:?}",
                self.lambda
            ));
        }
        if !(self.zero_reward_weight.is_finite() && self.zero_reward_weight >= 0.0) {
            return bad(format!(
                "zero_reward_weight must be finite and >= 0, got {}",
                self.zero_reward_weight
            ));
        }
        self.rewards.validate()?;
        let t = &self.train;
        if t.batch_size == 0 {
            return bad("train.batch_size must be > 0".into());
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            return bad(format!(
                "train.learning_rate must be > 0, got {}",
                t.learning_rate
            ));
        }
        if !(0.0..0.9).contains(&t.valid_fraction) {
            return bad(format!(
                "train.valid_fraction must be in [0, 0.9), got {}",
                t.valid_fraction
            ));
        }
        Ok(())
    }

    /// The config as TOML (what the CLI writes as `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a blender config always serializes to TOML")
    }

    /// Parses and validates a TOML config (any subset of the fields).
    ///
    /// # Errors
    /// [`BlenderError::Config`] for a syntax error, an unknown key or an invalid setting.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: BlenderConfig =
            toml::from_str(text).map_err(|e| BlenderError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_validation() {
        let mut c = BlenderConfig {
            prior_mean: Some(vec![1.0, 0.5, 1.0, 0.2]),
            convention: Convention::Post,
            ..Default::default()
        };
        c.rewards.strict = true;
        let back = BlenderConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.lambdas(), vec![2.0; 4]);
        c.lambda = vec![1.0, 2.0];
        assert!(c.validate().unwrap_err().to_string().contains("lambda"));
        c.lambda = vec![-1.0];
        assert!(c.validate().is_err());
        c.lambda = vec![0.0];
        c.prior_mean = Some(vec![1.0]);
        assert!(c.validate().unwrap_err().to_string().contains("prior_mean"));
        assert!(BlenderConfig::from_toml("bogus = 1").is_err());
        assert_eq!(
            "well-posed".parse::<Convention>().unwrap(),
            Convention::WellPosed
        );
        assert!("x".parse::<Convention>().is_err());
    }
}
