//! Adam and AdamW, with lazy updates of row-sparse gradients.

use super::{Optimizer, OptimizerState};
use super::{
    StepCtx, clip_scale, export_slots, for_each_touched_row, for_each_with_grad, import_slots,
    slot_buffers,
};
use crate::Tensor;
use crate::error::Result;
use crate::grads::{Grad, Gradients};
use crate::kernels::{fastmath, use_parallel};
use crate::param::Parameterized;
use ndarray::Zip;
use rayon::prelude::*;
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
        assert!(
            eps.is_finite() && eps >= 0.0,
            "Adam: eps must be finite and >= 0, got {eps}"
        );
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
        assert!(
            max_norm > 0.0,
            "Adam: max_grad_norm must be > 0, got {max_norm}"
        );
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

/// Elements per parallel task of the dense update.
const CHUNK: usize = 1 << 14;

impl Hyper {
    /// [`Hyper::update`] over equally long slices, compiled for the widest instruction set
    /// (vectorized; IEEE `sqrt` and `/` give the same bits as the scalar form).
    fn update_slices(self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        fastmath::dispatch(
            #[inline(always)]
            || {
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    self.update(w, g, m, v);
                }
            },
        )
    }

    #[inline(always)]
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
                    match (
                        w.as_slice_mut(),
                        g.as_slice(),
                        m.as_slice_mut(),
                        v.as_slice_mut(),
                    ) {
                        (Some(w), Some(g), Some(m), Some(v)) => {
                            if use_parallel(g.len()) {
                                w.par_chunks_mut(CHUNK)
                                    .zip(g.par_chunks(CHUNK))
                                    .zip(m.par_chunks_mut(CHUNK))
                                    .zip(v.par_chunks_mut(CHUNK))
                                    .for_each(|(((w, g), m), v)| h.update_slices(w, g, m, v));
                            } else {
                                h.update_slices(w, g, m, v);
                            }
                        }
                        _ => Zip::from(w)
                            .and(g)
                            .and(m)
                            .and(v)
                            .for_each(|w, &g, m, v| h.update(w, g, m, v)),
                    }
                }
                Grad::Rows(rg) => {
                    for_each_touched_row(w, rg, bufs, |w, g, [m, v]| {
                        h.update_slices(w, g, m, v);
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

#[cfg(test)]
mod tests {
    use super::super::test_util::{M, grads_of};
    use super::*;
    use crate::Tape;
    use crate::param::Param;
    use ndarray::{Axis, IxDyn, array};

    fn model() -> M {
        M {
            w: Param::new(array![1.0_f32, -2.0].into_dyn()),
            frozen: Param::new(array![5.0_f32].into_dyn()),
            table: Param::new(Tensor::from_shape_fn(IxDyn(&[5, 2]), |i| {
                (i[0] * 2 + i[1]) as f32 * 0.5
            })),
        }
    }

    /// Reference Adam on one scalar in f64, straight from the paper's formulas.
    struct Ref {
        m: f64,
        v: f64,
        t: i32,
    }
    impl Ref {
        fn new() -> Self {
            Ref {
                m: 0.0,
                v: 0.0,
                t: 0,
            }
        }
        /// `l2`: coupled weight decay, `dwd`: decoupled.
        fn step(&mut self, w: f64, g: f64, lr: f64, l2: f64, dwd: f64) -> f64 {
            let (b1, b2, eps) = (0.9, 0.999, 1e-8);
            self.t += 1;
            let g = g + l2 * w;
            self.m = b1 * self.m + (1.0 - b1) * g;
            self.v = b2 * self.v + (1.0 - b2) * g * g;
            let mh = self.m / (1.0 - b1.powi(self.t));
            let vh = self.v / (1.0 - b2.powi(self.t));
            w * (1.0 - lr * dwd) - lr * mh / (vh.sqrt() + eps)
        }
    }

    fn close(a: &Tensor, b: &[f64]) {
        let a: Vec<f32> = a.iter().copied().collect();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                (f64::from(*x) - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn adam_first_two_steps_by_hand() {
        let mut m = model();
        let mut opt = Adam::new(0.1);
        let g1 = grads_of(&[(&m.w, array![0.5_f32, -4.0].into_dyn())], &[]);
        opt.step(&mut m, &g1);
        // Step 1: m̂ = g, v̂ = g², so every element moves by lr·sign(g) (up to ε).
        close(m.w.value(), &[0.9, -1.9]);
        let g2 = grads_of(&[(&m.w, array![-1.0_f32, 0.0].into_dyn())], &[]);
        opt.step(&mut m, &g2);
        // Element 0: m = .9·.05 − .1 = −.055, v = .999·.00025 + .001 = .00124975,
        // m̂ = −.055/.19, v̂ = .00124975/.001999 → w = .9 + .1·.2894737/.7906884 = .9366104
        // Element 1: m = .9·(−.4) = −.36, v = .999·.016 = .015984,
        // m̂ = −.36/.19, v̂ = .015984/.001999 → w = −1.9 + .1·1.8947368/2.8277083 = −1.8329935
        close(m.w.value(), &[0.936_610_4, -1.832_993_5]);
        let (mut r0, mut r1) = (Ref::new(), Ref::new());
        let w0 = r0.step(1.0, 0.5, 0.1, 0.0, 0.0);
        let w0 = r0.step(w0, -1.0, 0.1, 0.0, 0.0);
        let w1 = r1.step(-2.0, -4.0, 0.1, 0.0, 0.0);
        let w1 = r1.step(w1, 0.0, 0.1, 0.0, 0.0);
        close(m.w.value(), &[w0, w1]);
        assert_eq!(opt.steps_taken(), 2);
    }

    #[test]
    fn adam_l2_and_adamw_two_steps() {
        for (decoupled, l2, dwd) in [(false, 0.5, 0.0), (true, 0.0, 0.5)] {
            let mut m = model();
            let mut opt = if decoupled {
                Adam::adamw(0.1, 0.5)
            } else {
                Adam::new(0.1).with_weight_decay(0.5)
            };
            assert_eq!(opt.is_adamw(), decoupled);
            let mut refs = [Ref::new(), Ref::new()];
            let mut w = [1.0_f64, -2.0];
            for g in [[0.3_f32, -0.2], [0.1, 0.4]] {
                let gr = grads_of(&[(&m.w, array![g[0], g[1]].into_dyn())], &[]);
                opt.step(&mut m, &gr);
                for k in 0..2 {
                    w[k] = refs[k].step(w[k], f64::from(g[k]), 0.1, l2, dwd);
                }
                close(m.w.value(), &w);
            }
            if decoupled {
                // Step 1 by hand: w·(1 − .05) − .1·sign(g).
                let mut m = model();
                let mut opt = Adam::adamw(0.1, 0.5);
                let g = grads_of(&[(&m.w, array![0.3_f32, -0.2].into_dyn())], &[]);
                opt.step(&mut m, &g);
                close(m.w.value(), &[0.95 - 0.1, -1.9 + 0.1]);
            }
        }
    }

    #[test]
    fn adam_converges_on_a_quadratic() {
        // Minimise Σ (w − target)² with gradients from the tape.
        let target = array![[3.0_f32, -1.0, 0.5], [2.0, 0.0, -4.0]].into_dyn();
        let mut m = model();
        m.w = Param::new(Tensor::zeros(IxDyn(&[2, 3])));
        let mut opt = Adam::new(0.05);
        for _ in 0..1500 {
            let grads = {
                let tape = Tape::new();
                let d = tape.param(&m.w) - tape.constant(target.clone());
                let seed = d.value().mapv(|x| 2.0 * x);
                tape.backward_with_seed(d, seed)
            };
            opt.step(&mut m, &grads);
        }
        let err = (m.w.value() - &target)
            .mapv(f32::abs)
            .fold(0.0_f32, |a, &b| a.max(b));
        assert!(err < 1e-3, "max error {err}");
    }

    #[test]
    fn param_without_grad_is_untouched() {
        let mut m = model();
        let mut opt = Adam::adamw(0.1, 0.1);
        let g = grads_of(&[(&m.w, array![1.0_f32, 1.0].into_dyn())], &[]);
        for _ in 0..3 {
            opt.step(&mut m, &g);
        }
        assert_eq!(m.frozen.value(), &array![5.0_f32].into_dyn());
        assert_eq!(m.table.value(), model().table.value());
        let names: Vec<String> = opt.state().slots.into_iter().map(|s| s.param).collect();
        assert_eq!(names, ["w", "w"]);
    }

    /// A parameter whose first gradient arrives at global step 3 is bias-corrected with t = 3
    /// (TensorFlow semantics), so its first move is not lr·sign(g).
    #[test]
    fn bias_correction_uses_the_global_step() {
        let mut m = model();
        let mut opt = Adam::new(0.1);
        let gw = grads_of(&[(&m.w, array![1.0_f32, 1.0].into_dyn())], &[]);
        opt.step(&mut m, &gw);
        opt.step(&mut m, &gw);
        let gf = grads_of(&[(&m.frozen, array![2.0_f32].into_dyn())], &[]);
        opt.step(&mut m, &gf);
        // m = .1·2, v = .001·4; m̂ = .2/(1 − .9³), v̂ = .004/(1 − .999³)
        let mh = 0.2 / (1.0 - 0.9_f64.powi(3));
        let vh = 0.004 / (1.0 - 0.999_f64.powi(3));
        close(m.frozen.value(), &[5.0 - 0.1 * mh / (vh.sqrt() + 1e-8)]);
    }

    fn row(t: &Tensor, r: usize) -> Tensor {
        t.index_axis(Axis(0), r).to_owned()
    }

    #[test]
    fn lazy_adam_touches_only_gradient_rows() {
        for adamw in [false, true] {
            let make_opt = || {
                if adamw {
                    Adam::adamw(0.1, 0.2)
                } else {
                    Adam::new(0.1)
                }
            };
            let mut lazy = model();
            let mut dense = model();
            let (mut ol, mut od) = (make_opt(), make_opt());
            let t0 = lazy.table.value().clone();

            // Step 1: rows 3 and 1 (given unsorted and with a duplicate, coalesced by backward).
            let gl = grads_of(
                &[],
                &[(
                    &lazy.table,
                    &[3, 1, 3],
                    vec![1.0, -2.0, 0.5, 0.25, 1.0, 1.0],
                )],
            );
            let g_dense = gl.param(&lazy.table).unwrap().to_dense();
            let gd = grads_of(&[(&dense.table, g_dense)], &[]);
            ol.step(&mut lazy, &gl);
            od.step(&mut dense, &gd);
            let t1 = lazy.table.value().clone();
            // Touched rows equal dense Adam's, bit for bit.
            for r in [1, 3] {
                assert_eq!(row(&t1, r), row(dense.table.value(), r));
                assert_ne!(row(&t1, r), row(&t0, r));
            }
            // Untouched rows are bit-identical to before; without weight decay dense Adam's
            // first step leaves them unchanged too (0 / (0 + ε) = 0).
            for r in [0, 2, 4] {
                assert_eq!(row(&t1, r), row(&t0, r));
            }
            if !adamw {
                assert_eq!(&t1, dense.table.value());
            } else {
                assert_ne!(
                    row(dense.table.value(), 0),
                    row(&t0, 0),
                    "dense AdamW decays every row"
                );
            }
            // Row 3 by hand: g = [1 + 1, −2 + 1] = [2, −1] → w − lr·sign(g)·(1) (· decay).
            let decay = if adamw { 1.0 - 0.1 * 0.2 } else { 1.0 };
            close(&row(&t1, 3), &[3.0 * decay - 0.1, 3.5 * decay + 0.1]);

            // Step 2: only row 0. Rows 1 and 3 keep weights and moments (dense Adam would keep
            // moving them with the decayed momentum).
            let st1 = ol.state();
            let gl = grads_of(&[], &[(&lazy.table, &[0], vec![-3.0, 0.0])]);
            let gd = grads_of(
                &[(&dense.table, gl.param(&lazy.table).unwrap().to_dense())],
                &[],
            );
            ol.step(&mut lazy, &gl);
            od.step(&mut dense, &gd);
            let t2 = lazy.table.value().clone();
            for r in [1, 2, 3, 4] {
                assert_eq!(row(&t2, r), row(&t1, r));
            }
            assert_ne!(row(dense.table.value(), 1), row(&t1, 1));
            let st2 = ol.state();
            for (a, b) in st1
                .slots
                .iter()
                .zip(&st2.slots)
                .filter(|(a, _)| a.param == "table")
            {
                // Rows 1..5 of m and v are unchanged; row 0 changed from zero.
                assert_eq!(a.data[2..], b.data[2..], "slot {}", a.slot);
                assert_eq!(a.data[..2], [0.0, 0.0]);
                assert_ne!(b.data[0], 0.0);
            }
            // Row 0 first touched at t = 2: element 0 by the reference with global t = 2.
            let mut r = Ref {
                m: 0.0,
                v: 0.0,
                t: 1,
            };
            let dwd = if adamw { 0.2 } else { 0.0 };
            let want = r.step(0.0, -3.0, 0.1, 0.0, dwd);
            close(&row(&t2, 0), &[want, 0.5 * decay]);
        }
    }

    #[test]
    fn lazy_rows_with_l2_decay_only_touched_rows() {
        let mut m = model();
        let mut opt = Adam::new(0.1).with_weight_decay(0.3);
        let t0 = m.table.value().clone();
        let g = grads_of(&[], &[(&m.table, &[2], vec![0.0, 0.0])]);
        opt.step(&mut m, &g);
        // Zero gradient but L2 decay: g' = .3·w = [.6, .75] > 0 → row 2 moves by −lr.
        close(&row(m.table.value(), 2), &[2.0 - 0.1, 2.5 - 0.1]);
        for r in [0, 1, 3, 4] {
            assert_eq!(row(m.table.value(), r), row(&t0, r));
        }
    }

    /// Bit-identical results for 1 and 2 threads, with tensors above the parallel threshold.
    #[test]
    fn deterministic_across_thread_counts() {
        use crate::gradcheck::randn;
        use crate::kernels::PAR_MIN_LEN;
        let n = PAR_MIN_LEN / 64 + 100;
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut m = M {
                    w: Param::new(randn(&[n, 64], 1)),
                    frozen: Param::new(randn(&[3], 2)),
                    table: Param::new(randn(&[2 * n, 64], 3)),
                };
                let rows: Vec<usize> = (0..n).map(|i| i * 2 + (i % 2)).collect();
                let mut opts: Vec<Box<dyn Optimizer>> = vec![
                    Box::new(Adam::adamw(1e-2, 0.1).with_max_grad_norm(10.0)),
                    Box::new(
                        super::super::Sgd::new(1e-2)
                            .with_momentum(0.9)
                            .with_nesterov(true),
                    ),
                ];
                for (k, opt) in opts.iter_mut().enumerate() {
                    for s in 0..3 {
                        let seed = 10 * k as u64 + s;
                        let vals = randn(&[n, 64], 100 + seed).into_raw_vec_and_offset().0;
                        let g = grads_of(
                            &[(&m.w, randn(&[n, 64], 200 + seed))],
                            &[(&m.table, &rows, vals)],
                        );
                        opt.step(&mut m, &g);
                    }
                }
                (m.w.value().clone(), m.table.value().clone())
            })
        };
        let one = run(1);
        let two = run(2);
        let again = run(2);
        assert_eq!(one.0, two.0);
        assert_eq!(one.1, two.1);
        assert_eq!(two, again);
    }
}
