//! Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

use super::{Optimizer, OptimizerState};
use super::{
    StepCtx, clip_scale, export_slots, for_each_touched_row, for_each_with_grad, import_slots,
    slot_buffers,
};
use crate::Tensor;
use crate::error::Result;
use crate::grads::{Grad, Gradients};
use crate::kernels::use_parallel;
use crate::param::Parameterized;
use ndarray::Zip;
use std::collections::BTreeMap;

const KIND: &str = "sgd";
const SLOTS: [&str; 1] = ["momentum"];

/// SGD with optional momentum, Nesterov momentum and (coupled, L2) weight decay.
///
/// With gradient `g`, parameter `w`, momentum `μ`, weight decay `λ` and learning rate `lr`
/// (PyTorch's `torch.optim.SGD` with `dampening = 0`):
///
/// ```text
/// g ← g + λ·w
/// if μ ≠ 0:  b ← μ·b + g;   d ← g + μ·b (Nesterov) or d ← b
/// else:      d ← g
/// w ← w − lr·d
/// ```
///
/// The velocity `b` starts at zero, so the first step's `b` is `g` as in PyTorch. Row-sparse
/// gradients update only the touched rows (see the [module docs](crate::optim)).
#[derive(Debug, Clone)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    max_grad_norm: Option<f32>,
    step: u64,
    last_norm: Option<f32>,
    state: BTreeMap<String, [Tensor; 1]>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr` (no momentum, no weight decay).
    pub fn new(lr: f32) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            max_grad_norm: None,
            step: 0,
            last_norm: None,
            state: BTreeMap::new(),
        }
    }

    /// Heavy-ball momentum `μ` (0 disables it).
    ///
    /// # Panics
    /// If `μ` is not in `[0, 1)`.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        assert!(
            (0.0..1.0).contains(&momentum),
            "Sgd: momentum must be in [0, 1), got {momentum}"
        );
        self.momentum = momentum;
        self
    }

    /// Uses Nesterov momentum (`d = g + μ·b`); needs a non-zero momentum to matter.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// L2 weight decay `λ`, added to the gradient as `λ·w` (only on touched rows for row-sparse
    /// gradients).
    ///
    /// # Panics
    /// If `λ` is negative or not finite.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        assert!(
            weight_decay.is_finite() && weight_decay >= 0.0,
            "Sgd: weight decay must be finite and >= 0, got {weight_decay}"
        );
        self.weight_decay = weight_decay;
        self
    }

    /// Clips gradients to global L2 norm `max_norm` before the update (see the
    /// [module docs](crate::optim#gradient-clipping)).
    ///
    /// # Panics
    /// If `max_norm` is not positive.
    pub fn with_max_grad_norm(mut self, max_norm: f32) -> Self {
        assert!(
            max_norm > 0.0,
            "Sgd: max_grad_norm must be > 0, got {max_norm}"
        );
        self.max_grad_norm = Some(max_norm);
        self
    }
}

#[derive(Clone, Copy)]
struct Hyper {
    lr: f32,
    mu: f32,
    nesterov: bool,
    wd: f32,
    ctx: StepCtx,
}

impl Hyper {
    #[inline]
    fn grad(self, g: f32, w: f32) -> f32 {
        g * self.ctx.grad_scale + self.wd * w
    }

    #[inline]
    fn update(self, w: &mut f32, g: f32, b: &mut f32) {
        let g = self.grad(g, *w);
        *b = self.mu * *b + g;
        let d = if self.nesterov { g + self.mu * *b } else { *b };
        *w -= self.lr * d;
    }

    #[inline]
    fn update_plain(self, w: &mut f32, g: f32) {
        let g = self.grad(g, *w);
        *w -= self.lr * g;
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Parameterized, grads: &Gradients) {
        let (norm, grad_scale) = clip_scale(grads, self.max_grad_norm);
        self.step += 1;
        self.last_norm = Some(norm);
        let h = Hyper {
            lr: self.lr,
            mu: self.momentum,
            nesterov: self.nesterov,
            wd: self.weight_decay,
            ctx: StepCtx { grad_scale },
        };
        let with_momentum = self.momentum != 0.0;
        let state = &mut self.state;
        for_each_with_grad(model, grads, |name, p, g| {
            let w = p.value_mut();
            match (g, with_momentum) {
                (Grad::Dense(g), true) => {
                    let [b] = slot_buffers(state, name, w.shape());
                    let z = Zip::from(w).and(g).and(b);
                    if use_parallel(g.len()) {
                        z.par_for_each(|w, &g, b| h.update(w, g, b));
                    } else {
                        z.for_each(|w, &g, b| h.update(w, g, b));
                    }
                }
                (Grad::Dense(g), false) => {
                    let z = Zip::from(w).and(g);
                    if use_parallel(g.len()) {
                        z.par_for_each(|w, &g| h.update_plain(w, g));
                    } else {
                        z.for_each(|w, &g| h.update_plain(w, g));
                    }
                }
                (Grad::Rows(rg), true) => {
                    let shape = w.shape().to_vec();
                    let bufs = slot_buffers(state, name, &shape);
                    for_each_touched_row(w, rg, bufs, |w, g, [b]| {
                        for ((w, &g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
                            h.update(w, g, b);
                        }
                    });
                }
                (Grad::Rows(rg), false) => {
                    for_each_touched_row(w, rg, &mut [], |w, g, []| {
                        for (w, &g) in w.iter_mut().zip(g) {
                            h.update_plain(w, g);
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
            kind: KIND.to_string(),
            step: self.step,
            learning_rate: self.lr,
            slots: export_slots(&self.state, SLOTS),
        }
    }

    fn load_state(&mut self, state: OptimizerState, model: &dyn Parameterized) -> Result<()> {
        let slots = import_slots(&state, KIND, SLOTS, model)?;
        self.state = slots;
        self.step = state.step;
        self.lr = state.learning_rate;
        self.last_norm = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{M, grads_of};
    use super::*;
    use crate::param::Param;
    use ndarray::{IxDyn, array};

    fn model() -> M {
        M {
            w: Param::new(array![1.0_f32, -2.0].into_dyn()),
            frozen: Param::new(array![5.0_f32].into_dyn()),
            table: Param::new(Tensor::from_shape_fn(IxDyn(&[4, 2]), |i| {
                (i[0] * 2 + i[1]) as f32
            })),
        }
    }

    fn close(a: &Tensor, b: &[f32]) {
        let a: Vec<f32> = a.iter().copied().collect();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn plain_sgd_two_steps() {
        let mut m = model();
        let mut opt = Sgd::new(0.1);
        let g = grads_of(&[(&m.w, array![0.5_f32, -1.0].into_dyn())], &[]);
        opt.step(&mut m, &g);
        close(m.w.value(), &[0.95, -1.9]);
        opt.step(&mut m, &g);
        close(m.w.value(), &[0.9, -1.8]);
        assert_eq!(opt.steps_taken(), 2);
        assert!(opt.state().slots.is_empty());
    }

    #[test]
    fn momentum_two_steps() {
        let mut m = model();
        let mut opt = Sgd::new(0.1).with_momentum(0.9);
        let g1 = grads_of(&[(&m.w, array![1.0_f32, 2.0].into_dyn())], &[]);
        opt.step(&mut m, &g1);
        // b = g = [1, 2]; w = [1 - .1, -2 - .2]
        close(m.w.value(), &[0.9, -2.2]);
        let g2 = grads_of(&[(&m.w, array![-1.0_f32, 0.0].into_dyn())], &[]);
        opt.step(&mut m, &g2);
        // b = .9·[1, 2] + [-1, 0] = [-0.1, 1.8]; w = [0.9 + 0.01, -2.2 - 0.18]
        close(m.w.value(), &[0.91, -2.38]);
    }

    #[test]
    fn nesterov_two_steps() {
        let mut m = model();
        let mut opt = Sgd::new(0.1).with_momentum(0.9).with_nesterov(true);
        let g1 = grads_of(&[(&m.w, array![1.0_f32, 2.0].into_dyn())], &[]);
        opt.step(&mut m, &g1);
        // b = [1, 2]; d = g + .9 b = [1.9, 3.8]; w = [1 - .19, -2 - .38]
        close(m.w.value(), &[0.81, -2.38]);
        let g2 = grads_of(&[(&m.w, array![-1.0_f32, 0.0].into_dyn())], &[]);
        opt.step(&mut m, &g2);
        // b = [-0.1, 1.8]; d = [-1 - .09, 0 + 1.62]; w = [0.81 + 0.109, -2.38 - 0.162]
        close(m.w.value(), &[0.919, -2.542]);
    }

    #[test]
    fn weight_decay_two_steps() {
        let mut m = model();
        let mut opt = Sgd::new(0.1).with_weight_decay(0.5);
        let g = grads_of(&[(&m.w, array![0.0_f32, 1.0].into_dyn())], &[]);
        opt.step(&mut m, &g);
        // g' = [0 + .5, 1 - 1] = [.5, 0]; w = [0.95, -2]
        close(m.w.value(), &[0.95, -2.0]);
        opt.step(&mut m, &g);
        // g' = [.475, 1 - 1] = [.475, 0]; w = [0.9025, -2]
        close(m.w.value(), &[0.9025, -2.0]);
    }

    #[test]
    fn param_without_grad_is_untouched() {
        let mut m = model();
        let mut opt = Sgd::new(0.1).with_momentum(0.9).with_weight_decay(0.1);
        let g = grads_of(&[(&m.w, array![1.0_f32, 1.0].into_dyn())], &[]);
        opt.step(&mut m, &g);
        opt.step(&mut m, &g);
        assert_eq!(m.frozen.value(), &array![5.0_f32].into_dyn());
        assert_eq!(m.table.value(), model().table.value());
        let names: Vec<String> = opt.state().slots.into_iter().map(|s| s.param).collect();
        assert_eq!(names, ["w"]);
    }

    #[test]
    fn lazy_momentum_touches_only_listed_rows() {
        let mut m = model();
        let mut opt = Sgd::new(0.1).with_momentum(0.5).with_weight_decay(0.1);
        let t0 = m.table.value().clone();
        // Step 1 touches rows 0 and 2.
        let g = grads_of(&[], &[(&m.table, &[2, 0], vec![1.0, 1.0, -1.0, 0.0])]);
        opt.step(&mut m, &g);
        // Row 0: w=[0,1], g=[-1,0] + .1·w = [-1, .1]; b = g; w -= .1 b → [0.1, 0.99]
        // Row 2: w=[4,5], g=[1,1] + [.4,.5] = [1.4, 1.5]; w → [3.86, 4.85]
        let t1 = m.table.value().clone();
        close(&t1.row_of(0), &[0.1, 0.99]);
        close(&t1.row_of(2), &[3.86, 4.85]);
        assert_eq!(t1.row_of(1), t0.row_of(1));
        assert_eq!(t1.row_of(3), t0.row_of(3));
        // Step 2 touches only row 1: rows 0 and 2 keep weights (no momentum applied) and
        // velocity (not decayed).
        let g = grads_of(&[], &[(&m.table, &[1], vec![2.0, 0.0])]);
        opt.step(&mut m, &g);
        let t2 = m.table.value().clone();
        assert_eq!(t2.row_of(0), t1.row_of(0));
        assert_eq!(t2.row_of(2), t1.row_of(2));
        assert_eq!(t2.row_of(3), t0.row_of(3));
        // Row 1: w=[2,3], g = [2 + .2, .3]; w → [1.78, 2.97]
        close(&t2.row_of(1), &[1.78, 2.97]);
        let st = opt.state();
        let b = &st.slots[0].data;
        close(
            &Tensor::from_shape_vec(IxDyn(&[8]), b.clone()).unwrap(),
            &[-1.0, 0.1, 2.2, 0.3, 1.4, 1.5, 0.0, 0.0],
        );
        // Step 3 touches row 0 again: b0 = .5·[-1, .1] + ([0, 0] + .1·[0.1, 0.99]) = [-0.49, 0.149]
        let g = grads_of(&[], &[(&m.table, &[0], vec![0.0, 0.0])]);
        opt.step(&mut m, &g);
        close(&m.table.value().row_of(0), &[0.1 + 0.049, 0.99 - 0.0149]);
    }

    trait RowOf {
        fn row_of(&self, r: usize) -> Tensor;
    }
    impl RowOf for Tensor {
        fn row_of(&self, r: usize) -> Tensor {
            self.index_axis(ndarray::Axis(0), r).to_owned()
        }
    }

    #[test]
    fn lazy_sgd_without_momentum_equals_dense_on_touched_rows() {
        let mut a = model();
        let mut b = model();
        let mut oa = Sgd::new(0.3);
        let mut ob = Sgd::new(0.3);
        let vals = vec![1.0_f32, 2.0, 3.0, 4.0];
        let ga = grads_of(&[], &[(&a.table, &[1, 3], vals.clone())]);
        let dense = match ga.param(&a.table) {
            Some(g) => g.to_dense(),
            None => unreachable!(),
        };
        let gb = grads_of(&[(&b.table, dense)], &[]);
        for _ in 0..3 {
            oa.step(&mut a, &ga);
            ob.step(&mut b, &gb);
        }
        assert_eq!(a.table.value(), b.table.value());
    }
}
