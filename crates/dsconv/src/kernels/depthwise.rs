//! NHWC depthwise convolution (multiplier 1, zero padding):
//!
//! `out[n, y, x, c] = act(bias[c] + Σ_{i,j} in[n, y·sH + i·dH − pad_top, x·sW + j·dW − pad_left, c]
//! · w[i, j, c])`, out-of-range input reads being zero.
//!
//! # Structure
//! Channels go in tiles of one vector (16 for AVX-512, 8 for AVX2); the last tile is
//! masked. For each output row, the kernel rows that fall in the padding point at a row
//! of zeros, so rows never branch; columns are split into the interior (every tap
//! inside the input, from [`ConvGeometry::interior_cols`]) and the borders. The interior
//! of 3×3 and 5×5 kernels at stride 1 or 2 (dilation 1) runs a register block of `PB`
//! output pixels × one channel tile with the k×k weights and the bias held in registers;
//! the borders and every other shape run a general per-pixel loop that checks each tap.
//! The input is never copied.

use super::simd::{activate, Epilogue, Portable, Simd};
use super::{AlignedVec, Isa};
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::ops::Activation;

/// Channel padding of the packed weights: the widest vector (AVX-512, 16 lanes), so every
/// tier loads whole weight vectors.
const CHANNEL_PAD: usize = 16;

/// Depthwise weights `[kH·kW, C_pad]` (tap major, channels padded with zeros to 16) and
/// bias `[C_pad]`.
#[derive(Debug, Clone)]
pub struct PackedDepthwise {
    channels: usize,
    padded: usize,
    kernel_h: usize,
    kernel_w: usize,
    weights: AlignedVec,
    bias: AlignedVec,
}

impl PackedDepthwise {
    /// Packs a PyTorch depthwise weight `[C, 1, kH, kW]` (flat, in that order) and an
    /// optional bias of `C` elements.
    pub fn new(weight: &[f32], dims: [usize; 4], bias: Option<&[f32]>) -> Result<Self> {
        let [channels, one, kernel_h, kernel_w] = dims;
        let taps = kernel_h.checked_mul(kernel_w);
        if one != 1
            || channels == 0
            || taps.is_none()
            || taps == Some(0)
            || taps.and_then(|t| t.checked_mul(channels)) != Some(weight.len())
        {
            return Err(Error::shape(
                "depthwise weight",
                "[C, 1, kH, kW] with C, kH, kW ≥ 1",
                format!("dims {dims:?} with {} elements", weight.len()),
            ));
        }
        if bias.is_some_and(|b| b.len() != channels) {
            return Err(Error::shape(
                "depthwise bias",
                format!("{channels} elements"),
                "another length",
            ));
        }
        let padded = channels.next_multiple_of(CHANNEL_PAD);
        let taps = kernel_h * kernel_w;
        let mut weights = AlignedVec::zeros(
            taps.checked_mul(padded)
                .ok_or(Error::Overflow("packed depthwise weight"))?,
        );
        for c in 0..channels {
            for t in 0..taps {
                weights[t * padded + c] = weight[c * taps + t];
            }
        }
        let mut padded_bias = AlignedVec::zeros(padded);
        if let Some(b) = bias {
            padded_bias[..channels].copy_from_slice(b);
        }
        Ok(PackedDepthwise {
            channels,
            padded,
            kernel_h,
            kernel_w,
            weights,
            bias: padded_bias,
        })
    }

