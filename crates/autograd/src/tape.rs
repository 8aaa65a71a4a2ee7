//! The reverse-mode tape: a per-step arena of nodes (a Wengert list).
//!
//! Every value computed in a training step is a node in one [`Tape`]. Nodes are appended in
//! evaluation order, so insertion order *is* a topological order and the backward pass is a
//! single reverse sweep over the arena. A node refers to its parents by index, keeps its value
//! behind an [`Arc`] (so parameters enter the tape without a copy), and carries a backward
//! closure only when one of its inputs needs a gradient: evaluation on a [`Tape::no_grad`] tape,
//! and constant sub-graphs, record no backward work at all.
//!
//! A [`Var`] is a cheap `Copy` handle (`&Tape` + index); ops are methods on `Var` defined in
//! [`crate::ops`]. [`Tape::backward`] returns a [`Gradients`] that owns the gradients of the
//! leaves (inputs created with [`Tape::leaf`] and parameters entered with [`Tape::param`]), so
//! the tape can be dropped before an optimizer mutates the parameters.

use crate::Tensor;
use crate::grads::{Grad, Gradients, RowGrad};
use crate::param::{Param, ParamId};
use ndarray::{ArrayView2, ArrayViewD, IxDyn, Zip};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The backward half of an op: given the gradient of the op's output, add the gradients of
/// its inputs into the sink. Implementations capture what they need (parent ids, saved
/// tensors) when the op is recorded.
pub(crate) trait BackwardOp {
    /// Accumulates the input gradients for `grad_out` (same shape as the op's output).
    fn backward(&self, grad_out: &Tensor, sink: &mut GradSink<'_>);

    /// The same with the gradient handed over: ops that can reuse its buffer (reshape,
    /// dropout, …) override this to avoid a copy. The tape always calls this one.
    fn backward_owned(&self, grad_out: Tensor, sink: &mut GradSink<'_>) {
        self.backward(&grad_out, sink);
    }
}

struct Node {
    value: Arc<Tensor>,
    requires_grad: bool,
    op: Option<Box<dyn BackwardOp>>,
    param: Option<ParamId>,
}

/// A per-step arena of values and the backward ops that produced them.
///
/// Create one per training step (or per evaluation batch), build the forward pass with
/// [`Var`] ops, call [`Tape::backward`] once, then drop it.
///
/// ```
/// use closeup_autograd::{Tape, Param};
/// use ndarray::array;
///
/// let w = Param::new(array![[1.0_f32, 2.0], [3.0, 4.0]].into_dyn());
/// let tape = Tape::new();
/// let x = tape.constant(array![[1.0_f32, 1.0]].into_dyn());
/// let y = x.matmul(tape.param(&w)).sum(); // y = Σ_j Σ_i x_i w_ij
/// let grads = tape.backward(y);
/// assert_eq!(grads.param_dense(&w).unwrap(), array![[1.0_f32, 1.0], [1.0, 1.0]].into_dyn());
/// ```
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
    param_nodes: RefCell<HashMap<ParamId, usize>>,
    grad_enabled: bool,
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("nodes", &self.len())
            .field("grad_enabled", &self.grad_enabled)
            .finish()
    }
}

impl Default for Tape {
    fn default() -> Self {
        Self::new()
    }
}

/// A handle to one value on a [`Tape`]. `Copy`, so ops take it by value.
#[derive(Clone, Copy)]
pub struct Var<'t> {
    pub(crate) tape: &'t Tape,
    pub(crate) id: usize,
}

impl fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Var")
            .field("id", &self.id)
            .field("shape", &self.shape())
            .field("requires_grad", &self.requires_grad())
            .finish()
    }
}

impl Tape {
    /// A tape that records backward ops for anything depending on a parameter or a leaf.
    pub fn new() -> Self {
        Self::with_grad(true)
    }

    /// A tape for inference: parameters and leaves enter without requiring gradients, so no
    /// backward op is ever recorded (the values are still kept until the tape is dropped).
    pub fn no_grad() -> Self {
        Self::with_grad(false)
    }

    fn with_grad(grad_enabled: bool) -> Self {
        Tape {
            nodes: RefCell::new(Vec::with_capacity(256)),
            param_nodes: RefCell::new(HashMap::new()),
            grad_enabled,
        }
    }

