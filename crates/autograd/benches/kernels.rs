//! Kernel benchmarks at the reference configuration's shapes (SPEC §5).
//!
//! Throughput is reported in FLOP/s (criterion's "elements" = floating-point operations), so
//! the numbers read directly as GFLOP/s. `docs/performance.md` records them against this
//! machine's measured sgemm and FMA peaks.
//!
//! Run: `cargo bench -p closeup-autograd --bench kernels`

use closeup_autograd::gradcheck::randn;
use closeup_autograd::kernels::gemm::{Threading, affine, affine_into_with, sgemm};
use closeup_autograd::kernels::sparse::{SparseWeight, sparse_affine_into};
use closeup_autograd::{Tape, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, Ix2, linalg::general_mat_mul};
use std::hint::black_box;

fn mat(r: usize, c: usize, seed: u64) -> Array2<f32> {
    randn(&[r, c], seed)
        .into_dimensionality::<Ix2>()
        .expect("2-D")
}

/// Dense products of the MMoE and the transformer at batch 256: our `gemm`-crate kernel against
/// ndarray's default (`matrixmultiply`).
fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul");
    let shapes = [
        (256, 224, 256, "expert L1 256x224x256"),
        (256, 480, 256, "tower/brief 256x480x256"),
        (25600, 64, 192, "QKV 25600x64x192"),
        (25600, 64, 256, "FFN1 25600x64x256"),
    ];
    for (m, k, n, name) in shapes {
        let (a, b) = (mat(m, k, 1), mat(k, n, 2));
        let bt = b.t().to_owned(); // weights stored [out, in]: used as a transposed view
        let mut out = Array2::<f32>::zeros((m, n));
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(BenchmarkId::new("gemm", name), |bench| {
            bench.iter(|| sgemm(out.view_mut(), a.view(), b.view(), false, Threading::Auto))
        });
        g.bench_function(BenchmarkId::new("gemm x·Wᵀ view", name), |bench| {
            bench.iter(|| sgemm(out.view_mut(), a.view(), bt.t(), false, Threading::Auto))
        });
        g.bench_function(BenchmarkId::new("matrixmultiply", name), |bench| {
            bench.iter(|| general_mat_mul(1.0, &a, &b, 0.0, &mut out))
        });
    }
    g.finish();
}

/// The fused attention's per-head products (`kernels::small::matmul`, one thread, operands in
/// cache) at the reference shapes: scores `Q·Kᵀ` `[100, 16] · [16, 112]`, and `P·V`-like
/// `[100, 100] · [100, 16]` with `A` read as stored and transposed (`dV = Pᵀ·dO`). Sizes pass
/// through `black_box` so the kernel is compiled as the attention op calls it.
fn small_matmul(c: &mut Criterion) {
    use closeup_autograd::kernels::fastmath::dispatch;
    use closeup_autograd::kernels::small::matmul;
    let mut g = c.benchmark_group("small_matmul");
    let a = mat(112, 112, 15).into_raw_vec_and_offset().0;
    let b = mat(112, 112, 16).into_raw_vec_and_offset().0;
    let mut out = vec![0.0_f32; 112 * 112];
    let (l, lp, dh, d) = black_box((100_usize, 112_usize, 16_usize, 64_usize));
    g.throughput(Throughput::Elements((2 * 100 * 112 * 16) as u64));
    g.bench_function("scores [100,16]x[16,112]", |bench| {
        bench.iter(|| {
            dispatch(
                #[inline(always)]
                || matmul::<false>(l, lp, dh, &a, d, &b, lp, &mut out, lp),
            )
        })
    });
    g.throughput(Throughput::Elements((2 * 100 * 100 * 16) as u64));
    g.bench_function("weighted sum [100,100]x[100,16]", |bench| {
        bench.iter(|| {
            dispatch(
                #[inline(always)]
                || matmul::<false>(l, dh, l, &a, lp, &b, d, &mut out, d),
            )
        })
    });
    g.bench_function("transposed [100,100]^T x[100,16]", |bench| {
        bench.iter(|| {
            dispatch(
                #[inline(always)]
                || matmul::<true>(l, dh, l, &a, lp, &b, d, &mut out, d),
            )
        })
    });
    g.finish();
}

