//! Fused multi-head scaled dot-product attention with a key-padding mask and dropout of the
//! attention weights: one op for what the composed path does with a head split (permute copy),
//! a scale, a batched `Q·Kᵀ`, a masked softmax, dropout, a batched `·V` and a head merge.
//!
//! The composed path writes and re-reads several `[B·H, L, L]` tensors (41 MB each in the
//! reference model) per layer and direction, and its per-head products are too small for a
//! general `gemm` call to run well. Here one task handles one sequence: for each head it
//! gathers the head's `q`, `k`, `v` columns into small zero-padded scratch matrices, computes the
//! scores, the masked softmax and the dropped-out weights for the whole head while they are in
//! cache, and multiplies by `V` with the register-blocked [`small::matmul`]; the output is
//! written straight into its columns of the `[B, L, D]` result. Only the softmax probabilities
//! are kept for the backward (`[H, L, L']` per sequence, `L'` = `L` rounded up to 16); the
//! dropout mask is recomputed from its seed, as [`Var::dropout`] does. How the loops are
//! written so that they vectorize is explained in `rows.rs`.
//!
//! Semantics are exactly the composed path's (and the tests compare the two, values and
//! gradients, on the same dropout mask): `softmax_mask((q/√d_h)·kᵀ)` per head, masked keys get
//! weight 0, a query row whose keys are all masked gets all-zero weights (output 0, no NaN),
//! and dropout element `(b·H + h, i, j)` of the `[B·H, L, L]` weights is kept by the same
//! counter-based hash as [`Var::dropout`] — drawing the same one `u64` seed from the RNG, so a
//! model switched from the composed path to this op draws the same masks. Results differ from
//! the composed path by float rounding only (other summation orders). Work is split over the
//! sequences of the batch; every output element is computed by the same arithmetic whatever
//! the thread count, so results are bit-identical across thread counts.

use super::dropout::Mask;
use crate::kernels::fastmath::dispatch;
use crate::kernels::small::{self, padded};
use crate::kernels::zeros;
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use std::sync::Arc;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    len: usize,
    dim: usize,
    heads: usize,
    /// Per-head width `d_h = D / H`.
    dh: usize,
    /// `len` rounded up to a multiple of [`LANES`] (row stride of the score matrices).
    lp: usize,
    /// `dh` rounded up likewise (row stride of the per-head `[L, d_h]` matrices).
    dhp: usize,
    /// `1 / √d_h`.
    scale: f32,
}

impl Dims {
    /// Whether the per-head products read and write the `[L, D]` buffers in place (`d_h` a
    /// multiple of [`LANES`], so a head's columns need no zero padding).
    fn direct(&self) -> bool {
        self.dh == self.dhp
    }

    /// Elements of one sequence's saved probabilities (`H` matrices `[L, L']`).
    fn probs_per_item(&self) -> usize {
        self.heads * self.len * self.lp
    }
}

/// Per-task scratch: zero-padded per-head matrices, reused across heads and sequences. Padding
/// columns are never written, so they stay zero.
struct Scratch {
    /// Scaled queries `[L, d_h']`.
    q: Vec<f32>,
    /// Keys `[L, d_h']`.
    k: Vec<f32>,
    /// Keys transposed `[d_h, L']`.
    kt: Vec<f32>,
    /// Values `[L, d_h']`.
    v: Vec<f32>,
    /// Values transposed `[d_h, L']`.
    vt: Vec<f32>,
    /// Output gradient of the head `[L, d_h']`.
    dout: Vec<f32>,
    /// An `[L, L']` matrix (probabilities in evaluation, dropped-out weights otherwise).
    p: Vec<f32>,
    /// A second `[L, L']` matrix (score gradients).
    ds: Vec<f32>,
    /// A per-head `[L, d_h']` result.
    res: Vec<f32>,
    /// Per-row sums.
    row_sums: Vec<f32>,
    /// The dropout factors of one head `[L, L']`.
    factors: Vec<f32>,
}

