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
//! `p_hide = σ(−4 + signal_scale · (−0.8A + 1.5·B·h))`. A pin the user hid before gets −2 on every
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

use super::util::{cumulative, normal, sample_cdf, sigmoid, splitmix64};
use crate::metrics::auc;
use crate::record::{EngagementRecord, HistoryEntry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The four task names, in the order of the truth arrays.
pub const ENGAGEMENT_TASKS: [&str; 4] = ["repin", "click", "closeup", "long_click"];
/// Task logit biases (before the signal), in [`ENGAGEMENT_TASKS`] order.
const TASK_BIAS: [f64; 4] = [-3.0, -2.2, -1.8, -3.2];
const DAY: f64 = 86_400.0;
const PRE_WINDOW_DAYS: f64 = 30.0;
const HIDE_PENALTY: f64 = 0.5;
/// History action names: the four tasks, then hide and impression.
const ACTIONS: [&str; 6] = [
    "repin",
    "click",
    "closeup",
    "long_click",
    "hide",
    "impression",
];

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
    /// The configuration that generated the log.
    pub config: EngagementConfig,
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

struct Pin {
    id: u64,
    topics: [usize; 2],
    mix: f64,
    quality: f64,
    visual: f64,
    bait: f64,
}

struct User {
    base: Vec<f64>,
    activity: f64,
    engage: f64,
    click: f64,
    save: f64,
    aversion: f64,
    cold: bool,
}

/// Static part of the world: pins, users and the retrieval distributions.
struct World<'a> {
    cfg: &'a EngagementConfig,
    pins: Vec<Pin>,
    users: Vec<User>,
    topic_pins: Vec<Vec<usize>>,
    topic_cdf: Vec<Vec<f64>>,
    global_cdf: Vec<f64>,
}

/// A user's evolving state while their timeline is simulated.
struct UserState {
    dev: Vec<f64>,
    t: f64,
    hidden: Vec<usize>,
    history: VecDeque<HistoryEntry>,
    pending: Vec<(f64, usize, usize)>,
}

/// One request of the timeline: `(index in time order, user, ts)`.
type Request = (usize, usize, i64);

