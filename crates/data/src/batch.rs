//! Mini-batches of an [`EngagementDataset`] as plain ndarray arrays.
//!
//! **Sequence layout** (models rely on it):
//! - Only the `seq_len` most recent history actions are kept.
//! - Tokens are in **reverse chronological order and left-aligned**: position 0 is the most
//!   recent action, position 1 the one before, ...; padding (pin 0, action
//!   [`PAD_ACTION`] = 0, mask `false`) fills the right. So position embeddings mean "recency"
//!   and TransAct's read-out of the first 10 output tokens reads the 10 most recent actions.
//! - The width `L` is `min(seq_len, longest history in the batch)`, but at least 1, so an
//!   all-empty batch still has one all-padding column (mask all `false`; models must not
//!   produce NaN from it). With [`BatchOptions::fixed_len`], `L = seq_len` always. With
//!   `seq_len = 0` (history unused), `L = 0`.
//!
//! **Shuffling** draws only from the RNG passed in (or a [`rand_chacha::ChaCha8Rng`] seeded
//! from an explicit seed), so the same seed gives the same batches.

use crate::dataset::EngagementDataset;
use crate::error::{DataError, Result};
use crate::vocab::PAD_ACTION;
use ndarray::{Array1, Array2};
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// How to cut batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Examples per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Most recent history actions kept per example.
    pub seq_len: usize,
    /// Always pad histories to `seq_len` instead of to the batch's longest history.
    pub fixed_len: bool,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
}

impl Default for BatchOptions {
    /// Batch 256, seq_len 100 (SPEC §5), dynamic width, keep the last batch.
    fn default() -> Self {
        Self {
            batch_size: 256,
            seq_len: 100,
            fixed_len: false,
            drop_last: false,
        }
    }
}

/// One mini-batch. Rows follow `indices`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Dataset indices of the rows.
    pub indices: Vec<usize>,
    /// History pin ids [B, L], most recent first, 0 = padding.
    pub hist_pins: Array2<u64>,
    /// History action ids [B, L], most recent first, [`PAD_ACTION`] = padding.
    pub hist_actions: Array2<u32>,
    /// [B, L]: true for real tokens.
    pub hist_mask: Array2<bool>,
    /// Real tokens per row (`<= L`).
    pub hist_len: Vec<usize>,
    /// Candidate pin per row, when the dataset has candidates.
    pub candidates: Option<Vec<u64>>,
    /// Dense features [B, F].
    pub features: Array2<f32>,
    /// Labels [B, T]; 0 where missing (see `label_mask`).
    pub labels: Array2<f32>,
    /// [B, T]: 1 where the label is present, 0 where missing.
    pub label_mask: Array2<f32>,
    /// Example weights, length B.
    pub weights: Array1<f32>,
    /// (old scores [B, T], mask [B, T]) when the dataset has logged old scores.
    pub old_scores: Option<(Array2<f32>, Array2<f32>)>,
}

impl Batch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for a batch without rows.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

impl BatchOptions {
    /// Errors on a zero batch size.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        Ok(())
    }
}

