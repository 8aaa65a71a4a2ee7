//! Small numeric helpers shared by the simulators.

use rand::Rng;
use rand_distr::StandardNormal;

/// SplitMix64: a bijection on `u64` with good avalanche, used to derive pin ids and per-stream
/// seeds. Distinct inputs give distinct outputs.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The logistic function.
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One standard normal draw.
pub(crate) fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(StandardNormal)
}

/// Index of the first entry of the increasing cumulative weights `cdf` that exceeds
/// `u · total` (inverse-CDF sampling in O(log n)).
pub(crate) fn sample_cdf<R: Rng + ?Sized>(rng: &mut R, cdf: &[f64]) -> usize {
    let total = *cdf.last().expect("sampling from an empty distribution");
    let u = rng.random::<f64>() * total;
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// Cumulative sums of `weights`.
pub(crate) fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}