/// The encoder's thin affine products (`x · Wᵀ + b`, `[25600, k] → n`): on AVX-512 CPUs
/// `affine` runs them on unpacked register blocks written once (`kernels/thin.rs`); the same
/// product with `x` handed over as a strided view (a column range of a wider array) falls back
/// to the `gemm` crate, with the bias written first — the path it replaced.
fn thin_products(c: &mut Criterion) {
    let mut g = c.benchmark_group("thin_products");
    g.sample_size(20);
    for (k, n, name) in [
        (64, 64, "projection 25600x64->64"),
        (64, 256, "FFN up 25600x64->256"),
        (256, 64, "FFN down 25600x256->64"),
    ] {
        let m = 25600;
        let wide = mat(m, k + 16, 12);
        let x = wide.slice(ndarray::s![.., ..k]).to_owned();
        let w = mat(n, k, 13);
        let b = mat(1, n, 14).into_shape_with_order(n).expect("n");
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(BenchmarkId::new("thin", name), |bench| {
            bench.iter(|| black_box(affine(x.view(), w.view(), Some(b.view()))))
        });
        g.bench_function(BenchmarkId::new("gemm (strided x)", name), |bench| {
            bench.iter(|| {
                black_box(affine(
                    wide.slice(ndarray::s![.., ..k]),
                    w.view(),
                    Some(b.view()),
                ))
            })
        });
    }
    g.finish();
}

/// Attention at batch 256, 4 heads, 100 tokens, head dim 16: scores Q·Kᵀ and the weighted sum
/// P·V as batched products over 1024 (batch × head) items.
fn attention(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    g.sample_size(20);
    let (items, l, dh) = (1024, 100, 16);
    let q = randn(&[items, l, dh], 1);
    let k = randn(&[items, l, dh], 2);
    let p = randn(&[items, l, l], 3);
    g.throughput(Throughput::Elements((2 * items * l * l * dh) as u64));
    g.bench_function("scores Q·Kᵀ 1024x100x16x100", |bench| {
        let tape = Tape::no_grad();
        let (q, k) = (tape.constant(q.clone()), tape.constant(k.clone()));
        bench.iter(|| black_box(q.matmul_t(k).id()))
    });
    g.bench_function("weighted sum P·V 1024x100x100x16", |bench| {
        let tape = Tape::no_grad();
        let (p, v) = (tape.constant(p.clone()), tape.constant(k.clone()));
        bench.iter(|| black_box(p.matmul(v).id()))
    });
    g.finish();
}

/// Fused softmax over attention rows and layer norm over token vectors, forward and
/// forward + backward.
fn fused(c: &mut Criterion) {
    let mut g = c.benchmark_group("fused");
    g.sample_size(20);
    let scores: Tensor = randn(&[256 * 4, 100, 100], 4);
    g.throughput(Throughput::Elements(scores.len() as u64));
    g.bench_function("softmax fwd [1024,100,100]", |bench| {
        let tape = Tape::no_grad();
        let s = tape.constant(scores.clone());
        bench.iter(|| black_box(s.softmax(2).id()))
    });
    g.bench_function("softmax fwd+bwd [1024,100,100]", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let s = tape.leaf(scores.clone());
            let y = s.softmax(2);
            black_box(
                tape.backward_with_seed(y, scores.clone())
                    .wrt(s)
                    .map(|t| t.len()),
            )
        })
    });
    let tokens: Tensor = randn(&[25600, 64], 5);
    let gamma = randn(&[64], 6);
    let beta = randn(&[64], 7);
    g.throughput(Throughput::Elements(tokens.len() as u64));
    g.bench_function("layer_norm fwd [25600,64]", |bench| {
        let tape = Tape::no_grad();
        let (x, ga, be) = (
            tape.constant(tokens.clone()),
            tape.constant(gamma.clone()),
            tape.constant(beta.clone()),
        );
        bench.iter(|| black_box(x.layer_norm(ga, be, 1e-5).id()))
    });
    g.bench_function("layer_norm fwd+bwd [25600,64]", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let x = tape.leaf(tokens.clone());
            let (ga, be) = (tape.leaf(gamma.clone()), tape.leaf(beta.clone()));
            let y = x.layer_norm(ga, be, 1e-5);
            black_box(
                tape.backward_with_seed(y, tokens.clone())
                    .wrt(x)
                    .map(|t| t.len()),
            )
        })
    });
    g.finish();
}

