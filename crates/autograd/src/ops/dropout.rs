//! Inverted dropout with a counter-based mask.
//!
//! [`Var::dropout`] draws **one** `u64` seed `s` from the caller's RNG. Element `i` (its index
//! in row-major order) is kept iff `splitmix64(s + (i + 1)·γ) ≥ ⌊p·2⁶⁴⌋`, where `γ` is the
//! SplitMix64 increment `0x9E37_79B9_7F4A_7C15` — i.e. element `i` reads the `i`-th output of a
//! SplitMix64 stream seeded with `s`. Each decision depends only on `(s, i)`, so the mask is the
//! same whatever the thread count or chunking, and the forward can run in parallel. The keep
//! probability is `1 − ⌊p·2⁶⁴⌋/2⁶⁴ = 1 − p` up to f64 rounding of `p·2⁶⁴`.
//!
//! The backward does not store the mask: it keeps `(s, threshold)` and recomputes the same hash
//! (16 bytes instead of one bit or one float per element).

use crate::kernels::{fastmath, use_parallel};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use rayon::prelude::*;

/// The SplitMix64 increment (2⁶⁴ / φ).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output for counter `i` of the stream seeded with `seed`.
#[inline(always)]
fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The mask of one dropout call: element `i` is kept iff its hash is `≥ threshold`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mask {
    seed: u64,
    threshold: u64,
    scale: f32,
}

impl Mask {
    pub(crate) fn new(p: f32, seed: u64) -> Self {
        // p ∈ (0, 1), so p·2⁶⁴ < 2⁶⁴ (the cast saturates anyway).
        let threshold = (f64::from(p) * 18_446_744_073_709_551_616.0) as u64;
        Mask {
            seed,
            threshold,
            scale: 1.0 / (1.0 - p),
        }
    }

    /// The factor of element `i`: `1 / (1 − p)` if it is kept, else 0 (inlined into the
    /// callers' vectorized loops).
    #[inline(always)]
    pub(crate) fn factor(&self, i: u64) -> f32 {
        if splitmix64(self.seed, i) >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// `x[i] = f(x[i]) · factor(i)` in place for a row-major slice whose first element has index
    /// `start`, vectorized (the 64-bit hash runs in SIMD lanes; see [`fastmath::dispatch`]; `f`
    /// is one of the `#[inline(always)]` element functions, inlined into the loop).
    #[inline(always)]
    fn map_chunk(&self, start: usize, x: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
        let (seed, threshold, scale) = (self.seed, self.threshold, self.scale);
        fastmath::dispatch(
            #[inline(always)]
            || {
                for (i, v) in x.iter_mut().enumerate() {
                    let keep = splitmix64(seed, (start + i) as u64) >= threshold;
                    *v = f(*v) * if keep { scale } else { 0.0 };
                }
            },
        )
    }

    /// `out[i] = f(x[i]) · factor(i)` for a row-major slice whose first element has index
    /// `start` (same lengths; every element of `out` written).
    #[inline(always)]
    fn map_chunk_into(
        &self,
        start: usize,
        x: &[f32],
        out: &mut [std::mem::MaybeUninit<f32>],
        f: impl Fn(f32) -> f32 + Copy,
    ) {
        let (seed, threshold, scale) = (self.seed, self.threshold, self.scale);
        fastmath::dispatch(
            #[inline(always)]
            || {
                for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                    let keep = splitmix64(seed, (start + i) as u64) >= threshold;
                    o.write(f(v) * if keep { scale } else { 0.0 });
                }
            },
        )
    }

    /// `out[i] = f(z[i]).0 · factor(i)` and `z[i] = f(z[i]).1` for a row-major slice whose first
    /// element has index `start` (same lengths; every element of `out` written).
    #[inline(always)]
    fn map_keep_chunk(
        &self,
        start: usize,
        z: &mut [f32],
        out: &mut [std::mem::MaybeUninit<f32>],
        f: impl Fn(f32) -> (f32, f32) + Copy,
    ) {
        let (seed, threshold, scale) = (self.seed, self.threshold, self.scale);
        fastmath::dispatch(
            #[inline(always)]
            || {
                for (i, (o, z)) in out.iter_mut().zip(z.iter_mut()).enumerate() {
                    let keep = splitmix64(seed, (start + i) as u64) >= threshold;
                    let (y, d) = f(*z);
                    o.write(y * if keep { scale } else { 0.0 });
                    *z = d;
                }
            },
        )
    }