    /// Channels C.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Computes output rows `rows` (global row index `n·out_H + y`) of the convolution
    /// described by `g` on the whole NHWC `input`, writing pixel `(row, x)` at
    /// `out[(row − rows.start)·out_W·px_stride + x·px_stride ..][..C]`
    /// (`px_stride ≥ C`; the gaps are not touched). Single-threaded, tier `isa`.
    pub fn run_rows(
        &self,
        isa: Isa,
        g: &ConvGeometry,
        input: &[f32],
        rows: std::ops::Range<usize>,
        out: &mut [f32],
        px_stride: usize,
        act: Activation,
    ) -> Result<()> {
        let c = self.channels;
        let matches = g.in_channels == c
            && g.out_channels == c
            && g.groups == c
            && g.kernel_h == self.kernel_h
            && g.kernel_w == self.kernel_w
            && (g.padding_mode == crate::PaddingMode::Zeros
                || g.pad_top + g.pad_bottom + g.pad_left + g.pad_right == 0);
        if !matches {
            return Err(Error::shape(
                "depthwise kernel geometry",
                format!(
                    "{c} channels, multiplier 1, {}x{} kernel, zero padding",
                    self.kernel_h, self.kernel_w
                ),
                format!("{g:?}"),
            ));
        }
        let total_rows = g.batch * g.out_h;
        if rows.start > rows.end || rows.end > total_rows {
            return Err(Error::shape(
                "depthwise rows",
                format!("a range within 0..{total_rows}"),
                format!("{rows:?}"),
            ));
        }
        if rows.is_empty() {
            return Ok(());
        }
        if input.len() != g.batch * g.in_h * g.in_w * c {
            return Err(Error::shape(
                "depthwise input",
                format!("{} elements", g.batch * g.in_h * g.in_w * c),
                format!("{}", input.len()),
            ));
        }
        let out_rows = rows.end - rows.start;
        if px_stride < c || !super::gemm::fits(out.len(), out_rows * g.out_w, px_stride, c) {
            return Err(Error::shape(
                "depthwise output",
                format!("{} pixels of {c} with stride ≥ {c}", out_rows * g.out_w),
                format!("{} elements with stride {px_stride}", out.len()),
            ));
        }
        let needs_zero_row = g.pad_top > 0 || g.pad_bottom > 0;
        let zero_row = AlignedVec::zeros(if needs_zero_row { g.in_w * c } else { 0 });
        let interior = g.interior_cols();
        let args = DwArgs {
            g,
            channels: c,
            padded: self.padded,
            input: input.as_ptr(),
            zero_row: zero_row.as_ptr(),
            weights: self.weights.as_ptr(),
            bias: self.bias.as_ptr(),
            rows,
            out: out.as_mut_ptr(),
            px_stride,
            interior: (interior.start, interior.end),
            epi: Epilogue::new(act),
        };
        // SAFETY: extents checked above; `runnable` returns a tier this CPU has.
        unsafe {
            match super::runnable(isa) {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => dw_avx512(&args),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => dw_avx2(&args),
                _ => dw_portable(&args),
            }
        }
        Ok(())
    }
}

struct DwArgs<'a> {
    g: &'a ConvGeometry,
    channels: usize,
    padded: usize,
    input: *const f32,
    /// `in_w · C` zeros (when the geometry pads rows).
    zero_row: *const f32,
    weights: *const f32,
    bias: *const f32,
    rows: std::ops::Range<usize>,
    out: *mut f32,
    px_stride: usize,
    interior: (usize, usize),
    epi: Epilogue,
}

