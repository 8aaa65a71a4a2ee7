//! Fused layer normalisation over the last axis, with an analytic backward.
//!
//! Forward, per row of `D` entries: `μ = mean(x)`, `σ² = mean((x − μ)²)` (biased, as PyTorch),
//! `rstd = 1/√(σ² + eps)`, `x̂ = (x − μ)·rstd`, `y = x̂·γ + β`. Only `μ` and `rstd` are saved
//! (two floats per row); `x̂` is recomputed in the backward from the input the tape already
//! holds.
//!
//! Backward, with `dŷ = dy ⊙ γ`:
//! `dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ ⊙ x̂))`, `dγ = Σ_rows dy ⊙ x̂`, `dβ = Σ_rows dy`.
//!
//! The per-row means (and the backward's two per-row means) are summed in 16 partial lanes
//! combined in a fixed order, so they vectorize; blocks of rows run compiled for the widest
//! instruction set the CPU has. Rows are independent and run in parallel above the
//! element-wise threshold. The sums over
//! rows for `dγ` and `dβ` are taken in a fixed order — serially within fixed blocks of rows
//! (the block size depends only on `D`), then over the blocks in order — so the result is
//! bit-identical across thread counts.

use crate::kernels::fastmath::dispatch;
use crate::kernels::{PAR_MIN_LEN, use_parallel};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::IxDyn;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// Lanes of the partial sums in the row reductions.
const LANES: usize = 16;

/// `Σ_i f(a[i], b[i], c[i])` over three equally long slices in [`LANES`] partial sums (lane
/// `l` takes the elements `≡ l` mod [`LANES`] of the whole chunks) combined in a fixed order,
/// then the tail (a serial `f32` sum cannot be vectorized: every add waits for the previous
/// one). The slices are walked in fixed-size chunks, so the loops carry no bounds checks.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut acc = [0.0_f32; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ta, tb, tc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((a, b), c) in ca.zip(cb).zip(cc) {
        for (((s, &a), &b), &c) in acc.iter_mut().zip(a).zip(b).zip(c) {
            *s += f(a, b, c);
        }
    }
    let tail = ta
        .iter()
        .zip(tb)
        .zip(tc)
        .fold(0.0_f32, |s, ((&a, &b), &c)| s + f(a, b, c));
    acc.iter().fold(0.0_f32, |s, &v| s + v) + tail
}

/// `(μ, rstd)` of one row. A row with zero variance and `eps = 0` gets `rstd = 0`, so its
/// `x̂` (and its gradient) is 0 instead of `0 · ∞ = NaN`; NaN inputs still propagate.
#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x, x, x, |v, _, _| v) / n;
    let var = lane_sum(x, x, x, |v, _, _| (v - mean) * (v - mean)) / n;
    let t = var + eps;
    let rstd = if t == 0.0 { 0.0 } else { 1.0 / t.sqrt() };
    (mean, rstd)
}

/// Writes `y = x̂·γ + β` for one row (every element of `y`) and returns its `(μ, rstd)`.
#[inline(always)]
fn normalize_row(
    y: &mut [MaybeUninit<f32>],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> (f32, f32) {
    let (mean, rstd) = row_stats(x, eps);
    for (((y, &xv), &gv), &bv) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
        y.write((xv - mean) * rstd * gv + bv);
    }
    (mean, rstd)
}

/// Rows per block of the backward's parameter-gradient sums: about [`PAR_MIN_LEN`] elements,
/// a function of `D` only (never of the thread count).
fn block_rows(d: usize) -> usize {
    (PAR_MIN_LEN / d.max(1)).max(1)
}

struct LayerNormBackward {
    x: usize,
    gamma: usize,
    beta: usize,
    x_val: Arc<Tensor>,
    gamma_val: Arc<Tensor>,
    /// `(μ, rstd)` per row.
    stats: Vec<(f32, f32)>,
}