/// Builds the batch of the examples at `indices` (in that order).
///
/// # Panics
/// If an index is out of range, or if the dataset's examples break the invariants its loaders
/// guarantee (every example has `meta.feature_width` features and `vocab.num_tasks()` label
/// slots). [`Batches`] checks the indices and returns an error instead.
pub fn make_batch(ds: &EngagementDataset, indices: &[usize], opts: &BatchOptions) -> Batch {
    let b = indices.len();
    let t = ds.vocab.num_tasks();
    let f = ds.meta.feature_width;
    let hist_len: Vec<usize> = indices
        .iter()
        .map(|&i| ds.examples[i].history.len().min(opts.seq_len))
        .collect();
    let l = if opts.seq_len == 0 {
        0
    } else if opts.fixed_len {
        opts.seq_len
    } else {
        hist_len.iter().copied().max().unwrap_or(0).max(1)
    };
    let mut hist_pins = Array2::<u64>::zeros((b, l));
    let mut hist_actions = Array2::<u32>::from_elem((b, l), PAD_ACTION);
    let mut hist_mask = Array2::<bool>::from_elem((b, l), false);
    let mut features = Array2::<f32>::zeros((b, f));
    let mut labels = Array2::<f32>::zeros((b, t));
    let mut label_mask = Array2::<f32>::zeros((b, t));
    let mut weights = Array1::<f32>::zeros(b);
    let mut old = ds
        .meta
        .has_old_scores
        .then(|| (Array2::<f32>::zeros((b, t)), Array2::<f32>::zeros((b, t))));
    let mut candidates = ds.meta.has_candidate.then(|| Vec::with_capacity(b));
    for (row, &i) in indices.iter().enumerate() {
        let ex = &ds.examples[i];
        for (pos, tok) in ex.history.iter().rev().take(hist_len[row]).enumerate() {
            hist_pins[[row, pos]] = tok.pin;
            hist_actions[[row, pos]] = tok.action;
            hist_mask[[row, pos]] = true;
        }
        for (j, &x) in ex.features.iter().enumerate() {
            features[[row, j]] = x;
        }
        for (k, lab) in ex.labels.iter().enumerate() {
            if let Some(v) = lab {
                labels[[row, k]] = *v;
                label_mask[[row, k]] = 1.0;
            }
        }
        weights[row] = ex.weight;
        if let (Some((vals, mask)), Some(scores)) = (old.as_mut(), ex.old_scores.as_ref()) {
            for (k, s) in scores.iter().enumerate() {
                if let Some(v) = s {
                    vals[[row, k]] = *v;
                    mask[[row, k]] = 1.0;
                }
            }
        }
        if let Some(c) = candidates.as_mut() {
            c.push(ex.candidate.unwrap_or(0));
        }
    }
    Batch {
        indices: indices.to_vec(),
        hist_pins,
        hist_actions,
        hist_mask,
        hist_len,
        candidates,
        features,
        labels,
        label_mask,
        weights,
        old_scores: old,
    }
}

/// `0..n` shuffled with `rng` (Fisher–Yates).
pub fn shuffled_indices(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

/// An iterator of batches over a fixed example order.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    ds: &'a EngagementDataset,
    order: Vec<usize>,
    pos: usize,
    opts: BatchOptions,
}

impl<'a> Batches<'a> {
    /// Batches over `order` (dataset indices, each < `ds.len()`).
    pub fn new(ds: &'a EngagementDataset, order: Vec<usize>, opts: BatchOptions) -> Result<Self> {
        opts.validate()?;
        if let Some(&bad) = order.iter().find(|&&i| i >= ds.len()) {
            return Err(DataError::Invalid(format!(
                "batch order index {bad} out of range for {} examples",
                ds.len()
            )));
        }
        Ok(Self {
            ds,
            order,
            pos: 0,
            opts,
        })
    }

    /// Batches in file order (for evaluation and scoring).
    pub fn sequential(ds: &'a EngagementDataset, opts: BatchOptions) -> Result<Self> {
        Self::new(ds, (0..ds.len()).collect(), opts)
    }

    /// One epoch in an order shuffled by `rng`.
    pub fn shuffled(
        ds: &'a EngagementDataset,
        opts: BatchOptions,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Self::new(ds, shuffled_indices(ds.len(), rng), opts)
    }

    /// Epoch `epoch` of a run seeded with `seed`: the order is drawn from a ChaCha8 stream
    /// seeded with `seed` and positioned at stream `epoch`, so epochs differ and each is
    /// reproducible on its own.
    pub fn seeded(
        ds: &'a EngagementDataset,
        opts: BatchOptions,
        seed: u64,
        epoch: u64,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        Self::shuffled(ds, opts, &mut rng)
    }

    /// Number of batches this iterator yields in total.
    pub fn num_batches(&self) -> usize {
        let n = self.order.len();
        if self.opts.drop_last {
            n / self.opts.batch_size
        } else {
            n.div_ceil(self.opts.batch_size)
        }
    }

    /// The example order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let rest = self.order.len() - self.pos;
        let take = rest.min(self.opts.batch_size);
        if take == 0 || (self.opts.drop_last && take < self.opts.batch_size) {
            return None;
        }
        let idx = &self.order[self.pos..self.pos + take];
        self.pos += take;
        Some(make_batch(self.ds, idx, &self.opts))
    }
}
