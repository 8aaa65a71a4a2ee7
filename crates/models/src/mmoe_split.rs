//! Serving: the MMoE head on an input whose columns are partly the same for every row.
//!
//! In a request, the user-side read-outs (e.g. the mean of the encoded history) are one
//! `[1, w]` row shared by all `C` candidates. Every layer that reads the input directly — the
//! experts' first layers, the gates and (with residual experts) the towers' first layers —
//! computes `x · Wᵀ + b = v · W_Vᵀ + (b + u · W_Uᵀ)` where `u` are the shared columns and `v`
//! the per-candidate ones: the shared part is one `[1, w]` product folded into the bias, and
//! the per-candidate product gets narrower. For the reference model (mean read-out: 64 of 224
//! input columns) this removes ~13 % of a request's multiply-adds. The result equals
//! [`Mmoe::forward`] on the full input up to float rounding (tested).
//!
//! [`Mmoe::split_head`] selects those weight columns once ([`SplitHead`], reused across
//! requests; it borrows the [`Mmoe`], so it cannot outlive a parameter change), and
//! [`SplitHead::forward`] runs the head in row blocks, one block per thread at a time, with a
//! block split that depends on the number of rows only (scores identical on any thread count).
//!
//! The experts' deeper layers (the second of the reference `[256, 256]` experts: about half
//! of a request's multiply-adds) read a ReLU output, about half of whose entries are exactly
//! zero (49 % on the reference model at initialization, 58 % after a short training run). Their
//! weights are also packed once for `closeup_autograd::kernels::sparse`, and per row block the
//! product skips the zero inputs when the block's input density is at most
//! `SPARSE_MAX_DENSITY` (decided from the data; the dense `gemm` above it). Skipping `0 · w`
//! terms changes the result only by summation order (scores within float rounding of
//! [`Mmoe::forward`]); each element's order is fixed, so scores stay bit-identical on any
//! thread count. Measured: ~4 % less CPU per request (`docs/performance.md`, "Fourth round").
//!
//! Evaluation only: dropout is the identity, gate dropout off, no gradient is needed.

use super::Mmoe;
use closeup_autograd::Tensor;
use closeup_autograd::kernels::gemm::{Threading, affine_with, sgemm};
use closeup_autograd::kernels::sparse::{SparseWeight, relu_affine_into};
use closeup_layers::Linear;
use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Ix1, Ix2, s};
use rayon::prelude::*;

/// Which input columns are shared by every row (`user`) and which vary (`cand`), with the
/// shared values. `user ∪ cand` is every column once, each list in increasing order.
#[derive(Debug, Clone)]
pub struct SplitInput<'a> {
    /// Column indices of the shared part.
    pub user_cols: &'a [usize],
    /// The shared values, `[user_cols.len()]`.
    pub user: &'a [f32],
    /// Column indices of the per-row part (the columns of the `cand` input, in order).
    pub cand_cols: &'a [usize],
}

fn w2(p: &closeup_autograd::Param) -> ArrayView2<'_, f32> {
    p.value()
        .view()
        .into_dimensionality::<Ix2>()
        .expect("2-D weight")
}

/// A layer's weight columns `cols` (offset by `off`) as a new `[out, cols]` array.
fn columns(w: ArrayView2<'_, f32>, off: usize, cols: &[usize]) -> Array2<f32> {
    let idx: Vec<usize> = cols.iter().map(|&c| c + off).collect();
    w.select(Axis(1), &idx)
}

/// ReLU in place (any strides), with the same `x < 0` test as `Var::relu`. Row by row over
/// contiguous slices where the rows are (the head's views — a column range of the wide first
/// layer, an expert's slot of `[C, E, H]` — have contiguous rows but are not contiguous as a
/// whole, and `mapv_inplace` on them made one closure call per element: ≈ 5 % of a request).
fn relu(mut y: ArrayViewMut2<'_, f32>) {
    let f = |v: f32| if v < 0.0 { 0.0 } else { v };
    for mut row in y.rows_mut() {
        match row.as_slice_mut() {
            Some(row) => row.iter_mut().for_each(|v| *v = f(*v)),
            None => row.mapv_inplace(f),
        }
    }
}

