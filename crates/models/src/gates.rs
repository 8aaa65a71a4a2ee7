//! Gate inspection: the average gate weight per task per expert over a data set — the plot
//! Pinterest used to check expert utilization (SPEC §2.3).

use crate::ModelOutput;
use closeup_autograd::Tensor;
use ndarray::{Array2, Axis};

/// Accumulates gate weights `[T, B, E]` batch by batch; [`GateUtilization::mean`] gives the
/// average weight each task's gate puts on each expert, `[T, E]` (each row sums to 1).
///
/// ```
/// use closeup_models::GateUtilization;
/// use ndarray::{Array3, array};
///
/// let mut u = GateUtilization::new(1, 2);
/// u.add(&Array3::from_shape_vec((1, 2, 2), vec![0.9, 0.1, 0.5, 0.5]).unwrap().into_dyn());
/// assert_eq!(u.mean(), array![[0.7_f32, 0.3]]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GateUtilization {
    sums: Array2<f64>,
    examples: usize,
}

impl GateUtilization {
    /// An empty accumulator for `tasks` gates over `experts` experts.
    pub fn new(tasks: usize, experts: usize) -> Self {
        GateUtilization {
            sums: Array2::zeros((tasks, experts)),
            examples: 0,
        }
    }

    /// Adds one batch of gate weights `[T, B, E]`.
    ///
    /// # Panics
    /// If the shape is not `[T, B, E]` for this accumulator's `T` and `E`.
    pub fn add(&mut self, gate_weights: &Tensor) {
        let s = gate_weights.shape();
        assert!(
            s.len() == 3 && s[0] == self.sums.nrows() && s[2] == self.sums.ncols(),
            "GateUtilization::add: gate weights {s:?} are not [{}, B, {}]",
            self.sums.nrows(),
            self.sums.ncols()
        );
        for (t, per_task) in gate_weights.axis_iter(Axis(0)).enumerate() {
            for row in per_task.axis_iter(Axis(0)) {
                for (e, &w) in row.iter().enumerate() {
                    self.sums[[t, e]] += f64::from(w);
                }
            }
        }
        self.examples += s[1];
    }

    /// Adds a model output's gate weights; `false` (nothing added) for a model without gates.
    ///
    /// # Panics
    /// As [`GateUtilization::add`].
    pub fn add_output(&mut self, output: &ModelOutput<'_>) -> bool {
        match &output.gate_weights {
            Some(g) => {
                self.add(g);
                true
            }
            None => false,
        }
    }

    /// Number of examples added.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The mean gate weight per task per expert, `[T, E]` (zeros before any example).
    pub fn mean(&self) -> Array2<f32> {
        let n = self.examples.max(1) as f64;
        self.sums.mapv(|s| (s / n) as f32)
    }
}

/// The mean gate weight per task per expert `[T, E]` over model outputs; `None` if the model has
/// no gates or there is no output.
pub fn mean_gate_weights<'o, 't: 'o>(
    outputs: impl IntoIterator<Item = &'o ModelOutput<'t>>,
) -> Option<Array2<f32>> {
    let mut acc: Option<GateUtilization> = None;
    for out in outputs {
        let g = out.gate_weights.as_ref()?;
        acc.get_or_insert_with(|| GateUtilization::new(g.shape()[0], g.shape()[2]))
            .add(g);
    }
    acc.map(|a| a.mean())
}
