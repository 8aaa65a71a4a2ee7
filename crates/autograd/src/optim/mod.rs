//! Optimizers: [`Sgd`] (momentum, Nesterov, L2 weight decay) and [`Adam`] (Adam and AdamW),
//! with **lazy (row-sparse) updates** for embedding tables.
//!
//! # How a step works
//!
//! [`Optimizer::step`] walks the model's parameters with [`Parameterized::visit_params_mut`]
//! (so it sees every parameter under its stable dotted name, e.g.
//! `encoder.layers.0.attn.q.weight`) and looks up each one's gradient with
//! [`Gradients::param`]:
//!
//! - **No gradient** (the parameter was not used on the tape, or is frozen): the parameter and
//!   its optimizer state are left exactly as they are — no weight decay, no momentum decay.
//! - **[`Grad::Dense`]**: the ordinary update of every element. Loops above
//!   [`crate::kernels::PAR_MIN_LEN`] elements run on the rayon pool with
//!   [`ndarray::Zip::par_for_each`]; every element is updated by exactly one closure call, so the
//!   result is bit-identical whatever the thread count.
//! - **[`Grad::Rows`]** (an embedding table reached through `gather_rows`): a *lazy* update.
//!   Only the rows listed in [`crate::RowGrad::indices`] are touched: their weights, their
//!   momentum / first-moment rows and their second-moment rows. Every other row keeps its
//!   weight **and** its optimizer state bit for bit. The touched rows are updated in parallel
//!   (one row per closure call, again thread-count independent).
//!
//! Per-parameter state (momentum buffers, Adam moments) is keyed by the dotted name, allocated
//! with the parameter's full shape the first time the parameter receives a gradient, and reused
//! in place on every later step — there is no per-step allocation of big buffers. The state can
//! be exported with [`Optimizer::state`] and restored with [`Optimizer::load_state`] (and stored
//! in a [`crate::checkpoint::Checkpoint`]) for resumable training.
//!
//! # Lazy Adam versus dense Adam
//!
//! The step counter `t` is **global**: it counts calls to [`Optimizer::step`], starting at 1 for
//! the first call. Bias correction always uses this global `t` (TensorFlow's `Adam` and
//! `LazyAdam` semantics), also for a parameter or a row that receives its first gradient late.
//! PyTorch instead keeps a step count per parameter; the two agree as long as every parameter
//! gets a gradient on every step.
//!
//! For a row `r` of an embedding table with gradient rows `g_r` at step `t`:
//!
//! ```text
//! if r is in the gradient's indices:
//!     m_r ← β1·m_r + (1−β1)·g_r
//!     v_r ← β2·v_r + (1−β2)·g_r²
//!     w_r ← w_r − lr·wd·w_r                                     (AdamW only)
//!     w_r ← w_r − lr · (m_r / (1−β1^t)) / (sqrt(v_r / (1−β2^t)) + ε)
//! else:
//!     nothing (m_r, v_r, w_r unchanged)
//! ```
//!
//! Dense Adam — what PyTorch's `torch.optim.Adam` does to a dense gradient of the whole
//! `100,000 × 64` table — would also, for every *untouched* row, decay `m_r ← β1·m_r` and
//! `v_r ← β2·v_r`, keep moving `w_r` by the decaying momentum, and apply weight decay to every
//! row: full read-modify-write sweeps of the 6.4 M-float table and both moment buffers every
//! step, whatever the batch touched. Lazy Adam costs
//! `O(touched rows × dim)`. On the first step the two are identical (all moments are still
//! zero, so an untouched row's dense update is `0 / (0 + ε) = 0`); afterwards they differ only
//! on rows that were touched before and are not touched now. The same holds for [`Sgd`]: with
//! momentum, an untouched row's velocity is neither decayed nor applied, and L2 weight decay is
//! added to the touched rows' gradients only.
//!
//! # Gradient clipping
//!
//! Both optimizers accept `with_max_grad_norm(max)`: the step then scales every gradient by
//! `min(1, max / ‖g‖)`, where `‖g‖` is [`Gradients::global_norm`] (all parameter gradients,
//! dense and row-sparse, as stored). This is exactly [`Gradients::clip_global_norm`] followed by
//! an unclipped step, without copying the gradients. A non-finite norm is not clipped (the
//! trainer's divergence guard is expected to catch it). The norm of the last step is available
//! from [`Optimizer::last_grad_norm`].
//!
//! # Example: one training step
//!
//! ```
//! use closeup_autograd::optim::{Adam, Optimizer};
//! use closeup_autograd::{gradcheck::randn, Param, Parameterized, ParamVisitor, ParamVisitorMut, Tape};
//!
//! struct Linear { w: Param, b: Param }
//! impl Parameterized for Linear {
//!     fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
//!         v.param("w", &self.w);
//!         v.param("b", &self.b);
//!     }
//!     fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
//!         v.param("w", &mut self.w);
//!         v.param("b", &mut self.b);
//!     }
//! }
//!
//! let mut model = Linear { w: Param::new(randn(&[1, 3], 0)), b: Param::new(randn(&[1, 1], 1)) };
//! let x = randn(&[8, 3], 2);
//! let y = randn(&[8, 1], 3);
//! let mut opt = Adam::new(1e-2);
//!
//! let before = model.w.value().clone();
//! let grads = {
//!     let tape = Tape::new();
//!     let pred = tape.constant(x).matmul_t(tape.param(&model.w)) + tape.param(&model.b);
//!     let err = pred - tape.constant(y);
//!     // Back-propagate d(Σ err²)/d err = 2·err without a reduction op.
//!     let seed = err.value().mapv(|e| 2.0 * e);
//!     tape.backward_with_seed(err, seed)
//! }; // the tape is dropped here, so the update below mutates the parameters in place
//! opt.step(&mut model, &grads);
//! assert_eq!(opt.steps_taken(), 1);
//! assert_ne!(model.w.value(), &before);
//! ```

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use crate::Tensor;
use crate::error::{AutogradError, Result};
use crate::grads::{Grad, Gradients, RowGrad};
use crate::kernels::use_parallel;
use crate::param::{Param, ParamVisitor, ParamVisitorMut, Parameterized};
use ndarray::IxDyn;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A first-order optimizer that updates a model's parameters from one step's [`Gradients`].
///
/// Object safe: a trainer can hold a `Box<dyn Optimizer>` chosen from its configuration.
pub trait Optimizer: fmt::Debug + Send {
    /// Applies one update to every parameter of `model` that has a gradient in `grads`, and
    /// advances the step counter by one (even if no parameter had a gradient).
    ///
    /// Call it after the tape that produced `grads` is dropped, so parameters are updated in
    /// place rather than copied on write.
    ///
    /// # Panics
    /// If a gradient's shape differs from its parameter's, or stored state for a name has a
    /// different shape than the parameter now carrying that name (use [`Optimizer::reset`]
    /// when the model changes).
    fn step(&mut self, model: &mut dyn Parameterized, grads: &Gradients);