    /// `g[i] = (g[i] · factor(i)) · df(z[i])` in place (the gradient through the mask, then
    /// through an element function with derivative `df` at its input `z`).
    #[inline(always)]
    fn grad_chunk(&self, start: usize, g: &mut [f32], z: &[f32], df: impl Fn(f32) -> f32 + Copy) {
        let (seed, threshold, scale) = (self.seed, self.threshold, self.scale);
        fastmath::dispatch(
            #[inline(always)]
            || {
                for (i, (g, &z)) in g.iter_mut().zip(z).enumerate() {
                    let keep = splitmix64(seed, (start + i) as u64) >= threshold;
                    *g = (*g * if keep { scale } else { 0.0 }) * df(z);
                }
            },
        )
    }

    /// `f(x[i]) · factor(i)` for every element of a row-major slice, into a new vector written
    /// once (one pass: no copy of `x` masked afterwards), by the pool when it is large; each
    /// element is computed on its own, so the result is independent of the (fixed) chunking.
    pub(crate) fn map(&self, x: &[f32], f: impl Fn(f32) -> f32 + Copy + Sync) -> Vec<f32> {
        let n = x.len();
        let mut out = Vec::with_capacity(n);
        let spare = &mut out.spare_capacity_mut()[..n];
        if use_parallel(n) {
            spare
                .par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(c, (o, x))| self.map_chunk_into(c * CHUNK, x, o, f));
        } else {
            self.map_chunk_into(0, x, spare, f);
        }
        #[allow(unsafe_code)]
        // SAFETY: the capacity is `n` and `map_chunk_into` wrote every one of the first `n`
        // elements (the chunks of `spare` and `x` pair up exactly, both of length `n`).
        unsafe {
            out.set_len(n);
        }
        out
    }

    /// [`Mask::map`] of `f(z[i]).0`, while `z[i]` is replaced by `f(z[i]).1` — e.g. an
    /// activation and, in place of its input, the derivative its backward needs, in one pass.
    pub(crate) fn map_keep(
        &self,
        z: &mut [f32],
        f: impl Fn(f32) -> (f32, f32) + Copy + Sync,
    ) -> Vec<f32> {
        let n = z.len();
        let mut out = Vec::with_capacity(n);
        let spare = &mut out.spare_capacity_mut()[..n];
        if use_parallel(n) {
            spare
                .par_chunks_mut(CHUNK)
                .zip(z.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(c, (o, z))| self.map_keep_chunk(c * CHUNK, z, o, f));
        } else {
            self.map_keep_chunk(0, z, spare, f);
        }
        #[allow(unsafe_code)]
        // SAFETY: the capacity is `n` and `map_keep_chunk` wrote every one of the first `n`
        // elements (the chunks of `spare` and `z` pair up exactly, both of length `n`).
        unsafe {
            out.set_len(n);
        }
        out
    }

    /// `x[i] = f(x[i]) · factor(i)` in place for every element of a row-major slice (see
    /// [`Mask::map`]).
    pub(crate) fn map_in_place(&self, x: &mut [f32], f: impl Fn(f32) -> f32 + Copy + Sync) {
        if use_parallel(x.len()) {
            x.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, x)| self.map_chunk(c * CHUNK, x, f));
        } else {
            self.map_chunk(0, x, f);
        }
    }

    /// `g[i] = (g[i] · factor(i)) · df(z[i])` in place for every element (see [`Mask::map`]).
    ///
    /// # Panics
    /// If the lengths differ.
    pub(crate) fn grad_in_place(
        &self,
        g: &mut [f32],
        z: &[f32],
        df: impl Fn(f32) -> f32 + Copy + Sync,
    ) {
        assert_eq!(g.len(), z.len(), "Mask::grad_in_place: lengths differ");
        if use_parallel(g.len()) {
            g.par_chunks_mut(CHUNK)
                .zip(z.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(c, (g, z))| self.grad_chunk(c * CHUNK, g, z, df));
        } else {
            self.grad_chunk(0, g, z, df);
        }
    }

    /// `x[i] · factor(i)` into a new vector (see [`Mask::map`]).
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.map(x, |v| v)
    }

    /// `x[i] · factor(i)` in place.
    pub(crate) fn apply_in_place(&self, x: &mut [f32]) {
        self.map_in_place(x, |v| v);
    }

    /// The factor of a kept element, `1 / (1 − p)`.
    pub(crate) fn scale(&self) -> f32 {
        self.scale
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

struct DropoutBackward {
    x: usize,
    mask: Mask,
}

impl BackwardOp for DropoutBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        self.backward_owned(g.clone(), sink);
    }

    /// Masks the incoming gradient in place: no new buffer.
    fn backward_owned(&self, g: Tensor, sink: &mut GradSink<'_>) {
        if !sink.wants(self.x) {
            return;
        }
        let mut g = if g.is_standard_layout() {
            g
        } else {
            g.as_standard_layout().into_owned()
        };
        self.mask
            .apply_in_place(g.as_slice_mut().expect("standard layout"));
        sink.add(self.x, g);
    }
}

