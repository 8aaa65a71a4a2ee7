//! Inverted dropout with a counter-based mask.
//!
//! [`Var::dropout`] draws **one** `u64` seed `s` from the caller's RNG. Element `i` (its index
//! in row-major order) is kept iff its 16 random bits `field(s, i)` are `≥ ⌊p·2¹⁶⌋`, where
//! `field(s, i)` is the 16-bit field `i mod 4` of the `⌊i/4⌋`-th output of a SplitMix64 stream
//! seeded with `s` (`crate::kernels::dropout_bits`: one 64-bit hash serves four elements, and
//! 32 elements' decisions are one vector compare). Each decision depends only on `(s, i)`, so
//! the mask is the same whatever the thread count or chunking, and the forward can run in
//! parallel. The keep probability is `1 − ⌊p·2¹⁶⌋/2¹⁶`: `1 − p` rounded up to a multiple of
//! `2⁻¹⁶` (a rate below `2⁻¹⁶` drops nothing); kept elements are scaled by `1 / (1 − p)`.
//!
//! The backward does not store the mask: it keeps `(s, threshold)` and recomputes the same bits
//! (16 bytes instead of one bit or one float per element).
//!
//! The element-wise kernels take the factors (`1 / (1 − p)` or 0) in blocks of [`BLOCK`] from
//! the vectorized hash into a stack buffer, then run their loop over the block with the factor
//! as one more input.

use crate::kernels::dropout_bits;
use crate::kernels::{fastmath, use_parallel};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use rayon::prelude::*;

/// Elements whose factors are computed at once (a 1 KB stack buffer).
const BLOCK: usize = 256;

/// The mask of one dropout call: element `i` is kept iff its random field is `≥ threshold`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mask {
    seed: u64,
    threshold: u16,
    scale: f32,
}

impl Mask {
    pub(crate) fn new(p: f32, seed: u64) -> Self {
        Mask {
            seed,
            threshold: dropout_bits::threshold(p),
            scale: 1.0 / (1.0 - p),
        }
    }

    /// The factor of element `i`: `1 / (1 − p)` if it is kept, else 0.
    #[cfg(test)]
    pub(crate) fn factor(&self, i: u64) -> f32 {
        if dropout_bits::field(self.seed, i) >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// `out[k] = factor(start + k)`, vectorized (see `crate::kernels::dropout_bits`).
    pub(crate) fn factors(&self, start: u64, out: &mut [f32]) {
        dropout_bits::factors(self.seed, self.threshold, self.scale, start, out);
    }

    /// `body(offset, factors)` for consecutive blocks of at most [`BLOCK`] of the `len`
    /// elements from index `start`: `factors[k]` is the factor of element `start + offset + k`.
    #[inline(always)]
    fn for_blocks(&self, start: usize, len: usize, mut body: impl FnMut(usize, &[f32])) {
        let mut buf = [0.0_f32; BLOCK];
        let mut off = 0;
        while off < len {
            let f = &mut buf[..BLOCK.min(len - off)];
            self.factors((start + off) as u64, f);
            body(off, f);
            off += f.len();
        }
    }

    /// `x[i] = f(x[i]) · factor(i)` in place for a row-major slice whose first element has index
    /// `start`, vectorized (`f` is one of the `#[inline(always)]` element functions, inlined
    /// into the loop; see [`fastmath::dispatch`]).
    #[inline(always)]
    fn map_chunk(&self, start: usize, x: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
        self.for_blocks(start, x.len(), |off, fac| {
            let x = &mut x[off..off + fac.len()];
            fastmath::dispatch(
                #[inline(always)]
                || {
                    for (v, &m) in x.iter_mut().zip(fac) {
                        *v = f(*v) * m;
                    }
                },
            )
        });
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
        self.for_blocks(start, x.len(), |off, fac| {
            let (x, out) = (&x[off..off + fac.len()], &mut out[off..off + fac.len()]);
            fastmath::dispatch(
                #[inline(always)]
                || {
                    for ((o, &v), &m) in out.iter_mut().zip(x).zip(fac) {
                        o.write(f(v) * m);
                    }
                },
            )
        });
    }

    /// `out[i] = f(z[i]).0 · factor(i)` and `z[i] = f(z[i]).1` for a row-major slice whose first
    /// element has index `start` (same lengths; every element of `out` written).
    #[inline(always)]
    pub(crate) fn map_keep_chunk(
        &self,
        start: usize,
        z: &mut [f32],
        out: &mut [std::mem::MaybeUninit<f32>],
        f: impl Fn(f32) -> (f32, f32) + Copy,
    ) {
        self.for_blocks(start, z.len(), |off, fac| {
            let (z, out) = (&mut z[off..off + fac.len()], &mut out[off..off + fac.len()]);
            fastmath::dispatch(
                #[inline(always)]
                || {
                    for ((o, z), &m) in out.iter_mut().zip(z.iter_mut()).zip(fac) {
                        let (y, d) = f(*z);
                        o.write(y * m);
                        *z = d;
                    }
                },
            )
        });
    }

    /// `g[i] = (g[i] · factor(i)) · df(z[i])` in place (the gradient through the mask, then
    /// through an element function with derivative `df` at its input `z`).
    #[inline(always)]
    fn grad_chunk(&self, start: usize, g: &mut [f32], z: &[f32], df: impl Fn(f32) -> f32 + Copy) {
        self.for_blocks(start, g.len(), |off, fac| {
            let (g, z) = (&mut g[off..off + fac.len()], &z[off..off + fac.len()]);
            fastmath::dispatch(
                #[inline(always)]
                || {
                    for ((g, &z), &m) in g.iter_mut().zip(z).zip(fac) {
                        *g = (*g * m) * df(z);
                    }
                },
            )
        });
    }

    /// `f(x[i]) · factor(i)` for every element of a row-major slice, into a new vector written
    /// once (one pass: no copy of `x` masked afterwards), by the pool when it is large; each
    /// element is computed on its own, so the result is independent of the (fixed) chunking.
    pub(crate) fn map(&self, x: &[f32], f: impl Fn(f32) -> f32 + Copy + Sync) -> Vec<f32> {
        #[allow(unsafe_code)]
        // SAFETY: `map_chunk_into` writes every element of each chunk `o` (the same length as
        // its piece of `x`).
        unsafe {
            crate::kernels::written_by(x.len(), CHUNK, |c, o| {
                self.map_chunk_into(c * CHUNK, &x[c * CHUNK..][..o.len()], o, f);
            })
            .0
        }
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
    /// Inverted dropout: each element is zeroed with probability `p` (rounded down to a
    /// multiple of `2⁻¹⁶`, the resolution of the mask's random bits) and the kept ones are
    /// scaled by `1 / (1 − p)`, so the expectation is unchanged (up to that rounding). The
    /// gradient is multiplied by the same mask.
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
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Tape, Tensor};
    use ndarray::IxDyn;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    fn ones(shape: &[usize]) -> Tensor {
        Tensor::ones(IxDyn(shape))
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
            assert_eq!(y, x * mask.factor(i as u64), "element {i}");
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
