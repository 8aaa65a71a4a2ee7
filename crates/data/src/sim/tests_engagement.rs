//! Tests of the engagement world.

use super::engagement::*;
use crate::record::EngagementRecord;
use std::collections::{BTreeMap, HashMap, HashSet};

fn small() -> EngagementConfig {
    EngagementConfig {
        num_users: 60,
        num_pins: 400,
        num_topics: 8,
        num_requests: 300,
        candidates_per_request: 5,
        history_len: 30,
        num_dense: 8,
        ..Default::default()
    }
}

fn all(sim: &SimulatedEngagement) -> Vec<&EngagementRecord> {
    sim.train
        .iter()
        .chain(&sim.valid)
        .chain(&sim.test)
        .collect()
}

fn all_truth(sim: &SimulatedEngagement) -> Vec<[f64; 4]> {
    sim.train_truth
        .iter()
        .chain(&sim.valid_truth)
        .chain(&sim.test_truth)
        .copied()
        .collect()
}

#[test]
fn deterministic_by_seed() {
    let cfg = small();
    let (a, b, c) = (
        simulate_engagement(&cfg, 5),
        simulate_engagement(&cfg, 5),
        simulate_engagement(&cfg, 6),
    );
    assert_eq!(a.train, b.train);
    assert_eq!(a.valid, b.valid);
    assert_eq!(a.test, b.test);
    assert_eq!(all_truth(&a), all_truth(&b));
    assert_eq!(a.pins, b.pins);
    assert_ne!(a.train, c.train);
    assert_ne!(a.pins[0].id, c.pins[0].id);
}

#[test]
fn shapes_labels_and_probabilities() {
    for num_dense in [0, 3, 8, 12] {
        let cfg = EngagementConfig {
            num_dense,
            ..small()
        };
        let sim = simulate_engagement(&cfg, 1);
        let records = all(&sim);
        let truth = all_truth(&sim);
        assert_eq!(records.len(), cfg.num_requests * cfg.candidates_per_request);
        assert_eq!(truth.len(), records.len());
        assert_eq!(sim.tasks(), ["repin", "click", "closeup", "long_click"]);
        let mut per_request: HashMap<&str, HashSet<u64>> = HashMap::new();
        for (r, p) in records.iter().zip(&truth) {
            assert_eq!(r.features.len(), num_dense);
            assert!(r.features.iter().all(|x| x.is_finite()));
            assert_eq!(r.labels.len(), 4);
            for t in ENGAGEMENT_TASKS {
                let l = r.labels[t].expect("every label is present");
                assert!(l == 0.0 || l == 1.0);
            }
            assert!(p.iter().all(|&q| q > 0.0 && q < 1.0));
            assert!(r.user.is_some() && r.ts.is_some());
            let set = per_request
                .entry(r.request.as_deref().unwrap())
                .or_default();
            assert!(
                set.insert(r.candidate.unwrap()),
                "a candidate repeats within its request"
            );
        }
        assert_eq!(per_request.len(), cfg.num_requests);
        assert!(
            per_request
                .values()
                .all(|s| s.len() == cfg.candidates_per_request)
        );
        // The retrieval-source feature is exactly 0 or 1.
        if num_dense >= 8 {
            assert!(
                records
                    .iter()
                    .all(|r| r.features[7] == 0.0 || r.features[7] == 1.0)
            );
        }
    }
}

#[test]
fn histories_are_time_consistent() {
    let cfg = small();
    let sim = simulate_engagement(&cfg, 2);
    let records = all(&sim);
    let actions: HashSet<&str> = [
        "repin",
        "click",
        "closeup",
        "long_click",
        "hide",
        "impression",
    ]
    .into();
    let (mut empty, mut full) = (0, 0);
    let mut seen = BTreeMap::new();
    for r in &records {
        assert!(r.history.len() <= cfg.history_len);
        let ts = r.ts.unwrap();
        let mut prev = i64::MIN;
        for h in &r.history {
            let hts = h.ts.expect("simulated history entries carry ts");
            assert!(
                hts < ts,
                "history entry at {hts} is not before the impression at {ts}"
            );
            assert!(hts >= prev, "history is not oldest first");
            prev = hts;
            assert!(
                actions.contains(h.action.as_str()),
                "unknown action {}",
                h.action
            );
            *seen.entry(h.action.clone()).or_insert(0) += 1;
        }
        empty += usize::from(r.history.is_empty());
        full += usize::from(r.history.len() == cfg.history_len);
    }
    assert!(
        empty > 0,
        "cold-start users should give some empty histories"
    );
    assert!(full > records.len() / 2, "most histories should be full");
    assert_eq!(seen.len(), 6, "every action type appears: {seen:?}");
    // A user's later impressions see their earlier outcomes: histories of one user are
    // consistent (a later history's entries before the earlier impression form a suffix of
    // the earlier history).
    let mut by_user: HashMap<u64, Vec<&EngagementRecord>> = HashMap::new();
    for r in &records {
        by_user.entry(r.user.unwrap()).or_default().push(r);
    }
    for recs in by_user.values() {
        for w in recs.windows(2) {
            let (a, b) = (w[0], w[1]);
            let prefix: Vec<_> = b
                .history
                .iter()
                .filter(|h| h.ts.unwrap() < a.ts.unwrap())
                .collect();
            let tail = &a.history[a.history.len() - prefix.len()..];
            assert!(
                prefix.iter().zip(tail).all(|(x, y)| *x == y),
                "user histories disagree over time"
            );
        }
    }
}

