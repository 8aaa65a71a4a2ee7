//! Embedding tables: direct lookup for small vocabularies (action types, positions) and
//! hashed lookup for arbitrary u64 ids (pins), with sparse gradients.

use crate::init;
use closeup_autograd::{Param, ParamVisitor, ParamVisitorMut, Parameterized, Var};
use ndarray::ArrayD;
use rand::Rng;

/// A `[rows, dim]` table looked up by row index. The gradient of the table is row-sparse
/// (only the looked-up rows), so optimizers update only those rows.
///
/// Initialisation: `N(0, 1/dim)`, so an embedding vector has norm ≈ 1 (the scale layer norms
/// produce).
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Param,
}

impl Embedding {
    /// A table of `rows` vectors of width `dim`.
    pub fn new(rows: usize, dim: usize, rng: &mut impl Rng) -> Self {
        let std = 1.0 / (dim.max(1) as f32).sqrt();
        Embedding {
            table: Param::new(init::normal(&[rows, dim], std, rng)),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.table.shape()[0]
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.table.shape()[1]
    }

    /// The table parameter.
    pub fn table(&self) -> &Param {
        &self.table
    }

    /// Looks up rows by index.
    ///
    /// # Shapes
    /// `ids: [..]` → `[.., dim]`.
    ///
    /// # Panics
    /// If an id is `>= rows` (names the id and the table size).
    pub fn forward<'t>(&self, tape: &'t closeup_autograd::Tape, ids: &ArrayD<usize>) -> Var<'t> {
        tape.param(&self.table).embedding(ids)
    }
}

impl Parameterized for Embedding {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.param("table", &self.table);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.param("table", &mut self.table);
    }
}

/// Maps an arbitrary u64 id to one of `buckets` rows with SplitMix64 (a fixed, documented hash:
/// the same id lands in the same bucket on every machine and run).
pub fn hash_bucket(id: u64, buckets: usize) -> usize {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % buckets as u64) as usize
}

/// An embedding of arbitrary u64 ids hashed into a fixed number of buckets (the pin-id
/// embedding: 100,000 buckets × 64 in the reference configuration). Collisions share a row.
#[derive(Debug, Clone)]
pub struct HashEmbedding {
    inner: Embedding,
}

impl HashEmbedding {
    /// A table of `buckets` rows of width `dim`.
    ///
    /// # Panics
    /// If `buckets` is 0.
    pub fn new(buckets: usize, dim: usize, rng: &mut impl Rng) -> Self {
        assert!(buckets > 0, "HashEmbedding::new: buckets must be > 0");
        HashEmbedding {
            inner: Embedding::new(buckets, dim, rng),
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.inner.rows()
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The bucket rows of `ids`.
    pub fn buckets_of(&self, ids: &ArrayD<u64>) -> ArrayD<usize> {
        let n = self.buckets();
        ids.mapv(|id| hash_bucket(id, n))
    }

    /// Looks up hashed ids. Padding positions are whatever id the batch puts there; mask them
    /// downstream (the sequence encoder multiplies padded tokens by 0 and masks attention).
    ///
    /// # Shapes
    /// `ids: [..]` → `[.., dim]`.
    pub fn forward<'t>(&self, tape: &'t closeup_autograd::Tape, ids: &ArrayD<u64>) -> Var<'t> {
        self.inner.forward(tape, &self.buckets_of(ids))
    }
}

impl Parameterized for HashEmbedding {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        self.inner.visit_params(v);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        self.inner.visit_params_mut(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeup_autograd::{Grad, Tape};
    use rand::SeedableRng;

    #[test]
    fn hashing_is_stable_and_spreads() {
        assert_eq!(hash_bucket(42, 1000), hash_bucket(42, 1000));
        let mut counts = vec![0usize; 10];
        for id in 0..10_000u64 {
            counts[hash_bucket(id * 1_000_003, 10)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn lookup_shapes_and_sparse_gradient() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let emb = HashEmbedding::new(1000, 8, &mut rng);
        let ids = ndarray::array![[5u64, 17, 5], [9, 9, 1 << 60]].into_dyn();
        let tape = Tape::new();
        let out = emb.forward(&tape, &ids);
        assert_eq!(out.shape(), [2, 3, 8]);
        let rows = emb.buckets_of(&ids);
        let table = emb.inner.table().value();
        for (pos, &r) in rows.indexed_iter() {
            let got = out.value();
            let want = table.index_axis(ndarray::Axis(0), r);
            let got_row = got.slice(ndarray::s![pos[0], pos[1], ..]);
            assert_eq!(got_row.into_dyn(), want);
        }
        let grads = tape.backward(out.sum());
        match grads.param(emb.inner.table()) {
            Some(Grad::Rows(rg)) => {
                let mut unique: Vec<usize> = rows.iter().copied().collect();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(rg.indices(), unique.as_slice());
            }
            other => panic!("expected a row-sparse gradient, got {other:?}"),
        }
    }
}