/// The transformer FFN's hidden layer at the reference shape (`[25600, 64] → 256`, GELU,
/// dropout 0.1), forward + backward: `linear_dropout` (one op) against `linear` then `dropout`
/// (the same values and gradients bit for bit).
fn linear_dropout(c: &mut Criterion) {
    use closeup_autograd::LinearAct;
    use rand::SeedableRng;
    let mut g = c.benchmark_group("linear_dropout");
    g.sample_size(10);
    let x: Tensor = randn(&[25600, 64], 8);
    let w: Tensor = randn(&[256, 64], 9);
    let b: Tensor = randn(&[256], 10);
    let seed: Tensor = randn(&[25600, 256], 11);
    g.throughput(Throughput::Elements(seed.len() as u64));
    for fused in [true, false] {
        let name = if fused {
            "fused fwd+bwd"
        } else {
            "linear then dropout fwd+bwd"
        };
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let (xv, wv, bv) = (
                    tape.leaf(x.clone()),
                    tape.leaf(w.clone()),
                    tape.leaf(b.clone()),
                );
                let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                let y = if fused {
                    xv.linear_dropout(wv, Some(bv), LinearAct::Gelu, 0.1, &mut rng)
                } else {
                    xv.linear(wv, Some(bv), LinearAct::Gelu)
                        .dropout(0.1, &mut rng)
                };
                black_box(
                    tape.backward_with_seed(y, seed.clone())
                        .wrt(xv)
                        .map(|t| t.len()),
                )
            })
        });
    }
    g.finish();
}

/// Dropout alone at the FFN's hidden shape (`[25600, 256]`, p = 0.1), forward + backward: the
/// mask's random bits for every element twice (the backward recomputes them) and two
/// multiplies. Throughput in elements.
fn dropout(c: &mut Criterion) {
    use rand::SeedableRng;
    let mut g = c.benchmark_group("dropout");
    g.sample_size(20);
    // As in the `closeup` binary: freed buffers stay mapped, so the timed part is not
    // dominated by page faults on fresh 26 MB allocations.
    closeup_autograd::kernels::alloc::retain_freed_memory();
    let x: Tensor = randn(&[25600, 256], 12);
    g.throughput(Throughput::Elements(x.len() as u64));
    g.bench_function("fwd+bwd [25600,256] p=0.1", |bench| {
        // The input and the seed gradient are copied outside the timed routine.
        bench.iter_batched(
            || (x.clone(), x.clone()),
            |(input, seed)| {
                let tape = Tape::new();
                let xv = tape.leaf(input);
                let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                let y = xv.dropout(0.1, &mut rng);
                black_box(tape.backward_with_seed(y, seed).wrt(xv).map(|t| t.len()))
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Multi-head self-attention of the reference encoder (batch 256, 100 tokens, 64 wide, 4 heads,
/// a key mask, dropout 0.1 on the weights), forward + backward: the fused op against the
/// composed path it replaces. Throughput in FLOP of the four per-head products of the forward
/// and the backward's four (`6 · 2·B·H·L²·d_h`).
fn multi_head_attention(c: &mut Criterion) {
    use rand::SeedableRng;
    let mut g = c.benchmark_group("multi_head_attention");
    g.sample_size(10);
    let (b, l, d, heads) = (256, 100, 64, 4);
    let xs: Vec<Tensor> = (0..3).map(|i| randn(&[b, l, d], 10 + i)).collect();
    let mask =
        ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[b, l]), |ix| ix[1] < 20 + ix[0] % 81);
    g.throughput(Throughput::Elements((6 * 2 * b * l * l * d) as u64));
    for fused in [true, false] {
        let name = if fused {
            "fused fwd+bwd"
        } else {
            "composed fwd+bwd"
        };
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let v: Vec<_> = xs.iter().map(|x| tape.leaf(x.clone())).collect();
                let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                let y = if fused {
                    v[0].multi_head_attention(v[1], v[2], heads, Some(&mask), 0.1, &mut rng)
                } else {
                    v[0].multi_head_attention_composed(
                        v[1],
                        v[2],
                        heads,
                        Some(&mask),
                        0.1,
                        &mut rng,
                    )
                };
                black_box(
                    tape.backward_with_seed(y, xs[0].clone())
                        .wrt(v[0])
                        .map(|t| t.len()),
                )
            })
        });
    }
    g.finish();
}

