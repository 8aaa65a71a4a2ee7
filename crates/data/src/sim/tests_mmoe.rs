//! Tests of the MMoE-paper synthetic data.

use super::mmoe_synthetic::*;

fn cfg(correlation: f64, num_examples: usize) -> MmoeSyntheticConfig {
    MmoeSyntheticConfig {
        correlation,
        num_examples,
        ..Default::default()
    }
}

fn column(v: &[[f64; 2]], t: usize) -> Vec<f64> {
    v.iter().map(|x| x[t]).collect()
}

#[test]
fn weights_have_the_requested_cosine_and_scale() {
    for p in [-0.3, 0.0, 0.5, 0.9, 1.0] {
        let sim = simulate_mmoe_synthetic(
            &MmoeSyntheticConfig {
                scale: 2.0,
                ..cfg(p, 0)
            },
            1,
        );
        let [w1, w2] = &sim.weights;
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        assert!((dot(w1, w1).sqrt() - 2.0).abs() < 1e-12);
        assert!((dot(w2, w2).sqrt() - 2.0).abs() < 1e-12);
        assert!((dot(w1, w2) / 4.0 - p).abs() < 1e-12, "cos(w1, w2) != {p}");
        assert!(sim.records.is_empty());
    }
}

#[test]
fn linear_parts_correlate_as_requested() {
    for p in [0.0, 0.5, 0.9, -0.3] {
        let sim = simulate_mmoe_synthetic(&cfg(p, 20_000), 2);
        let r = pearson(&column(&sim.linear, 0), &column(&sim.linear, 1)).unwrap();
        assert!(
            (r - p).abs() < 0.03,
            "empirical correlation {r} for p = {p}"
        );
    }
}

#[test]
fn scores_follow_the_formula() {
    let sim = simulate_mmoe_synthetic(&cfg(0.5, 3000), 3);
    assert_eq!((sim.alphas.len(), sim.betas.len()), (10, 10));
    let mut residual_sq = 0.0;
    for (rec, (lin, y)) in sim.records.iter().zip(sim.linear.iter().zip(&sim.scores)) {
        assert_eq!(rec.features.len(), 100);
        assert!(rec.history.is_empty() && rec.candidate.is_none());
        for t in 0..2 {
            let l: f64 = sim.weights[t]
                .iter()
                .zip(&rec.features)
                .map(|(w, x)| w * x)
                .sum();
            assert!((l - lin[t]).abs() < 1e-9);
            let waves: f64 = sim
                .alphas
                .iter()
                .zip(&sim.betas)
                .map(|(a, b)| (a * l + b).sin())
                .sum();
            residual_sq += (y[t] - l - waves).powi(2);
        }
    }
    // The leftover is the noise ε ~ N(0, 0.01).
    let var = residual_sq / (2.0 * sim.records.len() as f64);
    assert!((var - 0.01).abs() < 0.001, "noise variance {var}");
}

#[test]
fn binary_labels_split_at_the_median() {
    let sim = simulate_mmoe_synthetic(&cfg(0.5, 1001), 4);
    for (t, name) in MMOE_TASKS.iter().enumerate() {
        let pos = sim
            .records
            .iter()
            .filter(|r| r.labels[*name] == Some(1.0))
            .count();
        assert!(
            sim.records
                .iter()
                .all(|r| matches!(r.labels[*name], Some(l) if l == 0.0 || l == 1.0))
        );
        assert_eq!(pos, 500, "task {name}");
        for (r, y) in sim.records.iter().zip(&sim.scores) {
            assert_eq!(r.labels[*name] == Some(1.0), y[t] > sim.medians[t]);
        }
    }
    // More correlated tasks give more agreeing labels.
    let agree = |p| {
        let s = simulate_mmoe_synthetic(&cfg(p, 4000), 5);
        s.records
            .iter()
            .filter(|r| r.labels["task1"] == r.labels["task2"])
            .count() as f64
            / 4000.0
    };
    assert!(agree(0.9) > agree(0.1) + 0.1);
}

#[test]
fn regression_mode_and_determinism() {
    let c = MmoeSyntheticConfig {
        labels: MmoeLabels::Regression,
        ..cfg(0.7, 200)
    };
    let (a, b, other) = (
        simulate_mmoe_synthetic(&c, 6),
        simulate_mmoe_synthetic(&c, 6),
        simulate_mmoe_synthetic(&c, 7),
    );
    assert!(a.records.iter().all(|r| r.labels.is_empty()));
    assert_eq!(a.scores.len(), 200);
    assert_eq!(a.records, b.records);
    assert_eq!(a.scores, b.scores);
    assert_ne!(a.scores, other.scores);
    let parsed: MmoeSyntheticConfig =
        serde_json::from_str(r#"{"labels": "regression", "dim": 8}"#).unwrap();
    assert_eq!(
        (parsed.labels, parsed.dim, parsed.num_sin),
        (MmoeLabels::Regression, 8, 10)
    );
}

#[test]
#[should_panic(expected = "correlation must be in [-1, 1]")]
fn invalid_correlation_panics() {
    let _ = simulate_mmoe_synthetic(&cfg(1.5, 10), 0);
}