impl Scratch {
    fn new(d: &Dims) -> Self {
        let (nd, nt, nl) = (d.len * d.dhp, d.dh * d.lp, d.len * d.lp);
        Scratch {
            q: vec![0.0; nd],
            k: vec![0.0; nd],
            kt: vec![0.0; nt],
            v: vec![0.0; nd],
            vt: vec![0.0; nt],
            dout: vec![0.0; nd],
            p: vec![0.0; nl],
            ds: vec![0.0; nl],
            res: vec![0.0; nd],
            row_sums: vec![0.0; d.len],
            factors: vec![0.0; nl],
        }
    }
}

mod rows;
#[cfg(target_arch = "x86_64")]
mod simd;
use rows::{dropout_factors, gather, gather_t, multiply, scatter, score_grad_rows, softmax_rows};

/// The forward of sequence `b`: writes `out` `[L, D]`; appends the softmax probabilities
/// `[H, L, L']` to `probs` when they are kept for the backward.
#[allow(clippy::too_many_arguments)]
fn forward_item(
    d: &Dims,
    b: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    bias: &[f32],
    dropout: Option<Mask>,
    out: &mut [f32],
    mut probs: Option<&mut Vec<f32>>,
    s: &mut Scratch,
) {
    dispatch(
        #[inline(always)]
        || {
            let (l, lp, dh) = (d.len, d.lp, d.dh);
            for h in 0..d.heads {
                // Direct (`d_h` a multiple of the lane width): the products read `q`, `v` and
                // write `out` in place with row stride `D`; the scale goes into the `Kᵀ` copy.
                // Otherwise through zero-padded per-head copies.
                let direct = d.direct();
                let (qa, lda) = if direct {
                    (&q[h * dh..], d.dim)
                } else {
                    gather(q, d, h, d.scale, &mut s.q);
                    (&s.q[..], d.dhp)
                };
                gather_t(k, d, h, if direct { d.scale } else { 1.0 }, &mut s.kt);
                // Scores and softmax in the cached scratch; when the probabilities are kept,
                // the softmax's last pass writes them straight into the saved buffer (fresh
                // memory written once: no zeroing, no copy).
                small::matmul::<false>(l, lp, dh, qa, lda, &s.kt, lp, &mut s.p, lp);
                let probs_h: &[f32] = match probs.as_deref_mut() {
                    Some(saved) => {
                        let start = saved.len();
                        let spare = &mut saved.spare_capacity_mut()[..l * lp];
                        softmax_rows(&mut s.p, lp, bias, &mut s.row_sums, Some(spare));
                        #[allow(unsafe_code)]
                        // SAFETY: `spare` (the `l·lp` elements after `start`, within the
                        // capacity: the slice above would have panicked otherwise) was written
                        // in full by the softmax's last pass, which covers every padded row.
                        unsafe {
                            saved.set_len(start + l * lp);
                        }
                        &saved[start..]
                    }
                    None => {
                        softmax_rows(&mut s.p, lp, bias, &mut s.row_sums, None);
                        &s.p
                    }
                };
                let weights: &[f32] = match dropout {
                    None => probs_h,
                    Some(mask) => {
                        let base = ((b * d.heads + h) * l * l) as u64;
                        dropout_factors(&mut s.factors, d, &mask, base);
                        multiply(&mut s.ds, probs_h, &s.factors);
                        &s.ds
                    }
                };
                if direct {
                    let (vh, oh) = (&v[h * dh..], &mut out[h * dh..]);
                    small::matmul::<false>(l, dh, l, weights, lp, vh, d.dim, oh, d.dim);
                } else {
                    gather(v, d, h, 1.0, &mut s.v);
                    small::matmul::<false>(
                        l, d.dhp, l, weights, lp, &s.v, d.dhp, &mut s.res, d.dhp,
                    );
                    scatter(&s.res, d, h, 1.0, out);
                }
            }
        },
    )
}

