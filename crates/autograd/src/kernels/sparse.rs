//! Affine products whose input has many exact zeros (e.g. a ReLU output): each output row is
//! the bias plus the sum, over the row's **nonzero** inputs only, of `x[r, k] · Wᵀ[k, :]`.
//!
//! Skipping an exact zero drops a term `0 · w = ±0` from the sum, so for finite weights the
//! result is the dense product's up to summation order (the dense `gemm` sums in its own
//! blocked order; this kernel sums the bias first, then the nonzero terms in increasing `k`).
//! The order is fixed per element, so the result does not depend on how the rows are split
//! between calls or threads.
//!
//! The layer's weight is prepared once ([`SparseWeight`]): `Wᵀ` (`[in, out]`) cut into
//! 64-byte-aligned panels of 128 output columns. The rows are taken 32 at a time: each row's
//! nonzero inputs are listed (positions and values, per chunk of 64 inputs, found through a
//! bit mask rather than a branch per input), then for each panel and each 64-input chunk —
//! a 32 KB weight tile that the group's rows reuse from L1/L2 — each row's 128 output columns
//! are accumulated in 8 AVX-512 registers (16 AVX2 ones in two passes), one broadcast
//! multiply-add per nonzero input and vector. The first chunk starts from the bias, the last
//! writes straight into `dst` (rows with a unit column stride).
//!
//! Per nonzero input that is one fused multiply-add per output column, as in the dense
//! product — the saving is the zeros — but with one weight load per multiply-add where `gemm`
//! reuses weights from registers, so the sparse product only wins below a density measured on
//! this machine ([`SPARSE_MAX_DENSITY`]); [`relu_affine_into`] decides per call from the data.
//! At the serving head's shape (`[500, 256] · [256, 256]`, one thread) it takes ~0.5× the
//! dense product's time at 20 % nonzeros, ~0.85× at 50 %, ~1.0× at 65 %, ~1.2× at 80 %
//! (`cargo bench -p closeup-autograd --bench kernels -- sparse`).

use super::gemm::{Threading, affine_into_with};
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

/// [`relu_affine_into`] runs the sparse product when at most this fraction of the input's
/// entries are nonzero, the dense `gemm` above it. Break-even measured at the serving head's
/// shape (`[500, 256] · [256, 256]`, one thread; see `docs/performance.md`).
pub const SPARSE_MAX_DENSITY: f64 = 0.6;

/// Output columns per panel of a [`SparseWeight`] (8 AVX-512 vectors).
const NC: usize = 128;
/// Inputs per chunk of a panel: the rows of a group pass over one `KC × NC` weight tile
/// (32 KB) at a time. Measured: 64 beat 32 and 16 (larger chunks mean fewer loads and stores
/// of a row's partial sums).
const KC: usize = 64;
const _: () = assert!(
    KC <= 64,
    "a chunk's nonzeros are found through a u64 bit mask"
);
/// Rows whose nonzero lists are gathered at once and that share each weight tile (16–64
/// measured within noise of each other; 8 slower).
const ROW_GROUP: usize = 32;

/// A layer's weight `W` (`[out, in]`) prepared for [`sparse_affine_into`]: `Wᵀ` cut into
/// panels of 128 output columns (the last one zero-padded), each panel `[in, 128]`
/// contiguous, so that a chunk of 64 inputs of a panel is one contiguous 32 KB tile.
#[derive(Debug, Clone)]
pub struct SparseWeight {
    panels: Aligned,
    inputs: usize,
    outputs: usize,
}

impl SparseWeight {
    /// Packs `w` (`[out, in]`, any strides).
    pub fn new(w: ArrayView2<'_, f32>) -> Self {
        let (outputs, inputs) = w.dim();
        let tiles = outputs.div_ceil(NC);
        let mut panels = Aligned::zeros(tiles * inputs * NC);
        let p = panels.as_mut_slice();
        for ((o, k), &v) in w.indexed_iter() {
            p[(o / NC * inputs + k) * NC + o % NC] = v;
        }
        SparseWeight {
            panels,
            inputs,
            outputs,
        }
    }

    /// The layer's input width.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The layer's output width.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
}

/// A zeroed `f32` buffer whose first element is 64-byte aligned (a cache line): the
/// kernel's vector loads and stores then never straddle two lines.
#[derive(Debug, Clone)]
struct Aligned {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl Aligned {
    const LINE: usize = 64 / size_of::<f32>();

    fn zeros(len: usize) -> Self {
        let buf = vec![0.0_f32; len + Self::LINE];
        let start = buf.as_ptr().align_offset(64).min(Self::LINE);
        Aligned { buf, start, len }
    }

