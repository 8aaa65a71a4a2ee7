//! The fused attention against the composed path it replaces, by finite differences, and across
//! thread counts.

use crate::gradcheck::{GradCheck, randn, value_and_grads};
use crate::{Tape, Tensor};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A `[b, l]` key mask: sequence `i` keeps its first `lens[i]` tokens (0 = fully masked).
fn mask(lens: &[usize], l: usize) -> ArrayD<bool> {
    ArrayD::from_shape_fn(IxDyn(&[lens.len(), l]), |ix| ix[1] < lens[ix[0]])
}

fn inputs(b: usize, l: usize, d: usize, seed: u64) -> Vec<Tensor> {
    (0..3).map(|i| randn(&[b, l, d], seed + i)).collect()
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let worst = a
        .iter()
        .zip(b.iter())
        .map(|(&x, &y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0_f32, f32::max);
    assert!(
        worst <= tol,
        "{what}: max relative difference {worst} > {tol}"
    );
}

/// Values and gradients of the fused op and the composed path on the same inputs and the same
/// dropout seed.
fn compare(b: usize, l: usize, d: usize, heads: usize, lens: Option<&[usize]>, p: f32) {
    let xs = inputs(b, l, d, 11);
    let m = lens.map(|lens| mask(lens, l));
    let run = |fused: bool| {
        value_and_grads(&xs, 5, |_, v| {
            let mut rng = StdRng::seed_from_u64(3);
            if fused {
                v[0].multi_head_attention(v[1], v[2], heads, m.as_ref(), p, &mut rng)
            } else {
                v[0].multi_head_attention_composed(v[1], v[2], heads, m.as_ref(), p, &mut rng)
            }
        })
    };
    let ((yf, gf), (yc, gc)) = (run(true), run(false));
    let what = format!("b {b} l {l} d {d} heads {heads} lens {lens:?} p {p}");
    assert_close(&yf, &yc, 2e-5, &format!("{what}: output"));
    for (i, (f, c)) in gf.iter().zip(&gc).enumerate() {
        assert_close(f, c, 2e-5, &format!("{what}: gradient of input {i}"));
    }
}

#[test]
fn equals_the_composed_path_with_and_without_mask_and_dropout() {
    // The reference head width 16, and widths/lengths that are not multiples of 16 (padding).
    compare(3, 20, 64, 4, None, 0.0);
    compare(3, 20, 64, 4, Some(&[20, 7, 1]), 0.0);
    compare(2, 7, 12, 3, Some(&[3, 7]), 0.3);
    compare(4, 33, 40, 2, Some(&[33, 0, 5, 16]), 0.1);
    compare(1, 100, 64, 4, Some(&[64]), 0.1);
}

#[test]
fn fully_masked_sequences_give_zero_output_and_no_nan() {
    let xs = inputs(2, 5, 8, 1);
    let m = mask(&[0, 5], 5);
    let (y, gs) = value_and_grads(&xs, 2, |_, v| {
        let mut rng = StdRng::seed_from_u64(0);
        v[0].multi_head_attention(v[1], v[2], 2, Some(&m), 0.2, &mut rng)
    });
    assert!(y.iter().chain(gs.iter().flatten()).all(|x| x.is_finite()));
    assert!(y.index_axis(ndarray::Axis(0), 0).iter().all(|&x| x == 0.0));
    for g in &gs {
        assert!(g.index_axis(ndarray::Axis(0), 0).iter().all(|&x| x == 0.0));
    }
}

#[test]
fn finite_difference_gradients() {
    // Head width 4 (padded per-head copies) and 16 (the in-place path: products on the
    // `[L, D]` buffers with the scale folded into `Kᵀ` and `dS`).
    for (d, heads) in [(12, 3), (32, 2)] {
        let xs = inputs(2, 9, d, 21);
        let m = mask(&[9, 4], 9);
        for p in [0.0, 0.25] {
            GradCheck {
                directions: 4,
                ..GradCheck::default()
            }
            .run(&xs, |_, v| {
                let mut rng = StdRng::seed_from_u64(9);
                v[0].multi_head_attention(v[1], v[2], heads, Some(&m), p, &mut rng)
            })
            .unwrap_or_else(|e| panic!("d {d} heads {heads} p {p}: {e}"));
        }
    }
}

#[test]
fn no_grad_tape_gives_the_same_output_and_records_no_backward() {
    let xs = inputs(3, 17, 32, 4);
    let m = mask(&[17, 2, 9], 17);
    let with_grad = {
        let tape = Tape::new();
        let v: Vec<_> = xs.iter().map(|x| tape.leaf(x.clone())).collect();
        let mut rng = StdRng::seed_from_u64(1);
        (*v[0]
            .multi_head_attention(v[1], v[2], 2, Some(&m), 0.1, &mut rng)
            .value())
        .clone()
    };
    let tape = Tape::no_grad();
    let v: Vec<_> = xs.iter().map(|x| tape.constant(x.clone())).collect();
    let mut rng = StdRng::seed_from_u64(1);
    let y = v[0].multi_head_attention(v[1], v[2], 2, Some(&m), 0.1, &mut rng);
    assert!(!y.requires_grad());
    assert_eq!(*y.value(), with_grad);
}

#[test]
fn dropout_draws_one_seed_and_p_zero_draws_nothing() {
    use rand::RngCore;
    let tape = Tape::new();
    let v: Vec<_> = inputs(1, 4, 8, 2)
        .into_iter()
        .map(|x| tape.leaf(x))
        .collect();
    let (mut a, mut b) = (StdRng::seed_from_u64(5), StdRng::seed_from_u64(5));
    v[0].multi_head_attention(v[1], v[2], 2, None, 0.0, &mut a);
    assert_eq!(a.next_u64(), b.next_u64());
    v[0].multi_head_attention(v[1], v[2], 2, None, 0.5, &mut a);
    b.next_u64();
    assert_eq!(a.next_u64(), b.next_u64());
}

#[test]
fn bit_identical_across_thread_counts() {
    let xs = inputs(6, 30, 32, 8);
    let m = mask(&[30, 1, 0, 12, 29, 30], 30);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                // 4 heads of 8 (padded copies) and 2 heads of 16 (in place).
                [4, 2].map(|heads| {
                    value_and_grads(&xs, 3, |_, v| {
                        let mut rng = StdRng::seed_from_u64(4);
                        v[0].multi_head_attention(v[1], v[2], heads, Some(&m), 0.1, &mut rng)
                    })
                })
            })
    };
    assert_eq!(run(1), run(2));
}