/// `act(x · Wᵀ + b)` as a new `[rows, out]` array, ReLU or identity, on the calling thread.
fn affine_act(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    b: Option<ArrayView1<'_, f32>>,
    relu_on: bool,
) -> Array2<f32> {
    let mut y = affine_with(x, w, b, Threading::Serial);
    if relu_on {
        relu(y.view_mut());
    }
    y
}

fn bias_view(layer: &Linear) -> Option<ArrayView1<'_, f32>> {
    layer.bias().map(|b| {
        b.value()
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D bias")
    })
}

fn bias_of(layer: &Linear) -> Array1<f32> {
    bias_view(layer).map_or_else(|| Array1::zeros(layer.outputs()), |b| b.to_owned())
}

/// Row-wise softmax in place (max-shifted).
fn softmax_rows(mut x: ArrayViewMut2<'_, f32>) {
    for mut row in x.rows_mut() {
        let m = row.fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
}

/// At most this many rows per block of [`SplitHead::forward`]: each block runs the whole head
/// on one thread (serial products), blocks run in parallel. Measured on the reference head (one
/// thread): blocks of 500 rows cost the same as one 1000-row block, 250 rows ~4 % more, 128
/// rows ~15 % more (per-call overhead of the serial products), so the grain is coarse.
const MAX_ROW_BLOCK: usize = 512;

/// The rows per block for a request of `c` rows: `c` split into the fewest equal blocks of at
/// most [`MAX_ROW_BLOCK`] (1000 → 2 × 500). It depends on `c` only, never on the thread count,
/// so every score is computed by the same arithmetic whatever the number of threads.
fn row_block(c: usize) -> usize {
    c.div_ceil(c.div_ceil(MAX_ROW_BLOCK).max(1)).max(1)
}

/// The biases of a request's input-reading layers with its shared columns folded in.
struct FoldedBiases {
    /// The stacked experts' first layers and gates.
    input: Array1<f32>,
    /// Per tower (residual experts only).
    towers: Vec<Array1<f32>>,
}

/// A layer that reads the head input, its weight split by input columns.
#[derive(Debug, Clone)]
struct SplitLayer {
    /// `W[:, off + cand_cols]`, `[out, cand]`.
    w_cand: Array2<f32>,
    /// `W[:, off + user_cols]`, `[out, user]`.
    w_user: Array2<f32>,
    /// `[out]` (zeros without a bias).
    bias: Array1<f32>,
}

impl SplitLayer {
    fn new(layer: &Linear, off: usize, user_cols: &[usize], cand_cols: &[usize]) -> Self {
        let w = w2(layer.weight());
        SplitLayer {
            w_cand: columns(w, off, cand_cols),
            w_user: columns(w, off, user_cols),
            bias: bias_of(layer),
        }
    }

    /// The layers' outputs side by side: one layer whose rows are theirs, in order.
    fn stack(layers: &[SplitLayer]) -> Self {
        let cat2 = |f: fn(&SplitLayer) -> ArrayView2<'_, f32>| {
            let v: Vec<_> = layers.iter().map(f).collect();
            ndarray::concatenate(Axis(0), &v).expect("same widths")
        };
        let b: Vec<_> = layers.iter().map(|l| l.bias.view()).collect();
        SplitLayer {
            w_cand: cat2(|l| l.w_cand.view()),
            w_user: cat2(|l| l.w_user.view()),
            bias: ndarray::concatenate(Axis(0), &b).expect("1-D"),
        }
    }

    /// `b + u · W_Uᵀ`: the bias with the shared input folded in.
    fn folded_bias(&self, u: &[f32]) -> Array1<f32> {
        &self.bias + &self.w_user.dot(&ArrayView1::from(u))
    }
}

