//! Parameters and the [`Parameterized`] trait that gives them stable dotted names.
//!
//! A [`Param`] owns a tensor behind an [`Arc`], so a [`crate::Tape`] can hold it without a copy
//! during a step; once the tape is dropped, [`Param::value_mut`] mutates it in place (copy-on-write
//! only if a tape is still alive). Every model implements [`Parameterized`] by visiting its
//! parameters and children with a [`ParamVisitor`]; optimizers, parameter counts and checkpoints
//! all walk the same visit, so they agree on names such as `encoder.layers.0.attn.q.weight`.

use crate::Tensor;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_PARAM_ID: AtomicU64 = AtomicU64::new(0);

/// A process-unique identity of a [`Param`]; gradients are keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParamId(u64);

impl ParamId {
    fn fresh() -> Self {
        ParamId(NEXT_PARAM_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// A trainable tensor.
///
/// Cloning a `Param` copies the value and gives the clone a fresh [`ParamId`], so a copied
/// model (e.g. a frozen teacher) never shares gradients with the original.
pub struct Param {
    id: ParamId,
    value: Arc<Tensor>,
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Param")
            .field("id", &self.id)
            .field("shape", &self.value.shape())
            .finish()
    }
}

impl Clone for Param {
    fn clone(&self) -> Self {
        Param::new((*self.value).clone())
    }
}

impl Param {
    /// A parameter holding `value`.
    pub fn new(value: Tensor) -> Self {
        let value = if value.is_standard_layout() {
            value
        } else {
            value.as_standard_layout().into_owned()
        };
        Param {
            id: ParamId::fresh(),
            value: Arc::new(value),
        }
    }

    /// The identity gradients are keyed by.
    pub fn id(&self) -> ParamId {
        self.id
    }

    /// The current value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub(crate) fn shared_value(&self) -> Arc<Tensor> {
        self.value.clone()
    }

    /// Mutable access to the value: in place when no tape holds it, otherwise copy-on-write.
    pub fn value_mut(&mut self) -> &mut Tensor {
        Arc::make_mut(&mut self.value)
    }

    /// Replaces the value.
    ///
    /// # Panics
    /// If the new shape differs from the current one.
    pub fn set_value(&mut self, value: Tensor) {
        assert_eq!(
            value.shape(),
            self.value.shape(),
            "Param::set_value: new shape {:?} differs from {:?}",
            value.shape(),
            self.value.shape()
        );
        self.value = Arc::new(value);
    }

    /// The shape of the value.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the parameter has no element.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// Walks a module's parameters with their dotted names (read-only).
pub struct ParamVisitor<'v, 'a> {
    prefix: String,
    f: &'v mut dyn FnMut(&str, &'a Param),
}

impl fmt::Debug for ParamVisitor<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamVisitor")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<'v, 'a> ParamVisitor<'v, 'a> {
    /// A visitor calling `f(name, param)` for every parameter.
    pub fn new(f: &'v mut dyn FnMut(&str, &'a Param)) -> Self {
        ParamVisitor {
            prefix: String::new(),
            f,
        }
    }

    /// Visits one parameter named `name` under the current prefix.
    pub fn param(&mut self, name: &str, param: &'a Param) {
        let full = join(&self.prefix, name);
        (self.f)(&full, param);
    }

    /// Visits a child module under `name.`.
    pub fn child<M: Parameterized + ?Sized>(&mut self, name: &str, module: &'a M) {
        let saved = self.prefix.len();
        self.prefix = join(&self.prefix, name);
        module.visit_params(self);
        self.prefix.truncate(saved);
    }
}

/// Walks a module's parameters with their dotted names (mutable).
pub struct ParamVisitorMut<'v> {
    prefix: String,
    f: &'v mut dyn FnMut(&str, &mut Param),
}

impl fmt::Debug for ParamVisitorMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamVisitorMut")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl<'v> ParamVisitorMut<'v> {
    /// A visitor calling `f(name, param)` for every parameter.
    pub fn new(f: &'v mut dyn FnMut(&str, &mut Param)) -> Self {
        ParamVisitorMut {
            prefix: String::new(),
            f,
        }
    }

    /// Visits one parameter named `name` under the current prefix.
    pub fn param(&mut self, name: &str, param: &mut Param) {
        let full = join(&self.prefix, name);
        (self.f)(&full, param);
    }

    /// Visits a child module under `name.`.
    pub fn child<M: Parameterized + ?Sized>(&mut self, name: &str, module: &mut M) {
        let saved = self.prefix.len();
        self.prefix = join(&self.prefix, name);
        module.visit_params_mut(self);
        self.prefix.truncate(saved);
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Anything that owns parameters: layers, models, the blender.
///
/// Implement both visits in the same order; names must be unique and stable across runs,
/// because optimizer state and checkpoints are keyed by them.
///
/// ```
/// use closeup_autograd::{Param, Parameterized, ParamVisitor, ParamVisitorMut};
/// use ndarray::Array2;
///
/// struct Affine { weight: Param, bias: Param }
/// impl Parameterized for Affine {
///     fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
///         v.param("weight", &self.weight);
///         v.param("bias", &self.bias);
///     }
///     fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
///         v.param("weight", &mut self.weight);
///         v.param("bias", &mut self.bias);
///     }
/// }
/// let m = Affine { weight: Param::new(Array2::zeros((3, 2)).into_dyn()),
///                  bias: Param::new(Array2::zeros((1, 3)).into_dyn()) };
/// assert_eq!(m.num_params(), 9);
/// let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// ```
pub trait Parameterized {
    /// Calls `v.param` / `v.child` for every parameter and child module.
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>);

    /// The mutable counterpart of [`Parameterized::visit_params`], in the same order.
    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>);

    /// All parameters with their dotted names, in visit order.
    fn named_params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        let mut f = |name: &str, p| out.push((name.to_string(), p));
        self.visit_params(&mut ParamVisitor::new(&mut f));
        out
    }

    /// Total number of scalar parameters.
    fn num_params(&self) -> usize {
        let mut n = 0;
        let mut f = |_: &str, p: &Param| n += p.len();
        self.visit_params(&mut ParamVisitor::new(&mut f));
        n
    }
}

impl<T: Parameterized> Parameterized for Vec<T> {
    fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
        for (i, m) in self.iter().enumerate() {
            v.child(&i.to_string(), m);
        }
    }

    fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
        for (i, m) in self.iter_mut().enumerate() {
            v.child(&i.to_string(), m);
        }
    }
}
