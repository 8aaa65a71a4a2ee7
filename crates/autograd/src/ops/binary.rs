//! Broadcasting element-wise arithmetic: `add`, `sub`, `mul`, `div` (and the `+ - * /`
//! operators on [`Var`]).

use super::broadcast::{broadcast_shape, reduce_to};
use crate::kernels::{map2, use_parallel};
use crate::tape::{BackwardOp, GradSink};
use crate::{Tensor, Var};
use ndarray::{IxDyn, Zip};
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Sub => "sub",
            Kind::Mul => "mul",
            Kind::Div => "div",
        }
    }

    fn apply(self, x: f32, y: f32) -> f32 {
        match self {
            Kind::Add => x + y,
            Kind::Sub => x - y,
            Kind::Mul => x * y,
            Kind::Div => x / y,
        }
    }
}

/// `out = a ∘ b` where `b` repeats over `a`'s leading axes (`a.shape` ends with `b.shape`,
/// e.g. a `[L, d]` position table added to `[B, L, d]` tokens), both contiguous: plain slice
/// loops per repetition (which vectorize) instead of a broadcast `Zip`. `swap` computes
/// `b ∘ a` instead (for a repeated left operand).
fn forward_repeated(kind: Kind, a: &[f32], b: &[f32], swap: bool) -> Vec<f32> {
    let f = |(o, x): (&mut [std::mem::MaybeUninit<f32>], &[f32])| {
        for ((o, &x), &y) in o.iter_mut().zip(x).zip(b) {
            o.write(if swap {
                kind.apply(y, x)
            } else {
                kind.apply(x, y)
            });
        }
    };
    // Whole repetitions per task, about `PAR_MIN_LEN` elements each.
    let per_task = b.len() * (crate::kernels::PAR_MIN_LEN / b.len()).max(1);
    #[allow(unsafe_code)]
    // SAFETY: chunk `i` covers `a[i · per_task ..][..len]`, and its repetitions of `b.len()`
    // elements (the chunk is a whole number of them, `b.len()` divides `a.len()`) are each
    // written in full by `f`.
    unsafe {
        crate::kernels::written_by(a.len(), per_task, |i, o| {
            let x = &a[i * per_task..][..o.len()];
            o.chunks_mut(b.len()).zip(x.chunks(b.len())).for_each(f);
        })
        .0
    }
}

fn forward(kind: Kind, a: &Tensor, b: &Tensor) -> Tensor {
    if a.shape() == b.shape() {
        return map2(&a.view(), &b.view(), move |x, y| kind.apply(x, y));
    }
    // One operand repeated over the other's leading axes.
    for (big, small, swap) in [(a, b, false), (b, a, true)] {
        // (At least 16 elements per repetition, or the per-repetition loop costs more.)
        if small.ndim() >= 1
            && small.len() >= 16
            && big.shape().ends_with(small.shape())
            && let (Some(x), Some(y)) = (big.as_slice(), small.as_slice())
        {
            let out = forward_repeated(kind, x, y, swap);
            return Tensor::from_shape_vec(big.raw_dim(), out).expect("same element count");
        }
    }
    let shape = broadcast_shape(a.shape(), b.shape(), kind.name());
    let av = a.broadcast(IxDyn(&shape)).expect("broadcast shape checked");
    let bv = b.broadcast(IxDyn(&shape)).expect("broadcast shape checked");
    let z = Zip::from(&av).and(&bv);
    if use_parallel(av.len()) {
        z.par_map_collect(move |&x, &y| kind.apply(x, y))
    } else {
        z.map_collect(move |&x, &y| kind.apply(x, y))
    }
}

struct BinaryBackward {
    kind: Kind,
    a: usize,
    b: usize,
    a_val: Arc<Tensor>,
    b_val: Arc<Tensor>,
}

impl BackwardOp for BinaryBackward {
    /// A same-shape `a ± b` passes its gradient on without copying it for one of the operands
    /// (the residual connections and embedding sums of the sequence encoder).
    fn backward_owned(&self, g: Tensor, sink: &mut GradSink<'_>) {
        let same = self.a_val.shape() == g.shape() && self.b_val.shape() == g.shape();
        match self.kind {
            Kind::Add | Kind::Sub if same && self.a != self.b => {
                let (want_a, want_b) = (sink.wants(self.a), sink.wants(self.b));
                // `b`'s gradient from a view of `g`: its negation (one pass) or, for `+`,
                // `g` itself when `a` does not need it, else a parallel copy.
                let db = |g: Tensor| match self.kind {
                    Kind::Sub => crate::kernels::map1(&g.view(), |x| -x),
                    _ => g,
                };
                match (want_a, want_b) {
                    (true, true) => {
                        let gb = match self.kind {
                            Kind::Sub => crate::kernels::map1(&g.view(), |x| -x),
                            _ => reduce_to(g.view(), g.shape()),
                        };
                        sink.add(self.b, gb);
                        sink.add(self.a, g);
                    }
                    (true, false) => sink.add(self.a, g),
                    (false, true) => sink.add(self.b, db(g)),
                    (false, false) => {}
                }
            }
            _ => self.backward(&g, sink),
        }
    }