/// The per-block result of the backward: `Σ dy ⊙ x̂` and `Σ dy` over the block's rows (empty
/// when the parameter needs no gradient).
struct BlockSums {
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

impl BackwardOp for LayerNormBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let x = self
            .x_val
            .as_slice()
            .expect("tape values are standard layout");
        let gamma = self
            .gamma_val
            .as_slice()
            .expect("tape values are standard layout");
        let g = g.as_standard_layout();
        let dy = g.as_slice().expect("standard layout");
        let d = gamma.len();
        let rows = self.stats.len();
        let (want_x, want_g, want_b) = (
            sink.wants(self.x),
            sink.wants(self.gamma),
            sink.wants(self.beta),
        );
        let block = block_rows(d);
        let n = d as f32;
        // Each block compiled for the widest instruction set (see `fastmath::dispatch`).
        // Block `b`: rows `b · block ..`, with its slice of `dx` (empty when x needs no
        // gradient; otherwise every element is written).
        let work = |b: usize, dx_block: &mut [MaybeUninit<f32>]| -> BlockSums {
            dispatch(
                #[inline(always)]
                || {
                    let mut sums = BlockSums {
                        dgamma: vec![0.0; if want_g { d } else { 0 }],
                        dbeta: vec![0.0; if want_b { d } else { 0 }],
                    };
                    let r0 = b * block;
                    let r1 = (r0 + block).min(rows);
                    for r in r0..r1 {
                        let (xr, gr) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
                        let (mu, rs) = self.stats[r];
                        if want_g {
                            for ((acc, &xv), &gv) in sums.dgamma.iter_mut().zip(xr).zip(gr) {
                                *acc += gv * ((xv - mu) * rs);
                            }
                        }
                        if want_b {
                            for (acc, &gv) in sums.dbeta.iter_mut().zip(gr) {
                                *acc += gv;
                            }
                        }
                        if want_x {
                            // mean(dŷ) and mean(dŷ ⊙ x̂).
                            let s1 = lane_sum(gr, gamma, gamma, |g, gm, _| g * gm);
                            let s2 = lane_sum(gr, gamma, xr, |g, gm, xv| g * gm * ((xv - mu) * rs));
                            let (m1, m2) = (s1 / n, s2 / n);
                            let out = &mut dx_block[(r - r0) * d..(r - r0 + 1) * d];
                            for (((o, &xv), &gv), &gm) in out.iter_mut().zip(xr).zip(gr).zip(gamma)
                            {
                                o.write(rs * (gv * gm - m1 - ((xv - mu) * rs) * m2));
                            }
                        }
                    }
                    sums
                },
            )
        };
        let blocks: Vec<BlockSums> = if want_x {
            #[allow(unsafe_code)]
            // SAFETY: chunk `b` of `dx` is rows `b · block ..` (whole rows), and `work` writes
            // every element of each of them when `want_x`.
            let (dx, blocks) = unsafe { crate::kernels::written_by(rows * d, block * d, work) };
            let dx =
                Tensor::from_shape_vec(self.x_val.raw_dim(), dx).expect("dx has the input's size");
            sink.add(self.x, dx);
            blocks
        } else {
            let none = |b: usize| work(b, &mut []);
            let items = 0..rows.div_ceil(block);
            if use_parallel(rows * d) {
                items.into_par_iter().map(none).collect()
            } else {
                items.map(none).collect()
            }
        };
        let total = |pick: fn(&BlockSums) -> &Vec<f32>| -> Tensor {
            let mut acc = vec![0.0_f32; d];
            for b in &blocks {
                for (a, &v) in acc.iter_mut().zip(pick(b)) {
                    *a += v;
                }
            }
            Tensor::from_shape_vec(IxDyn(&[d]), acc).expect("length d")
        };
        if want_g {
            sink.add(self.gamma, total(|b| &b.dgamma));
        }
        if want_b {
            sink.add(self.beta, total(|b| &b.dbeta));
        }
    }
}

