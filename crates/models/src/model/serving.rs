//! Serving: one request = one user and many candidates (e.g. 1,000).
//!
//! [`CloseupModel::encode_user`] does the user-side work once per request; then
//! [`CloseupModel::score_encoded`] scores any number of candidates against it. A [`Server`]
//! ([`CloseupModel::server`]) does the same for many requests with the MMoE head's split weights
//! prepared once (see `mmoe_split.rs`).
//!
//! What each option costs per request of `C` candidates, history length `L`, width `d`:
//! - **Late fusion (default)**: the transformer runs **once** (`O(layers · (L²d + L·d·ffn))`);
//!   mean / max-pool / first-K read-outs are computed once and broadcast; target attention is
//!   one query per candidate against the shared encoded sequence (`O(C·L·d)`, no tiling); then
//!   the head runs on `[C, input]` (`O(C · experts)`). The encoder cost is amortized over `C`.
//! - **Early fusion** (TransAct): the candidate is part of every token, so the encoder runs once
//!   **per candidate** — `C` times the encoder cost (done in chunks of 256 candidates); this
//!   is what TransAct pays for its stronger user–candidate interaction.
//!
//! Scores equal the batch [`crate::RankingModel::forward`] in evaluation mode on the same inputs
//! (up to float rounding: the shared target attention uses a `[C, d]·[d, L]` product instead of
//! `C` batched ones); the tests check agreement within 1e-5.

use super::{CloseupModel, Head};
use crate::encoder::HistoryView;
use crate::encoder::readout::target_attention_shared;
use crate::mmoe::SplitHead;
use crate::{ModelBatch, RankingModel};
use closeup_autograd::{Tape, Tensor, Var};
use closeup_layers::ForwardCtx;
use ndarray::{Array1, Array2, ArrayView2, Axis, IxDyn};
use rand::SeedableRng;
use std::sync::OnceLock;

/// Candidates scored per encoder pass with early fusion.
const EARLY_FUSION_CHUNK: usize = 256;

/// One user's history for a request: real tokens only, **most recent first**.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserHistory {
    /// Pin ids.
    pub pins: Vec<u64>,
    /// Action ids (same vocabulary as training; 1 = unknown).
    pub actions: Vec<usize>,
}

impl UserHistory {
    /// A history from parallel pin and action lists.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn new(pins: Vec<u64>, actions: Vec<usize>) -> Self {
        assert_eq!(
            pins.len(),
            actions.len(),
            "UserHistory: {} pins, {} actions",
            pins.len(),
            actions.len()
        );
        UserHistory { pins, actions }
    }

    /// The real tokens of example `row` of a batch, in order.
    ///
    /// # Panics
    /// If `row` is out of range.
    pub fn from_batch_row(batch: &ModelBatch, row: usize) -> Self {
        let mut h = UserHistory::default();
        for ((&p, &a), &m) in batch
            .hist_pins
            .row(row)
            .iter()
            .zip(batch.hist_actions.row(row))
            .zip(batch.hist_mask.row(row))
        {
            if m {
                h.pins.push(p);
                h.actions.push(a);
            }
        }
        h
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether the history is empty (a new user).
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    fn as_arrays(&self) -> (Array2<u64>, Array2<usize>, Array2<bool>) {
        let l = self.len();
        (
            Array2::from_shape_vec((1, l), self.pins.clone()).expect("[1, L]"),
            Array2::from_shape_vec((1, l), self.actions.clone()).expect("[1, L]"),
            Array2::from_elem((1, l), true),
        )
    }
}

/// The user-side part of a request, computed once by [`CloseupModel::encode_user`].
#[derive(Debug, Clone)]
pub struct EncodedUser {
    history: UserHistory,
    /// The encoded sequence `[L, d]` (late fusion with a history).
    hidden: Option<Tensor>,
    /// Per configured read-out: its `[1, w]` value, or `None` when it needs the candidate.
    readouts: Vec<Option<Tensor>>,
}

impl EncodedUser {
    /// The (truncated) history.
    pub fn history(&self) -> &UserHistory {
        &self.history
    }
}

fn eval_rng() -> rand_chacha::ChaCha8Rng {
    // Evaluation never draws from the RNG; any seed is fine.
    rand_chacha::ChaCha8Rng::seed_from_u64(0)
}

impl CloseupModel {
    /// The user-side computation of a request: the encoder over the history and the read-outs
    /// that do not need the candidate (nothing but a copy of the history with early fusion).
    pub fn encode_user(&self, history: &UserHistory) -> EncodedUser {
        let mut history = history.clone();
        let mut user = EncodedUser {
            history: UserHistory::default(),
            hidden: None,
            readouts: Vec::new(),
        };
        let (Some(enc), Some(pins)) = (&self.encoder, &self.pin_embedding) else {
            return user;
        };
        history.pins.truncate(enc.seq_len());
        history.actions.truncate(enc.seq_len());
        if !enc.early_fusion() {
            let tape = Tape::no_grad();
            let mut rng = eval_rng();
            let mut ctx = ForwardCtx::eval(&mut rng);
            let (p, a, m) = history.as_arrays();
            let view = HistoryView {
                pins: p.view(),
                actions: a.view(),
                mask: m.view(),
            };
            let e = enc.encode(&tape, pins, view, None, &mut ctx);
            user.readouts = enc
                .readouts()
                .iter()
                .map(|&r| {
                    (!r.needs_candidate()).then(|| (*enc.read_out_one(r, &e, None).value()).clone())
                })
                .collect();
            let hidden = e.hidden.value().index_axis(Axis(0), 0).to_owned();
            user.hidden = Some(hidden);
        }
        user.history = history;
        user
    }

