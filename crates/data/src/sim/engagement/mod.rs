//! The engagement world: the demo's default simulator of closeup impressions.
//!
//! # Generative model
//!
//! **Pins.** Each of `num_pins` pins has an arbitrary u64 id (SplitMix64 of its index plus a
//! seed-derived salt), a topic mixture (a primary topic with weight `w ~ U(0.6, 1)` and a
//! secondary topic with `1 − w`), a popularity `~ LogNormal(0, 1)`, a quality `Q ~ N(0, 1)`, a
//! visual appeal `V ~ N(0, 1)` and a click-bait level `B` (0 for most pins; `U(1, 2)` for a
//! `clickbait_fraction` of them).
//!
//! **Users.** Each user has a base interest vector over the topics (1–3 favourite topics at
//! about +1.5, the rest about −1), an activity level (`LogNormal`, mean 1), and latent
//! propensities: general engagement `e`, clicking `c`, saving `r` (all `N(0, 1)`) and
//! click-bait aversion `h = |N(0, 1)|`. The interest the user acts on is `base + dev`, where
//! `dev` is an Ornstein–Uhlenbeck drift (stationary std `interest_drift`, time constant
//! `drift_days`) — interests persist and drift slowly.
//!
//! **Engagement probabilities** of user `i` seeing pin `j` in a request with session intent
//! `s ~ 0.6·sin(hour) + N(0, 0.8)`: with affinity `A = Σ_t θ_jt (base + dev)_t`, the shared
//! part `S = A + 0.5e + 0.4s` and task-specific parts
//! `T_repin = A + 0.7Q + 0.6r`, `T_click = 0.6A + 1.3B + 0.6c`,
//! `T_closeup = 0.8A + 0.8V + 0.6s`, `T_long_click = 0.6A + 1.2Q − 1.3B`,
//! `p_k = σ(bias_k + signal_scale · (ρ·S + (1 − ρ)·T_k))` with `ρ = task_correlation`, and
//! `p_hide = σ(−4.5 + signal_scale · (−0.8A + 1.5·B·h))`. A pin the user hid before gets −2 on every
//! task logit and +2 on the hide logit. So click-bait raises click and hide but lowers
//! long_click; quality drives long_click and repin. These probabilities are the ground truth
//! returned next to the records (Bayes ceiling).
//!
//! **Labels** are Bernoulli draws from the truth; with probability `label_correlation` an
//! impression uses one uniform for all four tasks (marginals stay exact, label noise becomes
//! positively correlated, e.g. a long_click usually comes with a click).
//!
//! **Timeline.** Requests get a user (∝ activity) and a time uniform over `days` from
//! `start_ts`; requests are numbered in time order (`request = "r<index>"`). Each user's life
//! is simulated in time order: between requests the user acts in the background (a Poisson
//! process, `background_rate · activity` actions a day, also over 30 days before the window
//! unless the user is a cold-start user, who starts with an empty history): a pin drawn from
//! the interest softmax (80%) or by popularity (20%), an action drawn ∝ (p_click, p_closeup,
//! p_repin, p_long_click, p_hide, 0.15 for a plain impression). The outcomes of a request's
//! candidates enter the history 1–120 s later (one entry per positive task label and hide; a
//! plain "impression" for 5% of unengaged candidates). A hide lowers the user's interest in
//! the pin's primary topic (−0.5 on `dev`, fading with the drift) and marks the pin as hidden.
//! State changes take effect exactly when the action enters the history, so the history is
//! time-consistent: every entry's ts is before the impression's ts, oldest first, at most
//! `history_len` entries.
//!
//! **Candidates.** `candidates_per_request` distinct pins per request, each from the interest
//! softmax with probability `personalized_fraction`, otherwise by global popularity.
//!
//! **Dense features** (request context, noisy with std `dense_noise`): 0 `e`, 1 `c`, 2 `r`,
//! 3 `h`, 4 `s`, 5 sin(hour), 6 cos(hour), 7 retrieval source (1 = personalized, exact),
//! then pure `N(0, 1)` noise; with fewer than 8 features, the first `num_dense` of this list.
//!
//! **Splits** are by request in time order: the last `test_fraction` of requests is the test
//! split, the `valid_fraction` before it the validation split.

mod timeline;

