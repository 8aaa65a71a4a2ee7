//! Row gathers from a 2-D table: [`Var::gather_rows`] and the shaped [`Var::embedding`].
//!
//! The backward hands the output gradient to the tape as *rows* of the table's gradient: when
//! the table is a leaf (a parameter or [`crate::Tape::leaf`]) and every use of it is a gather,
//! its gradient stays row-sparse ([`crate::Grad::Rows`]: only the touched rows, sorted and
//! unique after backward, duplicates summed in a fixed order), so optimizers can update only
//! those rows. Otherwise the rows are scatter-added into a dense gradient.

use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{ArrayD, IxDyn};

struct GatherBackward {
    table: usize,
    ids: Vec<usize>,
    dim: usize,
}

impl BackwardOp for GatherBackward {
    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        if !sink.wants(self.table) {
            return;
        }
        let rows = g
            .to_shape((self.ids.len(), self.dim))
            .expect("gradient has ids.len() × dim elements");
        sink.add_rows(self.table, &self.ids, rows.view());
    }
}

/// Copies rows `ids` of the table into a new `[ids.len(), dim]` buffer (parallel over rows for
/// large outputs; each row is copied by one task, so the result does not depend on threads).
fn gather(table: &Tensor, ids: &[usize], op: &str) -> (Vec<f32>, usize) {
    let shape = table.shape();
    assert_eq!(
        shape.len(),
        2,
        "{op}: the table must be 2-D [rows, dim], got shape {shape:?}"
    );
    let (rows, dim) = (shape[0], shape[1]);
    if let Some(&bad) = ids.iter().find(|&&id| id >= rows) {
        panic!("{op}: id {bad} out of range for a table of {rows} rows");
    }
    let src = table.as_slice().expect("standard layout");
    // Whole rows per chunk, about `PAR_MIN_LEN` elements each.
    let per_task = dim.max(1) * (crate::kernels::PAR_MIN_LEN / dim.max(1)).max(1);
    #[allow(unsafe_code)]
    // SAFETY: chunk `i` holds rows `i · per_task / dim ..` (whole rows: `dim` divides both the
    // chunk and the total), each written in full from its table row.
    let out = unsafe {
        crate::kernels::written_by(ids.len() * dim, per_task, |i, o| {
            let first = i * per_task / dim.max(1);
            for (row, &id) in o.chunks_mut(dim).zip(&ids[first..]) {
                for (o, &v) in row.iter_mut().zip(&src[id * dim..(id + 1) * dim]) {
                    o.write(v);
                }
            }
        })
        .0
    };
    (out, dim)
}

fn gather_impl<'t>(table: Var<'t>, ids: Vec<usize>, out_ids_shape: &[usize], op: &str) -> Var<'t> {
    let t = table.value();
    let (out, dim) = gather(&t, &ids, op);
    let mut shape = out_ids_shape.to_vec();
    shape.push(dim);
    let out = Tensor::from_shape_vec(IxDyn(&shape), out).expect("ids × dim elements");
    table.tape.record(&[table], out, || GatherBackward {
        table: table.id,
        ids,
        dim,
    })
}