    fn backward(&self, g: &Tensor, sink: &mut GradSink<'_>) {
        let (a, b) = (&*self.a_val, &*self.b_val);
        let out_shape = g.shape();
        fn bview<'a>(t: &'a Tensor, shape: &[usize]) -> ndarray::ArrayViewD<'a, f32> {
            t.broadcast(IxDyn(shape)).expect("broadcast at forward")
        }
        if sink.wants(self.a) {
            let da = match self.kind {
                Kind::Add | Kind::Sub => reduce_to(g.view(), a.shape()),
                Kind::Mul => reduce_to(
                    map2(&g.view(), &bview(b, out_shape), |g, y| g * y).view(),
                    a.shape(),
                ),
                Kind::Div => reduce_to(
                    map2(&g.view(), &bview(b, out_shape), |g, y| g / y).view(),
                    a.shape(),
                ),
            };
            sink.add(self.a, da);
        }
        if sink.wants(self.b) {
            let db = match self.kind {
                Kind::Add => reduce_to(g.view(), b.shape()),
                Kind::Sub => reduce_to(g.view(), b.shape()).mapv_into(|x| -x),
                Kind::Mul => reduce_to(
                    map2(&g.view(), &bview(a, out_shape), |g, x| g * x).view(),
                    b.shape(),
                ),
                Kind::Div => {
                    let (av, bv) = (bview(a, out_shape), bview(b, out_shape));
                    let t = Zip::from(g)
                        .and(&av)
                        .and(&bv)
                        .map_collect(|&g, &x, &y| -g * x / (y * y));
                    reduce_to(t.view(), b.shape())
                }
            };
            sink.add(self.b, db);
        }
    }
}

fn binary<'t>(kind: Kind, a: Var<'t>, b: Var<'t>) -> Var<'t> {
    a.same_tape(&b, kind.name());
    let (a_val, b_val) = (a.value(), b.value());
    let out = forward(kind, &a_val, &b_val);
    a.tape.record(&[a, b], out, || BinaryBackward {
        kind,
        a: a.id,
        b: b.id,
        a_val,
        b_val,
    })
}