    /// The current learning rate.
    fn learning_rate(&self) -> f32;

    /// Sets the learning rate used from the next step on (for schedules and warm-up).
    fn set_learning_rate(&mut self, lr: f32);

    /// Number of steps taken so far (the global `t` of the last step; 0 before the first).
    fn steps_taken(&self) -> u64;

    /// The global gradient norm seen by the last step (before clipping), if any step ran.
    fn last_grad_norm(&self) -> Option<f32>;

    /// Forgets all per-parameter state and resets the step counter (hyperparameters are kept).
    fn reset(&mut self);

    /// A serializable snapshot of the step counter, learning rate and per-parameter state.
    fn state(&self) -> OptimizerState;

    /// Replaces the optimizer's state with `state` (as returned by [`Optimizer::state`]),
    /// checking it against `model`: same optimizer kind, every state tensor names a parameter
    /// of `model` and has its shape. The step counter and the learning rate are restored too;
    /// the other hyperparameters (betas, momentum, weight decay, clipping) stay as constructed.
    /// On error nothing is changed.
    ///
    /// # Errors
    /// [`AutogradError::OptimizerState`] naming the offending parameter or slot.
    fn load_state(&mut self, state: OptimizerState, model: &dyn Parameterized) -> Result<()>;
}

/// A serializable snapshot of an optimizer (see [`Optimizer::state`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Which optimizer wrote it: `"sgd"`, `"adam"` or `"adamw"`.
    pub kind: String,
    /// Steps taken (the global `t`).
    pub step: u64,
    /// The learning rate at the time of the snapshot.
    pub learning_rate: f32,
    /// Per-parameter buffers, sorted by parameter name then slot name.
    pub slots: Vec<StateTensor>,
}

