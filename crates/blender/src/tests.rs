//! Unit tests: gradient checks of the objective, the λ → ∞ limit, each convention's sign
//! behaviour, save/load.

use crate::*;
use closeup_autograd::gradcheck::{assert_gradients, randn};
use closeup_autograd::{Tape, Tensor};
use ndarray::{Array2, array};

fn blend() -> Array2<f32> {
    array![
        [1.0, 0.2, 0.8],
        [0.5, 0.9, 0.1],
        [1.2, -0.3, 0.4],
        [0.7, 0.6, 1.1]
    ]
}

#[test]
fn objective_gradients_wrt_f_output_and_bias() {
    let r = blend();
    let s = [1.0, 0.4, 0.8];
    let rewards = [1.0, -2.0, 0.0, 3.0];
    for conv in Convention::ALL {
        let (y, w) = conv.targets(&rewards, 1.0);
        for lambda in [[0.0, 0.0, 0.0], [2.0, 2.0, 2.0], [0.5, 4.0, 1.0]] {
            let (r, y, w) = (r.clone(), y.clone(), w.clone());
            assert_gradients(&[randn(&[4, 3], 1), randn(&[1], 2)], move |_, v| {
                objective(v[0], v[1], &r, &y, &w, &s, &lambda).total
            });
        }
    }
}

#[test]
fn objective_matches_closed_form() {
    let tape = Tape::new();
    let f = tape.leaf(array![[1.0_f32, 0.0], [0.0, 2.0]].into_dyn());
    let b = tape.leaf(array![0.5_f32].into_dyn());
    let r = array![[1.0_f32, 1.0], [0.5, -1.0]];
    let obj = objective(f, b, &r, &[1.0, 0.0], &[2.0, 1.0], &[1.0, 1.0], &[2.0, 2.0]);
    let softplus = |z: f32| (1.0 + z.exp()).ln();
    // z = [1.5, -1.5]; BCE(1.5, 1) = softplus(-1.5), BCE(-1.5, 0) = softplus(-1.5).
    let data = (2.0 * softplus(-1.5) + softplus(-1.5)) / 2.0;
    let prior = (2.0 * 1.0 + 2.0 * (1.0 + 1.0)) / 2.0;
    approx::assert_abs_diff_eq!(obj.data.item(), data, epsilon = 1e-5);
    approx::assert_abs_diff_eq!(obj.prior.item(), prior, epsilon = 1e-5);
}

/// Features `x ∈ {+1, −1}` (two segments); segment +1 is rewarded for weight on objective 0,
/// segment −1 for weight on objective 1. `r` is a deterministic spread around `s = [1, 1]`.
fn two_segment_log(n: usize, reward: f32, penalty: f32) -> BlenderData {
    let features = Array2::from_shape_fn((n, 1), |(j, _)| if j % 2 == 0 { 1.0 } else { -1.0 });
    let blend = Array2::from_shape_fn((n, 2), |(j, i)| {
        let k = (j / 2 * 7 + i * 3 + j / 10) % 9;
        1.0 + (k as f32 - 4.0) / 8.0
    });
    let rewards = (0..n)
        .map(|j| {
            let (a, b) = (blend[[j, 0]], blend[[j, 1]]);
            let good = if j % 2 == 0 { a > b } else { b > a };
            if good { reward } else { penalty }
        })
        .collect();
    BlenderData::new(features, blend, rewards).unwrap()
}

fn config(conv: Convention, lambda: f32, epochs: usize) -> BlenderConfig {
    BlenderConfig {
        objectives: vec!["a".into(), "b".into()],
        hidden: vec![8],
        prior_mean: Some(vec![1.0, 1.0]),
        lambda: vec![lambda],
        convention: conv,
        train: TrainOptions {
            epochs,
            batch_size: 32,
            learning_rate: 1e-2,
            valid_fraction: 0.2,
            seed: 3,
        },
        ..Default::default()
    }
}

fn segment_weights(model: &Blender) -> Array2<f32> {
    model.weights(&array![[1.0_f32], [-1.0]]).unwrap()
}

#[test]
fn huge_lambda_pins_the_weights_to_production() {
    let data = two_segment_log(200, 1.0, -1.0);
    for conv in Convention::ALL {
        let mut cfg = config(conv, 1e6, 10);
        cfg.train.learning_rate = 1e-3;
        let trained = train(&cfg, &data).unwrap();
        let w = segment_weights(&trained.model);
        for v in w.iter() {
            approx::assert_abs_diff_eq!(*v, 1.0, epsilon = 5e-3);
        }
    }
}

