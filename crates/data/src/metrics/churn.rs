//! Churn between two models' scores on the same examples (SPEC §2.4): how much two models of
//! the same configuration (e.g. trained with different seeds, with or without score
//! regularization) disagree.
//!
//! Three views, all computed per task from the two score columns `a` and `b`:
//!
//! * **mean |Δp|** — the mean absolute difference of the two predicted probabilities over all
//!   examples.
//! * **top-k flips** — examples are grouped into requests by a request key (the candidates of
//!   one request). In each request the top-k set of each model is the `k` items with the
//!   highest scores, ties broken by the earlier example (lower index) first. Only requests with
//!   **more than `k` items** count (with `≤ k` items the top-k set is the whole request and can
//!   never flip). Over those requests:
//!   - `topk_flip_rate` = the fraction of requests whose top-k **set** differs between the two
//!     models (order inside the top-k is ignored);
//!   - `topk_changed_fraction` = the mean over requests of `1 − |A ∩ B| / k`, the fraction of the
//!     top-k slots taken by items the other model did not put in its top-k.
//! * **Kendall τ-b per request** — the rank correlation of the two models' scores inside each
//!   request, with the τ-b tie correction, averaged (unweighted) over the requests with at
//!   least 2 items where τ-b is defined (neither model gives all items the same score).
//!   Computed with Knight's O(n log n) algorithm, so even one huge request is cheap.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;

/// Mean |a − b| over all examples; `None` when there are none.
///
/// # Panics
/// If the lengths differ.
pub fn mean_abs_delta<S: Copy + Into<f64>>(a: &[S], b: &[S]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "the two score columns differ in length");
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x.into() - y.into()).abs())
        .sum();
    (!a.is_empty()).then(|| sum / a.len() as f64)
}

/// Groups example indices by request key, in order of each key's first appearance (so the
/// result is deterministic); indices inside a group are increasing.
pub fn group_by_request<K: Hash + Eq>(keys: &[K]) -> Vec<Vec<usize>> {
    let mut slot: HashMap<&K, usize> = HashMap::with_capacity(keys.len() / 4 + 1);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let g = *slot.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Kendall's τ-b between two score vectors (ties in either vector handled by the τ-b
/// correction). `None` with fewer than 2 items or when either vector is constant (τ-b is then
/// 0/0). O(n log n) (Knight 1966).
///
/// # Panics
/// If the lengths differ.
pub fn kendall_tau_b<S: Copy + Into<f64>>(a: &[S], b: &[S]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "the two score columns differ in length");
    let n = a.len();
    if n < 2 {
        return None;
    }
    let mut pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x.into(), y.into()))
        .collect();
    pairs.sort_unstable_by(|p, q| p.0.total_cmp(&q.0).then(p.1.total_cmp(&q.1)));
    let pairs_of = |t: u64| t * (t.saturating_sub(1)) / 2;
    let n0 = pairs_of(n as u64);
    // Ties in a (n1) and joint ties (n3), from runs of the (a, b)-sorted sequence.
    let (mut n1, mut n3) = (0u64, 0u64);
    let (mut run_a, mut run_ab) = (1u64, 1u64);
    for i in 1..n {
        let same_a = pairs[i].0.total_cmp(&pairs[i - 1].0).is_eq();
        let same_b = pairs[i].1.total_cmp(&pairs[i - 1].1).is_eq();
        if same_a {
            run_a += 1;
            if same_b {
                run_ab += 1;
            } else {
                n3 += pairs_of(run_ab);
                run_ab = 1;
            }
        } else {
            n1 += pairs_of(run_a);
            n3 += pairs_of(run_ab);
            run_a = 1;
            run_ab = 1;
        }
    }
    n1 += pairs_of(run_a);
    n3 += pairs_of(run_ab);
    // Sort the b column by merge sort, counting the swaps (strictly discordant pairs).
    let mut ys: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let mut buf = vec![0.0; n];
    let swaps = merge_count(&mut ys, &mut buf);
    let mut n2 = 0u64;
    let mut run_b = 1u64;
    for i in 1..n {
        if ys[i].total_cmp(&ys[i - 1]).is_eq() {
            run_b += 1;
        } else {
            n2 += pairs_of(run_b);
            run_b = 1;
        }
    }
    n2 += pairs_of(run_b);
    if n1 == n0 || n2 == n0 {
        return None;
    }
    let numerator = n0 as f64 - n1 as f64 - n2 as f64 + n3 as f64 - 2.0 * swaps as f64;
    let denominator = ((n0 - n1) as f64 * (n0 - n2) as f64).sqrt();
    Some(numerator / denominator)
}