/// One per-parameter buffer of an [`OptimizerState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateTensor {
    /// The parameter's dotted name.
    pub param: String,
    /// The buffer's name: `"momentum"` for SGD, `"m"` / `"v"` for Adam.
    pub slot: String,
    /// The buffer's shape (the parameter's shape).
    pub shape: Vec<usize>,
    /// The values in row-major order.
    pub data: Vec<f32>,
}

/// Per-step constants shared by the update kernels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepCtx {
    /// Multiplier applied to every gradient entry (1 unless clipping).
    pub(crate) grad_scale: f32,
}

/// Computes the global gradient norm and the clipping scale for `max_norm`.
pub(crate) fn clip_scale(grads: &Gradients, max_norm: Option<f32>) -> (f32, f32) {
    let norm = grads.global_norm();
    let scale = match max_norm {
        Some(max) if norm.is_finite() && norm > max => max / norm,
        _ => 1.0,
    };
    (norm, scale)
}

/// Calls `f(name, param, grad)` for every parameter of `model` that has a gradient.
pub(crate) fn for_each_with_grad(
    model: &mut dyn Parameterized,
    grads: &Gradients,
    mut f: impl FnMut(&str, &mut Param, &Grad),
) {
    let mut visit = |name: &str, p: &mut Param| {
        if let Some(g) = grads.param(p) {
            match g {
                Grad::Dense(t) => assert_eq!(
                    t.shape(),
                    p.shape(),
                    "optimizer: gradient of `{name}` has shape {:?}, the parameter {:?}",
                    t.shape(),
                    p.shape()
                ),
                Grad::Rows(rg) => assert_eq!(
                    [rg.num_rows(), rg.dim()].as_slice(),
                    p.shape(),
                    "optimizer: row gradient of `{name}` is for a [{}, {}] table, the parameter is {:?}",
                    rg.num_rows(),
                    rg.dim(),
                    p.shape()
                ),
            }
            f(name, p, g);
        }
    };
    model.visit_params_mut(&mut ParamVisitorMut::new(&mut visit));
}

/// The state buffers of one parameter, created with the parameter's shape on first use.
pub(crate) fn slot_buffers<'s, const N: usize>(
    state: &'s mut BTreeMap<String, [Tensor; N]>,
    name: &str,
    shape: &[usize],
) -> &'s mut [Tensor; N] {
    if !state.contains_key(name) {
        state.insert(
            name.to_string(),
            std::array::from_fn(|_| Tensor::zeros(IxDyn(shape))),
        );
    }
    let bufs = state.get_mut(name).expect("inserted above");
    for b in bufs.iter() {
        assert_eq!(
            b.shape(),
            shape,
            "optimizer: state of `{name}` has shape {:?} but the parameter has shape {shape:?} \
             (call Optimizer::reset after changing the model)",
            b.shape()
        );
    }
    bufs
}

/// Exports `state` as [`StateTensor`]s (sorted by parameter then slot order).
pub(crate) fn export_slots<const N: usize>(
    state: &BTreeMap<String, [Tensor; N]>,
    slot_names: [&str; N],
) -> Vec<StateTensor> {
    let mut out = Vec::with_capacity(state.len() * N);
    for (name, bufs) in state {
        for (slot, t) in slot_names.iter().zip(bufs) {
            out.push(StateTensor {
                param: name.clone(),
                slot: (*slot).to_string(),
                shape: t.shape().to_vec(),
                data: t.iter().copied().collect(),
            });
        }
    }
    out
}

fn state_error(reason: String) -> AutogradError {
    AutogradError::OptimizerState { reason }
}

