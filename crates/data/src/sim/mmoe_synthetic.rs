//! The synthetic two-task data of the MMoE paper (Ma et al., KDD 2018, "Modeling Task
//! Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", §4.1), whose
//! task correlation is controlled exactly.
//!
//! # Generative model
//!
//! 1. Draw two orthogonal unit vectors `u₁, u₂ ∈ ℝᵈ` (Gaussian vectors, Gram–Schmidt).
//! 2. Task weights `w₁ = c·u₁`, `w₂ = c·(p·u₁ + √(1 − p²)·u₂)`, so `cos(w₁, w₂) = p`.
//! 3. Inputs `x ~ N(0, I_d)`.
//! 4. Scores `yᵢ = wᵢᵀx + Σⱼ₌₁..ₘ sin(αⱼ wᵢᵀx + βⱼ) + ε`, with `αⱼ, βⱼ ~ N(0, 1)` shared by the
//!    two tasks and `ε ~ N(0, noise_var)`, independent per task.
//!
//! Since `x ~ N(0, I)`, the linear parts `wᵢᵀx` have Pearson correlation exactly `p`; the
//! sine terms make the relation non-linear, as in the paper.
//!
//! # Output
//!
//! Records carry `features = x` and no history/candidate (the dense-only setting of SPEC §4.1).
//! The raw scores are always returned in [`MmoeSynthetic::scores`]. Labels:
//! * [`MmoeLabels::Binary`] — `task_i = 1` iff `yᵢ` is above the median of `yᵢ` over the
//!   generated set (so each task is balanced: exactly ⌊n/2⌋ positives);
//! * [`MmoeLabels::Regression`] — no labels on the records (every task missing, since labels
//!   must be 0/1); use the scores.

use super::util::normal;
use crate::record::EngagementRecord;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The task names of the synthetic data.
pub const MMOE_TASKS: [&str; 2] = ["task1", "task2"];

/// How the records are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MmoeLabels {
    /// 0/1 labels: above the per-task median → 1.
    Binary,
    /// No labels on the records; the scores are the regression targets.
    Regression,
}

/// Knobs of the MMoE synthetic data; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MmoeSyntheticConfig {
    /// Number of examples.
    pub num_examples: usize,
    /// Input dimension `d` (≥ 2).
    pub dim: usize,
    /// Task correlation `p = cos(w₁, w₂)` ∈ [−1, 1].
    pub correlation: f64,
    /// Weight scale `c`.
    pub scale: f64,
    /// Number of sine terms `m`.
    pub num_sin: usize,
    /// Variance of the noise `ε`.
    pub noise_var: f64,
    /// Labelling mode.
    pub labels: MmoeLabels,
}

impl Default for MmoeSyntheticConfig {
    fn default() -> Self {
        MmoeSyntheticConfig {
            num_examples: 10_000,
            dim: 100,
            correlation: 0.5,
            scale: 1.0,
            num_sin: 10,
            noise_var: 0.01,
            labels: MmoeLabels::Binary,
        }
    }
}

/// The generated data and the parameters behind it.
#[derive(Debug, Clone)]
pub struct MmoeSynthetic {
    /// One record per example.
    pub records: Vec<EngagementRecord>,
    /// Raw scores `[y₁, y₂]` per example.
    pub scores: Vec<[f64; 2]>,
    /// Linear parts `[w₁ᵀx, w₂ᵀx]` per example.
    pub linear: Vec<[f64; 2]>,
    /// Task weight vectors `[w₁, w₂]`.
    pub weights: [Vec<f64>; 2],
    /// The sine frequencies `α`.
    pub alphas: Vec<f64>,
    /// The sine phases `β`.
    pub betas: Vec<f64>,
    /// The per-task medians used for binarization.
    pub medians: [f64; 2],
    /// The configuration.
    pub config: MmoeSyntheticConfig,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Generates the data with `seed` (deterministic).
///
/// # Panics
/// If `dim < 2`, `|correlation| > 1`, or `scale`/`noise_var` is negative or not finite.
pub fn simulate_mmoe_synthetic(config: &MmoeSyntheticConfig, seed: u64) -> MmoeSynthetic {
    let (d, p) = (config.dim, config.correlation);
    assert!(d >= 2, "dim must be >= 2 to have two orthogonal directions");
    assert!(
        (-1.0..=1.0).contains(&p),
        "correlation must be in [-1, 1], got {p}"
    );
    assert!(
        config.scale.is_finite() && config.scale >= 0.0,
        "scale must be finite and >= 0"
    );
    assert!(
        config.noise_var.is_finite() && config.noise_var >= 0.0,
        "noise_var must be finite and >= 0"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let unit = |v: Vec<f64>| {
        let norm = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect::<Vec<f64>>()
    };
    let u1 = unit((0..d).map(|_| normal(&mut rng)).collect());
    let raw: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
    let proj = dot(&raw, &u1);
    let u2 = unit(raw.iter().zip(&u1).map(|(r, u)| r - proj * u).collect());
    let c = config.scale;
    let q = (1.0 - p * p).max(0.0).sqrt();
    let w1: Vec<f64> = u1.iter().map(|u| c * u).collect();
    let w2: Vec<f64> = u1
        .iter()
        .zip(&u2)
        .map(|(a, b)| c * (p * a + q * b))
        .collect();
    let alphas: Vec<f64> = (0..config.num_sin).map(|_| normal(&mut rng)).collect();
    let betas: Vec<f64> = (0..config.num_sin).map(|_| normal(&mut rng)).collect();
    let noise_std = config.noise_var.sqrt();

    let (mut xs, mut linear, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..config.num_examples {
        let x: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
        let lin = [dot(&w1, &x), dot(&w2, &x)];
        let y = lin.map(|l| {
            let waves: f64 = alphas
                .iter()
                .zip(&betas)
                .map(|(a, b)| (a * l + b).sin())
                .sum();
            l + waves + noise_std * normal(&mut rng)
        });
        xs.push(x);
        linear.push(lin);
        scores.push(y);
    }
    let medians = [0, 1].map(|t| median(scores.iter().map(|s| s[t]).collect()));
    let records = xs
        .into_iter()
        .zip(&scores)
        .map(|(features, y)| {
            let labels: BTreeMap<String, Option<f64>> = match config.labels {
                MmoeLabels::Binary => MMOE_TASKS
                    .iter()
                    .zip(y.iter().zip(medians))
                    .map(|(t, (&y, m))| (t.to_string(), Some(if y > m { 1.0 } else { 0.0 })))
                    .collect(),
                MmoeLabels::Regression => BTreeMap::new(),
            };
            EngagementRecord {
                features,
                labels,
                ..Default::default()
            }
        })
        .collect();
    MmoeSynthetic {
        records,
        scores,
        linear,
        weights: [w1, w2],
        alphas,
        betas,
        medians,
        config: config.clone(),
    }
}

/// Pearson correlation of two equally long samples (`None` if shorter than 2 or constant).
///
/// # Panics
/// If the lengths differ.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "samples differ in length");
    let n = a.len() as f64;
    if a.len() < 2 {
        return None;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}
