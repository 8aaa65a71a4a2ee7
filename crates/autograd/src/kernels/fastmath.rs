//! Branch-free, vectorizable `exp`, `erf`, GELU and sigmoid, and slice kernels built on them.
//!
//! `std`'s `f32::exp` and `libm::erff` are scalar calls (~20 cycles each); the element-wise
//! transcendentals of a training step (softmax over `[B·H, L, L]`, GELU over `[B, L, 256]`)
//! spent most of their time there. The functions here are straight-line arithmetic on `f32`
//! bits, so loops over slices auto-vectorize; [`dispatch`] runs such a loop compiled for the
//! widest instruction set the CPU has (AVX-512 / AVX2, detected at run time by `pulp`, falling
//! back to the baseline), with no `unsafe` here.
//!
//! Accuracy (checked against `f64` in the tests): `exp` ≤ 2 ulp (relative error < 2.5·10⁻⁷)
//! over its whole range; `erf` absolute error < 3·10⁻⁷ (relative < 2.5·10⁻⁷ below 1, where `erf` is small);
//! GELU and its derivative use the normal CDF `Φ` directly (absolute error < 7.5·10⁻⁸, one
//! `exp` shared by `Φ` and the density, no series); results are
//! identical for every instruction set, because only `+ − × ÷` and bit operations are used
//! (no FMA contraction: Rust never fuses `a * b + c` on its own).

/// The constants of [`exp`], shared with the explicit-SIMD copies of it (which must perform
/// the same operations to give the same bits).
pub(crate) mod exp_consts {
    /// `log2(e)`.
    pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// `ln 2` split in a high part exact in f32 and a low correction (Cody–Waite).
    pub(crate) const LN2_HI: f32 = 0.693_359_4;
    pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
    /// Below this, `e^x` is under the smallest normal f32: the result is flushed to 0.
    pub(crate) const EXP_MIN: f32 = -87.336_55;
    /// Above this, `e^x` overflows: the result is `+∞`.
    pub(crate) const EXP_MAX: f32 = 88.722_84;
    /// The upper clamp of the argument: `n ≤ 127` in the exponent trick.
    pub(crate) const CLAMP_MAX: f32 = 88.376_26;
    /// `1.5·2²³`: adding and subtracting it rounds an `f32` of magnitude < 2²² to an integer.
    pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
    /// The Cephes polynomial for `(e^r − 1 − r) / r²`, highest degree first.
    pub(crate) const POLY: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
}
use exp_consts::{CLAMP_MAX, EXP_MAX, EXP_MIN, LN2_HI, LN2_LO, LOG2E, POLY, ROUND_MAGIC};

/// `e^x`: Cody–Waite range reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, and the Cephes
/// degree-5 polynomial for `e^r`; `2ⁿ` is built in the exponent bits. `exp(−∞) = 0`,
/// `exp(+∞) = +∞`, NaN propagates.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_MIN, CLAMP_MAX);
    let t = xc * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = POLY[0];
    for &k in &POLY[1..] {
        p = p * r + k;
    }
    let y = (p * r * r + r) + 1.0;
    // `2ⁿ` from the bits of `t = 1.5·2²³ + n` (its last mantissa bits are `n`), with integer
    // adds and a shift: a float → int `as` cast is saturating in Rust, and that select chain
    // kept LLVM from vectorizing every loop calling `exp` (scalar, ~4 cycles per element).
    let scale = f32::from_bits(
        t.to_bits()
            .wrapping_sub(ROUND_MAGIC.to_bits())
            .wrapping_add(127)
            << 23,
    );
    let v = y * scale;
    // Select, not branch: keeps the loop vectorizable. NaN fails both tests and stays NaN.
    let v = if x < EXP_MIN { 0.0 } else { v };
    if x > EXP_MAX { f32::INFINITY } else { v }
}

/// `a1 + a2 t + … + a5 t⁴` of Abramowitz & Stegun 7.1.26: `erfc(x) ≈ t·poly(t)·e^{−x²}` with
/// `t = 1 / (1 + 0.3275911·x)`, `x ≥ 0` (absolute error < 1.5·10⁻⁷).
#[inline(always)]
fn erfc_poly(t: f32) -> f32 {
    let mut q = 1.061_405_4_f32;
    q = q * t - 1.453_152_1;
    q = q * t + 1.421_413_8;
    q = q * t - 0.284_496_74;
    q * t + 0.254_829_6
}