impl<'t> Var<'t> {
    /// Rows `ids` of a 2-D table (an embedding lookup). Ids may repeat; their gradients add up.
    ///
    /// When the table is a parameter used only through gathers, its gradient is row-sparse
    /// ([`crate::Grad::Rows`]); see the module docs.
    ///
    /// # Shapes
    /// `[V, D]` with `n` ids → `[n, D]`.
    ///
    /// # Panics
    /// If the table is not 2-D, or an id is `≥ V` (the message names the id and `V`).
    pub fn gather_rows(self, ids: &[usize]) -> Var<'t> {
        gather_impl(self, ids.to_vec(), &[ids.len()], "gather_rows")
    }

    /// Embedding lookup with shaped ids: `out[i…, :] = table[ids[i…], :]`.
    /// Same gradient semantics as [`Var::gather_rows`].
    ///
    /// # Shapes
    /// `[V, D]` with ids of shape `S` → `S + [D]` (e.g. `[B, L]` ids → `[B, L, D]`).
    ///
    /// # Panics
    /// If the table is not 2-D, or an id is `≥ V` (the message names the id and `V`).
    pub fn embedding(self, ids: &ArrayD<usize>) -> Var<'t> {
        let flat: Vec<usize> = ids.iter().copied().collect();
        gather_impl(self, flat, ids.shape(), "embedding")
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{assert_gradients, randn};
    use crate::{Grad, Param, Tape, Tensor};
    use ndarray::{Array2, ArrayD, IxDyn, array};

    #[test]
    fn values() {
        let tape = Tape::new();
        let t = tape.constant(array![[0.0_f32, 1.0], [2.0, 3.0], [4.0, 5.0]].into_dyn());
        assert_eq!(
            *t.gather_rows(&[2, 0, 2]).value(),
            array![[4.0_f32, 5.0], [0.0, 1.0], [4.0, 5.0]].into_dyn()
        );
        let ids = array![[1_usize, 2], [0, 0]].into_dyn();
        let e = t.embedding(&ids);
        assert_eq!(e.shape(), vec![2, 2, 2]);
        assert_eq!(
            *e.value(),
            array![[[2.0_f32, 3.0], [4.0, 5.0]], [[0.0, 1.0], [0.0, 1.0]]].into_dyn()
        );
        assert_eq!(t.gather_rows(&[]).shape(), vec![0, 2]);
        // Non-standard-layout ids are read in logical order.
        let idt = array![[1_usize, 2], [0, 1]].reversed_axes().into_dyn();
        assert_eq!(t.embedding(&idt).value()[[0, 1, 0]], 0.0);
    }

    #[test]
    fn gradients() {
        let table = randn(&[5, 3], 1);
        assert_gradients(std::slice::from_ref(&table), |_, v| {
            v[0].gather_rows(&[4, 1, 1, 0])
        });
        assert_gradients(std::slice::from_ref(&table), |_, v| v[0].gather_rows(&[2]));
        let ids = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0_usize, 4, 4, 2, 1, 0]).unwrap();
        assert_gradients(std::slice::from_ref(&table), move |_, v| {
            v[0].embedding(&ids)
        });
        let ids1 = ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![3_usize]).unwrap();
        assert_gradients(std::slice::from_ref(&table), move |_, v| {
            v[0].embedding(&ids1)
        });
        // Dense path: the gathered table is not a leaf.
        let (a, b) = (randn(&[5, 3], 2), randn(&[3], 3));
        assert_gradients(&[a, b], |_, v| (v[0] * v[1]).gather_rows(&[3, 3, 0]) * v[1]);
    }

    #[test]
    fn sparse_param_gradient_matches_dense() {
        let p = Param::new(randn(&[6, 4], 5));
        let ids = [5_usize, 1, 5, 3, 1, 5];
        let r = randn(&[6, 4], 6);
        // Sparse: the parameter is gathered twice (duplicates within and across gathers).
        let tape = Tape::new();
        let t = tape.param(&p);
        let y = t.gather_rows(&ids[..4]);
        let z = t.gather_rows(&ids[4..]);
        let out = crate::Var::concat(&[y, z], 0);
        let g = tape.backward((out * tape.constant(r.clone())).sum());
        let Some(Grad::Rows(rg)) = g.param(&p) else {
            panic!("expected a row-sparse gradient, got {:?}", g.param(&p));
        };
        assert_eq!(rg.indices(), &[1, 3, 5]);
        assert_eq!(rg.num_rows(), 6);
        assert_eq!(rg.dim(), 4);
        // Dense reference: scatter-add by hand.
        let mut want = Array2::<f32>::zeros((6, 4));
        for (i, &id) in ids.iter().enumerate() {
            for j in 0..4 {
                want[[id, j]] += r[[i, j]];
            }
        }
        // (Contributions are summed in backward order — the later gather first — so compare
        // with a tolerance.)
        let close =
            |a: &Tensor, b: &Tensor| a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-6);
        let sparse = g.param_dense(&p).unwrap();
        assert!(close(&sparse, &want.clone().into_dyn()));
        // Dense path: the same parameter also used densely → dense gradient, same values
        // plus the dense term.
        let tape = Tape::new();
        let t = tape.param(&p);
        let out = crate::Var::concat(&[t.gather_rows(&ids[..4]), t.gather_rows(&ids[4..])], 0);
        let zero = tape.constant(Tensor::zeros(IxDyn(&[6, 4])));
        let g = tape.backward((out * tape.constant(r)).sum() + (t * zero).sum());
        assert!(matches!(g.param(&p), Some(Grad::Dense(_))));
        let dense = g.param_dense(&p).unwrap();
        assert!(close(&dense, &want.into_dyn()));
        assert!(close(&dense, &sparse));
    }

    #[test]
    fn duplicate_ids_accumulate() {
        let tape = Tape::new();
        let p = Param::new(Tensor::zeros(IxDyn(&[4, 2])));
        let y = tape.param(&p).gather_rows(&[2, 2, 2, 0]);
        let g = tape.backward(y.sum());
        let Some(Grad::Rows(rg)) = g.param(&p) else {
            panic!("expected rows")
        };
        assert_eq!(rg.indices(), &[0, 2]);
        assert_eq!(rg.values(), array![[1.0_f32, 1.0], [3.0, 3.0]]);
    }

    #[test]
    fn large_gather_is_identical_across_thread_counts() {
        let table = randn(&[1000, 64], 7);
        let ids: Vec<usize> = (0..2000).map(|i| (i * 7919) % 1000).collect();
        let run = || {
            let tape = Tape::new();
            let t = tape.leaf(table.clone());
            let y = t.gather_rows(&ids);
            let r = tape.constant(randn(&[2000, 64], 8));
            let g = tape.backward((y * r).sum());
            (
                y.value().mapv(f32::to_bits),
                g.wrt(t).unwrap().mapv(f32::to_bits),
            )
        };
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        assert_eq!(pool(1).install(run), pool(2).install(run));
    }

    #[test]
    #[should_panic(expected = "gather_rows: id 7 out of range for a table of 3 rows")]
    fn out_of_range_id() {
        let tape = Tape::new();
        let _ = tape
            .constant(Tensor::zeros(IxDyn(&[3, 2])))
            .gather_rows(&[0, 7]);
    }

    #[test]
    #[should_panic(expected = "embedding: the table must be 2-D [rows, dim], got shape [3]")]
    fn table_not_2d() {
        let tape = Tape::new();
        let ids = ArrayD::from_elem(IxDyn(&[1]), 0_usize);
        let _ = tape.constant(Tensor::zeros(IxDyn(&[3]))).embedding(&ids);
    }
}