    /// Whether this tape records gradients ([`Tape::new`]) or not ([`Tape::no_grad`]).
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether no node has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, mut node: Node) -> Var<'_> {
        // Invariant: every value on the tape is in standard (row-major, contiguous) layout.
        if !node.value.is_standard_layout() {
            node.value = Arc::new(node.value.as_standard_layout().into_owned());
        }
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        Var {
            tape: self,
            id: nodes.len() - 1,
        }
    }

    /// A value that never needs a gradient (data, masks, targets).
    pub fn constant(&self, value: Tensor) -> Var<'_> {
        self.push(Node {
            value: Arc::new(value),
            requires_grad: false,
            op: None,
            param: None,
        })
    }

    /// An input whose gradient [`Tape::backward`] reports (see [`Gradients::wrt`]).
    /// On a [`Tape::no_grad`] tape this is the same as [`Tape::constant`].
    pub fn leaf(&self, value: Tensor) -> Var<'_> {
        self.push(Node {
            value: Arc::new(value),
            requires_grad: self.grad_enabled,
            op: None,
            param: None,
        })
    }

    /// Enters a parameter without copying its value. Entering the same parameter twice returns
    /// the same node, so its gradient is accumulated once.
    pub fn param(&self, param: &Param) -> Var<'_> {
        if let Some(&id) = self.param_nodes.borrow().get(&param.id()) {
            return Var { tape: self, id };
        }
        let var = self.push(Node {
            value: param.shared_value(),
            requires_grad: self.grad_enabled,
            op: None,
            param: Some(param.id()),
        });
        self.param_nodes.borrow_mut().insert(param.id(), var.id);
        var
    }

    /// Records the result of an op. The backward op is built (and the node marked as needing a
    /// gradient) only when at least one input needs a gradient.
    pub(crate) fn record<'t, O, F>(
        &'t self,
        inputs: &[Var<'t>],
        value: Tensor,
        make_op: F,
    ) -> Var<'t>
    where
        O: BackwardOp + 'static,
        F: FnOnce() -> O,
    {
        let requires_grad = inputs.iter().any(|v| v.requires_grad());
        let op: Option<Box<dyn BackwardOp>> = if requires_grad {
            Some(Box::new(make_op()))
        } else {
            None
        };
        self.push(Node {
            value: Arc::new(value),
            requires_grad,
            op,
            param: None,
        })
    }

    /// Back-propagates from a scalar `loss` (any shape with one element) and returns the
    /// gradients of every leaf and parameter that received one.
    ///
    /// # Panics
    /// If `loss` does not have exactly one element, or belongs to another tape.
    pub fn backward(&self, loss: Var<'_>) -> Gradients {
        let shape = loss.shape();
        assert_eq!(
            shape.iter().product::<usize>(),
            1,
            "Tape::backward: the loss must have one element, got shape {shape:?}"
        );
        self.backward_with_seed(loss, Tensor::ones(IxDyn(&shape)))
    }

    /// Back-propagates an arbitrary output gradient `seed` (the vector of a vector-Jacobian
    /// product) from `output`.
    ///
    /// # Panics
    /// If `seed`'s shape differs from `output`'s, or `output` belongs to another tape.
    pub fn backward_with_seed(&self, output: Var<'_>, seed: Tensor) -> Gradients {
        assert!(
            std::ptr::eq(output.tape, self),
            "Tape::backward: the output Var belongs to another tape"
        );
        let nodes = self.nodes.borrow();
        assert_eq!(
            seed.shape(),
            nodes[output.id].value.shape(),
            "Tape::backward_with_seed: seed shape {:?} differs from output shape {:?}",
            seed.shape(),
            nodes[output.id].value.shape()
        );
        let mut grads: Vec<Option<Grad>> = Vec::new();
        grads.resize_with(output.id + 1, || None);
        if nodes[output.id].requires_grad {
            grads[output.id] = Some(Grad::Dense(seed));
        }
        for i in (0..=output.id).rev() {
            let Some(op) = nodes[i].op.as_ref() else {
                continue;
            };
            let Some(g) = grads[i].take() else { continue };
            let g = g.into_dense();
            let (parents, _) = grads.split_at_mut(i);
            let mut sink = GradSink {
                grads: parents,
                nodes: &nodes[..i],
            };
            op.backward_owned(g, &mut sink);
        }
        let mut out = Gradients::default();
        for (i, g) in grads.into_iter().enumerate() {
            let node = &nodes[i];
            let Some(g) = g else { continue };
            if node.op.is_some() || !node.requires_grad {
                continue;
            }
            match node.param {
                Some(pid) => out.insert_param(pid, i, g.coalesced()),
                None => out.insert_leaf(i, g.into_dense()),
            }
        }
        out
    }
}

