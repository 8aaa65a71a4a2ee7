//! Hand-computed cases for the metrics.

use super::*;
use approx::assert_abs_diff_eq;

fn b(v: &[u8]) -> Vec<bool> {
    v.iter().map(|&x| x == 1).collect()
}

/// O(n²) reference AUC: pairs, ties ½, pair weight wᵢ·wⱼ.
fn brute_auc(s: &[f64], y: &[bool], w: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..s.len() {
        for j in 0..s.len() {
            if y[i] && !y[j] {
                let ww = w[i] * w[j];
                den += ww;
                num += ww
                    * if s[i] > s[j] {
                        1.0
                    } else if s[i] == s[j] {
                        0.5
                    } else {
                        0.0
                    };
            }
        }
    }
    num / den
}

/// O(n²) reference τ-b.
fn brute_tau(a: &[f64], c: &[f64]) -> f64 {
    let (mut conc, mut disc, mut ta, mut tb) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let sign = |x: f64| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            };
            let s = sign(a[i] - a[j]) * sign(c[i] - c[j]);
            if a[i] == a[j] {
                ta += 1.0;
            }
            if c[i] == c[j] {
                tb += 1.0;
            }
            if s > 0.0 {
                conc += 1.0;
            } else if s < 0.0 {
                disc += 1.0;
            }
        }
    }
    let n0 = (a.len() * (a.len() - 1) / 2) as f64;
    (conc - disc) / ((n0 - ta) * (n0 - tb)).sqrt()
}

/// A tiny deterministic generator for randomized cross-checks (no RNG crate needed).
fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 33) as f64 / (1u64 << 31) as f64
}

#[test]
fn auc_hand_cases() {
    assert_abs_diff_eq!(
        auc(&[0.1, 0.4, 0.35, 0.8], &b(&[0, 0, 1, 1]), None).unwrap(),
        0.75
    );
    assert_abs_diff_eq!(
        auc(&[0.5f32; 6], &b(&[0, 1, 0, 1, 1, 0]), None).unwrap(),
        0.5
    );
    assert_abs_diff_eq!(
        auc(&[0.1, 0.2, 0.3, 0.4], &b(&[0, 0, 1, 1]), None).unwrap(),
        1.0
    );
    assert_abs_diff_eq!(
        auc(&[0.4, 0.3, 0.2, 0.1], &b(&[0, 0, 1, 1]), None).unwrap(),
        0.0
    );
    // Partial tie: pos {0.5, 0.9}, neg {0.5, 0.1}: pairs (0.5,0.5)=½, (0.5,0.1)=1, (0.9,·)=1+1.
    assert_abs_diff_eq!(
        auc(&[0.5, 0.9, 0.5, 0.1], &b(&[1, 1, 0, 0]), None).unwrap(),
        3.5 / 4.0
    );
    assert_eq!(auc(&[0.1, 0.2], &b(&[1, 1]), None), None);
    assert_eq!(auc::<f64>(&[], &[], None), None);
}

#[test]
fn weighted_auc_matches_pairs_and_duplication() {
    let s = [0.1, 0.4, 0.35, 0.8, 0.4];
    let y = b(&[0, 0, 1, 1, 1]);
    let w = [1.0, 2.0, 3.0, 0.5, 1.0];
    let got = auc(&s, &y, Some(&w)).unwrap();
    assert_abs_diff_eq!(got, brute_auc(&s, &y, &w), epsilon = 1e-12);
    // Integer weights equal duplicating the examples.
    let (mut s2, mut y2) = (vec![], vec![]);
    for i in 0..s.len() {
        for _ in 0..[1, 2, 3, 1, 1][i] {
            s2.push(s[i]);
            y2.push(y[i]);
        }
    }
    let w2 = [1.0, 2.0, 3.0, 1.0, 1.0];
    assert_abs_diff_eq!(
        auc(&s, &y, Some(&w2)).unwrap(),
        auc(&s2, &y2, None).unwrap(),
        epsilon = 1e-12
    );
    // Zero weight removes an example.
    let w3 = [1.0, 0.0, 1.0, 1.0, 1.0];
    assert_abs_diff_eq!(auc(&s, &y, Some(&w3)).unwrap(), 1.0);
}

