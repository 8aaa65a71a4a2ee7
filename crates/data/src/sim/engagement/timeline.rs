//! The engagement world's internals: pins, users and the per-user timeline simulation.

use super::{ENGAGEMENT_TASKS, EngagementConfig, PinTruth};
use crate::record::{EngagementRecord, HistoryEntry};
use crate::sim::util::{cumulative, normal, sample_cdf, sigmoid, splitmix64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

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
    pins: Vec<PinTruth>,
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
        let pins: Vec<PinTruth> = (0..cfg.num_pins)
            .map(|j| PinTruth {
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
        let hide = sigmoid(-4.5 + cfg.signal_scale * (-0.8 * a + 1.5 * b * user.aversion) + hidden);
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
            let mut history: Vec<HistoryEntry> = st.history.iter().cloned().collect();
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
            for c in 0..cfg.candidates_per_request {
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
                    history: if c + 1 == cfg.candidates_per_request {
                        std::mem::take(&mut history)
                    } else {
                        history.clone()
                    },
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

/// The records and truths of every request (indexed by request number, in time order) and the
/// pins' ground truth.
pub(super) type Generated = (Vec<(Vec<EngagementRecord>, Vec<[f64; 4]>)>, Vec<PinTruth>);

/// Builds the world and simulates every user's timeline.
pub(super) fn run(config: &EngagementConfig, seed: u64) -> Generated {
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
    let mut by_request = vec![(Vec::new(), Vec::new()); requests.len()];
    for (u, reqs) in per_user.iter().enumerate() {
        let mut user_rng =
            ChaCha8Rng::seed_from_u64(splitmix64(stream_salt ^ splitmix64(u as u64)));
        for (index, recs, truths) in world.simulate_user(u, reqs, &mut user_rng) {
            by_request[index] = (recs, truths);
        }
    }
    (by_request, world.pins)
}
