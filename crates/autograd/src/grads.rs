//! Gradients returned by [`crate::Tape::backward`]: dense for ordinary parameters and leaves,
//! row-sparse for embedding tables reached only through [`crate::Var::gather_rows`].

use crate::param::{Param, ParamId};
use crate::{Tensor, Var};
use ndarray::{Array2, ArrayView2, Axis};
use std::collections::BTreeMap;

/// A row-sparse gradient of a 2-D parameter: the rows that received gradient and their values.
///
/// After [`crate::Tape::backward`] the indices are sorted and unique (duplicates summed in a
/// fixed order), so optimizers can update exactly these rows — see the lazy semantics in
/// [`crate::optim`].
#[derive(Debug, Clone, PartialEq)]
pub struct RowGrad {
    num_rows: usize,
    dim: usize,
    indices: Vec<usize>,
    values: Vec<f32>,
}

impl RowGrad {
    pub(crate) fn new(num_rows: usize, dim: usize) -> Self {
        RowGrad {
            num_rows,
            dim,
            indices: Vec::new(),
            values: Vec::new(),
        }
    }

    pub(crate) fn push_rows(&mut self, rows: &[usize], values: ArrayView2<'_, f32>) {
        assert_eq!(
            values.shape(),
            &[rows.len(), self.dim],
            "RowGrad::push_rows: values shape {:?} vs {} rows of width {}",
            values.shape(),
            rows.len(),
            self.dim
        );
        self.indices.extend_from_slice(rows);
        match values.as_slice() {
            Some(s) => self.values.extend_from_slice(s),
            None => self.values.extend(values.iter().copied()),
        }
    }

    /// Sorts the rows and sums duplicates (deterministic: stable order of contributions).
    pub(crate) fn coalesce(&mut self) {
        let dim = self.dim;
        let mut order: Vec<usize> = (0..self.indices.len()).collect();
        order.sort_by_key(|&i| self.indices[i]);
        let mut indices = Vec::with_capacity(order.len());
        let mut values: Vec<f32> = Vec::with_capacity(self.values.len());
        for &i in &order {
            let src = &self.values[i * dim..(i + 1) * dim];
            if indices.last() == Some(&self.indices[i]) {
                let start = values.len() - dim;
                for (d, s) in values[start..].iter_mut().zip(src) {
                    *d += s;
                }
            } else {
                indices.push(self.indices[i]);
                values.extend_from_slice(src);
            }
        }
        self.indices = indices;
        self.values = values;
    }

    /// Number of rows of the full parameter.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows that received gradient (sorted, unique after backward).
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The gradient rows, `[indices.len(), dim]`.
    pub fn values(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.indices.len(), self.dim), &self.values)
            .expect("RowGrad values are indices.len() × dim")
    }

    /// Mutable gradient rows, `[indices.len(), dim]`.
    pub fn values_mut(&mut self) -> ndarray::ArrayViewMut2<'_, f32> {
        ndarray::ArrayViewMut2::from_shape((self.indices.len(), self.dim), &mut self.values)
            .expect("RowGrad values are indices.len() × dim")
    }

    /// The equivalent dense `[num_rows, dim]` gradient.
    pub fn to_dense(&self) -> Tensor {
        let mut dense = Array2::<f32>::zeros((self.num_rows, self.dim));
        for (&r, src) in self.indices.iter().zip(self.values().outer_iter()) {
            let mut dst = dense.index_axis_mut(Axis(0), r);
            dst += &src;
        }
        dense.into_dyn()
    }
}

/// The gradient of one parameter or leaf.
#[derive(Debug, Clone, PartialEq)]
pub enum Grad {
    /// A full gradient with the parameter's shape.
    Dense(Tensor),
    /// Only the touched rows of a 2-D parameter (an embedding table).
    Rows(RowGrad),
}

