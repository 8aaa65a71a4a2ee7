//! Adam and AdamW, with lazy updates of row-sparse gradients.

use super::{
    StepCtx, clip_scale, export_slots, for_each_touched_row, for_each_with_grad, import_slots, slot_buffers,
};
use super::{Optimizer, OptimizerState};
use crate::Tensor;
use crate::error::Result;
use crate::grads::{Grad, Gradients};
use crate::kernels::use_parallel;
use crate::param::Parameterized;
use ndarray::Zip;
use std::collections::BTreeMap;

const SLOTS: [&str; 2] = ["m", "v"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum WeightDecay {
    None,
    /// Added to the gradient (`g + λ·w`), as `torch.optim.Adam(weight_decay=λ)`.
    L2(f32),
    /// Decoupled (`w ← w·(1 − lr·λ)` before the Adam update), as `torch.optim.AdamW`.
    Decoupled(f32),
}

/// Adam (Kingma & Ba) with bias correction, optional L2 or decoupled (AdamW) weight decay.
///
/// At global step `t` (1 for the first call to [`Optimizer::step`]), for gradient `g` and
/// parameter `w`:
///
/// ```text
/// g ← g + λ·w                                    (Adam with L2 weight decay only)
/// m ← β1·m + (1−β1)·g
/// v ← β2·v + (1−β2)·g²
/// w ← w·(1 − lr·λ)                                (AdamW only)
/// w ← w − (lr / (1−β1^t)) · m / (sqrt(v) / sqrt(1−β2^t) + ε)
/// ```
///
/// — the arithmetic of PyTorch's `Adam` / `AdamW`, except that `t` is global rather than per
/// parameter, and row-sparse gradients are applied lazily (only touched rows, see the
/// [module docs](crate::optim#lazy-adam-versus-dense-adam)).
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: WeightDecay,
    max_grad_norm: Option<f32>,
    step: u64,
    last_norm: Option<f32>,
    state: BTreeMap<String, [Tensor; 2]>,
}

impl Adam {
    /// Adam with learning rate `lr`, β1 = 0.9, β2 = 0.999, ε = 1e-8 and no weight decay.
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: WeightDecay::None,
            max_grad_norm: None,
            step: 0,
            last_norm: None,
            state: BTreeMap::new(),
        }
    }

    /// AdamW: Adam with decoupled weight decay `λ` (Loshchilov & Hutter), same defaults as
    /// [`Adam::new`].
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Adam::new(lr).with_decoupled_weight_decay(weight_decay)
    }

    /// The exponential decay rates of the first and second moments.
    ///
    /// # Panics
    /// If either is not in `[0, 1)`.
    pub fn with_betas(mut self, beta1: f32, beta2: f32) -> Self {
        assert!(
            (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2),
            "Adam: betas must be in [0, 1), got ({beta1}, {beta2})"
        );
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// The term added to the denominator for numerical stability.
    ///
    /// # Panics
    /// If `eps` is negative or not finite.
    pub fn with_eps(mut self, eps: f32) -> Self {
        assert!(eps.is_finite() && eps >= 0.0, "Adam: eps must be finite and >= 0, got {eps}");
        self.eps = eps;
        self
    }

    /// L2 weight decay `λ` added to the gradient (`g + λ·w`), like PyTorch's `Adam`. Replaces a
    /// decoupled weight decay set before.
    ///
    /// # Panics
    /// If `λ` is negative or not finite.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        check_wd(weight_decay);
        self.weight_decay = WeightDecay::L2(weight_decay);
        self
    }

    /// Decoupled weight decay `λ` (AdamW): `w ← w·(1 − lr·λ)` before the Adam update, on touched
    /// rows only for row-sparse gradients. Replaces an L2 weight decay set before.
    ///
    /// # Panics
    /// If `λ` is negative or not finite.
    pub fn with_decoupled_weight_decay(mut self, weight_decay: f32) -> Self {
        check_wd(weight_decay);
        self.weight_decay = WeightDecay::Decoupled(weight_decay);
        self
    }

    /// Clips gradients to global L2 norm `max_norm` before the update (see the
    /// [module docs](crate::optim#gradient-clipping)).
    ///
    /// # Panics
    /// If `max_norm` is not positive.
    pub fn with_max_grad_norm(mut self, max_norm: f32) -> Self {
        assert!(max_norm > 0.0, "Adam: max_grad_norm must be > 0, got {max_norm}");
        self.max_grad_norm = Some(max_norm);
        self
    }

    /// Whether this is AdamW (decoupled weight decay).
    pub fn is_adamw(&self) -> bool {
        matches!(self.weight_decay, WeightDecay::Decoupled(_))
    }

    fn kind(&self) -> &'static str {
        if self.is_adamw() { "adamw" } else { "adam" }
    }
}

