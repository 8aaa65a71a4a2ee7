//! Parameter initialisation schemes, all drawing from an explicit RNG.

use closeup_autograd::Tensor;
use ndarray::IxDyn;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// `U(-bound, bound)` entries.
pub fn uniform(shape: &[usize], bound: f32, rng: &mut impl Rng) -> Tensor {
    if bound == 0.0 {
        return Tensor::zeros(IxDyn(shape));
    }
    Tensor::from_shape_simple_fn(IxDyn(shape), || rng.random_range(-bound..bound))
}

/// `N(0, std²)` entries.
///
/// # Panics
/// If `std` is negative or not finite.
pub fn normal(shape: &[usize], std: f32, rng: &mut impl Rng) -> Tensor {
    let dist = Normal::new(0.0f32, std).expect("normal: std must be finite and >= 0");
    Tensor::from_shape_simple_fn(IxDyn(shape), || dist.sample(rng))
}

/// PyTorch's default for linear layers (Kaiming-uniform with a = √5): `U(-1/√fan_in, 1/√fan_in)`.
pub fn linear_default(shape: &[usize], fan_in: usize, rng: &mut impl Rng) -> Tensor {
    uniform(shape, 1.0 / (fan_in.max(1) as f32).sqrt(), rng)
}

/// Xavier/Glorot uniform: `U(-√(6/(fan_in+fan_out)), +…)`.
pub fn xavier_uniform(
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    rng: &mut impl Rng,
) -> Tensor {
    uniform(shape, (6.0 / (fan_in + fan_out).max(1) as f32).sqrt(), rng)
}