/// Stable bottom-up merge sort of `v`, returning the number of inversions (pairs `i < j` with
/// `v[i] > v[j]`; equal values are not inversions).
fn merge_count(v: &mut [f64], buf: &mut [f64]) -> u64 {
    let n = v.len();
    let mut swaps = 0u64;
    let mut width = 1;
    while width < n {
        let mut lo = 0;
        while lo < n {
            let mid = (lo + width).min(n);
            let hi = (lo + 2 * width).min(n);
            let (mut i, mut j, mut k) = (lo, mid, lo);
            while i < mid && j < hi {
                if v[j].total_cmp(&v[i]).is_lt() {
                    buf[k] = v[j];
                    swaps += (mid - i) as u64;
                    j += 1;
                } else {
                    buf[k] = v[i];
                    i += 1;
                }
                k += 1;
            }
            buf[k..k + (mid - i)].copy_from_slice(&v[i..mid]);
            k += mid - i;
            buf[k..k + (hi - j)].copy_from_slice(&v[j..hi]);
            lo = hi;
        }
        v.copy_from_slice(buf);
        width *= 2;
    }
    swaps
}

/// The indices (into `items`) of the `k` highest scores, ties broken by position in `items`.
fn top_k<S: Copy + Into<f64>>(scores: &[S], items: &[usize], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = items.to_vec();
    // Stable sort: equal scores keep their (increasing-index) order.
    order.sort_by(|&i, &j| scores[j].into().total_cmp(&scores[i].into()));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// Top-k churn over requests, see the module docs for the exact definitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopKChurn {
    /// Fraction of eligible requests whose top-k set differs (`None` if none is eligible).
    pub flip_rate: Option<f64>,
    /// Mean fraction of top-k slots changed, `1 − |A ∩ B| / k` (`None` if none is eligible).
    pub changed_fraction: Option<f64>,
    /// Number of eligible requests (more than `k` items).
    pub requests: usize,
}

/// Top-k set churn of two score columns over the request `groups` (e.g. from
/// [`group_by_request`]).
///
/// # Panics
/// If `k == 0`, the columns differ in length, or a group index is out of range.
pub fn topk_churn<S: Copy + Into<f64>>(
    a: &[S],
    b: &[S],
    groups: &[Vec<usize>],
    k: usize,
) -> TopKChurn {
    assert!(k > 0, "top-k churn needs k >= 1");
    assert_eq!(a.len(), b.len(), "the two score columns differ in length");
    let (mut flips, mut changed, mut requests) = (0usize, 0.0f64, 0usize);
    for items in groups.iter().filter(|g| g.len() > k) {
        let ta = top_k(a, items, k);
        let tb = top_k(b, items, k);
        let common = ta.iter().filter(|i| tb.binary_search(i).is_ok()).count();
        requests += 1;
        if common < k {
            flips += 1;
        }
        changed += 1.0 - common as f64 / k as f64;
    }
    let per = |x: f64| (requests > 0).then(|| x / requests as f64);
    TopKChurn {
        flip_rate: per(flips as f64),
        changed_fraction: per(changed),
        requests,
    }
}

/// Mean Kendall τ-b over the request `groups` that have at least 2 items and a defined τ-b;
/// returns `(mean, number of requests averaged)`.
///
/// # Panics
/// If the columns differ in length or a group index is out of range.
pub fn mean_kendall_tau<S: Copy + Into<f64>>(
    a: &[S],
    b: &[S],
    groups: &[Vec<usize>],
) -> (Option<f64>, usize) {
    assert_eq!(a.len(), b.len(), "the two score columns differ in length");
    let (mut sum, mut count) = (0.0, 0usize);
    for items in groups.iter().filter(|g| g.len() >= 2) {
        let ga: Vec<f64> = items.iter().map(|&i| a[i].into()).collect();
        let gb: Vec<f64> = items.iter().map(|&i| b[i].into()).collect();
        if let Some(t) = kendall_tau_b(&ga, &gb) {
            sum += t;
            count += 1;
        }
    }
    ((count > 0).then(|| sum / count as f64), count)
}