impl<'t> Var<'t> {
    /// Layer normalisation over the last axis: `y = (x − μ)/√(σ² + eps) · gamma + beta`, with
    /// the mean `μ` and biased variance `σ²` of each row of `D` entries (as PyTorch's
    /// `LayerNorm`). Fused: one pass per row forward, an analytic backward for `x`, `gamma` and
    /// `beta`. A row with zero variance (always the case for `D = 1`) normalises to `x̂ = 0`,
    /// so its output is `beta`; with `eps = 0`, where `1/√0` would make that `0·∞ = NaN`, its
    /// `rstd` is taken as 0, which also zeroes its input gradient. For `D = 1` the input
    /// gradient is always 0.
    ///
    /// # Shapes
    /// `self`: `[.., D]` (at least one axis), `gamma`: `[D]`, `beta`: `[D]` → `[.., D]`.
    ///
    /// # Panics
    /// If `self` is a scalar or `D = 0`, if `gamma` or `beta` is not `[D]`, if `eps` is
    /// negative, infinite or NaN, or if the operands belong to different tapes.
    pub fn layer_norm(self, gamma: Var<'t>, beta: Var<'t>, eps: f32) -> Var<'t> {
        self.same_tape(&gamma, "layer_norm");
        self.same_tape(&beta, "layer_norm");
        let (x_val, g_val, b_val) = (self.value(), gamma.value(), beta.value());
        let shape = x_val.shape();
        assert!(
            !shape.is_empty(),
            "layer_norm: the input must have at least one axis, got a scalar"
        );
        let d = shape[shape.len() - 1];
        assert!(
            d > 0,
            "layer_norm: the normalised (last) axis of shape {shape:?} is empty"
        );
        assert!(
            g_val.shape() == [d] && b_val.shape() == [d],
            "layer_norm: gamma {:?} and beta {:?} must both be [{d}] for an input of shape {shape:?}",
            g_val.shape(),
            b_val.shape()
        );
        assert!(
            eps >= 0.0 && eps.is_finite(),
            "layer_norm: eps must be finite and >= 0, got {eps}"
        );
        let x = x_val.as_slice().expect("tape values are standard layout");
        let (gs, bs) = (
            g_val.as_slice().expect("tape values are standard layout"),
            b_val.as_slice().expect("tape values are standard layout"),
        );
        // Blocks of rows (a function of `D` only), each compiled for the widest instruction
        // set (see `fastmath::dispatch`); rows are independent, so the split changes nothing.
        // Each block's `(μ, rstd)` go to its own slot, concatenated in block order.
        let chunk = block_rows(d) * d;
        #[allow(unsafe_code)]
        // SAFETY: block `i` is rows `i · chunk / d ..` of the output, and `normalize_row`
        // writes every element of each of its rows (`chunk` and the total are multiples of `d`).
        let (out, block_stats) = unsafe {
            crate::kernels::written_by(x.len(), chunk, |i, y| {
                let x = &x[i * chunk..][..y.len()];
                dispatch(
                    #[inline(always)]
                    || {
                        let mut stats = Vec::with_capacity(x.len() / d);
                        for (y, x) in y.chunks_mut(d).zip(x.chunks(d)) {
                            stats.push(normalize_row(y, x, gs, bs, eps));
                        }
                        stats
                    },
                )
            })
        };
        let stats: Vec<(f32, f32)> = block_stats.concat();
        let out =
            Tensor::from_shape_vec(x_val.raw_dim(), out).expect("output has the input's size");
        self.tape
            .record(&[self, gamma, beta], out, || LayerNormBackward {
                x: self.id,
                gamma: gamma.id,
                beta: beta.id,
                x_val: x_val.clone(),
                gamma_val: g_val,
                stats,
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn, value_and_grads};
    use crate::{Tape, Tensor, Var};
    use ndarray::{IxDyn, array};

    fn assert_close(got: &Tensor, want: &Tensor, tol: f32) {
        assert_eq!(got.shape(), want.shape());
        for (&g, &w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "got {got:?}\nwant {want:?}"
            );
        }
    }

    fn row(t: &Tensor, i: usize) -> Vec<f32> {
        t.index_axis(ndarray::Axis(0), i).iter().copied().collect()
    }