/// The backward of sequence `b`: writes `dq`, `dk`, `dv` `[L, D]`.
#[allow(clippy::too_many_arguments)]
fn backward_item(
    d: &Dims,
    b: usize,
    (q, k, v): (&[f32], &[f32], &[f32]),
    dout: &[f32],
    dropout: Option<Mask>,
    probs: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    s: &mut Scratch,
) {
    dispatch(
        #[inline(always)]
        || {
            let (l, lp, dh, dhp) = (d.len, d.lp, d.dh, d.dhp);
            // Direct as in the forward: `q`, `k`, `dout` read and `dq`, `dk`, `dv` written in
            // place with row stride `D`; the scale is folded into `dS` (the forward scaled
            // `Kᵀ`, so `dQ = (s·dS)·K`, `dK = (s·dS)ᵀ·Q`). Otherwise via padded copies.
            let direct = d.direct();
            let ds_scale = if direct { d.scale } else { 1.0 };
            let stride = if direct { d.dim } else { dhp };
            for h in 0..d.heads {
                let (qh, kh, douth): (&[f32], &[f32], &[f32]) = if direct {
                    (&q[h * dh..], &k[h * dh..], &dout[h * dh..])
                } else {
                    gather(q, d, h, d.scale, &mut s.q);
                    gather(k, d, h, 1.0, &mut s.k);
                    gather(dout, d, h, 1.0, &mut s.dout);
                    (&s.q, &s.k, &s.dout)
                };
                gather_t(v, d, h, 1.0, &mut s.vt);
                let p = &probs[h * l * lp..(h + 1) * l * lp];
                let base = ((b * d.heads + h) * l * l) as u64;
                // dV = Wᵀ · dO, W = P ⊙ F the dropped-out weights; the dropout factors F are
                // hashed once here and reused for dP below.
                let weights: &[f32] = match dropout {
                    None => p,
                    Some(mask) => {
                        dropout_factors(&mut s.factors, d, &mask, base);
                        multiply(&mut s.ds, p, &s.factors);
                        &s.ds
                    }
                };
                if direct {
                    let dvh = &mut dv[h * dh..];
                    small::matmul::<true>(l, dh, l, weights, lp, douth, stride, dvh, d.dim);
                } else {
                    small::matmul::<true>(l, dhp, l, weights, lp, douth, stride, &mut s.res, dhp);
                    scatter(&s.res, d, h, 1.0, dv);
                }
                // dW = dO · Vᵀ; dP = dW ⊙ F; dS = P ⊙ (dP − Σ_j dP ⊙ P), all in `s.p`.
                small::matmul::<false>(l, lp, dh, douth, stride, &s.vt, lp, &mut s.p, lp);
                let factors = dropout.is_some().then_some(&s.factors[..]);
                score_grad_rows(&mut s.p, p, factors, lp, &mut s.row_sums, ds_scale);
                // dQ = dS · K / √d_h, dK = dSᵀ · Q / √d_h (the scale in dS or in the copy of Q).
                if direct {
                    let dqh = &mut dq[h * dh..];
                    small::matmul::<false>(l, dh, l, &s.p, lp, kh, stride, dqh, d.dim);
                    let dkh = &mut dk[h * dh..];
                    small::matmul::<true>(l, dh, l, &s.p, lp, qh, stride, dkh, d.dim);
                } else {
                    small::matmul::<false>(l, dhp, l, &s.p, lp, kh, stride, &mut s.res, dhp);
                    scatter(&s.res, d, h, d.scale, dq);
                    small::matmul::<true>(l, dhp, l, &s.p, lp, qh, stride, &mut s.res, dhp);
                    scatter(&s.res, d, h, 1.0, dk);
                }
            }
        },
    )
}

/// The elements of a tensor kept in standard layout.
fn slice(t: &Arc<Tensor>) -> &[f32] {
    t.as_slice().expect("kept in standard layout")
}