impl<'t> Var<'t> {
    /// Inverted dropout: each element is zeroed with probability `p` and the kept ones are
    /// scaled by `1 / (1 − p)`, so the expectation is unchanged. The gradient is multiplied by
    /// the same mask.
    ///
    /// Draws exactly one `u64` from `rng` (the mask seed; see the module docs for the
    /// counter-based hash), so the result depends only on the RNG state — not on the thread
    /// count. With `p == 0` this is the identity: it returns `self`, records nothing and draws
    /// nothing from `rng`. Whether to apply dropout at all (training vs. evaluation) is the
    /// caller's decision.
    ///
    /// # Shapes
    /// Any shape → the same shape.
    ///
    /// # Panics
    /// If `p` is not in `[0, 1)` (including NaN).
    pub fn dropout<R: rand::Rng + ?Sized>(self, p: f32, rng: &mut R) -> Var<'t> {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout: p must be in [0, 1), got {p}"
        );
        if p == 0.0 {
            return self;
        }
        let mask = Mask::new(p, rng.next_u64());
        let x = self.value();
        let out = match x.as_slice() {
            // Read once, written once, by the pool.
            Some(xs) => Tensor::from_shape_vec(x.raw_dim(), mask.apply(xs))
                .expect("same number of elements"),
            None => {
                let mut out = x.as_standard_layout().into_owned();
                mask.apply_in_place(out.as_slice_mut().expect("standard layout"));
                out
            }
        };
        self.tape
            .record(&[self], out, || DropoutBackward { x: self.id, mask })
    }
}