    fn as_slice(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// The number of entries of `x` that are not exactly zero (NaN counts as nonzero).
pub fn count_nonzero(x: ArrayView2<'_, f32>) -> usize {
    let count = |s: &[f32]| {
        // Fixed-width lane counts, which vectorize.
        let mut lanes = [0_u32; 16];
        let mut chunks = s.chunks_exact(16);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += u32::from(v != 0.0);
            }
        }
        let tail = chunks.remainder().iter().filter(|&&v| v != 0.0).count();
        lanes.iter().map(|&l| l as usize).sum::<usize>() + tail
    };
    x.rows()
        .into_iter()
        .map(|row| match row.as_slice() {
            Some(s) => count(s),
            None => row.iter().filter(|&&v| v != 0.0).count(),
        })
        .sum()
}

/// `dst = x · wᵀ + b` choosing the product from the data: the sparse kernel
/// ([`sparse_affine_into`] with `ws`, `w` prepared) when at most [`SPARSE_MAX_DENSITY`] of
/// `x`'s entries are nonzero, else the dense `gemm` ([`affine_into_with`] on `w`, with
/// `threading`). For inputs that are ReLU outputs. Returns whether the sparse kernel ran.
///
/// # Panics
/// As [`sparse_affine_into`], and if `ws` is not `w`'s shape.
pub fn relu_affine_into(
    dst: ArrayViewMut2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    ws: &SparseWeight,
    b: Option<ArrayView1<'_, f32>>,
    threading: Threading,
) -> bool {
    assert_eq!(
        w.dim(),
        (ws.outputs, ws.inputs),
        "relu_affine_into: weight shape {:?} vs prepared weight [{}, {}]",
        w.shape(),
        ws.outputs,
        ws.inputs
    );
    let sparse = (count_nonzero(x) as f64) <= SPARSE_MAX_DENSITY * x.len() as f64;
    if sparse {
        sparse_affine_into(dst, x, ws, b);
    } else {
        affine_into_with(dst, x, w, b, threading);
    }
    sparse
}

/// `dst = x · wᵀ + b` (`b` broadcast over the rows, zero when `None`), summing only the
/// nonzero entries of each row of `x`, on the calling thread; `w` prepared as a
/// [`SparseWeight`]. `x` and `dst` may have any strides.
///
/// # Panics
/// If the shapes are not `x: [rows, in]`, `w: [out, in]`, `b: [out]`, `dst: [rows, out]`.
pub fn sparse_affine_into(
    dst: ArrayViewMut2<'_, f32>,
    x: ArrayView2<'_, f32>,
    w: &SparseWeight,
    b: Option<ArrayView1<'_, f32>>,
) {
    let (rows, inputs) = x.dim();
    let out = w.outputs;
    assert!(
        w.inputs == inputs && dst.dim() == (rows, out) && b.is_none_or(|b| b.len() == out),
        "sparse_affine_into: shapes x {:?} · w [{out}, {}]ᵀ + b {:?} → dst {:?} do not match",
        x.shape(),
        w.inputs,
        b.map(|b| b.len()),
        dst.shape()
    );
    // The bias padded to whole panels.
    let mut bias = vec![0.0; out.div_ceil(NC) * NC];
    if let Some(b) = b {
        for (o, &v) in bias.iter_mut().zip(b) {
            *o = v;
        }
    }
    pulp::Arch::new().dispatch(Product { dst, x, w, bias });
}

struct Product<'a> {
    dst: ArrayViewMut2<'a, f32>,
    x: ArrayView2<'a, f32>,
    w: &'a SparseWeight,
    bias: Vec<f32>,
}