impl World<'_> {
    fn build<'c>(cfg: &'c EngagementConfig, rng: &mut ChaCha8Rng) -> World<'c> {
        let salt = rng.random::<u64>();
        let t = cfg.num_topics;
        let pins: Vec<Pin> = (0..cfg.num_pins)
            .map(|j| Pin {
                id: splitmix64(salt.wrapping_add(j as u64)),
                topics: [rng.random_range(0..t), rng.random_range(0..t)],
                mix: rng.random_range(0.6..=1.0),
                quality: normal(rng),
                visual: normal(rng),
                bait: if rng.random::<f64>() < cfg.clickbait_fraction {
                    rng.random_range(1.0..2.0)
                } else {
                    0.0
                },
            })
            .collect();
        let pop: Vec<f64> = (0..pins.len()).map(|_| normal(rng).exp()).collect();
        let mut topic_pins = vec![Vec::new(); t];
        for (j, p) in pins.iter().enumerate() {
            topic_pins[p.topics[0]].push(j);
        }
        let topic_cdf = topic_pins
            .iter()
            .map(|js| cumulative(js.iter().map(|&j| pop[j])))
            .collect();
        let users = (0..cfg.num_users)
            .map(|_| {
                let mut base: Vec<f64> = (0..t).map(|_| -1.0 + 0.3 * normal(rng)).collect();
                for _ in 0..rng.random_range(1..=3usize.min(t)) {
                    base[rng.random_range(0..t)] = 1.5 + 0.3 * normal(rng);
                }
                User {
                    base,
                    activity: (0.7 * normal(rng) - 0.245).exp(),
                    engage: normal(rng),
                    click: normal(rng),
                    save: normal(rng),
                    aversion: normal(rng).abs(),
                    cold: rng.random::<f64>() < cfg.cold_start_fraction,
                }
            })
            .collect();
        World {
            cfg,
            global_cdf: cumulative(pop),
            pins,
            users,
            topic_pins,
            topic_cdf,
        }
    }

    /// Truth probabilities `[repin, click, closeup, long_click]` and p_hide.
    fn probs(&self, u: usize, st: &UserState, j: usize, intent: f64) -> ([f64; 4], f64) {
        let (user, pin, cfg) = (&self.users[u], &self.pins[j], self.cfg);
        let interest = |t: usize| user.base[t] + st.dev[t];
        let a = pin.mix * interest(pin.topics[0]) + (1.0 - pin.mix) * interest(pin.topics[1]);
        let (q, b, rho) = (pin.quality, pin.bait, cfg.task_correlation);
        let shared = a + 0.5 * user.engage + 0.4 * intent;
        let specific = [
            a + 0.7 * q + 0.6 * user.save,
            0.6 * a + 1.3 * b + 0.6 * user.click,
            0.8 * a + 0.8 * pin.visual + 0.6 * intent,
            0.6 * a + 1.2 * q - 1.3 * b,
        ];
        let hidden = if st.hidden.contains(&j) { 2.0 } else { 0.0 };
        let p = std::array::from_fn(|k| {
            sigmoid(
                TASK_BIAS[k] + cfg.signal_scale * (rho * shared + (1.0 - rho) * specific[k])
                    - hidden,
            )
        });
        let hide = sigmoid(-4.0 + cfg.signal_scale * (-0.8 * a + 1.5 * b * user.aversion) + hidden);
        (p, hide)
    }

    /// A pin from the user's current interest softmax, or by popularity.
    fn retrieve(
        &self,
        u: usize,
        st: &UserState,
        personalized: bool,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        if personalized {
            let user = &self.users[u];
            let w = cumulative(
                (0..self.cfg.num_topics).map(|t| (1.5 * (user.base[t] + st.dev[t])).exp()),
            );
            let t = sample_cdf(rng, &w);
            if !self.topic_pins[t].is_empty() {
                return self.topic_pins[t][sample_cdf(rng, &self.topic_cdf[t])];
            }
        }
        sample_cdf(rng, &self.global_cdf)
    }

    /// Advances the interest drift to time `t`.
    fn drift(&self, st: &mut UserState, t: f64, rng: &mut ChaCha8Rng) {
        let dt = (t - st.t).max(0.0);
        st.t = t;
        if dt == 0.0 {
            return;
        }
        let decay = (-dt / (self.cfg.drift_days * DAY)).exp();
        let noise = self.cfg.interest_drift * (1.0 - decay * decay).sqrt();
        for d in &mut st.dev {
            *d = *d * decay + noise * normal(rng);
        }
    }

    /// Appends an action to the history (at its time), applying its state change.
    fn commit(&self, st: &mut UserState, ts: f64, pin: usize, action: usize) {
        if ACTIONS[action] == "hide" {
            st.dev[self.pins[pin].topics[0]] -= HIDE_PENALTY;
            if !st.hidden.contains(&pin) {
                st.hidden.push(pin);
            }
        }
        if st.history.len() == self.cfg.history_len {
            st.history.pop_front();
        }
        if self.cfg.history_len > 0 {
            let action = ACTIONS[action].to_string();
            st.history.push_back(HistoryEntry {
                pin: self.pins[pin].id,
                action,
                ts: Some(ts.floor() as i64),
            });
        }
    }

    /// Runs background actions and due pending outcomes up to (excluding) time `until`.
    fn advance(&self, u: usize, st: &mut UserState, until: f64, rng: &mut ChaCha8Rng) {
        let rate = self.cfg.background_rate * self.users[u].activity / DAY;
        let mut next_bg = if rate > 0.0 {
            st.t - rng.random::<f64>().ln() / rate
        } else {
            f64::INFINITY
        };
        loop {
            let due = st
                .pending
                .iter()
                .enumerate()
                .filter(|(_, p)| p.0 < until)
                .min_by(|a, b| a.1.0.total_cmp(&b.1.0));
            match due {
                Some((i, &(ts, pin, action))) if ts <= next_bg => {
                    st.pending.swap_remove(i);
                    self.drift(st, ts, rng);
                    self.commit(st, ts, pin, action);
                }
                _ if next_bg < until => {
                    self.drift(st, next_bg, rng);
                    let pin = self.retrieve(u, st, rng.random::<f64>() < 0.8, rng);
                    let (p, hide) = self.probs(u, st, pin, 0.0);
                    let w = cumulative(p.into_iter().chain([hide, 0.15]));
                    let action = sample_cdf(rng, &w);
                    self.commit(st, next_bg, pin, action);
                    next_bg -= rng.random::<f64>().ln() / rate;
                }
                _ => break,
            }
        }
        self.drift(st, until, rng);
    }

    /// Simulates one user's requests (time-ordered), returning their records and truths.
    fn simulate_user(
        &self,
        u: usize,
        requests: &[Request],
        rng: &mut ChaCha8Rng,
    ) -> Vec<(usize, Vec<EngagementRecord>, Vec<[f64; 4]>)> {
        let cfg = self.cfg;
        let first = requests.first().map_or(0.0, |r| r.2 as f64);
        let start = if self.users[u].cold {
            first
        } else {
            cfg.start_ts as f64 - PRE_WINDOW_DAYS * DAY
        };
        let mut st = UserState {
            dev: (0..cfg.num_topics)
                .map(|_| cfg.interest_drift * normal(rng))
                .collect(),
            t: start.min(first),
            hidden: Vec::new(),
            history: VecDeque::with_capacity(cfg.history_len),
            pending: Vec::new(),
        };
        let user = &self.users[u];
        let mut out = Vec::with_capacity(requests.len());
        for &(index, _, ts) in requests {
            self.advance(u, &mut st, ts as f64, rng);
            let hour = (ts.rem_euclid(86_400) as f64 / 3600.0) * std::f64::consts::TAU / 24.0;
            let intent = 0.6 * hour.sin() + 0.8 * normal(rng);
            let history: Vec<HistoryEntry> = st.history.iter().cloned().collect();
            let mut noisy = |x: f64| x + cfg.dense_noise * normal(rng);
            let context = [
                noisy(user.engage),
                noisy(user.click),
                noisy(user.save),
                noisy(user.aversion),
                noisy(intent),
                hour.sin(),
                hour.cos(),
            ];
            let (mut records, mut truths) = (Vec::new(), Vec::new());
            let mut shown: Vec<usize> = Vec::new();
            for _ in 0..cfg.candidates_per_request {
                let personalized = rng.random::<f64>() < cfg.personalized_fraction;
                let mut pin = self.retrieve(u, &st, personalized, rng);
                for _ in 0..20 {
                    if !shown.contains(&pin) {
                        break;
                    }
                    pin = self.retrieve(u, &st, personalized, rng);
                }
                shown.push(pin);
                let (p, hide) = self.probs(u, &st, pin, intent);
                let shared = rng.random::<f64>();
                let joint = rng.random::<f64>() < cfg.label_correlation;
                let fired: [bool; 4] = std::array::from_fn(|k| {
                    (if joint { shared } else { rng.random::<f64>() }) < p[k]
                });
                let hid = rng.random::<f64>() < hide;
                let when = ts as f64 + rng.random_range(1.0..120.0);
                let mut offset = 0.0;
                for (action, _) in fired.iter().chain([&hid]).enumerate().filter(|(_, f)| **f) {
                    st.pending.push((when + offset, pin, action));
                    offset += 1.0;
                }
                if offset == 0.0 && rng.random::<f64>() < 0.05 {
                    st.pending.push((when, pin, 5));
                }
                let mut features: Vec<f64> = context
                    .iter()
                    .copied()
                    .chain([f64::from(u8::from(personalized))])
                    .collect();
                features.resize_with(cfg.num_dense.max(features.len()), || normal(rng));
                features.truncate(cfg.num_dense);
                let labels: BTreeMap<String, Option<f64>> = ENGAGEMENT_TASKS
                    .iter()
                    .zip(fired)
                    .map(|(t, f)| (t.to_string(), Some(f64::from(u8::from(f)))))
                    .collect();
                records.push(EngagementRecord {
                    user: Some(u as u64),
                    ts: Some(ts),
                    request: Some(format!("r{index}")),
                    candidate: Some(self.pins[pin].id),
                    history: history.clone(),
                    features,
                    labels,
                    ..Default::default()
                });
                truths.push(p);
            }
            out.push((index, records, truths));
        }
        out
    }
}

