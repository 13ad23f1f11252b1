//! The convolution's gradients on NHWC slices whose sizes match a [`ConvGeometry`]
//! (checked by the callers in `grad/mod.rs` and the layers): a general safe path for every
//! geometry and padding mode, the pointwise 1×1 case as GEMMs through
//! [`PackedGemm`](crate::kernels::PackedGemm).

use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{ConvGeometry, PaddingMode};
use crate::kernels::PackedGemm;
use crate::ops::Activation;

/// For each input coordinate along one axis, the `(output coordinate, kernel tap)` pairs
/// whose padded read maps to it under the padding mode: the transpose of the forward's
/// index map, padding copies included (a replicated edge pixel collects every tap that
/// read a copy of it). Stored as compressed rows, pairs in increasing `(o, k)` order.
struct SourceTaps {
    /// `starts[s]..starts[s + 1]` index `pairs` for input coordinate `s`.
    starts: Vec<usize>,
    pairs: Vec<(usize, usize)>,
}

impl SourceTaps {
    fn new(
        n_in: usize,
        n_out: usize,
        kernel: usize,
        mode: PaddingMode,
        coord: impl Fn(usize, usize) -> isize,
    ) -> Self {
        let mut all: Vec<(usize, usize, usize)> = Vec::new();
        for o in 0..n_out {
            for k in 0..kernel {
                if let Some(s) = mode.source_index(coord(o, k), n_in) {
                    all.push((s, o, k));
                }
            }
        }
        // Stable: within one source the pairs keep their (o, k) order.
        all.sort_by_key(|&(s, _, _)| s);
        let mut starts = vec![0usize; n_in + 1];
        for &(s, _, _) in &all {
            starts[s + 1] += 1;
        }
        for s in 0..n_in {
            starts[s + 1] += starts[s];
        }
        SourceTaps {
            starts,
            pairs: all.into_iter().map(|(_, o, k)| (o, k)).collect(),
        }
    }

    fn of(&self, s: usize) -> &[(usize, usize)] {
        &self.pairs[self.starts[s]..self.starts[s + 1]]
    }
}

/// Checks a slice's length against the geometry (the public functions build the buffers
/// from the same geometry; this guards the crate-internal callers).
fn check_len(what: &'static str, len: usize, expected: usize) -> Result<()> {
    if len != expected {
        return Err(Error::shape(
            what,
            format!("{expected} elements"),
            format!("{len} elements"),
        ));
    }
    Ok(())
}

/// `dx = ∂L/∂x` (NHWC, fully overwritten) from `dy` (NHWC) and the PyTorch-order
/// `weight`, split by input rows over `exec`'s threads.
pub(crate) fn input_nhwc(
    g: &ConvGeometry,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    exec: &Executor,
) -> Result<()> {
    let [n, cin, in_h, in_w] = g.input_dims();
    let [_, cout, out_h, out_w] = g.output_dims();
    check_len(
        "conv2d weight",
        weight.len(),
        cout * g.in_channels_per_group() * g.kernel_h() * g.kernel_w(),
    )?;
    check_len("conv2d grad_output", dy.len(), n * out_h * out_w * cout)?;
    check_len("conv2d input gradient", dx.len(), n * in_h * in_w * cin)?;
    let tasks = exec.tasks_for(crate::cost::conv_macs(g));
    if g.is_pointwise() {
        return pointwise_input(g, weight, dy, dx, exec, tasks);
    }
    let mode = g.padding_mode();
    let rows = SourceTaps::new(in_h, out_h, g.kernel_h(), mode, |o, k| g.input_row(o, k));
    let cols = SourceTaps::new(in_w, out_w, g.kernel_w(), mode, |o, k| g.input_col(o, k));
    let packed = pack_taps_major(g, weight);
    let row_len = in_w * cin;
    exec.try_for_each_rows(dx, row_len, tasks, |first, chunk| {
        for (r, dx_row) in chunk.chunks_exact_mut(row_len).enumerate() {
            let (img, iy) = ((first + r) / in_h, (first + r) % in_h);
            input_row(g, &packed, dy, &rows, &cols, img, iy, dx_row);
        }
        Ok(())
    })
}

/// The weight as `[kH, kW, C_out, C_in/groups]`: for one tap, each output channel's row
/// of input-channel weights is contiguous.
fn pack_taps_major(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let [cout, cin_g, kh, kw] = g.weight_dims();
    let mut packed = vec![0.0f32; weight.len()];
    for co in 0..cout {
        for ci in 0..cin_g {
            for i in 0..kh {
                for j in 0..kw {
                    packed[((i * kw + j) * cout + co) * cin_g + ci] =
                        weight[((co * cin_g + ci) * kh + i) * kw + j];
                }
            }
        }
    }
    packed
}