#[test]
fn splits_are_time_ordered() {
    let cfg = EngagementConfig {
        valid_fraction: 0.2,
        test_fraction: 0.1,
        ..small()
    };
    let sim = simulate_engagement(&cfg, 3);
    let k = cfg.candidates_per_request;
    assert_eq!(sim.valid.len(), 60 * k);
    assert_eq!(sim.test.len(), 30 * k);
    assert_eq!(sim.train.len(), 210 * k);
    let max = |v: &[EngagementRecord]| v.iter().map(|r| r.ts.unwrap()).max().unwrap();
    let min = |v: &[EngagementRecord]| v.iter().map(|r| r.ts.unwrap()).min().unwrap();
    assert!(max(&sim.train) <= min(&sim.valid));
    assert!(max(&sim.valid) <= min(&sim.test));
    for split in [&sim.train, &sim.valid, &sim.test] {
        assert!(
            split.windows(2).all(|w| w[0].ts <= w[1].ts),
            "records are in time order"
        );
    }
}

#[test]
fn bayes_ceiling_is_informative_but_not_perfect() {
    let cfg = EngagementConfig {
        num_requests: 1500,
        candidates_per_request: 8,
        test_fraction: 0.3,
        ..small()
    };
    let sim = simulate_engagement(&cfg, 4);
    for (task, a) in ENGAGEMENT_TASKS.iter().zip(sim.ceiling_auc()) {
        let a = a.expect("both classes present");
        assert!(a > 0.7 && a < 0.97, "{task}: Bayes-ceiling AUC {a}");
    }
    // Calibration of the truth: observed rates match mean probabilities.
    let (records, truth) = (all(&sim), all_truth(&sim));
    for (k, t) in ENGAGEMENT_TASKS.iter().enumerate() {
        let obs = records.iter().filter(|r| r.labels[*t] == Some(1.0)).count() as f64
            / records.len() as f64;
        let mean = truth.iter().map(|p| p[k]).sum::<f64>() / truth.len() as f64;
        assert!(
            (obs - mean).abs() < 0.015,
            "{t}: observed {obs} vs mean truth {mean}"
        );
        assert!(obs > 0.02 && obs < 0.4, "{t}: base rate {obs}");
    }
}

#[test]
fn history_carries_the_signal() {
    // A model-free predictor built only from the history and the candidate's topics (which a
    // model can learn from pin ids): topic overlap with positively engaged history pins.
    let cfg = EngagementConfig {
        num_requests: 800,
        ..small()
    };
    let sim = simulate_engagement(&cfg, 8);
    let topics: HashMap<u64, [usize; 2]> = sim.pins.iter().map(|p| (p.id, p.topics)).collect();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for r in all(&sim) {
        let cand = topics[&r.candidate.unwrap()][0];
        let overlap = r
            .history
            .iter()
            .filter(|h| h.action != "hide" && h.action != "impression")
            .filter(|h| topics[&h.pin][0] == cand)
            .count() as f64;
        scores.push(overlap / (1.0 + r.history.len() as f64));
        labels.push(r.labels["repin"] == Some(1.0));
    }
    let a = crate::metrics::auc(&scores, &labels, None).unwrap();
    assert!(a > 0.65, "history topic overlap AUC for repin is only {a}");
}

#[test]
fn clickbait_and_quality_separate_the_tasks() {
    let sim = simulate_engagement(
        &EngagementConfig {
            num_requests: 800,
            ..small()
        },
        9,
    );
    let bait: HashMap<u64, f64> = sim.pins.iter().map(|p| (p.id, p.bait)).collect();
    let (records, truth) = (all(&sim), all_truth(&sim));
    let mean = |want: bool, k: usize| {
        let v: Vec<f64> = records
            .iter()
            .zip(&truth)
            .filter(|(r, _)| (bait[&r.candidate.unwrap()] > 0.0) == want)
            .map(|(_, p)| p[k])
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(
        mean(true, 1) > 1.5 * mean(false, 1),
        "click-bait raises click"
    );
    assert!(
        mean(true, 3) < 0.7 * mean(false, 3),
        "click-bait lowers long_click"
    );
    // Hides in histories concentrate on click-bait pins.
    let (mut bait_hides, mut hides) = (0, 0);
    for r in &records {
        for h in r.history.iter().filter(|h| h.action == "hide") {
            hides += 1;
            bait_hides += usize::from(bait[&h.pin] > 0.0);
        }
    }
    let share = bait_hides as f64 / hides as f64;
    assert!(
        share > 1.5 * sim.config.clickbait_fraction,
        "share of hides on click-bait pins: {share}"
    );
}

#[test]
fn task_correlation_knob_couples_the_tasks() {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let corr = |rho: f64| {
        let sim = simulate_engagement(
            &EngagementConfig {
                task_correlation: rho,
                ..small()
            },
            10,
        );
        let t = all_truth(&sim);
        let a: Vec<f64> = t.iter().map(|p| logit(p[1])).collect();
        let b: Vec<f64> = t.iter().map(|p| logit(p[3])).collect();
        super::pearson(&a, &b).unwrap()
    };
    let (lo, hi) = (corr(0.0), corr(0.9));
    assert!(
        hi > lo + 0.3,
        "click/long_click truth correlation {lo} at ρ=0 vs {hi} at ρ=0.9"
    );
}

#[test]
#[should_panic(expected = "task_correlation must be in [0, 1]")]
fn invalid_config_panics() {
    let _ = simulate_engagement(
        &EngagementConfig {
            task_correlation: 1.5,
            ..small()
        },
        0,
    );
}

#[test]
fn config_serde_defaults() {
    let cfg: EngagementConfig = serde_json::from_str(r#"{"num_users": 7}"#).unwrap();
    assert_eq!(
        cfg,
        EngagementConfig {
            num_users: 7,
            ..Default::default()
        }
    );
}