    /// Scores `C` candidates of one request against an [`EncodedUser`]: logits `[C, T]` (apply
    /// a sigmoid for probabilities).
    ///
    /// # Shapes
    /// `candidates: [C]` (required iff the model has candidates), `features: [C, F]`.
    ///
    /// # Panics
    /// If candidates are missing / of the wrong count, or `features` has the wrong width.
    ///
    /// Prepares the head's split weights for this one call; to serve many requests, prepare
    /// them once with [`CloseupModel::server`].
    pub fn score_encoded(
        &self,
        user: &EncodedUser,
        candidates: Option<&[u64]>,
        features: ArrayView2<'_, f32>,
    ) -> Array2<f32> {
        self.score_prepared(user, candidates, features, &OnceLock::new())
    }

    /// [`CloseupModel::score_encoded`] with the split head taken from (or first built into)
    /// `prepared`, which must belong to this model (it borrows it).
    fn score_prepared<'m>(
        &'m self,
        user: &EncodedUser,
        candidates: Option<&[u64]>,
        features: ArrayView2<'_, f32>,
        prepared: &OnceLock<SplitHead<'m>>,
    ) -> Array2<f32> {
        let c = features.nrows();
        let candidates = if self.shape.has_candidate {
            let ids = candidates.expect("score: the model needs candidates");
            assert_eq!(
                ids.len(),
                c,
                "score: {} candidates but {c} feature rows",
                ids.len()
            );
            Some(ids)
        } else {
            None
        };
        assert_eq!(
            features.ncols(),
            self.shape.num_features,
            "score: feature width"
        );
        if self.encoder.as_ref().is_some_and(|e| e.early_fusion()) {
            return self.score_early_fusion(
                user,
                candidates.expect("early fusion has candidates"),
                features,
            );
        }
        let tape = Tape::no_grad();
        let mut rng = eval_rng();
        let mut ctx = ForwardCtx::eval(&mut rng);
        let cand = match (&self.pin_embedding, candidates) {
            (Some(pins), Some(ids)) => {
                Some(pins.forward(&tape, &Array1::from(ids.to_vec()).into_dyn()))
            }
            _ => None,
        };
        // The head input's columns, in order: each part is either one row shared by every
        // candidate (a user-side read-out) or per-candidate.
        enum Part<'t> {
            Shared(&'t Tensor),
            PerCandidate(Var<'t>),
        }
        let mut parts: Vec<Part<'_>> = Vec::new();
        if let Some(enc) = &self.encoder {
            let hidden =
                tape.constant(user.hidden.clone().expect("late fusion keeps the encoding"));
            let mask = vec![true; user.history.len()];
            for (&r, value) in enc.readouts().iter().zip(&user.readouts) {
                parts.push(match value {
                    Some(v) => Part::Shared(v),
                    None => {
                        debug_assert!(r.needs_candidate());
                        Part::PerCandidate(target_attention_shared(
                            &tape,
                            cand.expect("a candidate"),
                            hidden,
                            &mask,
                        ))
                    }
                });
            }
        }
        parts.extend(cand.map(Part::PerCandidate));
        if self.shape.num_features > 0 {
            parts.push(Part::PerCandidate(
                tape.constant(features.to_owned().into_dyn()),
            ));
        }
        let has_shared = parts.iter().any(|p| matches!(p, Part::Shared(_)));
        if let (Head::Moe(mmoe), true) = (&self.head, has_shared) {
            // Fold the shared columns into the biases of the layers that read the input
            // (mmoe_split.rs): fewer multiply-adds per candidate.
            let (mut user_cols, mut user_vals, mut cand_cols) =
                (Vec::new(), Vec::new(), Vec::new());
            let mut per_cand = Vec::new();
            let mut col = 0;
            for p in &parts {
                match p {
                    Part::Shared(v) => {
                        user_cols.extend(col..col + v.len());
                        user_vals.extend(v.iter().copied());
                        col += v.len();
                    }
                    Part::PerCandidate(x) => {
                        let w = x.shape()[1];
                        cand_cols.extend(col..col + w);
                        per_cand.push(*x);
                        col += w;
                    }
                }
            }
            let x = if per_cand.len() == 1 {
                per_cand[0]
            } else {
                Var::concat(&per_cand, 1)
            };
            // The column layout is fixed by the configuration (read-out widths), so one
            // prepared head serves every request; checked, not assumed.
            let head = prepared.get_or_init(|| mmoe.split_head(&user_cols, &cand_cols));
            assert!(
                head.user_cols() == user_cols && head.cand_cols() == cand_cols,
                "score: the prepared head's column layout differs from this request's"
            );
            return head.forward(
                x.value().view().into_dimensionality().expect("[C, w]"),
                &user_vals,
            );
        }
        let parts: Vec<Var<'_>> = parts
            .into_iter()
            .map(|p| match p {
                Part::Shared(v) => {
                    let w = v.shape()[1];
                    tape.constant(
                        v.broadcast(IxDyn(&[c, w]))
                            .expect("[1, w] → [C, w]")
                            .to_owned(),
                    )
                }
                Part::PerCandidate(x) => x,
            })
            .collect();
        let x = if parts.len() == 1 {
            parts[0]
        } else {
            Var::concat(&parts, 1)
        };
        let logits = self.head_forward(x, &mut ctx).logits.value();
        to_array2(&logits)
    }

    /// Early fusion: the history tiled to every candidate, chunk by chunk, through the batch
    /// forward.
    fn score_early_fusion(
        &self,
        user: &EncodedUser,
        candidates: &[u64],
        features: ArrayView2<'_, f32>,
    ) -> Array2<f32> {
        let (p, a, m) = user.history.as_arrays();
        let mut out = Array2::zeros((candidates.len(), self.shape.tasks.len()));
        let mut start = 0;
        for chunk in candidates.chunks(EARLY_FUSION_CHUNK) {
            let n = chunk.len();
            let batch = ModelBatch {
                hist_pins: tile(&p, n),
                hist_actions: tile(&a, n),
                hist_mask: tile(&m, n),
                candidates: Some(Array1::from(chunk.to_vec())),
                features: features.slice(ndarray::s![start..start + n, ..]).to_owned(),
            };
            let tape = Tape::no_grad();
            let mut rng = eval_rng();
            let logits = self
                .forward(&tape, &batch, &mut ForwardCtx::eval(&mut rng))
                .logits
                .value();
            out.slice_mut(ndarray::s![start..start + n, ..])
                .assign(&to_array2(&logits));
            start += n;
        }
        out
    }

    /// [`CloseupModel::encode_user`] then [`CloseupModel::score_encoded`]: logits `[C, T]`.
    ///
    /// # Panics
    /// As [`CloseupModel::score_encoded`].
    pub fn score_request(
        &self,
        history: &UserHistory,
        candidates: Option<&[u64]>,
        features: ArrayView2<'_, f32>,
    ) -> Array2<f32> {
        self.score_encoded(&self.encode_user(history), candidates, features)
    }
}

