//! The convolution's gradients on NHWC slices whose sizes match a [`ConvGeometry`]
//! (checked by the callers in `grad/mod.rs` and the layers): a general safe path for every
//! geometry and padding mode; the pointwise 1×1 input gradient as a GEMM through
//! [`PackedGemm`](crate::kernels::PackedGemm), its weight gradient read in place from the
//! activations by `kernels::dwgrad::pointwise_weight_block` (the same bits as that GEMM
//! over a transposed and a packed copy).

use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{ConvGeometry, PaddingMode};
use crate::kernels::{dwgrad, PackedGemm};
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
    if dwgrad::applies(g) {
        return depthwise_input(g, weight, dy, dx, exec, tasks);
    }
    if g.in_channels_per_group() >= DENSE_MIN_CHANNELS {
        return dense_input(g, weight, dy, dx, exec, tasks);
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

/// Depthwise (multiplier 1, zero padding) input gradient on the SIMD kernel
/// (`kernels::dwgrad`), split by input rows: each element is written by one thread, by
/// the same operations whatever the split.
fn depthwise_input(
    g: &ConvGeometry,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    exec: &Executor,
    tasks: usize,
) -> Result<()> {
    let row_len = g.in_w() * g.in_channels();
    if dx.is_empty() || row_len == 0 {
        return Ok(());
    }
    let packed = dwgrad::PackedTaps::new(g, weight)?;
    let isa = exec.tier();
    exec.try_for_each_rows(dx, row_len, tasks, |first, chunk| {
        dwgrad::input_rows(
            isa,
            g,
            &packed,
            dy,
            first..first + chunk.len() / row_len,
            chunk,
        )
    })
}

/// Most chunks of output rows of the depthwise weight gradient: each chunk's sum is formed
/// by one thread (its rows in order, each row's sum formed alone and added), then the
/// chunks' sums are added in chunk order. The chunks depend on the geometry only (one per
/// [`DEPTHWISE_CHUNK_MACS`], at most this many, at most one per row, as equal as
/// possible), so the bits do not depend on the thread count; 24 splits evenly over 1, 2,
/// 3, 4, 6 and 8 threads.
const DEPTHWISE_WEIGHT_CHUNKS: usize = 24;

/// Multiply-accumulates per depthwise weight-gradient chunk (below 24 chunks): small
/// layers do not pay 24 partial sums of `kH·kW·C` each (C = 960 at 7×7: 830 KB).
const DEPTHWISE_CHUNK_MACS: u64 = 1 << 20;

/// Depthwise (multiplier 1, zero padding) weight gradient on the SIMD kernel
/// (`kernels::dwgrad`), in fixed chunks of output rows (see [`DEPTHWISE_WEIGHT_CHUNKS`]).
fn depthwise_weight(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    exec: &Executor,
    tasks: usize,
) -> Result<()> {
    let total_rows = g.batch() * g.out_h();
    let by_work = (crate::cost::conv_macs(g) / DEPTHWISE_CHUNK_MACS).max(1);
    let chunks = total_rows
        .min(DEPTHWISE_WEIGHT_CHUNKS)
        .min(usize::try_from(by_work).unwrap_or(usize::MAX))
        .max(1);
    let len = dwgrad::accumulator_len(g);
    let mut partial = Vec::new();
    partial
        .try_reserve_exact(chunks * len)
        .map_err(|_| Error::Allocation {
            what: "depthwise weight-gradient partial sums",
            bytes: chunks * len * 4,
        })?;
    partial.resize(chunks * len, 0.0f32);
    let isa = exec.tier();
    exec.try_for_each_rows(&mut partial, len, tasks.min(chunks), |first, part| {
        for (k, acc) in part.chunks_exact_mut(len).enumerate() {
            let ci = first + k;
            let rows = ci * total_rows / chunks..(ci + 1) * total_rows / chunks;
            dwgrad::weight_rows(isa, g, x, dy, rows, acc)?;
        }
        Ok(())
    })?;
    let (c, taps) = (g.in_channels(), g.kernel_h() * g.kernel_w());
    let cp = dwgrad::padded_channels(c);
    let (total, rest) = partial.split_at_mut(len);
    for part in rest.chunks_exact(len) {
        for (t, &p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    for ch in 0..c {
        for t in 0..taps {
            dw[ch * taps + t] = total[t * cp + ch];
        }
    }
    Ok(())
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
    if dwgrad::applies(g) {
        return depthwise_weight(g, x, dy, dw, exec, tasks);
    }
    if g.in_channels_per_group() >= DENSE_MIN_CHANNELS {
        return dense_weight(g, x, dy, dw, exec, tasks);
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
                        } else if cin_g == 1 {
                            // One input channel per group (a 1-channel stem, depthwise
                            // with a multiplier): each run of output channels of one
                            // group scales that group's input value, vectorised; the same
                            // products and sums as the loop below.
                            let mut k = 0;
                            while k < nco {
                                let group = (co.start + k) / cout_g;
                                let end = ((group + 1) * cout_g - co.start).min(nco);
                                let xv = px[group];
                                for (a, &dv) in p[k..end].iter_mut().zip(&d[k..end]) {
                                    *a += dv * xv;
                                }
                                k = end;
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

/// Pointwise `dw[C_out, C_in] = Σ_m dy[m, :]ᵀ · x[m, :]`, one product per block of
/// pixels, the blocks' products added in block order. The operand with fewer channels is
/// the product's A (its channels are the rows of `C`), the other its B (its channels the
/// columns); when that is `x`'s the product is `dwᵀ`, transposed at the end. Each block's
/// product is read in place from the NHWC activations
/// ([`dwgrad::pointwise_weight_block`]: no transposed copy of A, no packed copy of B) by
/// the same per-element operations as a [`PackedGemm`] over a transposed A and a packed B.
///
/// Threads take whole blocks, a wave of one block per thread at a time, each block's
/// product on one thread into its own buffer; the wave's products are then added to the
/// total in block order. With fewer blocks than threads the blocks go one after another,
/// each product's rows split over the threads. Block boundaries and the order of the sum
/// do not depend on the thread count, so neither do the bits.
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
    let size = a_ch * b_ch;
    let mut total = vec![0.0f32; size];
    let isa = exec.tier();
    let block = |blk: usize| {
        let m0 = blk * POINTWISE_BLOCK;
        let rows = POINTWISE_BLOCK.min(m - m0);
        (
            rows,
            &a[m0 * a_ch..][..rows * a_ch],
            &b[m0 * b_ch..][..rows * b_ch],
        )
    };
    if blocks < tasks {
        // Fewer blocks than threads (small batches and feature maps): the blocks one
        // after another, each product's rows of C split over the threads (each element
        // computed by the same operations for every split).
        let mut part = vec![0.0f32; size];
        for blk in 0..blocks {
            let (rows, ab, bb) = block(blk);
            exec.try_for_each_rows(&mut part, b_ch, tasks, |i0, chunk| {
                let i1 = i0 + chunk.len() / b_ch;
                dwgrad::pointwise_weight_block(isa, ab, a_ch, bb, b_ch, rows, i0..i1, chunk)
            })?;
            for (t, &p) in total.iter_mut().zip(&part) {
                *t += p;
            }
        }
        finish_pointwise_weight(&total, transposed, cin, cout, dw);
        return Ok(());
    }
    let wave = tasks.clamp(1, blocks);
    let mut partials = vec![0.0f32; wave * size];
    for first in (0..blocks).step_by(wave) {
        let count = wave.min(blocks - first);
        let partials = &mut partials[..count * size];
        exec.try_for_each_rows(partials, size, count, |k0, chunk| {
            for (k, part) in chunk.chunks_exact_mut(size).enumerate() {
                let (rows, ab, bb) = block(first + k0 + k);
                dwgrad::pointwise_weight_block(isa, ab, a_ch, bb, b_ch, rows, 0..a_ch, part)?;
            }
            Ok(())
        })?;
        for part in partials.chunks_exact(size) {
            for (t, &p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
    }
    finish_pointwise_weight(&total, transposed, cin, cout, dw);
    Ok(())
}

/// `dw` from the pointwise weight gradient's total (`dwᵀ` when `transposed`).
fn finish_pointwise_weight(
    total: &[f32],
    transposed: bool,
    cin: usize,
    cout: usize,
    dw: &mut [f32],
) {
    if transposed {
        transpose(total, cin, cout, dw);
    } else {
        dw.copy_from_slice(total);
    }
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

/// Input channels per group from which a k×k convolution's gradients run as GEMMs (with
/// one channel per group — depthwise with a multiplier — the GEMM's reduction would be
/// just the multiplier, and the direct loops are faster).
const DENSE_MIN_CHANNELS: usize = 2;

/// Floats of one pixel block of the dense gradients' unfolded input (`rows × kH·kW·C_in/G`,
/// per thread): 2^20 (4 MiB), so memory stays bounded whatever the layer.
const DENSE_BLOCK_FLOATS: usize = 1 << 20;

/// Output pixels per block of the dense gradients: as many as fit
/// [`DENSE_BLOCK_FLOATS`], between 64 and [`POINTWISE_BLOCK`]. A function of the geometry
/// only, so the blocks (and the bits) do not depend on the thread count.
fn dense_block_rows(kdim: usize) -> usize {
    (DENSE_BLOCK_FLOATS / kdim.max(1)).clamp(64, POINTWISE_BLOCK)
}

/// The source pixel of every `(output coordinate, tap)` along one axis under the padding
/// mode (`None`: a zero), `[out][tap]`.
fn axis_sources(
    n_in: usize,
    n_out: usize,
    kernel: usize,
    mode: PaddingMode,
    coord: impl Fn(usize, usize) -> isize,
) -> Vec<Option<usize>> {
    (0..n_out)
        .flat_map(|o| (0..kernel).map(move |k| (o, k)))
        .map(|(o, k)| mode.source_index(coord(o, k), n_in))
        .collect()
}

/// The rows and columns read by every output coordinate and tap.
struct Unfold {
    rows: Vec<Option<usize>>,
    cols: Vec<Option<usize>>,
}

impl Unfold {
    fn new(g: &ConvGeometry) -> Self {
        let mode = g.padding_mode();
        Unfold {
            rows: axis_sources(g.in_h(), g.out_h(), g.kernel_h(), mode, |o, k| {
                g.input_row(o, k)
            }),
            cols: axis_sources(g.in_w(), g.out_w(), g.kernel_w(), mode, |o, k| {
                g.input_col(o, k)
            }),
        }
    }

    /// The input pixel (`n·H·W + iy·W + ix`) read by output pixel `m` at tap `(i, j)`.
    #[inline]
    fn source(&self, g: &ConvGeometry, m: usize, i: usize, j: usize) -> Option<usize> {
        let (ow, oh) = (g.out_w(), g.out_h());
        let (n, oy, ox) = (m / (oh * ow), (m / ow) % oh, m % ow);
        let iy = self.rows[oy * g.kernel_h() + i]?;
        let ix = self.cols[ox * g.kernel_w() + j]?;
        Some((n * g.in_h() + iy) * g.in_w() + ix)
    }
}

/// Unfolds group `gi`'s input channels for output pixels `m0 .. m0 + rows` into `col`
/// (`[rows, kH·kW·C_in/G]`, columns in tap-major order `(i, j, ci)`; padding zeros, or
/// the copied pixel under the padding mode).
fn im2col(g: &ConvGeometry, u: &Unfold, x: &[f32], gi: usize, m0: usize, col: &mut [f32]) {
    let (cin, cin_g) = (g.in_channels(), g.in_channels_per_group());
    let (kh, kw) = (g.kernel_h(), g.kernel_w());
    let kdim = kh * kw * cin_g;
    for (r, row) in col.chunks_exact_mut(kdim).enumerate() {
        for i in 0..kh {
            for j in 0..kw {
                let dst = &mut row[(i * kw + j) * cin_g..][..cin_g];
                match u.source(g, m0 + r, i, j) {
                    Some(p) => dst.copy_from_slice(&x[p * cin + gi * cin_g..][..cin_g]),
                    None => dst.fill(0.0),
                }
            }
        }
    }
}

/// Dense / grouped k×k input gradient: per block of output pixels and group, the GEMM
/// `cols[m, (i, j, ci)] = Σ_co dy[m, co] · w[co, ci, i, j]` (over the threads; each element
/// computed by the same operations for every split), then `col2im`: each column added to
/// the input pixel it was read from (its source under the padding mode), on one thread in
/// pixel order. Bitwise identical for every thread count.
fn dense_input(
    g: &ConvGeometry,
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    exec: &Executor,
    tasks: usize,
) -> Result<()> {
    let (cin, cout) = (g.in_channels(), g.out_channels());
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let (kh, kw) = (g.kernel_h(), g.kernel_w());
    let kdim = kh * kw * cin_g;
    let taps = kh * kw;
    let packed: Vec<PackedGemm> = (0..g.groups())
        .map(|gi| {
            PackedGemm::from_fn(cout_g, kdim, None, |co, kk| {
                let (t, ci) = (kk / cin_g, kk % cin_g);
                weight[((gi * cout_g + co) * cin_g + ci) * taps + t]
            })
        })
        .collect::<Result<_>>()?;
    let u = Unfold::new(g);
    let m = g.batch() * g.out_h() * g.out_w();
    let block = dense_block_rows(kdim);
    let mut cols = vec![0.0f32; block.min(m) * kdim];
    dx.fill(0.0);
    for m0 in (0..m).step_by(block) {
        let rows = block.min(m - m0);
        let cols = &mut cols[..rows * kdim];
        for (gi, b) in packed.iter().enumerate() {
            let a = &dy[m0 * cout + gi * cout_g..];
            b.run_parallel(exec, tasks, a, cout, rows, cols, kdim, Activation::None)?;
            for (r, row) in cols.chunks_exact(kdim).enumerate() {
                for i in 0..kh {
                    for j in 0..kw {
                        if let Some(p) = u.source(g, m0 + r, i, j) {
                            let src = &row[(i * kw + j) * cin_g..][..cin_g];
                            let dst = &mut dx[p * cin + gi * cin_g..][..cin_g];
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Dense / grouped k×k weight gradient: per block of output pixels and group, the GEMM
/// `dwᵀ-block[co, (i, j, ci)] = Σ_m dy[m, co] · cols[m, (i, j, ci)]` (the block's input
/// unfolded by `im2col`), each block on one thread into its own buffer (a wave of one
/// block per thread at a time), the blocks' products added in block order; the total is
/// then reordered to PyTorch's `[C_out, C_in/G, kH, kW]`. Blocks depend on the geometry
/// only: bitwise identical for every thread count.
fn dense_weight(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    exec: &Executor,
    tasks: usize,
) -> Result<()> {
    let cout = g.out_channels();
    let (cin_g, cout_g) = (g.in_channels_per_group(), g.out_channels_per_group());
    let (kh, kw) = (g.kernel_h(), g.kernel_w());
    let kdim = kh * kw * cin_g;
    let taps = kh * kw;
    let u = Unfold::new(g);
    let m = g.batch() * g.out_h() * g.out_w();
    let block = dense_block_rows(kdim);
    let blocks = m.div_ceil(block);
    let wave = tasks.clamp(1, blocks);
    let size = cout_g * kdim;
    let isa = exec.tier();
    for gi in 0..g.groups() {
        let mut total = vec![0.0f32; size];
        let mut partials = vec![0.0f32; wave * size];
        for first in (0..blocks).step_by(wave) {
            let count = wave.min(blocks - first);
            let partials = &mut partials[..count * size];
            exec.try_for_each_rows(partials, size, count, |k0, chunk| {
                let mut col = vec![0.0f32; block * kdim];
                let mut at = vec![0.0f32; cout_g * block];
                for (k, part) in chunk.chunks_exact_mut(size).enumerate() {
                    let m0 = (first + k0 + k) * block;
                    let rows = block.min(m - m0);
                    let col = &mut col[..rows * kdim];
                    im2col(g, &u, x, gi, m0, col);
                    // at[co, r] = dy[m0 + r, gi·cout_g + co].
                    let at = &mut at[..cout_g * rows];
                    for r in 0..rows {
                        let d = &dy[(m0 + r) * cout + gi * cout_g..][..cout_g];
                        for (co, &v) in d.iter().enumerate() {
                            at[co * rows + r] = v;
                        }
                    }
                    let bb = PackedGemm::from_rows(col, rows, kdim, kdim)?;
                    bb.run(isa, at, rows, cout_g, part, kdim, Activation::None)?;
                }
                Ok(())
            })?;
            for part in partials.chunks_exact(size) {
                for (t, &p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
        }
        for co in 0..cout_g {
            for t in 0..taps {
                for ci in 0..cin_g {
                    dw[((gi * cout_g + co) * cin_g + ci) * taps + t] =
                        total[co * kdim + t * cin_g + ci];
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Conv2dParams;
    use crate::rng::SplitMix64;

    /// The pointwise weight gradient as it ran before [`pointwise_weight`] read its operands
    /// in place (a transposed copy of A and a packed B per block, through [`PackedGemm`]):
    /// the reference the tests hold the in-place product to, bit for bit.
    ///
    /// Pointwise `dw[C_out, C_in] = Σ_m dy[m, :]ᵀ · x[m, :]`, one GEMM per block of pixels, the
    /// blocks' products added in block order. The operand with fewer channels is transposed
    /// into the GEMM's A (its rows are the GEMM's M), the other packed as B (its channels fill
    /// the 32-column panels); when that is `x`'s the GEMM yields `dwᵀ`, transposed at the end.
    ///
    /// Threads take whole blocks, a wave of one block per thread at a time, each block's
    /// product on one thread into its own buffer; the wave's products are then added to the
    /// total in block order. Block boundaries and the order of the sum do not depend on the
    /// thread count, so neither do the bits.
    fn pointwise_weight_packed(
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
        let size = a_ch * b_ch;
        let mut total = vec![0.0f32; size];
        if blocks < tasks {
            // Fewer blocks than threads (small batches and feature maps): the blocks one
            // after another, each GEMM split over the threads (each element computed by the
            // same operations for every split, as `run` computes it), so the bits are those
            // of the waves below.
            let mut at = vec![0.0f32; a_ch * POINTWISE_BLOCK.min(m)];
            let mut part = vec![0.0f32; size];
            for blk in 0..blocks {
                let m0 = blk * POINTWISE_BLOCK;
                let rows = POINTWISE_BLOCK.min(m - m0);
                let at = &mut at[..rows * a_ch];
                transpose(&a[m0 * a_ch..][..rows * a_ch], rows, a_ch, at);
                let bb = PackedGemm::from_rows(&b[m0 * b_ch..][..rows * b_ch], rows, b_ch, b_ch)?;
                bb.run_parallel(
                    exec,
                    tasks,
                    at,
                    rows,
                    a_ch,
                    &mut part,
                    b_ch,
                    Activation::None,
                )?;
                for (t, &p) in total.iter_mut().zip(&part) {
                    *t += p;
                }
            }
            finish_pointwise_weight(&total, transposed, cin, cout, dw);
            return Ok(());
        }
        let wave = tasks.clamp(1, blocks);
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
                    let bb =
                        PackedGemm::from_rows(&b[m0 * b_ch..][..rows * b_ch], rows, b_ch, b_ch)?;
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
        finish_pointwise_weight(&total, transposed, cin, cout, dw);
        Ok(())
    }

    /// The in-place pointwise weight gradient gives the bits of the transposed-and-packed
    /// GEMM it replaced, for every tier this CPU has and 1–3 threads: pixel counts below,
    /// at and past a block (4096) and the K pass (128), channel counts with ragged row
    /// tiles and column tails (masked, one vector, two vectors, past a 256-column panel),
    /// both orientations (C_in < C_out gives dwᵀ).
    #[test]
    fn pointwise_weight_in_place_matches_packed_gemm_bitwise() {
        let mut rng = SplitMix64::new(12);
        let shapes: [(usize, usize, usize, usize); 9] = [
            // (batch, H·W side, C_in, C_out)
            (1, 1, 1, 1),
            (2, 3, 5, 7),
            (1, 11, 13, 40),
            (3, 9, 24, 144),
            (2, 13, 144, 24),
            (1, 64, 16, 96),
            (2, 47, 96, 16),
            (1, 20, 3, 300),
            (4, 7, 320, 33),
        ];
        for (n, side, cin, cout) in shapes {
            let g = ConvGeometry::new(
                [n, cin, side, side],
                [cout, cin, 1, 1],
                &Conv2dParams::default(),
            )
            .unwrap();
            let m = n * side * side;
            let x = rng.vec(m * cin, -1.0, 1.0);
            let dy = rng.vec(m * cout, -1.0, 1.0);
            for &isa in crate::kernels::available_isas() {
                for threads in [1, 2, 3] {
                    let exec = Executor::new(threads).unwrap().with_isa(isa).unwrap();
                    let tasks = exec.tasks_for(crate::cost::conv_macs(&g)).max(threads);
                    let mut want = vec![f32::NAN; cout * cin];
                    pointwise_weight_packed(&g, &x, &dy, &mut want, &exec, tasks).unwrap();
                    let mut got = vec![f32::NAN; cout * cin];
                    pointwise_weight(&g, &x, &dy, &mut got, &exec, tasks).unwrap();
                    let same = want
                        .iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "n {n} side {side} {cin}->{cout} {isa:?} threads {threads}"
                    );
                }
            }
        }
    }
}
