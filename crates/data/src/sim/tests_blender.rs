//! Tests of the blender world.

use super::blender::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn small() -> BlenderConfig {
    BlenderConfig {
        num_logged_requests: 300,
        num_eval_requests: 3000,
        ..Default::default()
    }
}

#[test]
fn deterministic_by_seed_and_well_formed() {
    let cfg = small();
    let (a, b, c) = (
        simulate_blender(&cfg, 3),
        simulate_blender(&cfg, 3),
        simulate_blender(&cfg, 4),
    );
    assert_eq!(a.logs, b.logs);
    assert_eq!(a.eval_requests, b.eval_requests);
    assert_eq!(a.world, b.world);
    assert_ne!(a.logs, c.logs);
    assert_eq!(a.logs.len(), cfg.num_logged_requests);
    assert_eq!(a.logged_requests.len(), cfg.num_logged_requests);
    assert_eq!(a.eval_requests.len(), cfg.num_eval_requests);
    let events = ["repin", "click", "closeup", "long_click", "hide"];
    for (log, req) in a.logs.iter().zip(&a.logged_requests) {
        assert_eq!(log.request.as_deref(), Some(req.id.as_str()));
        assert_eq!(log.features, req.features);
        assert_eq!(log.features.len(), cfg.num_features);
        assert_eq!(log.blend.len(), 4);
        assert!(log.feedback.iter().all(|e| events.contains(&e.as_str())));
        assert_eq!(req.candidates.len(), cfg.num_candidates);
        assert!(
            req.candidates
                .iter()
                .flatten()
                .all(|&p| (0.0..=1.0).contains(&p))
        );
    }
    // Ids do not collide between the logged and the evaluation requests.
    assert_eq!(
        a.eval_requests[0].id,
        format!("b{}", cfg.num_logged_requests)
    );
    // The exploration really randomizes r around s.
    let spread: f64 = a
        .logs
        .iter()
        .map(|l| (l.blend[0] - 1.0).powi(2))
        .sum::<f64>()
        / a.logs.len() as f64;
    assert!(
        (spread.sqrt() - cfg.exploration_std).abs() < 0.1,
        "exploration std {}",
        spread.sqrt()
    );
    // Every event type occurs somewhere in the log.
    for e in events {
        assert!(
            a.logs.iter().any(|l| l.feedback.iter().any(|f| f == e)),
            "no {e} in the log"
        );
    }
}

#[test]
fn oracle_dominates_every_policy_per_request() {
    let sim = simulate_blender(&small(), 5);
    let w = &sim.world;
    let s = w.config.production_weights.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for r in sim.eval_requests.iter().take(500) {
        let oracle = w.oracle_reward(r);
        assert!(oracle >= w.expected_reward(r, &s) - 1e-12);
        assert!(oracle >= w.expected_reward(r, &w.posterior_weights(&r.features)) - 1e-12);
        let random: Vec<f64> = (0..4)
            .map(|_| rand::Rng::random_range(&mut rng, -2.0..2.0))
            .collect();
        assert!(oracle >= w.expected_reward(r, &random) - 1e-12);
        // The oracle weights reach the oracle exactly.
        assert!((w.expected_reward(r, &w.oracle_weights(r)) - oracle).abs() < 1e-12);
    }
}

#[test]
fn baselines_are_ordered() {
    let sim = simulate_blender(&small(), 6);
    let b = sim.world.baselines(&sim.eval_requests);
    assert!(b.random < b.production, "{b:?}");
    assert!(b.production + 0.03 < b.best_fixed, "{b:?}");
    assert!(b.best_fixed + 0.02 < b.posterior_oracle, "{b:?}");
    assert!(b.posterior_oracle < b.oracle, "{b:?}");
    // Per-request weights give the same numbers as the closure form.
    let weights: Vec<Vec<f64>> = sim
        .eval_requests
        .iter()
        .map(|r| sim.world.posterior_weights(&r.features))
        .collect();
    let by_rows = sim
        .world
        .mean_expected_reward_weights(&sim.eval_requests, &weights);
    assert!((by_rows - b.posterior_oracle).abs() < 1e-12);
}