/// `erf(x)`: its Maclaurin series for `|x| < 1`, Abramowitz & Stegun 7.1.26 (with [`exp`])
/// above; absolute error < 3·10⁻⁷.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    // |x| < 1: the Maclaurin series 2/√π · Σ (−1)ⁿ x²ⁿ⁺¹ / (n!(2n+1)), n ≤ 10.
    let z = x * x;
    let mut s = 1.0 / 76_204_800.0_f32;
    s = s * z - 1.0 / 6_894_720.0;
    s = s * z + 1.0 / 685_440.0;
    s = s * z - 1.0 / 75_600.0;
    s = s * z + 1.0 / 9360.0;
    s = s * z - 1.0 / 1320.0;
    s = s * z + 1.0 / 216.0;
    s = s * z - 1.0 / 42.0;
    s = s * z + 1.0 / 10.0;
    s = s * z - 1.0 / 3.0;
    s = s * z + 1.0;
    let small = std::f32::consts::FRAC_2_SQRT_PI * x * s;
    // |x| ≥ 1: 1 − (a1 t + … + a5 t⁵) e^{−x²}, t = 1 / (1 + p|x|).
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let large = 1.0 - erfc_poly(t) * t * exp(-z);
    let large = if x < 0.0 { -large } else { large };
    if a < 1.0 { small } else { large }
}

/// `(Φ(x), e^{−x²/2})`: the standard normal CDF from Abramowitz & Stegun 7.1.26 applied to
/// `erfc(|x|/√2)` — `Φ(x) = ½·erfc(−x/√2)` taken directly for `x < 0` (no cancellation in
/// `1 + erf`) and as `1 − ½·erfc(x/√2)` above — with its `e^{−u²}` factor, which is also the
/// density's: one [`exp`] serves both GELU's value and its derivative. Absolute error of `Φ`
/// < 7.5·10⁻⁸ (half the formula's `erf` bound).
#[inline(always)]
fn normal_cdf_and_gauss(x: f32) -> (f32, f32) {
    let u = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * u);
    let gauss = exp(-0.5 * x * x);
    // ½·erfc(|x|/√2) = Φ(−|x|).
    let tail = 0.5 * (erfc_poly(t) * t) * gauss;
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, gauss)
}

/// The exact GELU `x·Φ(x) = 0.5·x·(1 + erf(x/√2))` (Φ from Abramowitz & Stegun 7.1.26 on `erfc`:
/// absolute error < 7.5·10⁻⁸·|x| plus rounding).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * normal_cdf_and_gauss(x).0
}

/// `1/√(2π)`, the standard normal density at 0.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `d/dx GELU(x) = Φ(x) + x·φ(x)`, `φ(x) = e^{−x²/2}/√(2π)` (one [`exp`] for both terms).
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let (cdf, gauss) = normal_cdf_and_gauss(x);
    cdf + x * (FRAC_1_SQRT_2PI * gauss)
}

/// `(gelu(x), gelu_grad(x))` from one evaluation of `Φ` and `φ`: the same bits as the two
/// functions called separately (the same operations on the same values).
#[inline(always)]
pub fn gelu_and_grad(x: f32) -> (f32, f32) {
    let (cdf, gauss) = normal_cdf_and_gauss(x);
    (x * cdf, cdf + x * (FRAC_1_SQRT_2PI * gauss))
}