use crate::metrics::auc;
use crate::record::EngagementRecord;
use serde::{Deserialize, Serialize};

/// The four task names, in the order of the truth arrays.
pub const ENGAGEMENT_TASKS: [&str; 4] = ["repin", "click", "closeup", "long_click"];
/// Knobs of the engagement world; every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngagementConfig {
    /// Number of users.
    pub num_users: usize,
    /// Number of pins.
    pub num_pins: usize,
    /// Number of latent topics.
    pub num_topics: usize,
    /// Number of requests (each yields `candidates_per_request` impressions).
    pub num_requests: usize,
    /// Candidates shown per request.
    pub candidates_per_request: usize,
    /// Maximum history entries per impression (the most recent ones are kept; ≤ 100 in SPEC).
    pub history_len: usize,
    /// Dense features per impression.
    pub num_dense: usize,
    /// Share ρ ∈ [0, 1] of the shared engagement signal in every task logit.
    pub task_correlation: f64,
    /// Probability ∈ [0, 1] that an impression's four labels share one uniform draw.
    pub label_correlation: f64,
    /// Stationary std of the interest drift.
    pub interest_drift: f64,
    /// Time constant of the interest drift, in days.
    pub drift_days: f64,
    /// Fraction of pins that are click-bait.
    pub clickbait_fraction: f64,
    /// Fraction of candidates retrieved from the user's interests (the rest by popularity).
    pub personalized_fraction: f64,
    /// Background actions per day of an average user.
    pub background_rate: f64,
    /// Fraction of users with no history before the log window.
    pub cold_start_fraction: f64,
    /// Std of the noise on the dense context features.
    pub dense_noise: f64,
    /// Multiplier of every non-bias logit term (higher = more predictable labels).
    pub signal_scale: f64,
    /// Length of the log window in days.
    pub days: f64,
    /// Unix time of the window's start.
    pub start_ts: i64,
    /// Fraction of requests in the validation split.
    pub valid_fraction: f64,
    /// Fraction of requests in the test split.
    pub test_fraction: f64,
}

impl Default for EngagementConfig {
    fn default() -> Self {
        EngagementConfig {
            num_users: 1000,
            num_pins: 5000,
            num_topics: 16,
            num_requests: 5000,
            candidates_per_request: 8,
            history_len: 100,
            num_dense: 8,
            task_correlation: 0.3,
            label_correlation: 0.3,
            interest_drift: 0.3,
            drift_days: 14.0,
            clickbait_fraction: 0.2,
            personalized_fraction: 0.6,
            background_rate: 3.0,
            cold_start_fraction: 0.1,
            dense_noise: 0.5,
            signal_scale: 1.0,
            days: 28.0,
            start_ts: 1_700_000_000,
            valid_fraction: 0.1,
            test_fraction: 0.1,
        }
    }
}

impl EngagementConfig {
    fn validate(&self) {
        assert!(self.num_users > 0, "num_users must be > 0");
        assert!(self.num_topics > 0, "num_topics must be > 0");
        assert!(
            self.num_pins >= self.candidates_per_request.max(self.num_topics),
            "num_pins must be at least candidates_per_request and num_topics"
        );
        assert!(
            self.candidates_per_request > 0,
            "candidates_per_request must be > 0"
        );
        for (name, v) in [
            ("task_correlation", self.task_correlation),
            ("label_correlation", self.label_correlation),
            ("clickbait_fraction", self.clickbait_fraction),
            ("personalized_fraction", self.personalized_fraction),
            ("cold_start_fraction", self.cold_start_fraction),
        ] {
            assert!(
                (0.0..=1.0).contains(&v),
                "{name} must be in [0, 1], got {v}"
            );
        }
        for (name, v) in [
            ("interest_drift", self.interest_drift),
            ("background_rate", self.background_rate),
            ("dense_noise", self.dense_noise),
            ("signal_scale", self.signal_scale),
        ] {
            assert!(
                v.is_finite() && v >= 0.0,
                "{name} must be finite and >= 0, got {v}"
            );
        }
        assert!(
            self.drift_days > 0.0 && self.days > 0.0,
            "drift_days and days must be > 0"
        );
        let (v, t) = (self.valid_fraction, self.test_fraction);
        assert!(
            v >= 0.0 && t >= 0.0 && v + t < 1.0,
            "valid_fraction + test_fraction must be in [0, 1)"
        );
    }
}

