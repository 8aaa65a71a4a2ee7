//! The blender on a small simulated world (closeup-data's blender simulator): where one segment
//! clearly prefers one objective, that segment's learned weight for it rises.

use closeup_blender::{BlenderConfig, BlenderData, Convention, RewardMap, TrainOptions, train};
use closeup_data::sim::simulate_blender;
use closeup_data::sim::{BlenderConfig as WorldConfig, EventResponse, SegmentResponse};
use ndarray::Array2;
use std::collections::BTreeMap;

/// Two objectives, two well-separated segments: "repinners" close up on repin-heavy
/// candidates, "clickers" on click-heavy ones.
fn world() -> WorldConfig {
    let segment = |name: &str, coef: [f64; 2]| SegmentResponse {
        name: name.into(),
        share: 0.5,
        events: vec![EventResponse {
            event: "closeup".into(),
            base: 0.0,
            coef: coef.to_vec(),
        }],
    };
    WorldConfig {
        objectives: vec!["repin".into(), "click".into()],
        num_candidates: 8,
        num_features: 2,
        feature_noise: 0.5,
        segment_separation: 3.0,
        production_weights: vec![0.5, 0.5],
        exploration_std: 0.5,
        rewards: BTreeMap::from([("closeup".into(), 1.0)]),
        candidate_bias: vec![-1.0, -1.0],
        candidate_loadings: vec![vec![1.5, 0.0], vec![0.0, 1.5]],
        segments: vec![
            segment("repinner", [0.9, 0.0]),
            segment("clicker", [0.0, 0.9]),
        ],
        num_logged_requests: 4_000,
        num_eval_requests: 600,
    }
}

#[test]
fn each_segment_leans_towards_the_objective_it_rewards() {
    let sim = simulate_blender(&world(), 11);
    let rows =
        |v: Vec<&Vec<f64>>, k: usize| Array2::from_shape_fn((v.len(), k), |(j, i)| v[j][i] as f32);
    let features = rows(sim.logs.iter().map(|l| &l.features).collect(), 2);
    let blend = rows(sim.logs.iter().map(|l| &l.blend).collect(), 2);
    let feedback: Vec<Vec<String>> = sim.logs.iter().map(|l| l.feedback.clone()).collect();
    let data = BlenderData::from_feedback(features, blend, &feedback, &RewardMap::default(), None)
        .unwrap();
    let s = &sim.world.config.production_weights;
    for convention in Convention::ALL {
        let config = BlenderConfig {
            objectives: vec!["repin".into(), "click".into()],
            hidden: vec![16],
            prior_mean: Some(vec![0.5, 0.5]),
            lambda: vec![0.03],
            convention,
            train: TrainOptions {
                epochs: 10,
                learning_rate: 1e-2,
                ..TrainOptions::default()
            },
            ..BlenderConfig::default()
        };
        let model = train(&config, &data).unwrap().model;
        // Mean learned weights per hidden segment on held-out requests.
        let mut sums = [[0.0f64; 2]; 2];
        let mut counts = [0.0f64; 2];
        for r in &sim.eval_requests {
            let x = Array2::from_shape_fn((1, 2), |(_, i)| r.features[i] as f32);
            let w = model.weights(&x).unwrap();
            counts[r.segment] += 1.0;
            for i in 0..2 {
                sums[r.segment][i] += f64::from(w[[0, i]]);
            }
        }
        let mean = |g: usize, i: usize| sums[g][i] / counts[g];
        // The repinners' repin weight rises above production, and above the clickers'; and
        // symmetrically for click.
        assert!(
            mean(0, 0) - mean(0, 1) > 0.1 && mean(1, 1) - mean(1, 0) > 0.1,
            "{convention}: repinners {:?}, clickers {:?}",
            sums[0].map(|v| v / counts[0]),
            sums[1].map(|v| v / counts[1])
        );
        assert!(mean(0, 0) > mean(1, 0) && mean(1, 1) > mean(0, 1));
        // And the learned policy beats production on held-out requests.
        let weights: Vec<Vec<f64>> = sim
            .eval_requests
            .iter()
            .map(|r| {
                let x = Array2::from_shape_fn((1, 2), |(_, i)| r.features[i] as f32);
                model
                    .weights(&x)
                    .unwrap()
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect()
            })
            .collect();
        let learned = sim
            .world
            .mean_expected_reward_weights(&sim.eval_requests, &weights);
        let production = sim
            .world
            .mean_expected_reward(&sim.eval_requests, |_| s.clone());
        assert!(
            learned > production,
            "{convention}: {learned} vs {production}"
        );
    }
}