/// The logistic function `1 / (1 + e^{−x})`; exact limits 0 and 1, never NaN for finite `x`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Runs `f` compiled for the best instruction set of this CPU (AVX-512, AVX2 or baseline).
/// `f` should be a plain loop over slices calling the `#[inline(always)]` functions above.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Defines a vectorized slice kernel `out[i] = f(x[i])` over one of the functions above.
/// (A macro, not a generic taking `impl Fn`: a closure passed through the dispatch is not
/// reliably inlined into the SIMD-compiled loop, and a per-element call loses the gain.)
macro_rules! slice_kernel {
    ($(#[$doc:meta])* $name:ident, |$x:ident| $body:expr) => {
        $(#[$doc])*
        ///
        /// # Panics
        /// If the lengths differ.
        pub fn $name(x: &[f32], out: &mut [f32]) {
            assert_eq!(x.len(), out.len(), "{}: lengths differ", stringify!($name));
            dispatch(
                #[inline(always)]
                || {
                    for (o, &$x) in out.iter_mut().zip(x) {
                        *o = $body;
                    }
                },
            )
        }
    };
}

slice_kernel!(
    /// `out = exp(x)` element-wise.
    exp_slice,
    |v| exp(v)
);
slice_kernel!(
    /// `out = gelu(x)` element-wise.
    gelu_slice,
    |v| gelu(v)
);
slice_kernel!(
    /// `out = sigmoid(x)` element-wise.
    sigmoid_slice,
    |v| sigmoid(v)
);

/// `out = gelu(x)` and `x = gelu_grad(x)` element-wise ([`gelu_and_grad`]): the activation
/// into a buffer written once (every element), and, in place of its input, the derivative a
/// backward pass needs.
///
/// # Panics
/// If the lengths differ.
pub fn gelu_and_grad_slice(x: &mut [f32], out: &mut [std::mem::MaybeUninit<f32>]) {
    assert_eq!(x.len(), out.len(), "gelu_and_grad_slice: lengths differ");
    dispatch(
        #[inline(always)]
        || {
            for (o, x) in out.iter_mut().zip(x.iter_mut()) {
                let (y, d) = gelu_and_grad(*x);
                o.write(y);
                *x = d;
            }
        },
    )
}

/// `out = g · GELU'(x)` element-wise.
///
/// # Panics
/// If the lengths differ.
pub fn gelu_backward_slice(g: &[f32], x: &[f32], out: &mut [f32]) {
    assert!(
        g.len() == out.len() && x.len() == out.len(),
        "gelu_backward_slice: lengths differ"
    );
    dispatch(
        #[inline(always)]
        || {
            for ((o, &g), &x) in out.iter_mut().zip(g).zip(x) {
                *o = g * gelu_grad(x);
            }
        },
    )
}

/// `y = e^{x − m}`, and 0 where `keep` is false (when given).
///
/// # Panics
/// If the lengths differ.
pub fn exp_shifted_slice(x: &[f32], m: f32, keep: Option<&[bool]>, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "exp_shifted_slice: lengths differ");
    match keep {
        None => dispatch(
            #[inline(always)]
            || {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = exp(x - m);
                }
            },
        ),
        Some(k) => {
            assert_eq!(k.len(), y.len(), "exp_shifted_slice: mask length differs");
            dispatch(
                #[inline(always)]
                || {
                    for ((y, &x), &k) in y.iter_mut().zip(x).zip(k) {
                        let e = exp(x - m);
                        *y = if k { e } else { 0.0 };
                    }
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        for x in grid(-87.0, 88.0, 200_000).chain(grid(-1.0, 1.0, 10_000)) {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            assert!(
                ((got - want) / want).abs() < 2.5e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_gelu_sigmoid_match_the_reference() {
        for x in grid(-8.0, 8.0, 100_000) {
            let want = libm::erf(f64::from(x));
            let got = f64::from(erf(x));
            assert!((got - want).abs() < 3e-7, "erf({x}) = {got}, want {want}");
            assert!(
                x.abs() >= 1.0 || (got - want).abs() <= 2.5e-7 * want.abs(),
                "erf({x}) relative"
            );
            let xd = f64::from(x);
            let cdf = 0.5 * (1.0 + libm::erf(xd / std::f64::consts::SQRT_2));
            let g = xd * cdf;
            // The erf error is scaled by |x|/2, plus the rounding of the f32 result.
            assert!((f64::from(gelu(x)) - g).abs() < 2e-7 * (1.0 + xd.abs()));
            let dg = cdf + xd * (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((f64::from(gelu_grad(x)) - dg).abs() < 4e-7 * (1.0 + xd.abs()));
            let s = 1.0 / (1.0 + (-xd).exp());
            assert!((f64::from(sigmoid(x)) - s).abs() < 2e-7);
        }
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(erf(f32::NAN).is_nan() && gelu(f32::NAN).is_nan());
    }

    #[test]
    fn slice_kernels_equal_the_scalar_functions() {
        let x: Vec<f32> = grid(-20.0, 20.0, 1001).collect();
        let mut out = vec![0.0; x.len()];
        let same = |out: &[f32], f: &dyn Fn(f32) -> f32| {
            x.iter()
                .zip(out)
                .all(|(&v, &o)| o.to_bits() == f(v).to_bits())
        };
        exp_slice(&x, &mut out);
        assert!(same(&out, &exp));
        gelu_slice(&x, &mut out);
        assert!(same(&out, &gelu));
        sigmoid_slice(&x, &mut out);
        assert!(same(&out, &sigmoid));
        gelu_backward_slice(&x, &x, &mut out);
        assert!(same(&out, &|v| v * gelu_grad(v)));
        let mut d = x.clone();
        let mut written = vec![std::mem::MaybeUninit::new(f32::NAN); x.len()];
        gelu_and_grad_slice(&mut d, &mut written);
        let written: Vec<f32> = written
            .iter()
            .map(|v| {
                #[allow(unsafe_code)]
                // SAFETY: every element was initialized (with NaN, then overwritten).
                unsafe {
                    v.assume_init()
                }
            })
            .collect();
        assert!(same(&written, &gelu) && same(&d, &gelu_grad));
        exp_shifted_slice(&x, 1.5, None, &mut out);
        assert!(same(&out, &|v| exp(v - 1.5)));
        let keep: Vec<bool> = (0..x.len()).map(|i| i % 3 != 0).collect();
        exp_shifted_slice(&x, 1.5, Some(&keep), &mut out);
        for (i, (&v, &o)) in x.iter().zip(&out).enumerate() {
            assert_eq!(o, if keep[i] { exp(v - 1.5) } else { 0.0 });
        }
    }
}