#[cfg(test)]
mod tests {
    use super::splitmix64;
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor};
    use ndarray::IxDyn;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    fn ones(shape: &[usize]) -> Tensor {
        Tensor::ones(IxDyn(shape))
    }

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // First outputs of SplitMix64 seeded with 1234567 (the reference C implementation).
        assert_eq!(splitmix64(1_234_567, 0), 6_457_827_717_110_365_317);
        assert_eq!(splitmix64(1_234_567, 1), 3_203_168_211_198_807_973);
    }

    #[test]
    fn vectorized_in_place_mask_equals_the_scalar_definition() {
        // The SIMD, chunked, in-place kernel against the module docs' formula, element by
        // element, on a length that is not a multiple of any vector width or chunk.
        let n = 3 * (1 << 14) + 17;
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let mask = super::Mask::new(0.2, 0xDEAD_BEEF);
        let mut y = x.clone();
        mask.apply_in_place(&mut y);
        for (i, (&x, &y)) in x.iter().zip(&y).enumerate() {
            let keep = splitmix64(mask.seed, i as u64) >= mask.threshold;
            assert_eq!(y, x * if keep { mask.scale } else { 0.0 }, "element {i}");
        }
        // The write-once forward kernel gives the same elements, on 1 and 2 threads and below
        // the parallel threshold.
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(pool.install(|| mask.apply(&x)), y, "{threads} threads");
        }
        assert_eq!(mask.apply(&x[..100]), y[..100]);
        assert!(mask.apply(&[]).is_empty());
    }

    #[test]
    fn keep_rate_and_expectation() {
        for p in [0.1_f32, 0.2, 0.5, 0.9] {
            let tape = Tape::new();
            let mut rng = StdRng::seed_from_u64(42);
            let n = 200_000;
            let y = tape.constant(ones(&[n])).dropout(p, &mut rng);
            let v = y.value();
            let kept = v.iter().filter(|&&x| x != 0.0).count() as f64 / n as f64;
            // Binomial standard deviation ≤ 0.0012 for n = 200k; allow 5σ.
            assert!(
                (kept - f64::from(1.0 - p)).abs() < 0.006,
                "p={p}: keep rate {kept}"
            );
            assert!(v.iter().all(|&x| x == 0.0 || x == 1.0 / (1.0 - p)));
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 0.03, "p={p}: mean {mean}");
        }
    }

    #[test]
    fn p_zero_is_identity_and_draws_nothing() {
        let tape = Tape::new();
        let x = tape.leaf(randn(&[3, 4], 1));
        let mut rng = StdRng::seed_from_u64(7);
        let y = x.dropout(0.0, &mut rng);
        assert_eq!(y.id(), x.id());
        assert_eq!(rng.next_u64(), StdRng::seed_from_u64(7).next_u64());
    }

    #[test]
    fn same_seed_same_mask_different_seed_different_mask() {
        let run = |seed: u64| {
            let tape = Tape::new();
            let mut rng = StdRng::seed_from_u64(seed);
            let y = tape.constant(ones(&[4096])).dropout(0.5, &mut rng);
            y.value().mapv(|v| v != 0.0)
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        // Two calls from one RNG draw two seeds: different masks.
        let tape = Tape::new();
        let mut rng = StdRng::seed_from_u64(3);
        let x = tape.constant(ones(&[4096]));
        assert_ne!(
            *x.dropout(0.5, &mut rng).value(),
            *x.dropout(0.5, &mut rng).value()
        );
    }

    #[test]
    fn gradient_uses_the_same_mask() {
        let tape = Tape::new();
        let x = tape.leaf(randn(&[50, 40], 2));
        let y = x.dropout(0.3, &mut StdRng::seed_from_u64(9));
        let g = tape.backward(y.sum()).wrt(x).unwrap();
        let scale = 1.0 / 0.7_f32;
        for (gv, yv) in g.iter().zip(y.value().iter()) {
            assert_eq!(*gv, if *yv == 0.0 { 0.0 } else { scale });
        }
    }

    #[test]
    fn gradients() {
        for shape in [vec![4, 6], vec![1, 5], vec![2, 3, 4]] {
            assert_gradients(&[randn(&shape, 3)], |_, v| {
                let mut rng = StdRng::seed_from_u64(11);
                v[0].dropout(0.4, &mut rng)
            });
        }
        assert_gradients(&[randn(&[3, 3], 4), randn(&[3], 5)], |_, v| {
            let mut rng = StdRng::seed_from_u64(12);
            (v[0] * v[1]).dropout(0.25, &mut rng) * v[0]
        });
    }

    #[test]
    fn identical_across_thread_counts() {
        let x = randn(&[300, 200], 6); // 60k elements: parallel above the threshold
        let run = || {
            let tape = Tape::new();
            let v = tape.leaf(x.clone());
            let y = v.dropout(0.2, &mut StdRng::seed_from_u64(5));
            let g = tape.backward((y * tape.constant(randn(&[300, 200], 7))).sum());
            (
                y.value().mapv(f32::to_bits),
                g.wrt(v).unwrap().mapv(f32::to_bits),
            )
        };
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, two) = (pool(1).install(run), pool(2).install(run));
        assert_eq!(one, two);
        // And the parallel path agrees with the serial one on a small slice of the same mask.
        let small = {
            let tape = Tape::new();
            let v = tape.constant(x.slice(ndarray::s![..100, ..]).to_owned().into_dyn());
            v.dropout(0.2, &mut StdRng::seed_from_u64(5))
                .value()
                .mapv(f32::to_bits)
        };
        assert_eq!(
            small,
            one.0.slice(ndarray::s![..100, ..]).to_owned().into_dyn()
        );
    }

    #[test]
    #[should_panic(expected = "dropout: p must be in [0, 1), got 1")]
    fn p_one_panics() {
        let tape = Tape::new();
        let _ = tape
            .constant(ones(&[2]))
            .dropout(1.0, &mut StdRng::seed_from_u64(0));
    }

    #[test]
    #[should_panic(expected = "dropout: p must be in [0, 1), got NaN")]
    fn p_nan_panics() {
        let tape = Tape::new();
        let _ = tape
            .constant(ones(&[2]))
            .dropout(f32::NAN, &mut StdRng::seed_from_u64(0));
    }
}