/// One input row of `dx`: every pixel sums, over the taps that read it (padding copies
/// included) in a fixed order, `dy[pixel's output] · w[tap]` over the output channels.
fn input_row(
    g: &ConvGeometry,
    packed: &[f32],
    dy: &[f32],
    rows: &SourceTaps,
    cols: &SourceTaps,
    img: usize,
    iy: usize,
    dx_row: &mut [f32],
) {
    let (cin, cout) = (g.in_channels(), g.out_channels());
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let kw = g.kernel_w();
    let (out_h, out_w) = (g.out_h(), g.out_w());
    for (ix, acc) in dx_row.chunks_exact_mut(cin).enumerate() {
        acc.fill(0.0);
        for &(oy, i) in rows.of(iy) {
            for &(ox, j) in cols.of(ix) {
                let d = &dy[((img * out_h + oy) * out_w + ox) * cout..][..cout];
                let w = &packed[(i * kw + j) * cout * cin_g..][..cout * cin_g];
                if cin_g == 1 {
                    // Depthwise (any multiplier): input channel c collects output
                    // channels c·m .. c·m + m; vectorised over channels.
                    if cout_g == 1 {
                        for ((a, &dv), &wv) in acc.iter_mut().zip(d).zip(w) {
                            *a += dv * wv;
                        }
                    } else {
                        let dm = d.chunks_exact(cout_g);
                        for ((a, dc), wc) in acc.iter_mut().zip(dm).zip(w.chunks_exact(cout_g)) {
                            for (&dv, &wv) in dc.iter().zip(wc) {
                                *a += dv * wv;
                            }
                        }
                    }
                } else {
                    for (co, (&dv, w_row)) in d.iter().zip(w.chunks_exact(cin_g)).enumerate() {
                        let group = co / cout_g;
                        let a = &mut acc[group * cin_g..][..cin_g];
                        for (a, &wv) in a.iter_mut().zip(w_row) {
                            *a += dv * wv;
                        }
                    }
                }
            }
        }
    }
}

/// `dw = ∂L/∂w` (PyTorch order `[C_out, C_in/groups, kH, kW]`, fully overwritten) from `x`
/// and `dy` (NHWC), split by output channels over `exec`'s threads.
pub(crate) fn weight_nhwc(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    exec: &Executor,
) -> Result<()> {
    let [n, cin, in_h, in_w] = g.input_dims();
    let [_, cout, out_h, out_w] = g.output_dims();
    let row_len = g.in_channels_per_group() * g.kernel_h() * g.kernel_w();
    check_len("conv2d input", x.len(), n * in_h * in_w * cin)?;
    check_len("conv2d grad_output", dy.len(), n * out_h * out_w * cout)?;
    check_len("conv2d weight gradient", dw.len(), cout * row_len)?;
    let tasks = exec.tasks_for(crate::cost::conv_macs(g));
    if g.is_pointwise() {
        return pointwise_weight(g, x, dy, dw, exec, tasks);
    }
    exec.try_for_each_rows(dw, row_len, tasks, |first, chunk| {
        weight_channels(g, x, dy, first..first + chunk.len() / row_len, chunk);
        Ok(())
    })
}

/// The weight gradient of output channels `co` into `out` (their rows of the PyTorch-order
/// gradient). Each element sums over images, output rows and columns in that order; one
/// output row's products are summed alone, then added to the total.
fn weight_channels(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    co: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let (cin, cout) = (g.in_channels(), g.out_channels());
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let (kh, kw) = (g.kernel_h(), g.kernel_w());
    let (in_h, in_w, out_h, out_w) = (g.in_h(), g.in_w(), g.out_h(), g.out_w());
    let mode = g.padding_mode();
    let nco = co.len();
    // [kH, kW, nco, C_in/groups]: one tap's rows are contiguous.
    let mut total = vec![0.0f32; kh * kw * nco * cin_g];
    let mut part = vec![0.0f32; total.len()];
    for img in 0..g.batch() {
        for oy in 0..out_h {
            part.fill(0.0);
            for i in 0..kh {
                let Some(iy) = mode.source_index(g.input_row(oy, i), in_h) else {
                    continue;
                };
                let x_row = &x[(img * in_h + iy) * in_w * cin..][..in_w * cin];
                for ox in 0..out_w {
                    let d = &dy[((img * out_h + oy) * out_w + ox) * cout..][co.clone()];
                    for j in 0..kw {
                        let Some(ix) = mode.source_index(g.input_col(ox, j), in_w) else {
                            continue;
                        };
                        let px = &x_row[ix * cin..][..cin];
                        let p = &mut part[(i * kw + j) * nco * cin_g..][..nco * cin_g];
                        if cin_g == 1 && cout_g == 1 {
                            // Depthwise, multiplier 1: channel by channel, vectorised.
                            for ((a, &dv), &xv) in p.iter_mut().zip(d).zip(&px[co.clone()]) {
                                *a += dv * xv;
                            }
                        } else {
                            for (k, (p_row, &dv)) in p.chunks_exact_mut(cin_g).zip(d).enumerate() {
                                let group = (co.start + k) / cout_g;
                                let xs = &px[group * cin_g..][..cin_g];
                                for (a, &xv) in p_row.iter_mut().zip(xs) {
                                    *a += dv * xv;
                                }
                            }
                        }
                    }
                }
            }
            for (t, &p) in total.iter_mut().zip(&part) {
                *t += p;
            }
        }
    }
    for k in 0..nco {
        for ci in 0..cin_g {
            for i in 0..kh {
                for j in 0..kw {
                    out[((k * cin_g + ci) * kh + i) * kw + j] =
                        total[((i * kw + j) * nco + k) * cin_g + ci];
                }
            }
        }
    }
}