/// Validates `state` against `model` and rebuilds the per-parameter buffers.
pub(crate) fn import_slots<const N: usize>(
    state: &OptimizerState,
    expected_kind: &str,
    slot_names: [&str; N],
    model: &dyn Parameterized,
) -> Result<BTreeMap<String, [Tensor; N]>> {
    if state.kind != expected_kind {
        return Err(state_error(format!(
            "state was written by `{}`, this optimizer is `{expected_kind}`",
            state.kind
        )));
    }
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut collect = |name: &str, p: &Param| {
        shapes.insert(name.to_string(), p.shape().to_vec());
    };
    model.visit_params(&mut ParamVisitor::new(&mut collect));

    let mut partial: BTreeMap<String, [Option<Tensor>; N]> = BTreeMap::new();
    for st in &state.slots {
        let Some(shape) = shapes.get(&st.param) else {
            return Err(state_error(format!(
                "state for parameter `{}` but the model has no such parameter",
                st.param
            )));
        };
        if &st.shape != shape {
            return Err(state_error(format!(
                "state `{}` of parameter `{}` has shape {:?}, the parameter has shape {shape:?}",
                st.slot, st.param, st.shape
            )));
        }
        let Some(k) = slot_names.iter().position(|s| *s == st.slot) else {
            return Err(state_error(format!(
                "unknown state slot `{}` for parameter `{}` (expected one of {slot_names:?})",
                st.slot, st.param
            )));
        };
        let t = Tensor::from_shape_vec(IxDyn(shape), st.data.clone()).map_err(|_| {
            state_error(format!(
                "state `{}` of parameter `{}` has {} values for shape {shape:?}",
                st.slot,
                st.param,
                st.data.len()
            ))
        })?;
        let entry = partial
            .entry(st.param.clone())
            .or_insert_with(|| std::array::from_fn(|_| None));
        if entry[k].replace(t).is_some() {
            return Err(state_error(format!(
                "duplicate state `{}` for parameter `{}`",
                st.slot, st.param
            )));
        }
    }
    let mut out = BTreeMap::new();
    for (name, bufs) in partial {
        if let Some(k) = bufs.iter().position(Option::is_none) {
            return Err(state_error(format!(
                "parameter `{name}` is missing state `{}`",
                slot_names[k]
            )));
        }
        out.insert(name, bufs.map(|b| b.expect("checked above")));
    }
    Ok(out)
}

/// Splits `data` (rows of width `dim`) into the mutable rows listed in `rows`.
///
/// # Panics
/// If `rows` is not strictly increasing or an index is out of range.
fn select_rows_mut<'a>(data: &'a mut [f32], dim: usize, rows: &[usize]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(rows.len());
    let mut rest = data;
    let mut offset = 0usize; // first row index held by `rest`
    for &r in rows {
        assert!(
            r >= offset,
            "optimizer: row-gradient indices must be sorted and unique (row {r} after row {})",
            offset.saturating_sub(1)
        );
        let skip = (r - offset) * dim;
        assert!(
            skip + dim <= rest.len(),
            "optimizer: row-gradient index {r} out of range"
        );
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let (row, tail) = tail.split_at_mut(dim);
        out.push(row);
        rest = tail;
        offset = r + 1;
    }
    out
}

/// One touched row of a lazy update: parameter row, gradient row, state rows.
type RowItem<'a, const N: usize> = (&'a mut [f32], &'a [f32], [&'a mut [f32]; N]);