/// An [`Mmoe`] prepared for inputs whose columns `user_cols` are shared by every row: the
/// candidate-side and user-side weight columns of every layer that reads the input (experts'
/// first layers, gates, and with residual experts the towers' first layers) selected **once**
/// and stacked into one layer, so that a request runs them as one wide product
/// ([`SplitHead::forward`]).
///
/// It borrows the [`Mmoe`] it was built from: the parameters cannot change while it exists (a
/// training step needs `&mut`), so a stale copy of the weights cannot be used. Rebuild it after
/// the parameters change.
#[derive(Debug, Clone)]
pub struct SplitHead<'m> {
    mmoe: &'m Mmoe,
    user_cols: Vec<usize>,
    cand_cols: Vec<usize>,
    /// The experts' first layers (`[0, gates_at)`) and the gates (`E` rows each from
    /// `gates_at`) stacked by output rows.
    input: SplitLayer,
    gates_at: usize,
    /// With residual experts: the towers' first layers' input columns (offset by the expert
    /// width); empty otherwise.
    towers: Vec<SplitLayer>,
    /// Per expert, its layers after the first packed for the sparse product (their inputs
    /// are ReLU outputs).
    deep: Vec<Vec<SparseWeight>>,
}

impl Mmoe {
    /// Prepares the head for inputs whose columns `user_cols` are one row shared by every
    /// candidate and whose columns `cand_cols` vary (see [`SplitHead`]).
    ///
    /// # Panics
    /// If the column lists do not partition the input width.
    pub fn split_head(&self, user_cols: &[usize], cand_cols: &[usize]) -> SplitHead<'_> {
        let inputs = self.inputs();
        let mut all: Vec<usize> = user_cols.iter().chain(cand_cols).copied().collect();
        all.sort_unstable();
        assert!(
            all == (0..inputs).collect::<Vec<_>>(),
            "Mmoe::split_head: {} shared + {} per-row columns do not partition {inputs} inputs",
            user_cols.len(),
            cand_cols.len()
        );
        let h = self.experts[0].outputs();
        let mut layers: Vec<SplitLayer> = self
            .experts
            .iter()
            .map(|x| SplitLayer::new(&x.layers()[0], 0, user_cols, cand_cols))
            .collect();
        let gates_at = self.experts.len() * self.experts[0].layers()[0].outputs();
        layers.extend(
            self.gates
                .iter()
                .map(|g| SplitLayer::new(g, 0, user_cols, cand_cols)),
        );
        SplitHead {
            mmoe: self,
            user_cols: user_cols.to_vec(),
            cand_cols: cand_cols.to_vec(),
            input: SplitLayer::stack(&layers),
            gates_at,
            towers: if self.residual {
                self.towers
                    .iter()
                    .map(|t| SplitLayer::new(&t.layers()[0], h, user_cols, cand_cols))
                    .collect()
            } else {
                Vec::new()
            },
            deep: self
                .experts
                .iter()
                .map(|x| {
                    x.layers()[1..]
                        .iter()
                        .map(|l| SparseWeight::new(w2(l.weight())))
                        .collect()
                })
                .collect(),
        }
    }

    /// Logits `[C, T]` of [`Mmoe::forward`] (in evaluation mode) for the input whose columns
    /// `split.user_cols` are `split.user` in every row and whose other columns are `cand`:
    /// [`Mmoe::split_head`] then [`SplitHead::forward`] (prepare once and reuse the
    /// [`SplitHead`] when serving many requests).
    ///
    /// # Shapes
    /// `cand: [C, split.cand_cols.len()]` → `[C, T]`.
    ///
    /// # Panics
    /// If the column lists do not partition the input width, or `cand`'s width differs.
    pub fn forward_split(&self, cand: ArrayView2<'_, f32>, split: &SplitInput<'_>) -> Array2<f32> {
        self.split_head(split.user_cols, split.cand_cols)
            .forward(cand, split.user)
    }
}