#[test]
fn auc_matches_brute_force_on_random_ties() {
    let mut st = 7u64;
    for _ in 0..20 {
        let n = 60;
        let s: Vec<f64> = (0..n).map(|_| (lcg(&mut st) * 8.0).floor() / 8.0).collect();
        let y: Vec<bool> = (0..n).map(|_| lcg(&mut st) < 0.4).collect();
        let w: Vec<f64> = (0..n).map(|_| lcg(&mut st) * 2.0).collect();
        let ones = vec![1.0; n];
        assert_abs_diff_eq!(
            auc(&s, &y, None).unwrap(),
            brute_auc(&s, &y, &ones),
            epsilon = 1e-12
        );
        assert_abs_diff_eq!(
            auc(&s, &y, Some(&w)).unwrap(),
            brute_auc(&s, &y, &w),
            epsilon = 1e-12
        );
    }
}

#[test]
#[should_panic(expected = "weights must be finite")]
fn negative_weight_panics() {
    let _ = auc(&[0.1, 0.2], &b(&[0, 1]), Some(&[1.0, -1.0]));
}

#[test]
fn logloss_and_calibration() {
    let ll = logloss(&[0.8, 0.3], &b(&[1, 0]), None).unwrap();
    assert_abs_diff_eq!(ll, -(0.8f64.ln() + 0.7f64.ln()) / 2.0, epsilon = 1e-12);
    // Clipping keeps a confidently wrong prediction finite.
    let worst = logloss(&[0.0], &b(&[1]), None).unwrap();
    assert_abs_diff_eq!(worst, -LOGLOSS_EPS.ln(), epsilon = 1e-9);
    let wll = logloss(&[0.8, 0.3], &b(&[1, 0]), Some(&[3.0, 1.0])).unwrap();
    assert_abs_diff_eq!(
        wll,
        -(3.0 * 0.8f64.ln() + 0.7f64.ln()) / 4.0,
        epsilon = 1e-12
    );
    // Mean prediction 0.4, observed rate 0.5.
    assert_abs_diff_eq!(
        calibration(&[0.6, 0.2], &b(&[1, 0]), None).unwrap(),
        0.8,
        epsilon = 1e-12
    );
    assert_eq!(calibration(&[0.6, 0.2], &b(&[0, 0]), None), None);
}

#[test]
fn task_metrics_mask_missing_labels() {
    let scores = [0.1f32, 0.4, 0.35, 0.8, 0.99, 0.0];
    let labels = [Some(false), Some(false), Some(true), Some(true), None, None];
    let m = TaskMetrics::compute(&scores, &labels, None);
    assert_eq!((m.n, m.positives), (4, 2));
    assert_abs_diff_eq!(m.auc.unwrap(), 0.75);
    assert_abs_diff_eq!(m.observed_rate.unwrap(), 0.5);
    let kept = [0.1f32, 0.4, 0.35, 0.8];
    assert_abs_diff_eq!(
        m.logloss.unwrap(),
        logloss(&kept, &b(&[0, 0, 1, 1]), None).unwrap()
    );
    // Missing is not negative: reading the masked ones as 0 would change the AUC.
    let as_zero = TaskMetrics::compute(&scores, &labels.map(|l| Some(l == Some(true))), None);
    assert_abs_diff_eq!(as_zero.auc.unwrap(), 5.0 / 8.0);
    let empty = TaskMetrics::compute(&scores, &[None; 6], None);
    assert_eq!((empty.n, empty.auc, empty.logloss), (0, None, None));
}