impl<'t> Var<'t> {
    /// The tape this value lives on.
    pub fn tape(&self) -> &'t Tape {
        self.tape
    }

    /// The node index on the tape (its position in evaluation order).
    pub fn id(&self) -> usize {
        self.id
    }

    /// The value (shared, no copy).
    pub fn value(&self) -> Arc<Tensor> {
        self.tape.nodes.borrow()[self.id].value.clone()
    }

    /// The shape of the value.
    pub fn shape(&self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.id].value.shape().to_vec()
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.tape.nodes.borrow()[self.id].value.ndim()
    }

    /// Whether a gradient flows to this value.
    pub fn requires_grad(&self) -> bool {
        self.tape.nodes.borrow()[self.id].requires_grad
    }

    /// The single element of a one-element value (e.g. a loss).
    ///
    /// # Panics
    /// If the value does not have exactly one element.
    pub fn item(&self) -> f32 {
        let v = self.value();
        assert_eq!(v.len(), 1, "Var::item on a value of shape {:?}", v.shape());
        *v.iter().next().expect("one element")
    }

    /// Panics unless `other` lives on the same tape (mixing tapes is a programmer error).
    pub(crate) fn same_tape(&self, other: &Var<'t>, op: &str) {
        assert!(
            std::ptr::eq(self.tape, other.tape),
            "{op}: operands belong to different tapes"
        );
    }
}

/// Where backward ops deposit input gradients during [`Tape::backward`]. Gradients are
/// accumulated in place: the first contribution to a node is moved in, later ones are added.
pub(crate) struct GradSink<'a> {
    grads: &'a mut [Option<Grad>],
    nodes: &'a [Node],
}

impl GradSink<'_> {
    /// Whether node `id` needs a gradient (ops skip work for inputs that do not).
    pub(crate) fn wants(&self, id: usize) -> bool {
        self.nodes[id].requires_grad
    }

    /// Whether node `id` has received a gradient contribution yet (the first one can be
    /// written into a fresh buffer instead of accumulated onto zeros).
    pub(crate) fn has(&self, id: usize) -> bool {
        self.grads[id].is_some()
    }

    fn check_shape(&self, id: usize, shape: &[usize]) {
        debug_assert_eq!(
            self.nodes[id].value.shape(),
            shape,
            "gradient shape differs from value shape for node {id}"
        );
    }

    /// Adds an owned gradient (moved in when it is the first contribution).
    pub(crate) fn add(&mut self, id: usize, g: Tensor) {
        if !self.wants(id) {
            return;
        }
        self.check_shape(id, g.shape());
        match &mut self.grads[id] {
            slot @ None => *slot = Some(Grad::Dense(g)),
            Some(existing) => crate::kernels::add_assign(existing.make_dense(), &g.view()),
        }
    }

    /// Adds a borrowed gradient.
    pub(crate) fn add_view(&mut self, id: usize, g: ArrayViewD<'_, f32>) {
        if !self.wants(id) {
            return;
        }
        self.check_shape(id, g.shape());
        match &mut self.grads[id] {
            slot @ None => *slot = Some(Grad::Dense(g.to_owned())),
            Some(existing) => crate::kernels::add_assign(existing.make_dense(), &g),
        }
    }

    /// The dense gradient buffer of node `id`, zero-initialised if nothing was added yet, for
    /// kernels that accumulate directly (e.g. a matmul with `beta = 1`).
    pub(crate) fn dense_mut(&mut self, id: usize) -> &mut Tensor {
        let shape = self.nodes[id].value.shape().to_vec();
        self.grads[id]
            .get_or_insert_with(|| Grad::Dense(Tensor::zeros(IxDyn(&shape))))
            .make_dense()
    }

    /// Adds `values[i]` to row `rows[i]` of node `id`'s gradient (a 2-D value). Leaves keep
    /// the gradient sparse (only the touched rows); other nodes get a dense scatter-add.
    pub(crate) fn add_rows(&mut self, id: usize, rows: &[usize], values: ArrayView2<'_, f32>) {
        if !self.wants(id) {
            return;
        }
        let shape = self.nodes[id].value.shape().to_vec();
        assert_eq!(shape.len(), 2, "add_rows on a value of shape {shape:?}");
        let is_leaf = self.nodes[id].op.is_none();
        match &mut self.grads[id] {
            slot @ None if is_leaf => {
                let mut rg = RowGrad::new(shape[0], shape[1]);
                rg.push_rows(rows, values);
                *slot = Some(Grad::Rows(rg));
            }
            Some(Grad::Rows(rg)) => rg.push_rows(rows, values),
            slot => {
                let dense = slot
                    .get_or_insert_with(|| Grad::Dense(Tensor::zeros(IxDyn(&shape))))
                    .make_dense();
                for (&r, src) in rows.iter().zip(values.outer_iter()) {
                    let mut dst = dense.index_axis_mut(ndarray::Axis(0), r);
                    Zip::from(&mut dst)
                        .and(&src.into_dyn())
                        .for_each(|d, &s| *d += s);
                }
            }
        }
    }
}