#[test]
fn exact_expected_reward_matches_monte_carlo() {
    let sim = simulate_blender(&small(), 7);
    let w = &sim.world;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let policies = [
        w.config.production_weights.clone(),
        vec![0.0, -1.0, 1.0, 0.0],
        vec![0.0, 1.0, 0.0, 0.0],
    ];
    for (i, r) in sim.eval_requests.iter().take(6).enumerate() {
        let weights = &policies[i % policies.len()];
        let exact = w.expected_reward(r, weights);
        let n = 20_000;
        let rewards: Vec<f64> = (0..n)
            .map(|_| w.reward(&w.sample_feedback(r, weights, &mut rng)))
            .collect();
        let mean = rewards.iter().sum::<f64>() / n as f64;
        let var = rewards.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (var / n as f64).sqrt().max(1e-3);
        assert!(
            (mean - exact).abs() < 4.0 * se,
            "request {i}: MC {mean} vs exact {exact} (se {se})"
        );
    }
}

#[test]
fn weights_favouring_a_segments_preference_win_for_that_segment() {
    let sim = simulate_blender(&small(), 8);
    let w = &sim.world;
    let of_segment = |g: usize| {
        sim.eval_requests
            .iter()
            .filter(|r| r.segment == g)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (averse, lover) = (of_segment(0), of_segment(1));
    assert!(averse.len() > 500 && lover.len() > 400);
    let avoid_clicks = vec![0.0, -1.0, 1.0, 0.0];
    let chase_clicks = vec![0.0, 1.0, 1.0, 0.0];
    let mean = |reqs: &[BlenderRequest], v: &Vec<f64>| w.mean_expected_reward(reqs, |_| v.clone());
    assert!(mean(&averse, &avoid_clicks) > mean(&averse, &chase_clicks) + 0.1);
    assert!(mean(&lover, &chase_clicks) > mean(&lover, &avoid_clicks) + 0.05);
    // Each segment's own utility weights beat production on that segment.
    for (g, reqs) in [(0, &averse), (1, &lover)] {
        assert!(mean(reqs, &w.utility_weights(g)) > mean(reqs, &w.config.production_weights));
    }
}

#[test]
fn posterior_is_a_distribution_that_reveals_the_segment_partly() {
    let sim = simulate_blender(&small(), 10);
    let mut hits = 0;
    for r in &sim.eval_requests {
        let p = sim.world.posterior(&r.features);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        hits += usize::from(best == r.segment);
    }
    let acc = hits as f64 / sim.eval_requests.len() as f64;
    assert!(acc > 0.6 && acc < 0.95, "segment accuracy from x: {acc}");
}

#[test]
fn reward_map_and_custom_objectives() {
    let cfg = BlenderConfig {
        objectives: vec!["save".into(), "view".into()],
        production_weights: vec![1.0, 1.0],
        candidate_bias: vec![-1.0, -1.0],
        candidate_loadings: vec![vec![1.0], vec![-1.0]],
        segments: vec![SegmentResponse {
            name: "only".into(),
            share: 1.0,
            events: vec![EventResponse {
                event: "save".into(),
                base: 0.1,
                coef: vec![0.9, 0.0],
            }],
        }],
        rewards: [("save".to_string(), 2.0)].into(),
        ..small()
    };
    let sim = simulate_blender(&cfg, 1);
    let r = &sim.eval_requests[0];
    let best_save = r.candidates.iter().map(|p| p[0]).fold(0.0, f64::max);
    assert!((sim.world.oracle_reward(r) - 2.0 * (0.1 + 0.9 * best_save)).abs() < 1e-12);
    assert_eq!(sim.world.reward(&["save".into(), "other".into()]), 2.0);
    assert_eq!(sim.world.utility_weights(0), vec![1.8, 0.0]);
}

#[test]
#[should_panic(expected = "base + Σ coef <= 1")]
fn probabilities_that_could_leave_the_unit_interval_are_rejected() {
    let mut cfg = small();
    cfg.segments[0].events[0].coef = vec![0.9, 0.9, 0.0, 0.0];
    let _ = BlenderWorld::new(cfg, 0);
}