impl pulp::WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Product {
            mut dst,
            x,
            w,
            bias,
        } = self;
        let (inputs, out) = (w.inputs, w.outputs);
        let width = bias.len(); // padded
        let chunks = inputs.div_ceil(KC);
        let group = ROW_GROUP.min(x.nrows()).max(1);
        // Per row of a group: its nonzero inputs (position, value) in increasing order, with
        // `starts[r · (chunks + 1) + j]` the first of chunk `j`.
        let mut idx = vec![0_u32; group * inputs];
        let mut val = vec![0.0_f32; group * inputs];
        let mut starts = vec![0_usize; group * (chunks + 1)];
        let mut sums = Aligned::zeros(group * width);
        debug_assert_eq!(
            NC % (TILE * lanes::<S>()),
            0,
            "lanes do not divide the panel width"
        );
        let sums = sums.as_mut_slice();
        let mut row = vec![0.0_f32; inputs];
        for (xg, mut dg) in x
            .axis_chunks_iter(ndarray::Axis(0), group)
            .zip(dst.axis_chunks_iter_mut(ndarray::Axis(0), group))
        {
            let g = xg.nrows();
            let mut n = 0;
            for (r, xr) in xg.rows().into_iter().enumerate() {
                let xr = match xr.as_slice() {
                    Some(xr) => xr,
                    None => {
                        row.iter_mut().zip(xr).for_each(|(o, &v)| *o = v);
                        &row[..]
                    }
                };
                let st = &mut starts[r * (chunks + 1)..(r + 1) * (chunks + 1)];
                for (j, xs) in xr.chunks(KC).enumerate() {
                    st[j] = n;
                    // A bit per nonzero input, then one step per set bit (a ReLU output's
                    // zeros are unpredictable: no branch per input).
                    let mut bits: u64 = 0;
                    for (i, &v) in xs.iter().enumerate() {
                        bits |= u64::from(v != 0.0) << i;
                    }
                    while bits != 0 {
                        let i = bits.trailing_zeros() as usize;
                        idx[n] = (j * KC + i) as u32;
                        val[n] = xs[i];
                        n += 1;
                        bits &= bits - 1;
                    }
                }
                st[chunks] = n;
            }
            // Whole vector tiles of a row with a unit column stride are written straight
            // into `dst` after the last chunk; the rest goes through `sums`.
            let step = TILE * lanes::<S>();
            let direct = if dg.ncols() <= 1 || dg.strides()[1] == 1 {
                out / step * step
            } else {
                0
            };
            for (t, panel) in w.panels.as_slice().chunks_exact(inputs * NC).enumerate() {
                for j in 0..chunks {
                    let last = j + 1 == chunks;
                    for r in 0..g {
                        let st = &starts[r * (chunks + 1)..];
                        let (from, to) = (st[j], st[j + 1]);
                        let (ix, vx) = (&idx[from..to], &val[from..to]);
                        let sums_r = &mut sums[r * width..(r + 1) * width];
                        for c0 in (0..NC).step_by(step) {
                            let col = t * NC + c0;
                            let init = if j == 0 { &bias[..] } else { &sums_r[..] };
                            let regs =
                                accumulate::<S>(simd, &init[col..col + step], ix, vx, &panel[c0..]);
                            if last && col + step <= direct {
                                let mut dr = dg.row_mut(r);
                                let d = dr.as_slice_mut().expect("unit column stride");
                                store::<S>(&mut d[col..col + step], regs);
                            } else {
                                store::<S>(&mut sums_r[col..col + step], regs);
                            }
                        }
                    }
                }
            }
            if direct < out {
                for (r, mut dr) in dg.rows_mut().into_iter().enumerate() {
                    dr.slice_mut(ndarray::s![direct..])
                        .assign(&ArrayView1::from(
                            &sums[r * width + direct..r * width + out],
                        ));
                }
            }
        }
    }
}

/// Vectors held in registers per pass over a nonzero list.
const TILE: usize = 8;

#[inline(always)]
fn lanes<S: pulp::Simd>() -> usize {
    size_of::<S::f32s>() / size_of::<f32>()
}

/// `init + Σ val[j] · panel[idx[j] · NC ..][..TILE · lanes]` in [`TILE`] vector registers
/// (`panel` starts at the tile's first column; its rows are [`NC`] apart).
#[inline(always)]
fn accumulate<S: pulp::Simd>(
    simd: S,
    init: &[f32],
    idx: &[u32],
    val: &[f32],
    panel: &[f32],
) -> [S::f32s; TILE] {
    let step = TILE * lanes::<S>();
    let (a, _) = S::as_simd_f32s(&init[..step]);
    let mut regs: [S::f32s; TILE] = core::array::from_fn(|i| a[i]);
    for (&k, &v) in idx.iter().zip(val) {
        let x = simd.splat_f32s(v);
        let start = k as usize * NC;
        let (wv, _) = S::as_simd_f32s(&panel[start..start + step]);
        for (r, &wv) in regs.iter_mut().zip(wv) {
            *r = simd.mul_add_e_f32s(x, wv, *r);
        }
    }
    regs
}

#[inline(always)]
fn store<S: pulp::Simd>(d: &mut [f32], regs: [S::f32s; TILE]) {
    let (d, _) = S::as_mut_simd_f32s(d);
    for (d, r) in d.iter_mut().zip(regs) {
        *d = r;
    }
}

#[cfg(test)]
#[path = "sparse_tests.rs"]
mod tests;