/// `∂L/∂b[c] = Σ dy[…, c]` over the pixels of an NHWC `dy` with `channels` channels,
/// summed in f64 in pixel order and rounded once.
pub(crate) fn bias_nhwc(dy: &[f32], channels: usize) -> Result<Vec<f32>> {
    let mut acc = Vec::new();
    acc.try_reserve_exact(channels)
        .map_err(|_| Error::Allocation {
            what: "conv2d bias gradient",
            bytes: channels.saturating_mul(8),
        })?;
    acc.resize(channels, 0.0f64);
    if channels > 0 {
        for px in dy.chunks_exact(channels) {
            for (a, &v) in acc.iter_mut().zip(px) {
                *a += v as f64;
            }
        }
    }
    Ok(acc.into_iter().map(|v| v as f32).collect())
}

/// Pointwise `dx[M, C_in] = dy[M, C_out] · W` (a GEMM over a packed `Wᵀ`: the forward's
/// B is `W` read as `[C_in, C_out]`, the backward's is `W` read as `[C_out, C_in]`). The
/// GEMM computes each element by the same operations for every split: thread-count
/// independent.
fn pointwise_input(
    g: &ConvGeometry,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    exec: &Executor,
    tasks: usize,
) -> Result<()> {
    let (cin, cout) = (g.in_channels(), g.out_channels());
    let m = g.batch() * g.out_h() * g.out_w();
    let wt = PackedGemm::from_fn(cout, cin, None, |co, ci| weight[co * cin + ci])?;
    wt.run_parallel(exec, tasks, dy, cout, m, dx, cin, Activation::None)
}

/// Pixels per block of the pointwise weight gradient: each block's product is one GEMM
/// (one operand transposed and the other packed into buffers of this many rows), and the
/// blocks' products are added in order, so the rounding error grows with `BLOCK + M/BLOCK`
/// terms rather than `M`.
const POINTWISE_BLOCK: usize = 4096;

/// Pointwise `dw[C_out, C_in] = Σ_m dy[m, :]ᵀ · x[m, :]`, one GEMM per block of pixels, the
/// blocks' products added in block order. The operand with fewer channels is transposed
/// into the GEMM's A (its rows are the GEMM's M), the other packed as B (its channels fill
/// the 32-column panels); when that is `x`'s the GEMM yields `dwᵀ`, transposed at the end.
///
/// Threads take whole blocks, a wave of one block per thread at a time, each block's
/// product on one thread into its own buffer; the wave's products are then added to the
/// total in block order. Block boundaries and the order of the sum do not depend on the
/// thread count, so neither do the bits.
fn pointwise_weight(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    exec: &Executor,
    tasks: usize,
) -> Result<()> {
    let (cin, cout) = (g.in_channels(), g.out_channels());
    let m = g.batch() * g.out_h() * g.out_w();
    // C[a_ch, b_ch] = Σ_m a[m, :]ᵀ · b[m, :].
    let transposed = cin < cout;
    let ((a, a_ch), (b, b_ch)) = if transposed {
        ((x, cin), (dy, cout))
    } else {
        ((dy, cout), (x, cin))
    };
    let blocks = m.div_ceil(POINTWISE_BLOCK);
    let wave = tasks.clamp(1, blocks);
    let size = a_ch * b_ch;
    let mut total = vec![0.0f32; size];
    let mut partials = vec![0.0f32; wave * size];
    let isa = exec.tier();
    for first in (0..blocks).step_by(wave) {
        let count = wave.min(blocks - first);
        let partials = &mut partials[..count * size];
        exec.try_for_each_rows(partials, size, count, |k0, chunk| {
            let mut at = vec![0.0f32; a_ch * POINTWISE_BLOCK];
            for (k, part) in chunk.chunks_exact_mut(size).enumerate() {
                let m0 = (first + k0 + k) * POINTWISE_BLOCK;
                let rows = POINTWISE_BLOCK.min(m - m0);
                let at = &mut at[..rows * a_ch];
                transpose(&a[m0 * a_ch..][..rows * a_ch], rows, a_ch, at);
                let bb = PackedGemm::from_rows(&b[m0 * b_ch..][..rows * b_ch], rows, b_ch, b_ch)?;
                bb.run(isa, at, rows, a_ch, part, b_ch, Activation::None)?;
            }
            Ok(())
        })?;
        for part in partials.chunks_exact(size) {
            for (t, &p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
    }
    if transposed {
        transpose(&total, cin, cout, dw);
    } else {
        dw.copy_from_slice(&total);
    }
    Ok(())
}

/// `dst[c·rows + r] = src[r·cols + c]`, in 16×16 tiles (both sides touch whole cache
/// lines).
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}
