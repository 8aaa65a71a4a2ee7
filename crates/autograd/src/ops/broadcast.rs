//! NumPy-style broadcasting: the output shape of a binary op and the reduction of a gradient
//! back to an operand's shape.

use crate::Tensor;
use ndarray::{ArrayViewD, Axis, IxDyn};

/// The broadcast shape of `a` and `b` (trailing dimensions aligned; a dimension of 1 stretches).
///
/// # Panics
/// If the shapes are not broadcast-compatible (names both shapes and `op`).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize], op: &str) -> Vec<usize> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => panic!("{op}: shapes {a:?} and {b:?} cannot be broadcast together"),
        };
    }
    out
}

/// Sums `grad` (of the broadcast output shape) down to `shape`: over the leading axes `shape`
/// lacks and over the axes where `shape` has 1. Serial and in a fixed order.
pub(crate) fn reduce_to(grad: ArrayViewD<'_, f32>, shape: &[usize]) -> Tensor {
    if grad.shape() == shape {
        return match grad.as_slice() {
            Some(s) => Tensor::from_shape_vec(grad.raw_dim(), crate::kernels::copy(s))
                .expect("same element count"),
            None => grad.to_owned(),
        };
    }
    let lead = grad.ndim() - shape.len();
    let mut g: Tensor = if lead == 0 {
        grad.to_owned()
    } else {
        // Collapse the leading axes as one: view as [prod(lead), rest...] when contiguous.
        let rest: Vec<usize> = grad.shape()[lead..].to_vec();
        let outer: usize = grad.shape()[..lead].iter().product();
        let mut flat_shape = vec![outer];
        flat_shape.extend_from_slice(&rest);
        let flat = match grad.as_standard_layout().into_shape_with_order(flat_shape) {
            Ok(v) => v,
            Err(_) => unreachable!("standard layout reshapes"),
        };
        // As a matrix `[outer, rest]`: the fixed-block column sums of `kernels::sum_rows`
        // (the bias gradient of the fused linear op uses the same reduction).
        let cols: usize = rest.iter().product();
        let m = flat
            .view()
            .into_shape_with_order((outer, cols))
            .expect("standard layout reshapes");
        crate::kernels::sum_rows(m)
            .into_shape_with_order(IxDyn(&rest))
            .expect("rest has cols elements")
    };
    for (ax, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[ax] != 1 {
            g = g.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn shapes() {
        assert_eq!(broadcast_shape(&[2, 3], &[3], "t"), vec![2, 3]);
        assert_eq!(broadcast_shape(&[4, 1, 3], &[2, 1], "t"), vec![4, 2, 3]);
        assert_eq!(broadcast_shape(&[], &[2], "t"), vec![2]);
    }

    #[test]
    #[should_panic(expected = "shapes [2, 3] and [2] cannot be broadcast")]
    fn incompatible() {
        broadcast_shape(&[2, 3], &[2], "t");
    }

    #[test]
    fn reduce() {
        let g = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32);
        let r = reduce_to(g.view(), &[3, 1]);
        assert_eq!(r.shape(), &[3, 1]);
        // Row 0 of the [3, 4] slices: (0+1+2+3) + (12+13+14+15) = 60.
        assert_eq!(r[[0, 0]], 60.0);
        assert_eq!(
            reduce_to(g.view(), &[]).into_iter().next(),
            Some((0..24).sum::<usize>() as f32)
        );
    }
}