/// A generated engagement log with its ground truth.
#[derive(Debug, Clone)]
pub struct SimulatedEngagement {
    /// Training impressions (earliest requests), in time order.
    pub train: Vec<EngagementRecord>,
    /// Validation impressions, after every training impression.
    pub valid: Vec<EngagementRecord>,
    /// Test impressions (latest requests).
    pub test: Vec<EngagementRecord>,
    /// Ground-truth probabilities of each `train` record, in [`ENGAGEMENT_TASKS`] order.
    pub train_truth: Vec<[f64; 4]>,
    /// Ground-truth probabilities of each `valid` record.
    pub valid_truth: Vec<[f64; 4]>,
    /// Ground-truth probabilities of each `test` record.
    pub test_truth: Vec<[f64; 4]>,
    /// The ground truth of every pin, indexed by pin index (not id).
    pub pins: Vec<PinTruth>,
    /// The configuration that generated the log.
    pub config: EngagementConfig,
}

/// The hidden properties of one pin (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinTruth {
    /// The pin's id as it appears in the records.
    pub id: u64,
    /// Primary and secondary topic.
    pub topics: [usize; 2],
    /// Weight of the primary topic (the secondary has `1 − mix`).
    pub mix: f64,
    /// Quality `Q` (drives long_click and repin).
    pub quality: f64,
    /// Visual appeal `V` (drives closeup).
    pub visual: f64,
    /// Click-bait level `B` (0 for honest pins).
    pub bait: f64,
}

impl SimulatedEngagement {
    /// The task names, in truth order.
    pub fn tasks(&self) -> Vec<String> {
        ENGAGEMENT_TASKS.iter().map(|t| t.to_string()).collect()
    }

    /// The Bayes-ceiling AUC per task on the test split: the AUC of the true probabilities,
    /// which no model can beat in expectation.
    pub fn ceiling_auc(&self) -> [Option<f64>; 4] {
        bayes_auc(&self.test, &self.test_truth)
    }
}

/// AUC per task ([`ENGAGEMENT_TASKS`] order) of the probabilities `truth` against the labels of
/// `records` (missing labels are skipped).
///
/// # Panics
/// If the lengths differ.
pub fn bayes_auc(records: &[EngagementRecord], truth: &[[f64; 4]]) -> [Option<f64>; 4] {
    assert_eq!(
        records.len(),
        truth.len(),
        "one truth row per record is needed"
    );
    std::array::from_fn(|k| {
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for (r, p) in records.iter().zip(truth) {
            if let Some(Some(l)) = r.labels.get(ENGAGEMENT_TASKS[k]) {
                s.push(p[k]);
                y.push(*l > 0.5);
            }
        }
        auc(&s, &y, None)
    })
}

/// Generates the engagement world with `seed`. Deterministic: the same config and seed give
/// identical records (users are simulated on independent seed-derived ChaCha8 streams).
///
/// # Panics
/// If the config is invalid (a fraction outside [0, 1], zero users/topics, fewer pins than
/// candidates per request or topics, negative noise or rates, valid + test fractions ≥ 1).
pub fn simulate_engagement(config: &EngagementConfig, seed: u64) -> SimulatedEngagement {
    config.validate();
    let (by_request, pins) = timeline::run(config, seed);
    let n = by_request.len();
    let n_test = (config.test_fraction * n as f64).round() as usize;
    let n_valid = (config.valid_fraction * n as f64).round() as usize;
    let n_train = n - n_test - n_valid;
    let mut parts = [
        (Vec::new(), Vec::new()),
        (Vec::new(), Vec::new()),
        (Vec::new(), Vec::new()),
    ];
    for (i, (recs, truths)) in by_request.into_iter().enumerate() {
        let part = if i < n_train {
            0
        } else if i < n_train + n_valid {
            1
        } else {
            2
        };
        parts[part].0.extend(recs);
        parts[part].1.extend(truths);
    }
    let [
        (train, train_truth),
        (valid, valid_truth),
        (test, test_truth),
    ] = parts;
    SimulatedEngagement {
        train,
        valid,
        test,
        train_truth,
        valid_truth,
        test_truth,
        pins,
        config: config.clone(),
    }
}