/// Generates the engagement world with `seed`. Deterministic: the same config and seed give
/// identical records (users are simulated on independent seed-derived ChaCha8 streams).
///
/// # Panics
/// If the config is invalid (a fraction outside [0, 1], zero users/topics, fewer pins than
/// candidates per request or topics, negative noise or rates, valid + test fractions ≥ 1).
pub fn simulate_engagement(config: &EngagementConfig, seed: u64) -> SimulatedEngagement {
    config.validate();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let world = World::build(config, &mut rng);
    let activity = cumulative(world.users.iter().map(|u| u.activity));
    let span = (config.days * DAY) as i64;
    let mut requests: Vec<(i64, usize)> = (0..config.num_requests)
        .map(|_| {
            (
                config.start_ts + rng.random_range(0..span.max(1)),
                sample_cdf(&mut rng, &activity),
            )
        })
        .collect();
    requests.sort_unstable();
    let mut per_user: Vec<Vec<Request>> = vec![Vec::new(); config.num_users];
    for (index, &(ts, u)) in requests.iter().enumerate() {
        per_user[u].push((index, u, ts));
    }
    let stream_salt = rng.random::<u64>();
    let mut by_request: Vec<(Vec<EngagementRecord>, Vec<[f64; 4]>)> =
        vec![(Vec::new(), Vec::new()); requests.len()];
    for (u, reqs) in per_user.iter().enumerate() {
        let mut user_rng =
            ChaCha8Rng::seed_from_u64(splitmix64(stream_salt ^ splitmix64(u as u64)));
        for (index, recs, truths) in world.simulate_user(u, reqs, &mut user_rng) {
            by_request[index] = (recs, truths);
        }
    }
    let n = requests.len();
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
        config: config.clone(),
    }
}