/// Runs `f(b, scratch)` for every sequence, in parallel over sequences when there is more than
/// one thread (each with its own scratch).
fn for_each_item<T: Send>(d: &Dims, items: Vec<T>, f: impl Fn(usize, T, &mut Scratch) + Sync) {
    if rayon::current_num_threads() > 1 && d.batch > 1 {
        items
            .into_par_iter()
            .enumerate()
            .for_each_init(|| Scratch::new(d), |s, (b, item)| f(b, item, s));
    } else {
        let mut s = Scratch::new(d);
        for (b, item) in items.into_iter().enumerate() {
            f(b, item, &mut s);
        }
    }
}

struct AttentionBackward {
    ids: [usize; 3],
    values: [Arc<Tensor>; 3],
    dropout: Option<Mask>,
    /// Per sequence `[H, L, L']`: one allocation each (a few hundred KB) rather than one for
    /// the batch, which would exceed glibc's largest mmap threshold and be mapped — and
    /// page-faulted in — afresh every step.
    probs: Vec<Vec<f32>>,
    dims: Dims,
}

impl BackwardOp for AttentionBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let d = self.dims;
        if !self.ids.iter().any(|&id| sink.wants(id)) {
            return;
        }
        let g = g.as_standard_layout();
        let g = g.as_slice().expect("standard layout");
        let n = d.len * d.dim;
        let (q, k, v) = (
            slice(&self.values[0]),
            slice(&self.values[1]),
            slice(&self.values[2]),
        );
        let mut grads = [zeros(d.batch * n), zeros(d.batch * n), zeros(d.batch * n)];
        // (`n == 0`: an empty sequence has nothing to compute, and `chunks` needs a width.)
        if n > 0 {
            let [dq, dk, dv] = &mut grads;
            let items: Vec<_> = dq
                .chunks_exact_mut(n)
                .zip(dk.chunks_exact_mut(n))
                .zip(dv.chunks_exact_mut(n))
                .collect();
            for_each_item(&d, items, |b, ((dq, dk), dv), s| {
                let r = b * n..(b + 1) * n;
                backward_item(
                    &d,
                    b,
                    (&q[r.clone()], &k[r.clone()], &v[r.clone()]),
                    &g[r],
                    self.dropout,
                    &self.probs[b],
                    (dq, dk, dv),
                    s,
                );
            });
        }
        let shape = IxDyn(&[d.batch, d.len, d.dim]);
        for (&id, grad) in self.ids.iter().zip(grads) {
            sink.add(
                id,
                Tensor::from_shape_vec(shape.clone(), grad).expect("sizes match"),
            );
        }
    }
}

/// The argument checks of [`Var::multi_head_attention`] (and its composed reference):
/// `(batch, len, dim)`.
fn check_args(
    q: Var<'_>,
    k: Var<'_>,
    v: Var<'_>,
    heads: usize,
    key_mask: Option<&ArrayD<bool>>,
    dropout_p: f32,
) -> (usize, usize, usize) {
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    assert!(
        qs.len() == 3 && qs == ks && qs == vs,
        "multi_head_attention: query, key and value shapes {qs:?}, {ks:?}, {vs:?} are not the same [batch, len, dim]"
    );
    let (batch, len, dim) = (qs[0], qs[1], qs[2]);
    assert!(
        heads > 0 && dim % heads == 0,
        "multi_head_attention: dim {dim} is not divisible by {heads} heads"
    );
    assert!(
        (0.0..1.0).contains(&dropout_p),
        "multi_head_attention: dropout p must be in [0, 1), got {dropout_p}"
    );
    if let Some(m) = key_mask {
        assert_eq!(
            m.shape(),
            &[batch, len],
            "multi_head_attention: key mask shape {:?} does not match the sequence [batch {batch}, len {len}]",
            m.shape()
        );
    }
    (batch, len, dim)
}

