//! The blender model: `f(x)` (an MLP from request features to one weight per objective), the
//! global bias `b`, and the objective `L = mean_j[wt_j · l(g(x_j, r_j), y_j)] + prior`.

use crate::config::BlenderConfig;
use crate::error::{BlenderError, Result};
use closeup_autograd::{Param, ParamVisitor, ParamVisitorMut, Parameterized, Tape, Tensor, Var};
use closeup_layers::{ForwardCtx, Mlp};
use closeup_losses::{gaussian_prior, weighted_logistic};
use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The two terms of the blender objective and their sum (all scalars on the tape).
#[derive(Debug, Clone, Copy)]
pub struct Objective<'t> {
    /// `mean_j weight_j · l(σ(r_jᵀ f(x_j) + b), y_j)`.
    pub data: Var<'t>,
    /// `mean_j Σᵢ λᵢ (f(x_j)ᵢ − sᵢ)²`.
    pub prior: Var<'t>,
    /// `data + prior`.
    pub total: Var<'t>,
}

/// The blender objective from `f`'s output, so it can be checked and reused without the
/// network: `z_j = r_jᵀ w_j + b`, then [`weighted_logistic`] and [`gaussian_prior`] (both means
/// over the `N` requests).
///
/// # Shapes
/// `weights: [N, n]` (= `f(x)`), `bias: [1]`, `blend: [N, n]`, `targets`, `sample_weights`:
/// `N`, `prior_mean`, `lambda`: `n`.
///
/// # Panics
/// If the shapes disagree.
pub fn objective<'t>(
    weights: Var<'t>,
    bias: Var<'t>,
    blend: &Array2<f32>,
    targets: &[f32],
    sample_weights: &[f32],
    prior_mean: &[f32],
    lambda: &[f32],
) -> Objective<'t> {
    assert_eq!(
        weights.shape(),
        blend.shape(),
        "objective: f(x) and the logged blend weights differ in shape"
    );
    let tape = weights.tape();
    let r = tape.constant(blend.clone().into_dyn());
    let z = (weights * r).sum_axis(1, false) + bias;
    let data = weighted_logistic(z, targets, sample_weights);
    let prior = gaussian_prior(weights, prior_mean, lambda);
    Objective {
        data,
        prior,
        total: data + prior,
    }
}

/// A learned-utility blender: `f(x)` gives the per-request blending weights (the only part used
/// at serving time); `g(x, r) = σ(rᵀ f(x) + b)` is the training-time outcome model.
///
/// Inputs are standardized with the training log's per-feature mean and std (stored with the
/// model). At initialisation `f(x) ≈ s`: the output layer's bias is the prior mean and its
/// weights are scaled down by 10.
///
/// Parameter names: `f.layers.{i}.weight|bias`, `b`, and the (untrained) `input.mean`,
/// `input.std`.
#[derive(Debug, Clone)]
pub struct Blender {
    config: BlenderConfig,
    prior_mean: Vec<f32>,
    lambda: Vec<f32>,
    f: Mlp,
    bias: Param,
    input_mean: Param,
    input_std: Param,
}