impl Grad {
    /// Converts (if needed) to a dense gradient in place and returns it.
    pub(crate) fn make_dense(&mut self) -> &mut Tensor {
        if let Grad::Rows(rg) = self {
            *self = Grad::Dense(rg.to_dense());
        }
        match self {
            Grad::Dense(t) => t,
            Grad::Rows(_) => unreachable!("converted above"),
        }
    }

    /// The dense gradient (densifying a row gradient).
    pub fn into_dense(self) -> Tensor {
        match self {
            Grad::Dense(t) => t,
            Grad::Rows(rg) => rg.to_dense(),
        }
    }

    /// A dense copy of the gradient.
    pub fn to_dense(&self) -> Tensor {
        match self {
            Grad::Dense(t) => t.clone(),
            Grad::Rows(rg) => rg.to_dense(),
        }
    }

    pub(crate) fn coalesced(mut self) -> Self {
        if let Grad::Rows(rg) = &mut self {
            rg.coalesce();
        }
        self
    }

    /// Sum of squares of the stored entries, in f64.
    ///
    /// The entries are summed in fixed blocks of 16 384 (each in 8 partial sums), blocks on the rayon pool when there are many, and the block sums are
    /// added in order: the result depends on the entries only, never on the thread count.
    pub fn sum_squares(&self) -> f64 {
        match self {
            Grad::Dense(t) => match t.as_slice_memory_order() {
                Some(s) => sum_squares_slice(s),
                None => sum_squares_slice(&t.iter().copied().collect::<Vec<_>>()),
            },
            Grad::Rows(rg) => sum_squares_slice(&rg.values),
        }
    }

    /// Multiplies every stored entry by `s`.
    pub fn scale(&mut self, s: f32) {
        match self {
            Grad::Dense(t) => t.mapv_inplace(|x| x * s),
            Grad::Rows(rg) => rg.values.iter_mut().for_each(|x| *x *= s),
        }
    }
}

/// Entries per block of [`Grad::sum_squares`].
const SQUARES_BLOCK: usize = 1 << 14;
/// Partial sums per block of [`Grad::sum_squares`] (one AVX-512 register of f64).
const SQUARES_LANES: usize = 8;

/// `Σ x²` in f64 over fixed blocks (see [`Grad::sum_squares`]).
fn sum_squares_slice(x: &[f32]) -> f64 {
    use rayon::prelude::*;
    let block = |b: &[f32]| -> f64 {
        let mut lanes = [0.0_f64; SQUARES_LANES];
        let mut chunks = b.chunks_exact(SQUARES_LANES);
        for c in &mut chunks {
            for (s, &v) in lanes.iter_mut().zip(c) {
                *s += f64::from(v) * f64::from(v);
            }
        }
        let tail: f64 = chunks
            .remainder()
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum();
        lanes.iter().sum::<f64>() + tail
    };
    if crate::kernels::use_parallel(x.len()) {
        let sums: Vec<f64> = x.par_chunks(SQUARES_BLOCK).map(block).collect();
        sums.iter().sum()
    } else {
        x.chunks(SQUARES_BLOCK).map(block).sum()
    }
}

/// The gradients produced by one backward pass, keyed by parameter and by leaf.
///
/// Iteration over parameters is in [`ParamId`] order (creation order), so reductions such as
/// [`Gradients::global_norm`] are deterministic.
#[derive(Debug, Clone, Default)]
pub struct Gradients {
    params: BTreeMap<ParamId, Grad>,
    leaves: BTreeMap<usize, Tensor>,
    param_node: BTreeMap<usize, ParamId>,
}

impl Gradients {
    pub(crate) fn insert_param(&mut self, pid: ParamId, node: usize, g: Grad) {
        self.params.insert(pid, g);
        self.param_node.insert(node, pid);
    }

    pub(crate) fn insert_leaf(&mut self, node: usize, g: Tensor) {
        self.leaves.insert(node, g);
    }

    /// The gradient of a parameter, if it was used on the tape and received one.
    pub fn param(&self, param: &Param) -> Option<&Grad> {
        self.params.get(&param.id())
    }