impl<'t> Var<'t> {
    /// Multi-head scaled dot-product attention over queries `self`, keys `k` and values `v`,
    /// fused (see the module docs): per head `h` (columns `h·d_h .. (h+1)·d_h`, `d_h = D/H`),
    /// `softmax_mask(q_h kᵀ_h / √d_h) · v_h`, with dropout of rate `dropout_p` on the attention
    /// weights, heads concatenated back into `D` columns.
    ///
    /// `key_mask[b, j] = false` marks key `j` of sequence `b` as padding: no query attends to
    /// it; a query whose keys are all padding gets zero weights (output 0, never NaN).
    /// Dropout draws exactly one `u64` from `rng` when `dropout_p > 0` (the seed of
    /// [`Var::dropout`]'s counter-based mask over the `[B·H, L, L]` weights) and nothing when it
    /// is 0 (evaluation).
    ///
    /// # Shapes
    /// `self`, `k`, `v`: `[B, L, D]`; `key_mask`: `[B, L]` → `[B, L, D]`.
    ///
    /// # Panics
    /// If the shapes differ from the above, `D` is not divisible by `heads`, or `dropout_p` is
    /// not in `[0, 1)`.
    pub fn multi_head_attention<R: rand::Rng + ?Sized>(
        self,
        k: Var<'t>,
        v: Var<'t>,
        heads: usize,
        key_mask: Option<&ArrayD<bool>>,
        dropout_p: f32,
        rng: &mut R,
    ) -> Var<'t> {
        let (batch, len, dim) = check_args(self, k, v, heads, key_mask, dropout_p);
        let dh = dim / heads;
        let d = Dims {
            batch,
            len,
            dim,
            heads,
            dh,
            lp: padded(len),
            dhp: padded(dh),
            scale: 1.0 / (dh as f32).sqrt(),
        };
        // The additive key mask per sequence (0 kept, −∞ masked), padded with −∞ to the
        // score rows' stride.
        let mut bias = vec![f32::NEG_INFINITY; batch * d.lp];
        let mask_rows = key_mask.map(|m| m.as_standard_layout());
        for (b, row) in bias.chunks_exact_mut(d.lp.max(1)).enumerate() {
            let keep = mask_rows
                .as_ref()
                .map(|m| &m.as_slice().expect("standard layout")[b * len..(b + 1) * len]);
            for (j, v) in row[..len].iter_mut().enumerate() {
                if keep.is_none_or(|k| k[j]) {
                    *v = 0.0;
                }
            }
        }
        let dropout = (dropout_p > 0.0).then(|| Mask::new(dropout_p, rng.next_u64()));
        let standard = |x: &Var<'t>| {
            let t = x.value();
            if t.is_standard_layout() {
                t
            } else {
                Arc::new(t.as_standard_layout().into_owned())
            }
        };
        let values = [standard(&self), standard(&k), standard(&v)];
        let needs_grad = [self, k, v].iter().any(|x| x.requires_grad());
        let n = len * dim;
        let pn = d.probs_per_item();
        let mut out = zeros(batch * n);
        // Saved probabilities when a gradient is needed: one buffer per sequence, reserved
        // here and written once by its task.
        let mut probs: Vec<Vec<f32>> = if needs_grad {
            (0..batch).map(|_| Vec::with_capacity(pn)).collect()
        } else {
            Vec::new()
        };
        if n > 0 {
            let (q, kv, vv) = (slice(&values[0]), slice(&values[1]), slice(&values[2]));
            let probs_items: Vec<Option<&mut Vec<f32>>> = if needs_grad {
                probs.iter_mut().map(Some).collect()
            } else {
                (0..batch).map(|_| None).collect()
            };
            let items: Vec<_> = out.chunks_exact_mut(n).zip(probs_items).collect();
            for_each_item(&d, items, |b, (o, p), s| {
                let r = b * n..(b + 1) * n;
                let bias = &bias[b * d.lp..(b + 1) * d.lp];
                let inputs = (&q[r.clone()], &kv[r.clone()], &vv[r]);
                forward_item(&d, b, inputs, bias, dropout, o, p, s);
            });
        }
        let out = Tensor::from_shape_vec(IxDyn(&[batch, len, dim]), out).expect("sizes match");
        let ids = [self.id, k.id, v.id];
        self.tape
            .record(&[self, k, v], out, move || AttentionBackward {
                ids,
                values,
                dropout,
                probs,
                dims: d,
            })
    }
}

mod composed;

#[cfg(test)]
mod tests;