#[test]
#[should_panic(expected = "not the same [batch, len, dim]")]
fn mismatched_shapes_panic_naming_them() {
    let tape = Tape::new();
    let q = tape.leaf(randn(&[2, 3, 8], 0));
    let k = tape.leaf(randn(&[2, 4, 8], 1));
    q.multi_head_attention(k, k, 2, None, 0.0, &mut StdRng::seed_from_u64(0));
}

#[test]
#[should_panic(expected = "key mask shape [2, 4]")]
fn mismatched_mask_panics() {
    let tape = Tape::new();
    let q = tape.leaf(randn(&[2, 3, 8], 0));
    let m = mask(&[1, 2], 4);
    q.multi_head_attention(q, q, 2, Some(&m), 0.0, &mut StdRng::seed_from_u64(0));
}

#[test]
fn wide_single_head_and_empty_shapes() {
    // One head of width 64 (several 16-column blocks per product).
    compare(2, 18, 64, 1, Some(&[18, 3]), 0.2);
    // Empty batch and empty sequences: empty outputs and gradients, no panic.
    for (b, l) in [(0, 5), (2, 0)] {
        let xs = inputs(b, l, 8, 3);
        let m = mask(&vec![l; b], l);
        let (y, gs) = value_and_grads(&xs, 1, |_, v| {
            let mut rng = StdRng::seed_from_u64(0);
            v[0].multi_head_attention(v[1], v[2], 2, Some(&m), 0.1, &mut rng)
        });
        assert_eq!(y.shape(), &[b, l, 8]);
        assert!(gs.iter().all(|g| g.shape() == [b, l, 8]));
    }
}