    /// Mutable access to a parameter's gradient.
    pub fn param_mut(&mut self, param: &Param) -> Option<&mut Grad> {
        self.params.get_mut(&param.id())
    }

    /// The dense gradient of a parameter (densifying a row gradient).
    pub fn param_dense(&self, param: &Param) -> Option<Tensor> {
        self.param(param).map(Grad::to_dense)
    }

    /// The dense gradient of a leaf or parameter `Var` of the tape that produced these gradients.
    pub fn wrt(&self, var: Var<'_>) -> Option<Tensor> {
        if let Some(t) = self.leaves.get(&var.id) {
            return Some(t.clone());
        }
        self.param_node
            .get(&var.id)
            .and_then(|pid| self.params.get(pid))
            .map(Grad::to_dense)
    }

    /// Number of parameters with a gradient.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// The L2 norm of all parameter gradients together.
    pub fn global_norm(&self) -> f32 {
        self.params
            .values()
            .map(Grad::sum_squares)
            .sum::<f64>()
            .sqrt() as f32
    }

    /// Scales all parameter gradients so their global L2 norm is at most `max_norm`; returns
    /// the norm before clipping. A non-finite norm is returned unchanged and nothing is scaled
    /// (the trainer's divergence guard reports it).
    ///
    /// # Panics
    /// If `max_norm` is not positive.
    pub fn clip_global_norm(&mut self, max_norm: f32) -> f32 {
        assert!(
            max_norm > 0.0,
            "clip_global_norm: max_norm must be > 0, got {max_norm}"
        );
        let norm = self.global_norm();
        if norm.is_finite() && norm > max_norm {
            let s = max_norm / norm;
            self.params.values_mut().for_each(|g| g.scale(s));
        }
        norm
    }

    /// Whether every stored gradient entry is finite.
    pub fn all_finite(&self) -> bool {
        self.params.values().all(|g| g.sum_squares().is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
            .collect()
    }

    #[test]
    fn sum_squares_matches_the_plain_sum_on_both_sides_of_the_block_size() {
        for n in [
            0,
            1,
            7,
            8,
            9,
            SQUARES_BLOCK - 1,
            SQUARES_BLOCK + 3,
            5 * SQUARES_BLOCK + 11,
        ] {
            let v = values(n);
            let want: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let dense =
                Grad::Dense(Tensor::from_shape_vec(ndarray::IxDyn(&[n]), v.clone()).unwrap());
            let got = dense.sum_squares();
            assert!(
                (got - want).abs() <= 1e-9 * want.max(1.0),
                "n {n}: {got} vs {want}"
            );
            let rows = Grad::Rows(RowGrad {
                num_rows: n,
                dim: 1,
                indices: (0..n).collect(),
                values: v,
            });
            assert_eq!(
                rows.sum_squares(),
                got,
                "n {n}: row-sparse and dense differ"
            );
        }
    }

    #[test]
    fn sum_squares_is_identical_across_thread_counts() {
        let v = values(9 * SQUARES_BLOCK + 5);
        let g = Grad::Dense(Tensor::from_shape_vec(ndarray::IxDyn(&[v.len()]), v).unwrap());
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| g.sum_squares())
        };
        let one = on(1);
        assert_eq!(one.to_bits(), on(2).to_bits());
        assert_eq!(one.to_bits(), on(3).to_bits());
    }

    #[test]
    fn sum_squares_of_non_contiguous_gradients() {
        let t = Tensor::from_shape_vec(ndarray::IxDyn(&[3, 10]), values(30)).unwrap();
        let want = Grad::Dense(t.clone()).sum_squares();
        let reversed = Grad::Dense(t.clone().reversed_axes()).sum_squares();
        assert!((reversed - want).abs() <= 1e-12 * want);
        let mut strided = t.clone();
        strided.slice_collapse(ndarray::s![.., ..;2]);
        let plain = Grad::Dense(strided.as_standard_layout().into_owned()).sum_squares();
        assert!(plain < want);
        assert_eq!(Grad::Dense(strided).sum_squares(), plain);
    }
}