fn check_wd(wd: f32) {
    assert!(
        wd.is_finite() && wd >= 0.0,
        "Adam: weight decay must be finite and >= 0, got {wd}"
    );
}

/// The constants of one step, shared by every element update.
#[derive(Clone, Copy)]
struct Hyper {
    beta1: f32,
    beta2: f32,
    eps: f32,
    l2: f32,
    /// `1 − lr·λ` for AdamW, 1 otherwise.
    decay: f32,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
    /// `sqrt(1 − β2^t)`.
    bc2_sqrt: f32,
    ctx: StepCtx,
}

impl Hyper {
    #[inline]
    fn update(self, w: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let g = g * self.ctx.grad_scale + self.l2 * *w;
        *m = self.beta1 * *m + (1.0 - self.beta1) * g;
        *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        *w = *w * self.decay - self.step_size * *m / denom;
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut dyn Parameterized, grads: &Gradients) {
        let (norm, grad_scale) = clip_scale(grads, self.max_grad_norm);
        self.step += 1;
        self.last_norm = Some(norm);
        let t = self.step as f64;
        let bc1 = 1.0 - f64::from(self.beta1).powf(t);
        let bc2 = 1.0 - f64::from(self.beta2).powf(t);
        let (l2, decay) = match self.weight_decay {
            WeightDecay::None => (0.0, 1.0),
            WeightDecay::L2(wd) => (wd, 1.0),
            WeightDecay::Decoupled(wd) => (0.0, 1.0 - self.lr * wd),
        };
        let h = Hyper {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            l2,
            decay,
            step_size: (f64::from(self.lr) / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            ctx: StepCtx { grad_scale },
        };
        let state = &mut self.state;
        for_each_with_grad(model, grads, |name, p, g| {
            let w = p.value_mut();
            let shape = w.shape().to_vec();
            let bufs = slot_buffers(state, name, &shape);
            match g {
                Grad::Dense(g) => {
                    let [m, v] = bufs;
                    let z = Zip::from(w).and(g).and(m).and(v);
                    if use_parallel(g.len()) {
                        z.par_for_each(|w, &g, m, v| h.update(w, g, m, v));
                    } else {
                        z.for_each(|w, &g, m, v| h.update(w, g, m, v));
                    }
                }
                Grad::Rows(rg) => {
                    for_each_touched_row(w, rg, bufs, |w, g, [m, v]| {
                        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                            h.update(w, g, m, v);
                        }
                    });
                }
            }
        });
    }

    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    fn last_grad_norm(&self) -> Option<f32> {
        self.last_norm
    }

    fn reset(&mut self) {
        self.state.clear();
        self.step = 0;
        self.last_norm = None;
    }

    fn state(&self) -> OptimizerState {
        OptimizerState {
            kind: self.kind().to_string(),
            step: self.step,
            learning_rate: self.lr,
            slots: export_slots(&self.state, SLOTS),
        }
    }

    fn load_state(&mut self, state: OptimizerState, model: &dyn Parameterized) -> Result<()> {
        let slots = import_slots(&state, self.kind(), SLOTS, model)?;
        self.state = slots;
        self.step = state.step;
        self.lr = state.learning_rate;
        self.last_norm = None;
        Ok(())
    }
}
