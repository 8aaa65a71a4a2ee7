//! The engagement world's signal lives in the user's history, not in the dense features alone:
//! the Bayes-ceiling AUC is well above the best a features-only model reaches.

use closeup_data::metrics::auc;
use closeup_data::record::EngagementRecord;
use closeup_data::sim::{ENGAGEMENT_TASKS, EngagementConfig, simulate_engagement};

/// Logistic regression on the dense features (plus a bias), fitted by full-batch gradient
/// descent in f64 — a features-only baseline.
fn fit_logistic(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let d = x[0].len() + 1;
    let mut w = vec![0.0; d];
    for _ in 0..800 {
        let mut g = vec![0.0; d];
        for (xi, &yi) in x.iter().zip(y) {
            let z = w[d - 1] + xi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
            let err = 1.0 / (1.0 + (-z).exp()) - yi;
            for (gj, xj) in g.iter_mut().zip(xi) {
                *gj += err * xj;
            }
            g[d - 1] += err;
        }
        for (wj, gj) in w.iter_mut().zip(&g) {
            *wj -= 0.5 * gj / x.len() as f64;
        }
    }
    w
}

fn task_data(records: &[EngagementRecord], task: &str) -> (Vec<Vec<f64>>, Vec<f64>) {
    records
        .iter()
        .filter_map(|r| {
            let label = r.labels.get(task).copied().flatten()?;
            Some((r.features.clone(), label))
        })
        .unzip()
}

#[test]
fn bayes_ceiling_beats_a_features_only_model() {
    let cfg = EngagementConfig {
        num_users: 150,
        num_pins: 1500,
        num_requests: 2500,
        candidates_per_request: 6,
        history_len: 40,
        test_fraction: 0.3,
        ..Default::default()
    };
    let sim = simulate_engagement(&cfg, 11);
    let ceiling = sim.ceiling_auc();
    let mut gaps = Vec::new();
    for (k, task) in ENGAGEMENT_TASKS.iter().enumerate() {
        let (x_train, y_train) = task_data(&sim.train, task);
        let (x_test, y_test) = task_data(&sim.test, task);
        let w = fit_logistic(&x_train, &y_train);
        let scores: Vec<f64> = x_test
            .iter()
            .map(|xi| w[w.len() - 1] + xi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>())
            .collect();
        let labels: Vec<bool> = y_test.iter().map(|&y| y > 0.5).collect();
        let features_only = auc(&scores, &labels, None).expect("both classes");
        let bayes = ceiling[k].expect("both classes");
        gaps.push((task, bayes, features_only));
    }
    eprintln!("(task, Bayes ceiling, features-only AUC): {gaps:?}");
    for &(task, bayes, features_only) in &gaps {
        assert!(
            bayes > features_only + 0.05,
            "{task}: Bayes ceiling {bayes:.3} vs features-only {features_only:.3} ({gaps:?})"
        );
    }
}