    /// The composed slow path from binary ops: row means as a matmul with a `[D, 1]` column of
    /// `1/D`.
    fn composed<'t>(
        tape: &'t Tape,
        x: Var<'t>,
        gamma: Var<'t>,
        beta: Var<'t>,
        eps: f32,
    ) -> Var<'t> {
        let d = gamma.shape()[0];
        let avg = tape.constant(Tensor::from_elem(IxDyn(&[d, 1]), 1.0 / d as f32));
        let mean = x.matmul(avg);
        let xc = x - mean;
        let var = (xc * xc).matmul(avg);
        let rstd = var.add_scalar(eps).sqrt().powf(-1.0);
        xc * rstd * gamma + beta
    }

    #[test]
    fn closed_form_values() {
        let tape = Tape::new();
        let x = tape.constant(array![[1.0_f32, 2.0, 3.0, 4.0], [-1.0, -1.0, 1.0, 1.0]].into_dyn());
        let gamma = tape.constant(array![1.0_f32, 2.0, 1.0, 1.0].into_dyn());
        let beta = tape.constant(array![0.0_f32, 0.0, 0.0, 10.0].into_dyn());
        let y = x.layer_norm(gamma, beta, 0.0).value();
        // Row 0: μ = 2.5, σ² = 1.25.
        let s = 1.25_f32.sqrt();
        let want = array![
            [-1.5 / s, -1.0 / s, 0.5 / s, 10.0 + 1.5 / s],
            [-1.0, -2.0, 1.0, 11.0]
        ]
        .into_dyn();
        assert_close(&y, &want, 1e-6);
    }

    #[test]
    fn matches_composed_path() {
        for (shape, eps) in [
            (vec![4, 6], 1e-5),
            (vec![2, 3, 5], 1e-3),
            (vec![1, 8], 1e-5),
        ] {
            let d = shape[shape.len() - 1];
            let inputs = [
                randn(&shape, 71),
                randn(&[d], 72).mapv(|v| v + 1.0),
                randn(&[d], 73),
            ];
            let (y_fast, g_fast) =
                value_and_grads(&inputs, 5, move |_, v| v[0].layer_norm(v[1], v[2], eps));
            let (y_slow, g_slow) =
                value_and_grads(&inputs, 5, move |t, v| composed(t, v[0], v[1], v[2], eps));
            assert_close(&y_fast, &y_slow, 1e-4);
            for (f, s) in g_fast.iter().zip(&g_slow) {
                assert_close(f, s, 1e-3);
            }
        }
    }

    #[test]
    fn gradient_checks() {
        for shape in [vec![3, 5], vec![2, 3, 4], vec![1, 7], vec![6]] {
            let d = shape[shape.len() - 1];
            let inputs = vec![randn(&shape, 81), randn(&[d], 82), randn(&[d], 83)];
            assert_gradients(&inputs, |_, v| v[0].layer_norm(v[1], v[2], 1e-5));
        }
        // Broadcast afterwards and a shared input.
        let (x, w) = (randn(&[3, 4], 84), randn(&[4], 85));
        assert_gradients(&[x, w], |_, v| v[0].layer_norm(v[1], v[1], 1e-5) * v[0]);
    }

    #[test]
    fn width_one_and_constant_rows() {
        // D = 1: x̂ = 0, so y = beta and dx = 0 (for any eps, including 0).
        for eps in [1e-5, 0.0] {
            let inputs = [
                randn(&[4, 1], 91),
                array![1.5_f32].into_dyn(),
                array![0.25_f32].into_dyn(),
            ];
            let (y, g) = value_and_grads(&inputs, 6, move |_, v| v[0].layer_norm(v[1], v[2], eps));
            assert_eq!(y, Tensor::from_elem(IxDyn(&[4, 1]), 0.25));
            assert_eq!(g[0], Tensor::zeros(IxDyn(&[4, 1])));
            assert_eq!(g[1], Tensor::zeros(IxDyn(&[1])));
            let seed_sum: f32 = randn(&[4, 1], 6).sum();
            assert!((g[2][0] - seed_sum).abs() < 1e-6);
            assert_gradients(&inputs, move |_, v| v[0].layer_norm(v[1], v[2], eps));
        }
        // A constant row with eps = 0 is finite (no 0·∞).
        let inputs = [
            array![[3.0_f32, 3.0, 3.0], [1.0, 2.0, 4.0]].into_dyn(),
            randn(&[3], 1),
            randn(&[3], 2),
        ];
        let (y, g) = value_and_grads(&inputs, 7, |_, v| v[0].layer_norm(v[1], v[2], 0.0));
        assert!(y.iter().chain(g.iter().flatten()).all(|v| v.is_finite()));
        assert_eq!(row(&y, 0), inputs[2].iter().copied().collect::<Vec<_>>());
        assert_eq!(row(&g[0], 0), vec![0.0; 3]);
    }

    #[test]
    fn gradients_only_where_needed() {
        let tape = Tape::new();
        let x = tape.constant(randn(&[2, 3], 1));
        let gamma = tape.leaf(randn(&[3], 2));
        let beta = tape.constant(randn(&[3], 3));
        let y = x.layer_norm(gamma, beta, 1e-5);
        let grads = tape.backward_with_seed(y, randn(&[2, 3], 4));
        assert!(grads.wrt(gamma).is_some());
        assert!(
            !tape
                .constant(randn(&[2, 3], 1))
                .layer_norm(beta, beta, 1e-5)
                .requires_grad()
        );
    }

    #[test]
    #[should_panic(
        expected = "layer_norm: gamma [4] and beta [3] must both be [3] for an input of shape [2, 3]"
    )]
    fn wrong_parameter_shape_panics() {
        let tape = Tape::new();
        let x = tape.constant(randn(&[2, 3], 1));
        let _ = x.layer_norm(
            tape.constant(randn(&[4], 1)),
            tape.constant(randn(&[3], 1)),
            1e-5,
        );
    }

    fn big_run() -> Vec<Tensor> {
        // 40960 elements; more rows than one block so dγ/dβ combine several blocks.
        let inputs = [randn(&[2, 640, 32], 1), randn(&[32], 2), randn(&[32], 3)];
        let (y, g) = value_and_grads(&inputs, 4, |_, v| v[0].layer_norm(v[1], v[2], 1e-5));
        std::iter::once(y).chain(g).collect()
    }

    #[test]
    fn deterministic_across_runs_and_thread_counts() {
        assert!(
            2 * 640 > super::block_rows(32),
            "the test must span several blocks"
        );
        let in_pool = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(big_run)
        };
        let bits = |ts: &[Tensor]| {
            ts.iter()
                .map(|t| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (in_pool(1), in_pool(2), big_run());
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(bits(&a), bits(&c));
    }
}
