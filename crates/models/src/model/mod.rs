//! The closeup ranking model: `[sequence read-out, candidate embedding, dense features]` → an
//! MMoE (or a baseline head) → one logit per task.
//!
//! Any of the three input groups may be absent: without history no encoder is built, without a
//! candidate there is no candidate embedding (and no candidate-dependent read-out or early
//! fusion), and `num_features` may be 0. With neither history nor candidate this is the dense-only
//! MMoE of the MMoE paper.
//!
//! The pin embedding table (`pin_embedding.table`) is shared by the history tokens and the
//! candidate, as in the PyTorch peer.

mod io;
mod serving;

pub use io::{METADATA_CONFIG, METADATA_FORMAT, METADATA_KIND, METADATA_SHAPE, MODEL_KIND};
pub use serving::{EncodedUser, Server, UserHistory};

use crate::baselines::{SharedBottom, SingleTask, comparable_bottom_hidden};
use crate::config::{Architecture, ModelConfig, ModelShape};
use crate::encoder::{HistoryView, SequenceEncoder};
use crate::error::Result;
use crate::mmoe::{HeadOutput, Mmoe};
use crate::{ModelBatch, ModelOutput, RankingModel};
use closeup_autograd::{ParamVisitor, ParamVisitorMut, Parameterized, Tape, Var};
use closeup_layers::{ForwardCtx, HashEmbedding};
use rand::SeedableRng;

/// The multi-task part on top of the model input.
#[derive(Debug, Clone)]
enum Head {
    Moe(Mmoe),
    SharedBottom(SharedBottom),
    SingleTask(SingleTask),
}

impl Head {
    fn forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> HeadOutput<'t> {
        match self {
            Head::Moe(m) => m.forward(x, ctx),
            Head::SharedBottom(m) => m.forward(x, ctx),
            Head::SingleTask(m) => m.forward(x, ctx),
        }
    }
}

/// Pinterest's closeup multi-task ranking model; see the [crate docs](crate).
///
/// Parameter names: `pin_embedding.table`, `encoder.*` (see [`SequenceEncoder`]), then the head
/// under its architecture's name: `mmoe.{experts,gates,towers}.*`, `omoe.*`,
/// `shared_bottom.{bottom,towers}.*` or `single_task.{bottoms,towers}.*`.
#[derive(Debug, Clone)]
pub struct CloseupModel {
    config: ModelConfig,
    shape: ModelShape,
    pin_embedding: Option<HashEmbedding>,
    encoder: Option<SequenceEncoder>,
    head: Head,
    input_width: usize,
}