/// Applies `f(param_row, grad_row, [state_rows...])` to every touched row of a lazy update.
///
/// `f` receives one parameter row, the matching gradient row and the matching row of each
/// state buffer. Rows are processed in parallel above the size threshold; every row is handled
/// by exactly one call, so the result does not depend on the thread count.
pub(crate) fn for_each_touched_row<const N: usize>(
    param: &mut Tensor,
    rg: &RowGrad,
    bufs: &mut [Tensor; N],
    f: impl Fn(&mut [f32], &[f32], [&mut [f32]; N]) + Sync + Send,
) {
    let dim = rg.dim();
    let rows = rg.indices();
    if rows.is_empty() || dim == 0 {
        return;
    }
    let values = rg.values();
    let gvals = values
        .as_slice()
        .expect("RowGrad values are contiguous row-major");
    let p_rows = select_rows_mut(
        param
            .as_slice_mut()
            .expect("parameters are in standard layout"),
        dim,
        rows,
    );
    let mut buf_rows: Vec<std::vec::IntoIter<&mut [f32]>> = bufs
        .iter_mut()
        .map(|b| {
            select_rows_mut(
                b.as_slice_mut()
                    .expect("optimizer state is in standard layout"),
                dim,
                rows,
            )
            .into_iter()
        })
        .collect();
    // Regroup as one item per touched row: (param row, grad row, [state rows; N]).
    let items: Vec<RowItem<'_, N>> = p_rows
        .into_iter()
        .zip(gvals.chunks_exact(dim))
        .map(|(p, g)| {
            let s: [&mut [f32]; N] =
                std::array::from_fn(|k| buf_rows[k].next().expect("one state row per touched row"));
            (p, g, s)
        })
        .collect();
    if use_parallel(rows.len() * dim) {
        items.into_par_iter().for_each(|(p, g, s)| f(p, g, s));
    } else {
        items.into_iter().for_each(|(p, g, s)| f(p, g, s));
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Builders for gradients that the public API only produces through ops other helpers own.
    use super::*;
    use ndarray::ArrayView2;

    /// A model with a dense vector `w`, a parameter `frozen` that tests leave without a
    /// gradient, and an embedding-like `table` for row-sparse updates.
    #[derive(Debug)]
    pub(crate) struct M {
        pub(crate) w: Param,
        pub(crate) frozen: Param,
        pub(crate) table: Param,
    }

    impl Parameterized for M {
        fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
            v.param("w", &self.w);
            v.param("frozen", &self.frozen);
            v.param("table", &self.table);
        }
        fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
            v.param("w", &mut self.w);
            v.param("frozen", &mut self.frozen);
            v.param("table", &mut self.table);
        }
    }

    /// Gradients with the given dense and row-sparse entries.
    pub(crate) fn grads_of(
        dense: &[(&Param, Tensor)],
        rows: &[(&Param, &[usize], Vec<f32>)],
    ) -> Gradients {
        let mut g = Gradients::default();
        let mut node = 0;
        for (p, t) in dense {
            g.insert_param(p.id(), node, Grad::Dense(t.clone()));
            node += 1;
        }
        for (p, idx, vals) in rows {
            let (n, d) = (p.shape()[0], p.shape()[1]);
            let mut rg = RowGrad::new(n, d);
            rg.push_rows(
                idx,
                ArrayView2::from_shape((idx.len(), d), vals).expect("rows × dim"),
            );
            g.insert_param(p.id(), node, Grad::Rows(rg).coalesced());
            node += 1;
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::grads_of;
    use super::*;
    use ndarray::array;

    #[derive(Debug)]
    struct Two {
        a: Param,
        table: Param,
    }
    impl Parameterized for Two {
        fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
            v.param("a", &self.a);
            v.param("table", &self.table);
        }
        fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
            v.param("a", &mut self.a);
            v.param("table", &mut self.table);
        }
    }

    #[test]
    fn select_rows_picks_exactly_the_listed_rows() {
        let mut data: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let rows = select_rows_mut(&mut data, 3, &[1, 3]);
        assert_eq!(rows.len(), 2);
        assert_eq!(&*rows[0], &[3.0, 4.0, 5.0]);
        assert_eq!(&*rows[1], &[9.0, 10.0, 11.0]);
    }

    #[test]
    #[should_panic(expected = "sorted and unique")]
    fn select_rows_rejects_unsorted() {
        let mut data = vec![0.0_f32; 12];
        let _ = select_rows_mut(&mut data, 3, &[2, 1]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn select_rows_rejects_out_of_range() {
        let mut data = vec![0.0_f32; 12];
        let _ = select_rows_mut(&mut data, 3, &[4]);
    }

    /// Hand-computed clipping with a dense and a row-sparse gradient:
    /// ‖g‖ = sqrt(3² + 4² + 12²) = 13; clip to 6.5 halves everything.
    #[test]
    fn clip_global_norm_includes_sparse_rows() {
        let a = Param::new(array![[3.0_f32, 0.0]].into_dyn());
        let table = Param::new(Tensor::zeros(IxDyn(&[5, 2])));
        let mut g = grads_of(
            &[(&a, array![[3.0_f32, 0.0]].into_dyn())],
            &[(&table, &[1, 3], vec![4.0, 0.0, 0.0, 12.0])],
        );
        assert!((g.global_norm() - 13.0).abs() < 1e-6);
        let before = g.clip_global_norm(6.5);
        assert!((before - 13.0).abs() < 1e-6);
        assert_eq!(
            g.param_dense(&a).unwrap(),
            array![[1.5_f32, 0.0]].into_dyn()
        );
        let Some(Grad::Rows(rg)) = g.param(&table) else {
            panic!("rows")
        };
        assert_eq!(rg.indices(), &[1, 3]);
        assert_eq!(rg.values(), array![[2.0_f32, 0.0], [0.0, 6.0]]);
        assert!((g.global_norm() - 6.5).abs() < 1e-6);
        // Below the threshold nothing changes.
        let n = g.clip_global_norm(100.0);
        assert!((n - 6.5).abs() < 1e-6);
        assert_eq!(
            g.param_dense(&a).unwrap(),
            array![[1.5_f32, 0.0]].into_dyn()
        );
    }

    /// The optimizer-level clipping option equals clipping the gradients first, bit for bit.
    #[test]
    fn optimizer_clipping_equals_clip_then_step() {
        let make = || Two {
            a: Param::new(array![[1.0_f32, -2.0]].into_dyn()),
            table: Param::new(Tensor::from_shape_fn(IxDyn(&[5, 2]), |i| {
                (i[0] * 2 + i[1]) as f32 * 0.1
            })),
        };
        let mut m1 = make();
        let mut m2 = make();
        let g_for = |m: &Two| {
            grads_of(
                &[(&m.a, array![[3.0_f32, 0.0]].into_dyn())],
                &[(&m.table, &[1, 3], vec![4.0, 0.0, 0.0, 12.0])],
            )
        };
        let opts: Vec<(Box<dyn Optimizer>, Box<dyn Optimizer>)> = vec![
            (
                Box::new(Sgd::new(0.1).with_momentum(0.9).with_max_grad_norm(6.5)),
                Box::new(Sgd::new(0.1).with_momentum(0.9)),
            ),
            (
                Box::new(Adam::new(0.1).with_max_grad_norm(6.5)),
                Box::new(Adam::new(0.1)),
            ),
        ];
        for (mut clipped, mut plain) in opts {
            for _ in 0..2 {
                let g1 = g_for(&m1);
                clipped.step(&mut m1, &g1);
                let mut g2 = g_for(&m2);
                g2.clip_global_norm(6.5);
                plain.step(&mut m2, &g2);
                assert_eq!(m1.a.value(), m2.a.value());
                assert_eq!(m1.table.value(), m2.table.value());
            }
            assert!((clipped.last_grad_norm().unwrap() - 13.0).abs() < 1e-6);
            assert!((plain.last_grad_norm().unwrap() - 6.5).abs() < 1e-6);
        }
    }

    #[test]
    fn state_round_trip_and_validation() {
        let mut m = Two {
            a: Param::new(array![[1.0_f32, -2.0]].into_dyn()),
            table: Param::new(Tensor::zeros(IxDyn(&[4, 2]))),
        };
        let mut opt = Adam::new(0.01);
        let g = grads_of(
            &[(&m.a, array![[0.5_f32, 0.25]].into_dyn())],
            &[(&m.table, &[2], vec![1.0, -1.0])],
        );
        opt.step(&mut m, &g);
        let st = opt.state();
        assert_eq!(st.kind, "adam");
        assert_eq!(st.step, 1);
        let names: Vec<(&str, &str)> = st
            .slots
            .iter()
            .map(|s| (s.param.as_str(), s.slot.as_str()))
            .collect();
        assert_eq!(
            names,
            [("a", "m"), ("a", "v"), ("table", "m"), ("table", "v")]
        );

        // Restored state continues exactly like the original.
        let mut m2 = Two {
            a: m.a.clone(),
            table: m.table.clone(),
        };
        let mut opt2 = Adam::new(0.5);
        opt2.load_state(st.clone(), &m2).unwrap();
        assert_eq!(opt2.learning_rate(), 0.01);
        assert_eq!(opt2.state(), st);
        let g1 = grads_of(&[(&m.a, array![[0.1_f32, 0.2]].into_dyn())], &[]);
        let g2 = grads_of(&[(&m2.a, array![[0.1_f32, 0.2]].into_dyn())], &[]);
        opt.step(&mut m, &g1);
        opt2.step(&mut m2, &g2);
        assert_eq!(m.a.value(), m2.a.value());

        // Wrong kind, unknown parameter, wrong shape, missing slot: errors, nothing changed.
        let before = opt2.state();
        let mut bad = st.clone();
        bad.kind = "sgd".into();
        let e = opt2.load_state(bad, &m2).unwrap_err().to_string();
        assert!(e.contains("`sgd`"), "{e}");
        let mut bad = st.clone();
        bad.slots[0].param = "nope".into();
        let e = opt2.load_state(bad, &m2).unwrap_err().to_string();
        assert!(e.contains("`nope`"), "{e}");
        let mut bad = st.clone();
        bad.slots[0].shape = vec![2, 1];
        let e = opt2.load_state(bad, &m2).unwrap_err().to_string();
        assert!(e.contains("[2, 1]") && e.contains("[1, 2]"), "{e}");
        let mut bad = st.clone();
        bad.slots.remove(1);
        let e = opt2.load_state(bad, &m2).unwrap_err().to_string();
        assert!(e.contains("missing state `v`"), "{e}");
        let mut bad = st;
        bad.slots[1].data.pop();
        let e = opt2.load_state(bad, &m2).unwrap_err().to_string();
        assert!(e.contains("1 values"), "{e}");
        assert_eq!(opt2.state(), before);
    }
}