#[test]
fn each_segment_learns_its_preferred_objective() {
    let data = two_segment_log(400, 1.0, -1.0);
    for conv in Convention::ALL {
        let trained = train(&config(conv, 0.1, 40), &data).unwrap();
        let w = segment_weights(&trained.model);
        assert!(
            w[[0, 0]] - w[[0, 1]] > 0.05 && w[[1, 1]] - w[[1, 0]] > 0.05,
            "{conv}: {w:?}"
        );
        assert!(trained.report.best_epoch >= 1);
        assert_eq!(trained.report.num_valid, 80);
    }
}

#[test]
fn sign_behaviour_of_the_conventions() {
    // Every request gets the same negative reward: nothing distinguishes good from bad r.
    let n = 200;
    let data = two_segment_log(n, 1.0, 0.0);
    let neg = BlenderData::new(data.features.clone(), data.blend.clone(), vec![-2.0; n]).unwrap();
    // Post: y = 1 with weight −2 pushes g down without bound — b falls every epoch.
    let post = train(&config(Convention::Post, 2.0, 30), &neg).unwrap();
    let b: Vec<f32> = post.report.epochs.iter().map(|e| e.bias).collect();
    assert!(b.windows(2).all(|w| w[1] < w[0]), "post bias {b:?}");
    assert!(post.report.epochs.last().unwrap().valid_loss.unwrap() < 0.0);
    // Well-posed: y = 0 with weight 2 — a plain classifier with a bounded loss ≥ 0.
    let wp = train(&config(Convention::WellPosed, 2.0, 30), &neg).unwrap();
    assert!(
        wp.report
            .epochs
            .iter()
            .all(|e| e.valid_loss.unwrap() >= 0.0)
    );
    // Positive rewards: both conventions push g(x, r) up for the rewarded r.
    for conv in Convention::ALL {
        let t = train(&config(conv, 2.0, 20), &data).unwrap();
        let g = t
            .model
            .outcome_probability(&data.features, &data.blend)
            .unwrap();
        let (mut pos, mut zero) = (vec![], vec![]);
        for (j, &r) in data.rewards.iter().enumerate() {
            if r > 0.0 {
                pos.push(g[j])
            } else {
                zero.push(g[j])
            }
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(
            mean(&pos) > mean(&zero),
            "{conv}: {} vs {}",
            mean(&pos),
            mean(&zero)
        );
    }
}

#[test]
fn save_load_round_trip_and_foreign_files() {
    let data = two_segment_log(100, 1.0, -1.0);
    let mut cfg = config(Convention::Post, 2.0, 3);
    cfg.rewards.apply_spec("repin=0.25").unwrap();
    let model = train(&cfg, &data).unwrap().model;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    model.save(&path).unwrap();
    let back = Blender::load(&path).unwrap();
    assert_eq!(back.config(), model.config());
    assert_eq!(back.bias(), model.bias());
    assert_eq!(
        back.weights(&data.features).unwrap(),
        model.weights(&data.features).unwrap()
    );
    assert_eq!(back.config().rewards.events["repin"], 0.25);
    // A foreign file, a truncated file, a checkpoint of another kind.
    std::fs::write(&path, b"not a checkpoint at all").unwrap();
    let e = Blender::load(&path).unwrap_err().to_string();
    assert!(e.contains("not a valid Closeup checkpoint"), "{e}");
    let other = closeup_autograd::Checkpoint::from_module(&model).with_metadata("kind", "mmoe");
    other.save(&path).unwrap();
    let e = Blender::load(&path).unwrap_err().to_string();
    assert!(e.contains("kind \"mmoe\", not a blender"), "{e}");
    let bytes = model.to_checkpoint().to_bytes();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(
        Blender::load(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    // Width mismatch at serving time.
    let e = model
        .weights(&Array2::zeros((2, 3)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reads 1 features per request, got 3"), "{e}");
}

#[test]
fn training_is_reproducible_and_rejects_bad_data() {
    let data = two_segment_log(100, 1.0, -1.0);
    let cfg = config(Convention::WellPosed, 1.0, 3);
    let a = train(&cfg, &data).unwrap();
    let b = train(&cfg, &data).unwrap();
    assert_eq!(a.report, b.report);
    let w: Tensor = a.model.weights(&data.features).unwrap().into_dyn();
    assert_eq!(w, b.model.weights(&data.features).unwrap().into_dyn());
    let mut three = cfg.clone();
    three.objectives.push("c".into());
    three.prior_mean = None;
    assert!(
        train(&three, &data)
            .unwrap_err()
            .to_string()
            .contains("3 objectives")
    );
    let nan = BlenderData::new(array![[f32::NAN]], array![[1.0, 1.0]], vec![0.0]);
    assert!(nan.unwrap_err().to_string().contains("request 0: features"));
}