impl CloseupModel {
    /// Builds a model for `shape`'s data, every parameter drawn from `seed` (the same seed gives
    /// bit-identical parameters).
    ///
    /// # Errors
    /// [`crate::ModelError::InvalidConfig`] / [`crate::ModelError::InvalidShape`] if the config
    /// is invalid or cannot model this data (see [`ModelConfig::validate_for`]).
    pub fn new(config: &ModelConfig, shape: &ModelShape, seed: u64) -> Result<Self> {
        config.validate_for(shape)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let s = &config.sequence;
        let d = s.d_model;
        let pin_embedding = (shape.has_history || shape.has_candidate)
            .then(|| HashEmbedding::new(s.pin_buckets, d, &mut rng));
        let encoder = shape.has_history.then(|| {
            let mut seq = s.clone();
            seq.early_fusion &= shape.has_candidate;
            SequenceEncoder::new(
                &seq,
                shape.num_actions,
                config.active_readouts(shape),
                &mut rng,
            )
        });
        let input_width = encoder.as_ref().map_or(0, SequenceEncoder::readout_width)
            + if shape.has_candidate { d } else { 0 }
            + shape.num_features;
        let tasks = shape.tasks.len();
        let m = &config.mmoe;
        let head = match config.architecture {
            Architecture::Mmoe => Head::Moe(Mmoe::new(input_width, tasks, m, false, &mut rng)),
            Architecture::Omoe => Head::Moe(Mmoe::new(input_width, tasks, m, true, &mut rng)),
            Architecture::SharedBottom => {
                let hidden = if config.shared_bottom.hidden.is_empty() {
                    comparable_bottom_hidden(input_width, m)
                } else {
                    config.shared_bottom.hidden.clone()
                };
                Head::SharedBottom(SharedBottom::new(input_width, tasks, &hidden, m, &mut rng))
            }
            Architecture::SingleTask => {
                Head::SingleTask(SingleTask::new(input_width, tasks, m, &mut rng))
            }
        };
        Ok(CloseupModel {
            config: config.clone(),
            shape: shape.clone(),
            pin_embedding,
            encoder,
            head,
            input_width,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The data shape the model was built for.
    pub fn shape(&self) -> &ModelShape {
        &self.shape
    }

    /// The head's architecture.
    pub fn architecture(&self) -> Architecture {
        self.config.architecture
    }

    /// The sequence encoder (when the data has histories).
    pub fn encoder(&self) -> Option<&SequenceEncoder> {
        self.encoder.as_ref()
    }

    /// The MMoE / OMoE head, if the architecture is one.
    pub fn mmoe(&self) -> Option<&Mmoe> {
        match &self.head {
            Head::Moe(m) => Some(m),
            _ => None,
        }
    }

    /// Total number of scalar parameters (the same as [`Parameterized::num_params`], without
    /// importing the trait).
    pub fn num_params(&self) -> usize {
        Parameterized::num_params(self)
    }

    /// Width of the head's input: read-outs + candidate embedding + dense features.
    pub fn input_width(&self) -> usize {
        self.input_width
    }

    /// Number of experts whose gate weights [`ModelOutput::gate_weights`] reports (0 for heads
    /// without gates).
    pub fn num_experts(&self) -> usize {
        self.mmoe().map_or(0, Mmoe::num_experts)
    }

    /// The parameter-name prefix of the head.
    fn head_name(&self) -> &'static str {
        match self.config.architecture {
            Architecture::Mmoe => "mmoe",
            Architecture::Omoe => "omoe",
            Architecture::SharedBottom => "shared_bottom",
            Architecture::SingleTask => "single_task",
        }
    }

    /// Panics with a clear message unless `batch` fits the model.
    fn check_batch(&self, batch: &ModelBatch) {
        let b = batch.len();
        assert_eq!(
            batch.features.ncols(),
            self.shape.num_features,
            "CloseupModel: the batch has {} dense features, the model {}",
            batch.features.ncols(),
            self.shape.num_features
        );
        if self.shape.has_history {
            let s = batch.hist_pins.shape();
            assert!(
                s[0] == b && batch.hist_actions.shape() == s && batch.hist_mask.shape() == s,
                "CloseupModel: history shapes pins {s:?}, actions {:?}, mask {:?} do not match {b} examples",
                batch.hist_actions.shape(),
                batch.hist_mask.shape()
            );
        }
        if self.shape.has_candidate {
            let c = batch
                .candidates
                .as_ref()
                .expect("CloseupModel: the model was built with candidates but the batch has none");
            assert_eq!(
                c.len(),
                b,
                "CloseupModel: {} candidates for {b} examples",
                c.len()
            );
        }
    }

    /// The head's input `[B, input_width]`: `[read-outs, candidate embedding, dense features]`.
    ///
    /// # Panics
    /// If the batch does not fit the model's shape (feature count, history shapes, missing
    /// candidates).
    pub fn head_input<'t>(
        &self,
        tape: &'t Tape,
        batch: &ModelBatch,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        self.check_batch(batch);
        let candidate = match (&self.pin_embedding, &batch.candidates) {
            (Some(pins), Some(c)) if self.shape.has_candidate => {
                Some(pins.forward(tape, &c.clone().into_dyn()))
            }
            _ => None,
        };
        let mut parts = Vec::with_capacity(3);
        if let (Some(enc), Some(pins)) = (&self.encoder, &self.pin_embedding) {
            let e = enc.encode(tape, pins, HistoryView::of(batch), candidate, ctx);
            parts.push(enc.read_out(&e, candidate));
        }
        parts.extend(candidate);
        if self.shape.num_features > 0 {
            parts.push(tape.constant(batch.features.clone().into_dyn()));
        }
        if parts.len() == 1 {
            parts[0]
        } else {
            Var::concat(&parts, 1)
        }
    }

    /// Runs the head on an already assembled input (used by the serving path).
    fn head_forward<'t>(&self, x: Var<'t>, ctx: &mut ForwardCtx<'_>) -> HeadOutput<'t> {
        self.head.forward(x, ctx)
    }
}

impl RankingModel for CloseupModel {
    fn tasks(&self) -> &[String] {
        &self.shape.tasks
    }

    /// # Panics
    /// If the batch does not fit the model's shape (see [`CloseupModel::head_input`]).
    fn forward<'t>(
        &self,
        tape: &'t Tape,
        batch: &ModelBatch,
        ctx: &mut ForwardCtx<'_>,
    ) -> ModelOutput<'t> {
        let x = self.head_input(tape, batch, ctx);
        let out = self.head_forward(x, ctx);
        ModelOutput {
            logits: out.logits,
            gate_weights: out.gate_weights,
        }
    }
}

impl Parameterized for CloseupModel {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        if let Some(p) = &self.pin_embedding {
            v.child("pin_embedding", p);
        }
        if let Some(e) = &self.encoder {
            v.child("encoder", e);
        }
        let name = self.head_name();
        match &self.head {
            Head::Moe(m) => v.child(name, m),
            Head::SharedBottom(m) => v.child(name, m),
            Head::SingleTask(m) => v.child(name, m),
        }
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        let name = self.head_name();
        if let Some(p) = &mut self.pin_embedding {
            v.child("pin_embedding", p);
        }
        if let Some(e) = &mut self.encoder {
            v.child("encoder", e);
        }
        match &mut self.head {
            Head::Moe(m) => v.child(name, m),
            Head::SharedBottom(m) => v.child(name, m),
            Head::SingleTask(m) => v.child(name, m),
        }
    }
}

#[cfg(test)]
mod tests;