impl SplitHead<'_> {
    /// The shared columns it was prepared for.
    pub fn user_cols(&self) -> &[usize] {
        &self.user_cols
    }

    /// The per-row columns it was prepared for (the columns of `cand`, in order).
    pub fn cand_cols(&self) -> &[usize] {
        &self.cand_cols
    }

    /// Logits `[C, T]` of [`Mmoe::forward`] (in evaluation mode) for the input whose shared
    /// columns are `user` in every row and whose per-row columns are `cand`.
    ///
    /// The rows are split into blocks of at most 512 (fewest equal blocks; the split depends
    /// on `C` only) and each block runs the whole head on one thread — blocks in parallel on the
    /// rayon pool — so a score is bit-identical for every thread count.
    ///
    /// Runs without a tape (inference only): each expert's layers write straight into its slot
    /// of the `[C, E, H]` expert tensor and read their input as a strided view of the wide
    /// first layer (no slicing or concatenation copies), the gate mixture is a direct weighted
    /// sum, and the towers accumulate the mixture's and the input's products into one output
    /// instead of concatenating them.
    ///
    /// # Shapes
    /// `cand: [C, cand_cols.len()]`, `user: [user_cols.len()]` → `[C, T]`.
    ///
    /// # Panics
    /// If `cand`'s width or `user`'s length differs from the prepared columns.
    pub fn forward(&self, cand: ArrayView2<'_, f32>, user: &[f32]) -> Array2<f32> {
        assert!(
            cand.ncols() == self.cand_cols.len() && user.len() == self.user_cols.len(),
            "SplitHead::forward: cand shape {:?} and {} shared values vs {} per-row and {} \
             shared columns",
            cand.shape(),
            user.len(),
            self.cand_cols.len(),
            self.user_cols.len()
        );
        // The shared columns' contributions, once per request.
        let biases = FoldedBiases {
            input: self.input.folded_bias(user),
            towers: self.towers.iter().map(|t| t.folded_bias(user)).collect(),
        };
        let mut logits = Array2::<f32>::zeros((cand.nrows(), self.mmoe.num_tasks));
        let rb = row_block(cand.nrows());
        let blocks: Vec<_> = logits
            .axis_chunks_iter_mut(Axis(0), rb)
            .zip(cand.axis_chunks_iter(Axis(0), rb))
            .collect();
        blocks
            .into_par_iter()
            .for_each(|(out, x)| self.forward_rows(x, &biases, out));
        logits
    }

    /// The head on one block of rows, on the calling thread; writes `out: [rows, T]`.
    fn forward_rows(
        &self,
        cand: ArrayView2<'_, f32>,
        biases: &FoldedBiases,
        mut logits: ArrayViewMut2<'_, f32>,
    ) {
        const SERIAL: Threading = Threading::Serial;
        let mmoe = self.mmoe;
        let c = cand.nrows();
        let e = mmoe.experts.len();

        // The experts' first layers and the gates as one wide product: [C, E·h1 + G·E].
        let b = &biases.input;
        let mut wide = affine_with(cand, self.input.w_cand.view(), Some(b.view()), SERIAL);
        let (mut firsts, mut gate_z) = wide.view_mut().split_at(Axis(1), self.gates_at);
        relu(firsts.view_mut());
        // Deeper layers per expert, the last one into the expert's slot of [C, E, H].
        let h1 = mmoe.experts[0].layers()[0].outputs();
        let h = mmoe.experts[0].outputs();
        let mut experts = Array3::<f32>::zeros((c, e, h));
        for (i, (ex, deep)) in mmoe.experts.iter().zip(&self.deep).enumerate() {
            let x0 = firsts.slice(s![.., i * h1..(i + 1) * h1]);
            let rest = &ex.layers()[1..];
            let mut owned: Option<Array2<f32>> = None;
            for (j, (layer, ws)) in rest.iter().zip(deep).enumerate() {
                // The input is a ReLU output: the product skips its exact zeros when they
                // are frequent enough (decided from the data, per block).
                let x = owned.as_ref().map_or(x0, |a| a.view());
                let (w, b) = (w2(layer.weight()), bias_view(layer));
                if j + 1 == rest.len() {
                    let mut slot = experts.slice_mut(s![.., i, ..]);
                    relu_affine_into(slot.view_mut(), x, w, ws, b, SERIAL);
                    relu(slot);
                } else {
                    let mut y = Array2::<f32>::zeros((c, ws.outputs()));
                    relu_affine_into(y.view_mut(), x, w, ws, b, SERIAL);
                    relu(y.view_mut());
                    owned = Some(y);
                }
            }
            if rest.is_empty() {
                experts.slice_mut(s![.., i, ..]).assign(&x0);
            }
        }
        // Gates: softmax over each gate's E columns.
        for k in 0..mmoe.gates.len() {
            softmax_rows(gate_z.slice_mut(s![.., k * e..(k + 1) * e]));
        }
        // The mixtures Σᵢ gᵢ hᵢ (experts in order) of every task, row by row: each row of the
        // expert tensor is read once for all tasks.
        let mut mixtures: Vec<Array2<f32>> = (0..mmoe.num_tasks)
            .map(|_| Array2::<f32>::zeros((c, h)))
            .collect();
        for (r, er) in experts.outer_iter().enumerate() {
            for (t, m) in mixtures.iter_mut().enumerate() {
                let k = t.min(mmoe.gates.len() - 1);
                let gr = gate_z.slice(s![r, k * e..(k + 1) * e]);
                let mut mr = m.row_mut(r);
                for (gi, hi) in gr.iter().zip(er.rows()) {
                    mr.scaled_add(*gi, &hi);
                }
            }
        }
        for (t, m) in mixtures.iter().enumerate() {
            let tower = mmoe.towers[t].layers();
            let last = tower.len() - 1;
            let mut y = if mmoe.residual {
                // [m, x] · W₀ᵀ = m · W₀[:, ..h]ᵀ + v · W₀[:, h + V]ᵀ + u · W₀[:, h + U]ᵀ.
                let w0 = w2(tower[0].weight());
                let b = &biases.towers[t];
                let mut y = affine_act(m.view(), w0.slice(s![.., ..h]), Some(b.view()), false);
                sgemm(y.view_mut(), cand, self.towers[t].w_cand.t(), true, SERIAL);
                if last > 0 {
                    relu(y.view_mut());
                }
                y
            } else {
                affine_act(
                    m.view(),
                    w2(tower[0].weight()),
                    bias_view(&tower[0]),
                    last > 0,
                )
            };
            for (i, layer) in tower.iter().enumerate().skip(1) {
                y = affine_act(y.view(), w2(layer.weight()), bias_view(layer), i < last);
            }
            logits.column_mut(t).assign(&y.column(0));
        }
    }
}

/// The full input `[C, in]` of a split one (for tests and the composed path).
pub fn join_split(cand: &Tensor, split: &SplitInput<'_>) -> Tensor {
    let c = cand.shape()[0];
    let width = split.user_cols.len() + split.cand_cols.len();
    let mut x = Tensor::zeros(ndarray::IxDyn(&[c, width]));
    for (j, &col) in split.user_cols.iter().enumerate() {
        x.index_axis_mut(Axis(1), col).fill(split.user[j]);
    }
    for (j, &col) in split.cand_cols.iter().enumerate() {
        x.index_axis_mut(Axis(1), col)
            .assign(&cand.index_axis(Axis(1), j));
    }
    x
}

#[cfg(test)]
#[path = "mmoe_split_tests.rs"]
mod tests;