#[test]
fn metrics_report_json_shape_and_order() {
    let m = |a| TaskMetrics::compute(&[0.1, 0.9, a], &[Some(false), Some(true), Some(true)], None);
    let report = MetricsReport::new(vec![("repin".into(), m(0.05)), ("click".into(), m(0.5))]);
    assert_abs_diff_eq!(report.mean_auc.unwrap(), (0.5 + 1.0) / 2.0);
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        json.starts_with(r#"{"tasks":{"repin":{"auc":0.5,"logloss":"#),
        "{json}"
    );
    assert!(json.find("\"repin\"").unwrap() < json.find("\"click\"").unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tasks"]["click"]["n"], 3);
    assert_eq!(v["tasks"]["click"]["positives"], 2);
    let back: MetricsReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(back.task("click").unwrap().auc, Some(1.0));
    assert_abs_diff_eq!(
        mean_auc([None, Some(0.6), Some(0.8)]).unwrap(),
        0.7,
        epsilon = 1e-12
    );
    assert_eq!(mean_auc([None, None]), None);
}

#[test]
fn kendall_hand_cases() {
    let a = [0.1, 0.2, 0.3, 0.4];
    assert_abs_diff_eq!(kendall_tau_b(&a, &a).unwrap(), 1.0);
    assert_abs_diff_eq!(kendall_tau_b(&a, &[0.4, 0.3, 0.2, 0.1]).unwrap(), -1.0);
    // One swap among 4: C = 5, D = 1 → 4/6.
    assert_abs_diff_eq!(
        kendall_tau_b(&a, &[0.2, 0.1, 0.3, 0.4]).unwrap(),
        4.0 / 6.0,
        epsilon = 1e-12
    );
    // Ties: a = [1,1,2,3], b = [1,2,3,4]: n0 = 6, ties_a = 1, C = 5, D = 0 → 5/sqrt(5·6).
    let t = kendall_tau_b(&[1.0, 1.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_abs_diff_eq!(t, 5.0 / 30f64.sqrt(), epsilon = 1e-12);
    assert_eq!(kendall_tau_b(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    assert_eq!(kendall_tau_b(&[1.0], &[1.0]), None);
}

#[test]
fn kendall_matches_brute_force_with_ties() {
    let mut st = 11u64;
    for n in [2usize, 3, 5, 17, 64, 101] {
        let a: Vec<f64> = (0..n).map(|_| (lcg(&mut st) * 5.0).floor()).collect();
        let c: Vec<f64> = (0..n).map(|_| (lcg(&mut st) * 4.0).floor()).collect();
        match kendall_tau_b(&a, &c) {
            Some(t) => assert_abs_diff_eq!(t, brute_tau(&a, &c), epsilon = 1e-12),
            None => assert!(
                brute_tau(&a, &c).is_nan(),
                "{a:?} {c:?} {}",
                brute_tau(&a, &c)
            ),
        }
    }
}

#[test]
fn topk_flip_hand_cases() {
    // Request x: 3 items; request y: 3 items; request z: 1 item (never eligible for k = 1).
    let keys = ["x", "x", "x", "y", "y", "y", "z"];
    let a = [0.9, 0.5, 0.1, 0.3, 0.2, 0.1, 0.5];
    let b = [0.8, 0.6, 0.1, 0.1, 0.2, 0.3, 0.1];
    let groups = group_by_request(&keys);
    assert_eq!(groups, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    // k = 1: x keeps item 0 on top, y flips from item 3 to item 5.
    let t1 = topk_churn(&a, &b, &groups, 1);
    assert_eq!(t1.requests, 2);
    assert_abs_diff_eq!(t1.flip_rate.unwrap(), 0.5);
    assert_abs_diff_eq!(t1.changed_fraction.unwrap(), 0.5);
    // k = 2: x {0,1} vs {0,1} same; y {3,4} vs {4,5}: one of two slots changed.
    let t2 = topk_churn(&a, &b, &groups, 2);
    assert_abs_diff_eq!(t2.flip_rate.unwrap(), 0.5);
    assert_abs_diff_eq!(t2.changed_fraction.unwrap(), 0.25);
    // k = 3: no request has more than 3 items.
    let t3 = topk_churn(&a, &b, &groups, 3);
    assert_eq!((t3.requests, t3.flip_rate), (0, None));
    // Ties are broken by the earlier example: all-equal scores never flip.
    let flat = [0.5; 7];
    assert_eq!(topk_churn(&flat, &flat, &groups, 1).flip_rate, Some(0.0));
}

#[test]
fn churn_metrics_combine() {
    let keys = [1u32, 1, 1, 2, 2, 2];
    let a = [0.1f32, 0.2, 0.3, 0.3, 0.2, 0.1];
    let b = [0.1f32, 0.2, 0.3, 0.1, 0.2, 0.3];
    let c = ChurnMetrics::compute(&a, &b, &keys, 1);
    assert_abs_diff_eq!(c.mean_abs_delta.unwrap(), 0.4 / 6.0, epsilon = 1e-7);
    assert_eq!((c.n, c.topk_requests, c.tau_requests), (6, 2, 2));
    assert_abs_diff_eq!(c.topk_flip_rate.unwrap(), 0.5);
    // τ = +1 on request 1 and −1 on request 2.
    assert_abs_diff_eq!(c.kendall_tau.unwrap(), 0.0, epsilon = 1e-12);
    let same = ChurnMetrics::compute(&a, &a, &keys, 2);
    assert_eq!(
        (same.mean_abs_delta, same.topk_flip_rate, same.kendall_tau),
        (Some(0.0), Some(0.0), Some(1.0))
    );
}

#[test]
fn reports_from_batch_shaped_arrays() {
    use ndarray::array;
    let tasks: Vec<String> = vec!["repin".into(), "click".into()];
    let scores = array![
        [0.1f32, 0.9],
        [0.4, 0.2],
        [0.35, 0.3],
        [0.8, 0.7],
        [0.99, 0.5]
    ];
    let labels = array![
        [0.0f32, 1.0],
        [0.0, 0.0],
        [1.0, 0.0],
        [1.0, 1.0],
        [0.0, 1.0]
    ];
    let mask = array![
        [1.0f32, 1.0],
        [1.0, 1.0],
        [1.0, 1.0],
        [1.0, 0.0],
        [0.0, 1.0]
    ];
    let report =
        MetricsReport::from_arrays(&tasks, scores.view(), labels.view(), mask.view(), None);
    let repin = report.task("repin").unwrap();
    assert_eq!((repin.n, repin.positives), (4, 2));
    assert_abs_diff_eq!(repin.auc.unwrap(), 0.75);
    // click: present rows 0, 1, 2, 4 → pos {0.9, 0.5}, neg {0.2, 0.3} → 1.0.
    assert_abs_diff_eq!(report.task("click").unwrap().auc.unwrap(), 1.0);
    assert_abs_diff_eq!(report.mean_auc.unwrap(), 0.875);

    let other = array![
        [0.1f32, 0.9],
        [0.4, 0.2],
        [0.45, 0.3],
        [0.3, 0.7],
        [0.99, 0.5]
    ];
    let keys = ["a", "a", "a", "b", "b"];
    let churn = ChurnReport::from_arrays(&tasks, scores.view(), other.view(), &keys, 1);
    let c = churn.task("repin").unwrap();
    // Request a: the top-1 moves from item 1 (0.4) to item 2 (0.45), a flip; b keeps item 4.
    assert_abs_diff_eq!(c.topk_flip_rate.unwrap(), 0.5);
    assert_eq!(churn.task("click").unwrap().mean_abs_delta, Some(0.0));
    let json = serde_json::to_string(&churn).unwrap();
    assert!(
        json.starts_with(r#"{"tasks":{"repin":{"mean_abs_delta":"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<ChurnReport>(&json).unwrap(), churn);
}