impl Blender {
    /// A freshly initialised blender for `feature_width` request features, seeded by
    /// `config.train.seed`.
    ///
    /// # Errors
    /// [`BlenderError::Config`] if the config is invalid or its `prior_mean` is not resolved
    /// (`None`: [`crate::train`] sets it from the log).
    pub fn new(config: &BlenderConfig, feature_width: usize) -> Result<Self> {
        config.validate()?;
        let prior_mean = config.prior_mean.clone().ok_or_else(|| {
            BlenderError::Config("prior_mean must be set to build a model".into())
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed);
        let n = config.num_objectives();
        let mut f = Mlp::new(
            feature_width,
            &config.hidden,
            Some(n),
            config.activation,
            0.0,
            &mut rng,
        );
        let last = f.layers().len() - 1;
        let (w_name, b_name) = (
            format!("layers.{last}.weight"),
            format!("layers.{last}.bias"),
        );
        let s = Tensor::from_shape_vec(vec![n], prior_mean.clone()).expect("n values");
        let mut init = |name: &str, p: &mut Param| {
            if name == w_name {
                p.value_mut().mapv_inplace(|v| v * 0.1);
            } else if name == b_name {
                p.set_value(s.clone());
            }
        };
        f.visit_params_mut(&mut ParamVisitorMut::new(&mut init));
        Ok(Blender {
            lambda: config.lambdas(),
            config: config.clone(),
            prior_mean,
            f,
            bias: Param::new(Tensor::zeros(vec![1])),
            input_mean: Param::new(Tensor::zeros(vec![feature_width])),
            input_std: Param::new(Tensor::ones(vec![feature_width])),
        })
    }

    /// The (resolved) configuration.
    pub fn config(&self) -> &BlenderConfig {
        &self.config
    }

    /// The objective names, in the order of the weights.
    pub fn objectives(&self) -> &[String] {
        &self.config.objectives
    }

    /// The production weights `s` (the prior mean).
    pub fn prior_mean(&self) -> &[f32] {
        &self.prior_mean
    }

    /// λ per objective.
    pub fn lambda(&self) -> &[f32] {
        &self.lambda
    }

    /// Number of request features the model reads.
    pub fn feature_width(&self) -> usize {
        self.input_mean.len()
    }

    /// The learned global bias `b`.
    pub fn bias(&self) -> f32 {
        self.bias.value()[0]
    }

    /// Sets the input standardization (per-feature mean and std; a std ≤ 1e-6 is taken as 1).
    ///
    /// # Panics
    /// If a length differs from [`Blender::feature_width`].
    pub fn set_input_normalization(&mut self, mean: &[f32], std: &[f32]) {
        let w = self.feature_width();
        assert!(
            mean.len() == w && std.len() == w,
            "one mean and std per feature"
        );
        let std: Vec<f32> = std
            .iter()
            .map(|&s| if s > 1e-6 { s } else { 1.0 })
            .collect();
        self.input_mean
            .set_value(Tensor::from_shape_vec(vec![w], mean.to_vec()).expect("w values"));
        self.input_std
            .set_value(Tensor::from_shape_vec(vec![w], std).expect("w values"));
    }

    fn check_width(&self, features: &Array2<f32>) -> Result<()> {
        if features.ncols() != self.feature_width() {
            return Err(BlenderError::Data(format!(
                "the blender reads {} features per request, got {}",
                self.feature_width(),
                features.ncols()
            )));
        }
        Ok(())
    }

    fn standardize(&self, features: &Array2<f32>) -> Tensor {
        let mean = self
            .input_mean
            .value()
            .view()
            .into_dimensionality::<ndarray::Ix1>()
            .expect("1-D");
        let std = self
            .input_std
            .value()
            .view()
            .into_dimensionality::<ndarray::Ix1>()
            .expect("1-D");
        ((features - &mean) / std).into_dyn()
    }

    /// `f(x)` on the tape.
    ///
    /// # Shapes
    /// `features: [N, F]` → `[N, n]`.
    ///
    /// # Panics
    /// If `F` is not [`Blender::feature_width`].
    pub fn forward<'t>(
        &self,
        tape: &'t Tape,
        features: &Array2<f32>,
        ctx: &mut ForwardCtx<'_>,
    ) -> Var<'t> {
        let x = tape.constant(self.standardize(features));
        self.f.forward(x, ctx)
    }

    /// The training objective on a batch: `f(x)`, then [`objective`] with this model's `b`,
    /// prior mean and λ, and the `targets`/`sample_weights` of its convention.
    pub fn loss<'t>(
        &self,
        tape: &'t Tape,
        features: &Array2<f32>,
        blend: &Array2<f32>,
        targets: &[f32],
        sample_weights: &[f32],
        ctx: &mut ForwardCtx<'_>,
    ) -> Objective<'t> {
        let w = self.forward(tape, features, ctx);
        let b = tape.param(&self.bias);
        objective(
            w,
            b,
            blend,
            targets,
            sample_weights,
            &self.prior_mean,
            &self.lambda,
        )
    }

    /// The serving weights `f(x)`: one row of blending weights per request.
    ///
    /// # Errors
    /// [`BlenderError::Data`] if the feature width differs from the model's.
    pub fn weights(&self, features: &Array2<f32>) -> Result<Array2<f32>> {
        self.check_width(features)?;
        let tape = Tape::no_grad();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let w = self.forward(&tape, features, &mut ForwardCtx::eval(&mut rng));
        let out = w.value().as_ref().clone();
        Ok(out
            .into_dimensionality()
            .expect("f(x) is [N, number of objectives]"))
    }

    /// `g(x, r) = σ(rᵀ f(x) + b)`, the model's probability of a good outcome for a request shown
    /// with weights `r` (diagnostic; serving uses only [`Blender::weights`]).
    ///
    /// # Errors
    /// [`BlenderError::Data`] if a width or the number of rows differs.
    pub fn outcome_probability(
        &self,
        features: &Array2<f32>,
        blend: &Array2<f32>,
    ) -> Result<Array1<f32>> {
        let w = self.weights(features)?;
        if blend.dim() != w.dim() {
            return Err(BlenderError::Data(format!(
                "blend is {:?}, expected {:?}",
                blend.dim(),
                w.dim()
            )));
        }
        let b = self.bias();
        Ok((&w * blend)
            .sum_axis(Axis(1))
            .mapv(|z| 1.0 / (1.0 + (-(z + b)).exp())))
    }

    /// Final ranking scores `Σᵢ wᵢ pᵢ` of candidates with per-objective probabilities
    /// `probs: [K, n]` under blending weights `w` (one request).
    ///
    /// # Panics
    /// If the widths differ.
    pub fn blend_scores(weights: &[f32], probs: &Array2<f32>) -> Array1<f32> {
        assert_eq!(weights.len(), probs.ncols(), "one weight per objective");
        probs.dot(&Array1::from(weights.to_vec()))
    }
}

impl Parameterized for Blender {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        v.child("f", &self.f);
        v.param("b", &self.bias);
        v.param("input.mean", &self.input_mean);
        v.param("input.std", &self.input_std);
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        v.child("f", &mut self.f);
        v.param("b", &mut self.bias);
        v.param("input.mean", &mut self.input_mean);
        v.param("input.std", &mut self.input_std);
    }
}