/// Inherent forms of `+ - * /`, so chains like `x.matmul(w).add(b)` need no trait import.
#[allow(clippy::should_implement_trait)]
impl<'t> Var<'t> {
    /// `self + other`, broadcasting.
    ///
    /// # Shapes
    /// Any two broadcast-compatible shapes → their broadcast shape.
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    pub fn add(self, other: Var<'t>) -> Var<'t> {
        binary(Kind::Add, self, other)
    }

    /// `self - other`, broadcasting (see [`Var::add`]).
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    pub fn sub(self, other: Var<'t>) -> Var<'t> {
        binary(Kind::Sub, self, other)
    }

    /// `self * other` element-wise, broadcasting (see [`Var::add`]).
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    pub fn mul(self, other: Var<'t>) -> Var<'t> {
        binary(Kind::Mul, self, other)
    }

    /// `self / other` element-wise, broadcasting (see [`Var::add`]).
    ///
    /// # Panics
    /// If the shapes cannot be broadcast together.
    pub fn div(self, other: Var<'t>) -> Var<'t> {
        binary(Kind::Div, self, other)
    }
}

macro_rules! impl_operator {
    ($trait:ident, $method:ident) => {
        impl<'t> std::ops::$trait for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                Var::$method(self, rhs)
            }
        }
    };
}
impl_operator!(Add, add);
impl_operator!(Sub, sub);
impl_operator!(Mul, mul);
impl_operator!(Div, div);

#[cfg(test)]
mod tests {
    use crate::Tape;
    use crate::gradcheck::{assert_gradients, randn};
    use ndarray::array;

    #[test]
    fn values_broadcast() {
        let tape = Tape::new();
        let a = tape.constant(array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn());
        let b = tape.constant(array![10.0_f32, 20.0].into_dyn());
        assert_eq!(
            *(a + b).value(),
            array![[11.0_f32, 22.0], [13.0, 24.0]].into_dyn()
        );
        assert_eq!(
            *(a - b).value(),
            array![[-9.0_f32, -18.0], [-7.0, -16.0]].into_dyn()
        );
        assert_eq!(
            *(a * b).value(),
            array![[10.0_f32, 40.0], [30.0, 80.0]].into_dyn()
        );
        assert_eq!(
            *(b / a).value(),
            array![[10.0_f32, 10.0], [10.0 / 3.0, 5.0]].into_dyn()
        );
    }

    #[test]
    fn gradients_same_shape_and_broadcast() {
        for (sa, sb) in [
            (vec![3, 4], vec![3, 4]),
            (vec![3, 4], vec![4]),
            (vec![2, 1, 4], vec![3, 1]),
            (vec![1], vec![2, 3]),
            (vec![1, 5], vec![1, 5]),
        ] {
            let a = randn(&sa, 1);
            let b = randn(&sb, 2).mapv(|x| x.abs() + 0.5); // keep divisors away from 0
            assert_gradients(&[a.clone(), b.clone()], |_, v| v[0] + v[1]);
            assert_gradients(&[a.clone(), b.clone()], |_, v| v[0] - v[1]);
            assert_gradients(&[a.clone(), b.clone()], |_, v| v[0] * v[1]);
            assert_gradients(&[a.clone(), b.clone()], |_, v| v[0] / v[1]);
        }
    }

    #[test]
    fn same_shape_add_and_sub_pass_the_gradient_on_exactly() {
        // The owned fast path: both operands, one operand, the same operand twice, and a
        // gradient that reaches the sum from two consumers.
        let (a, b) = (randn(&[4, 3], 3), randn(&[4, 3], 4));
        assert_gradients(std::slice::from_ref(&a), |_, v| v[0] + v[0]);
        assert_gradients(std::slice::from_ref(&a), |_, v| (v[0] - v[0]) + v[0]);
        assert_gradients(&[a.clone(), b.clone()], |_, v| {
            let s = v[0] - v[1];
            s * s + s
        });
        let up = randn(&[4, 3], 5);
        let neg = up.mapv(|v| -v);
        for (sub, swapped, want_x) in [(true, false, &up), (true, true, &neg), (false, false, &up)]
        {
            let tape = Tape::new();
            let (x, y) = (tape.leaf(a.clone()), tape.constant(b.clone()));
            let d = match (sub, swapped) {
                (true, false) => x - y,
                (true, true) => y - x,
                _ => x + y,
            };
            let grads = tape.backward((d * tape.constant(up.clone())).sum());
            assert_eq!(&grads.wrt(x).unwrap(), want_x);
        }
        let tape = Tape::new();
        let (x, z) = (tape.leaf(a), tape.leaf(b));
        let grads = tape.backward(((x - z) * tape.constant(up.clone())).sum());
        assert_eq!(grads.wrt(x).unwrap(), up);
        assert_eq!(grads.wrt(z).unwrap(), neg);
    }

    #[test]
    fn repeated_operand_fast_path_equals_the_broadcast_definition() {
        use crate::Tensor;
        // b repeats over a's leading axes (and the swapped order), below and above the
        // parallel threshold, on 1 and 2 threads: element for element the broadcast formula.
        for lead in [5, 300] {
            let a = randn(&[lead, 7, 16], 1);
            let b = randn(&[7, 16], 2).mapv(|x| x.abs() + 0.5);
            let bb = b.broadcast(a.raw_dim()).unwrap();
            type Op = fn(f32, f32) -> f32;
            let ops: [(&str, Op); 4] = [
                ("add", |x, y| x + y),
                ("sub", |x, y| x - y),
                ("mul", |x, y| x * y),
                ("div", |x, y| x / y),
            ];
            for (name, f) in ops {
                let want_ab = ndarray::Zip::from(&a)
                    .and(&bb)
                    .map_collect(|&x, &y| f(x, y));
                let want_ba = ndarray::Zip::from(&a)
                    .and(&bb)
                    .map_collect(|&x, &y| f(y, x));
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let (ab, ba): (Tensor, Tensor) = pool.install(|| {
                        let tape = Tape::new();
                        let (x, y) = (tape.constant(a.clone()), tape.constant(b.clone()));
                        let (ab, ba) = match name {
                            "add" => (x + y, y + x),
                            "sub" => (x - y, y - x),
                            "mul" => (x * y, y * x),
                            _ => (x / y, y / x),
                        };
                        ((*ab.value()).clone(), (*ba.value()).clone())
                    });
                    assert_eq!(ab, want_ab, "{name} lead {lead} {threads} threads");
                    assert_eq!(ba, want_ba, "{name} swapped, lead {lead} {threads} threads");
                }
            }
        }
        assert_gradients(&[randn(&[3, 2, 16], 3), randn(&[2, 16], 4)], |_, v| {
            v[0] * v[1] + v[1]
        });
    }

    #[test]
    fn constants_record_nothing() {
        let tape = Tape::new();
        let a = tape.constant(array![1.0_f32].into_dyn());
        let c = a * a + a;
        assert!(!c.requires_grad());
    }

    #[test]
    #[should_panic(expected = "mul: shapes [2, 3] and [2] cannot be broadcast together")]
    fn mismatched_shapes_panic_naming_both() {
        let tape = Tape::new();
        let a = tape.constant(ndarray::Array2::<f32>::zeros((2, 3)).into_dyn());
        let b = tape.constant(ndarray::Array1::<f32>::zeros(2).into_dyn());
        let _ = a * b;
    }
}