// Output pixels per register block, per tier and kernel (DESIGN.md §5: 7–8 pixels at
// stride 1, 3–4 at stride 2; a 7-pixel stride-2 tile spilled and ran 2× slower).
// AVX-512 3×3: 9 weights + bias + 8 accumulators + 1 input = 19 of 32 zmm.
// AVX-512 5×5: 25 weights + bias + 4 accumulators + 1 input = 31 of 32 zmm.
// AVX2 3×3: 9 + 1 + 4 + 1 = 15 of 16 ymm; 5×5 weights are read from L1 (FMA memory operand).
// The const generics `PB3S1`, `PB3S2`, `PB5` of `dw_body` carry these per tier.

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dw_avx512(args: &DwArgs) {
    // SAFETY: entry contract (extents checked, AVX-512 detected).
    unsafe { dw_body::<super::simd::Avx512, 8, 4, 4>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_avx2(args: &DwArgs) {
    // SAFETY: entry contract (extents checked, AVX2+FMA detected).
    unsafe { dw_body::<super::simd::Avx2, 4, 4, 4>(args) }
}

unsafe fn dw_portable(args: &DwArgs) {
    // SAFETY: entry contract (extents checked).
    unsafe { dw_body::<Portable, 4, 2, 2>(args) }
}

/// Per-row driver: resolves the kernel-row pointers (zero row in the padding), then runs
/// every channel tile across the row.
#[inline(always)]
unsafe fn dw_body<S: Simd, const PB3S1: usize, const PB3S2: usize, const PB5: usize>(a: &DwArgs) {
    let g = a.g;
    let c = a.channels;
    let square = g.kernel_h == g.kernel_w && g.stride_h == g.stride_w;
    let unit_dilation = g.dilation_h == 1 && g.dilation_w == 1;
    let shape = if square && unit_dilation {
        (g.kernel_h, g.stride_h)
    } else {
        (0, 0)
    };
    let mut row_ptrs = vec![std::ptr::null::<f32>(); g.kernel_h];
    for row in a.rows.clone() {
        let (n, oy) = (row / g.out_h, row % g.out_h);
        for (i, p) in row_ptrs.iter_mut().enumerate() {
            let iy = g.input_row(oy, i);
            *p = if (0..g.in_h as isize).contains(&iy) {
                // SAFETY: iy < in_h and n < batch: the row lies inside the input.
                unsafe { a.input.add(((n * g.in_h + iy as usize) * g.in_w) * c) }
            } else {
                a.zero_row
            };
        }
        // SAFETY: row − rows.start < rows.len(): inside the checked output.
        let out_row = unsafe { a.out.add((row - a.rows.start) * g.out_w * a.px_stride) };
        let mut c0 = 0;
        while c0 < c {
            let valid = S::LANES.min(c - c0);
            let t = ChannelTile {
                rows: &row_ptrs,
                c0,
                valid,
                out_row,
            };
            // SAFETY: the tile's pointers stay within the checked buffers (see each body).
            unsafe {
                match (shape, valid == S::LANES) {
                    ((3, 1), true) => row_tile::<S, 3, 1, PB3S1, false>(a, &t),
                    ((3, 1), false) => row_tile::<S, 3, 1, PB3S1, true>(a, &t),
                    ((3, 2), true) => row_tile::<S, 3, 2, PB3S2, false>(a, &t),
                    ((3, 2), false) => row_tile::<S, 3, 2, PB3S2, true>(a, &t),
                    ((5, 1), true) => row_tile::<S, 5, 1, PB5, false>(a, &t),
                    ((5, 1), false) => row_tile::<S, 5, 1, PB5, true>(a, &t),
                    ((5, 2), true) => row_tile::<S, 5, 2, PB5, false>(a, &t),
                    ((5, 2), false) => row_tile::<S, 5, 2, PB5, true>(a, &t),
                    (_, true) => general_span::<S, false>(a, &t, 0..g.out_w),
                    (_, false) => general_span::<S, true>(a, &t, 0..g.out_w),
                }
            }
            c0 += S::LANES;
        }
    }
}

/// One channel tile of one output row: `rows[i]` is the input row read by kernel row `i`
/// (or the zero row), channels `c0 .. c0 + valid`.
struct ChannelTile<'r> {
    rows: &'r [*const f32],
    c0: usize,
    valid: usize,
    out_row: *mut f32,
}

#[inline(always)]
unsafe fn load_in<S: Simd, const MASKED: bool>(p: *const f32, valid: usize) -> S::V {
    // SAFETY: the caller guarantees `valid` (LANES when not masked) readable floats at p.
    unsafe {
        if MASKED {
            S::load_partial(p, valid)
        } else {
            S::load(p)
        }
    }
}

#[inline(always)]
unsafe fn store_out<S: Simd, const MASKED: bool>(p: *mut f32, v: S::V, valid: usize) {
    // SAFETY: the caller guarantees `valid` (LANES when not masked) writable floats at p.
    unsafe {
        if MASKED {
            S::store_partial(p, v, valid)
        } else {
            S::store(p, v)
        }
    }
}

/// A K×K, stride-`STRIDE`, dilation-1 channel tile across a row: borders by the general
/// loop, the interior by blocks of `PB` pixels with the weights in registers.
#[inline(always)]
unsafe fn row_tile<
    S: Simd,
    const K: usize,
    const STRIDE: usize,
    const PB: usize,
    const MASKED: bool,
>(
    a: &DwArgs,
    t: &ChannelTile,
) {
    let g = a.g;
    let c = a.channels;
    let (x0, x1) = a.interior;
    // SAFETY: weights hold K·K·padded floats and bias `padded`; c0 + LANES ≤ padded
    // because padded is a multiple of 16 ≥ LANES and c0 is a multiple of LANES.
    unsafe {
        general_span::<S, MASKED>(a, t, 0..x0.min(g.out_w));
        let mut w = [[S::zero(); K]; K];
        for (i, wr) in w.iter_mut().enumerate() {
            for (j, wv) in wr.iter_mut().enumerate() {
                *wv = S::load(a.weights.add((i * K + j) * a.padded + t.c0));
            }
        }
        let bias = S::load(a.bias.add(t.c0));
        let mut rows = [std::ptr::null::<f32>(); K];
        for (i, r) in rows.iter_mut().enumerate() {
            // Shift by the left padding once: the interior guarantees
            // x·STRIDE + j − pad_left ≥ 0 for every tap, so every address below is in
            // the row (or the zero row).
            *r = t.rows[i].add(t.c0);
        }
        let left = g.pad_left;
        let mut x = x0;
        while x + PB <= x1 {
            let mut acc = [bias; PB];
            for i in 0..K {
                for j in 0..K {
                    for (p, acc_p) in acc.iter_mut().enumerate() {
                        let ix = (x + p) * STRIDE + j - left;
                        let v = load_in::<S, MASKED>(rows[i].add(ix * c), t.valid);
                        *acc_p = S::mul_add(v, w[i][j], *acc_p);
                    }
                }
            }
            for (p, &acc_p) in acc.iter().enumerate() {
                let y = activate::<S>(acc_p, &a.epi);
                store_out::<S, MASKED>(t.out_row.add((x + p) * a.px_stride + t.c0), y, t.valid);
            }
            x += PB;
        }
        while x < x1 {
            let mut acc = bias;
            for i in 0..K {
                for j in 0..K {
                    let ix = x * STRIDE + j - left;
                    let v = load_in::<S, MASKED>(rows[i].add(ix * c), t.valid);
                    acc = S::mul_add(v, w[i][j], acc);
                }
            }
            let y = activate::<S>(acc, &a.epi);
            store_out::<S, MASKED>(t.out_row.add(x * a.px_stride + t.c0), y, t.valid);
            x += 1;
        }
        general_span::<S, MASKED>(a, t, x1.max(x0).min(g.out_w)..g.out_w);
    }
}

/// Any kernel, stride and dilation, one pixel at a time, each tap checked against the
/// input columns (rows are already resolved to the input or the zero row).
#[inline(always)]
unsafe fn general_span<S: Simd, const MASKED: bool>(
    a: &DwArgs,
    t: &ChannelTile,
    xs: std::ops::Range<usize>,
) {
    let g = a.g;
    let c = a.channels;
    // SAFETY: taps are used only when 0 ≤ ix < in_w, so reads stay in the row; weights
    // and bias are padded (see `row_tile`); x < out_w keeps the store in the output row.
    unsafe {
        let bias = S::load(a.bias.add(t.c0));
        for x in xs {
            let mut acc = bias;
            for i in 0..g.kernel_h {
                let row = t.rows[i];
                for j in 0..g.kernel_w {
                    let ix = g.input_col(x, j);
                    if !(0..g.in_w as isize).contains(&ix) {
                        continue;
                    }
                    let v = load_in::<S, MASKED>(row.add(ix as usize * c + t.c0), t.valid);
                    let w = S::load(a.weights.add((i * g.kernel_w + j) * a.padded + t.c0));
                    acc = S::mul_add(v, w, acc);
                }
            }
            let y = activate::<S>(acc, &a.epi);
            store_out::<S, MASKED>(t.out_row.add(x * a.px_stride + t.c0), y, t.valid);
        }
    }
}