/// The vectorized transcendentals over 1 M elements (throughput in elements): `exp` is what
/// every softmax runs, GELU what the transformer's FFN runs.
fn transcendentals(c: &mut Criterion) {
    use closeup_autograd::kernels::fastmath::{exp_slice, gelu_slice};
    let mut g = c.benchmark_group("fastmath");
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| (i % 2000) as f32 * 0.01 - 10.0).collect();
    let mut y = vec![0.0_f32; n];
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("exp_slice 1M", |bench| {
        bench.iter(|| {
            exp_slice(black_box(&x), &mut y);
            black_box(y[0])
        })
    });
    g.bench_function("gelu_slice 1M", |bench| {
        bench.iter(|| {
            gelu_slice(black_box(&x), &mut y);
            black_box(y[0])
        })
    });
    g.finish();
}

/// The serving head's expert second layer, `[500, 256] · [256, 256] + b` on one thread (a
/// row block of `SplitHead::forward`), on ReLU-like inputs of several densities: the sparse
/// product over the nonzero inputs against the dense `gemm`. Throughput counts the *dense*
/// product's FLOPs at every density, so the rates compare directly as time.
fn sparse_relu_input(c: &mut Criterion) {
    let mut g = c.benchmark_group("sparse");
    let (rows, inputs, out) = (500, 256, 256);
    let w = mat(out, inputs, 1);
    let ws = SparseWeight::new(w.view());
    let b = mat(1, out, 2).remove_axis(ndarray::Axis(0));
    let mut dst = Array2::<f32>::zeros((rows, out));
    g.throughput(Throughput::Elements((2 * rows * inputs * out) as u64));
    g.bench_function("dense gemm 500x256x256", |bench| {
        let x = mat(rows, inputs, 3);
        bench.iter(|| {
            affine_into_with(
                dst.view_mut(),
                x.view(),
                w.view(),
                Some(b.view()),
                Threading::Serial,
            )
        })
    });
    // Nonzero where a standard normal draw is below the density's quantile, so the zeros
    // are scattered like a ReLU's.
    let u = mat(rows, inputs, 4);
    for (density, quantile) in [
        (0.2, -0.8416),
        (0.35, -0.3853),
        (0.5, 0.0),
        (0.65, 0.3853),
        (0.8, 0.8416),
    ] {
        let x =
            mat(rows, inputs, 5).mapv(f32::abs) * u.mapv(|z| if z < quantile { 1.0 } else { 0.0 });
        g.bench_function(
            BenchmarkId::new("sparse 500x256x256", format!("density {density}")),
            |bench| {
                bench.iter(|| sparse_affine_into(dst.view_mut(), x.view(), &ws, Some(b.view())))
            },
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    sparse_relu_input,
    linear_dropout,
    dropout,
    matmul,
    thin_products,
    small_matmul,
    attention,
    fused,
    multi_head_attention,
    transcendentals
);
criterion_main!(benches);