/// A model prepared for serving many requests: [`CloseupModel::server`].
///
/// With an MMoE / OMoE head and a shared (user-side) read-out, scoring splits the head's input
/// columns into the shared and per-candidate ones ([`SplitHead`]); the server selects those
/// weight columns once, on its first request, and reuses them. It borrows the model, so the
/// parameters cannot change while it exists (training needs `&mut`): a stale copy of the
/// weights cannot be used. Build a new one after the parameters change.
///
/// Scores equal [`CloseupModel::score_encoded`] bit for bit.
#[derive(Debug)]
pub struct Server<'m> {
    model: &'m CloseupModel,
    head: OnceLock<SplitHead<'m>>,
}

impl CloseupModel {
    /// A [`Server`] for this model (cheap: the split weights are prepared on its first request).
    pub fn server(&self) -> Server<'_> {
        Server {
            model: self,
            head: OnceLock::new(),
        }
    }
}

impl Server<'_> {
    /// The model it serves.
    pub fn model(&self) -> &CloseupModel {
        self.model
    }

    /// [`CloseupModel::encode_user`].
    pub fn encode_user(&self, history: &UserHistory) -> EncodedUser {
        self.model.encode_user(history)
    }

    /// [`CloseupModel::score_encoded`] with the prepared weights.
    ///
    /// # Shapes
    /// `candidates: [C]` (required iff the model has candidates), `features: [C, F]` → `[C, T]`.
    ///
    /// # Panics
    /// As [`CloseupModel::score_encoded`].
    pub fn score_encoded(
        &self,
        user: &EncodedUser,
        candidates: Option<&[u64]>,
        features: ArrayView2<'_, f32>,
    ) -> Array2<f32> {
        self.model
            .score_prepared(user, candidates, features, &self.head)
    }

    /// [`Server::encode_user`] then [`Server::score_encoded`]: logits `[C, T]`.
    ///
    /// # Panics
    /// As [`CloseupModel::score_encoded`].
    pub fn score_request(
        &self,
        history: &UserHistory,
        candidates: Option<&[u64]>,
        features: ArrayView2<'_, f32>,
    ) -> Array2<f32> {
        self.score_encoded(&self.encode_user(history), candidates, features)
    }
}

/// `[1, L]` repeated to `[n, L]`.
fn tile<T: Clone>(x: &Array2<T>, n: usize) -> Array2<T> {
    x.broadcast((n, x.ncols()))
        .expect("[1, L] → [n, L]")
        .to_owned()
}

fn to_array2(t: &Tensor) -> Array2<f32> {
    t.clone().into_dimensionality().expect("logits are [C, T]")
}