/// All churn metrics of one task between two models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnMetrics {
    /// Mean |Δp| over all examples.
    pub mean_abs_delta: Option<f64>,
    /// Number of examples.
    pub n: usize,
    /// The `k` of the top-k metrics.
    pub k: usize,
    /// See [`TopKChurn::flip_rate`].
    pub topk_flip_rate: Option<f64>,
    /// See [`TopKChurn::changed_fraction`].
    pub topk_changed_fraction: Option<f64>,
    /// Requests with more than `k` items.
    pub topk_requests: usize,
    /// Mean per-request Kendall τ-b.
    pub kendall_tau: Option<f64>,
    /// Requests the τ-b average is over.
    pub tau_requests: usize,
}

impl ChurnMetrics {
    /// Computes every churn metric of one task: `a` and `b` are the two models' scores on the
    /// same examples, `requests[i]` the request key of example `i`.
    ///
    /// # Panics
    /// If the lengths differ or `k == 0`.
    pub fn compute<S: Copy + Into<f64>, K: Hash + Eq>(
        a: &[S],
        b: &[S],
        requests: &[K],
        k: usize,
    ) -> Self {
        assert_eq!(
            a.len(),
            requests.len(),
            "one request key per example is needed"
        );
        Self::with_groups(a, b, &group_by_request(requests), k)
    }

    /// As [`ChurnMetrics::compute`], with the requests already grouped (see
    /// [`group_by_request`]).
    ///
    /// # Panics
    /// If the lengths differ, `k == 0`, or a group index is out of range.
    pub fn with_groups<S: Copy + Into<f64>>(
        a: &[S],
        b: &[S],
        groups: &[Vec<usize>],
        k: usize,
    ) -> Self {
        let topk = topk_churn(a, b, groups, k);
        let (kendall_tau, tau_requests) = mean_kendall_tau(a, b, groups);
        ChurnMetrics {
            mean_abs_delta: mean_abs_delta(a, b),
            n: a.len(),
            k,
            topk_flip_rate: topk.flip_rate,
            topk_changed_fraction: topk.changed_fraction,
            topk_requests: topk.requests,
            kendall_tau,
            tau_requests,
        }
    }
}

/// Churn metrics of every task between two models, in task order; serializes to
/// `{"tasks": {"<task>": {"mean_abs_delta": .., "topk_flip_rate": .., "kendall_tau": .., ..}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnReport {
    /// `(task name, churn)` in task order.
    #[serde(with = "super::ordered_map")]
    pub tasks: Vec<(String, ChurnMetrics)>,
}

impl ChurnReport {
    /// Churn of every task from the two models' `[N, T]` probability arrays on the same
    /// examples; `requests[i]` is example `i`'s request key.
    ///
    /// # Panics
    /// If the shapes disagree with each other, with `tasks` or with `requests`, or `k == 0`.
    pub fn from_arrays<S: Copy + Into<f64>, K: Hash + Eq>(
        tasks: &[String],
        a: ArrayView2<'_, S>,
        b: ArrayView2<'_, S>,
        requests: &[K],
        k: usize,
    ) -> Self {
        let (n, t) = a.dim();
        assert_eq!(
            t,
            tasks.len(),
            "scores have {t} columns for {} tasks",
            tasks.len()
        );
        assert_eq!(b.dim(), (n, t), "the two score arrays differ in shape");
        assert_eq!(requests.len(), n, "one request key per example is needed");
        let groups = group_by_request(requests);
        let tasks = tasks
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let ca: Vec<f64> = a.column(j).iter().map(|&x| x.into()).collect();
                let cb: Vec<f64> = b.column(j).iter().map(|&x| x.into()).collect();
                (
                    name.clone(),
                    ChurnMetrics::with_groups(&ca, &cb, &groups, k),
                )
            })
            .collect();
        ChurnReport { tasks }
    }

    /// The churn of the task called `name`, if present.
    pub fn task(&self, name: &str) -> Option<&ChurnMetrics> {
        self.tasks.iter().find(|(t, _)| t == name).map(|(_, m)| m)
    }
}
