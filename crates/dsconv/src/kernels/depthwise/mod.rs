//! NHWC depthwise convolution (multiplier 1, zero padding):
//!
//! `out[n, y, x, c] = act(bias[c] + Σ_{i,j} in[n, y·sH + i·dH − pad_top, x·sW + j·dW − pad_left, c]
//! · w[i, j, c])`, out-of-range input reads being zero.
//!
//! # Structure
//! Channels go in tiles of one vector (16 for AVX-512, 8 for AVX2); the last tile is
//! masked. For each output row, the kernel rows that fall in the padding point at a row
//! of zeros, so rows never branch. 3×3 and 5×5 kernels at stride 1 or 2 (dilation 1)
//! cover each output row with register blocks of up to `PB` output pixels × one channel
//! tile (see `cover_row`); blocks that reach a border column (some tap outside the input,
//! from [`ConvGeometry::interior_cols`]) load those columns as zeros with masked-off
//! loads, the others read every tap unchecked. Every other shape runs a general
//! per-pixel loop that checks each tap.
//! The input is read in place (pixels any stride ≥ C apart), except that a crowded layer
//! at stride 1 first copies the rows a call reads (`crowd`).
//!
//! # Files
//! - this one: [`PackedDepthwise`] (packing, the checks of `run_rows`), the per-call
//!   arguments (`DwArgs`), the row table, and the dispatch: `tier!` makes one entry per
//!   tier and one non-inlined function per kernel shape;
//! - `blocks`: a band of output rows (`band`): covering a row with register blocks
//!   (`cover_row`, `block`), row mode (`RowRun`, `row_tiles`, `ROW_GROUP`), the streamed
//!   5×5 blocks (`StreamRun`) and the choice between strips and rows;
//! - `strips`: strip mode (`StripRun`, `tile_strips`) and the block bodies `strip` (3×3,
//!   weights in registers) and `strip_streamed` (streamed weights), with the L1 bound
//!   that picks the strips (`strip_fits_l1`, `STRIP_WAYS*`);
//! - `general`: the per-pixel loop for borders and other shapes (`borders`,
//!   `general_span`);
//! - `crowd`: the crowded-input copy (`CROWD_PAD`, `crowded`, `copies_input`);
//! - `columns`: input column loads of a block, checked or not (`column`, `load_span`);
//! - `channels`: the channel tiles of a call (`Tiles`, the aligning head tile), a tile's
//!   weights and the masked loads and stores.

mod blocks;
mod channels;
mod columns;
mod crowd;
mod general;
mod strips;

pub(crate) use crowd::{crowded, CROWD_PAD};

use self::blocks::band;
use self::channels::HEAD_SLACK;
use self::crowd::copies_input;
use self::general::borders;
use super::simd::{Epilogue, Portable};
use super::{AlignedVec, Isa, Tier};
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
                .and_then(|v| v.checked_add(HEAD_SLACK))
                .ok_or(Error::Overflow("packed depthwise weight"))?,
        );
        for c in 0..channels {
            for t in 0..taps {
                weights[t * padded + c] = weight[c * taps + t];
            }
        }
        let mut padded_bias = AlignedVec::zeros(padded + HEAD_SLACK);
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
    /// described by `g` on the NHWC `input`, whose pixels lie `in_px ≥ C` floats apart
    /// (`C` for a plain tensor, more for a network's padded activations), writing pixel
    /// `(row, x)` at `out[(row − rows.start)·out_W·px_stride + x·px_stride ..][..C]`
    /// (`px_stride ≥ C`; the gaps are not touched). Single-threaded, tier `isa`. A geometry
    /// that is not this kernel's (channels, kernel size, multiplier 1, zero padding), a row
    /// range outside the output and buffers too small for the geometry are errors.
    #[allow(clippy::too_many_arguments)]
    pub fn run_rows(
        &self,
        isa: Tier,
        g: &ConvGeometry,
        input: &[f32],
        in_px: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
        px_stride: usize,
        act: Activation,
    ) -> Result<()> {
        let c = self.channels;
        let matches = g.in_channels() == c
            && g.out_channels() == c
            && g.groups() == c
            && g.kernel_h() == self.kernel_h
            && g.kernel_w() == self.kernel_w
            && (g.padding_mode() == crate::PaddingMode::Zeros
                || g.pad_top() + g.pad_bottom() + g.pad_left() + g.pad_right() == 0);
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
        let total_rows = g.batch() * g.out_h();
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
        let in_pixels = g.batch() * g.in_h() * g.in_w();
        if in_px < c || !super::gemm::fits(input.len(), in_pixels, in_px, c) {
            return Err(Error::shape(
                "depthwise input",
                format!("{in_pixels} pixels of {c} with stride ≥ {c}"),
                format!("{} elements with stride {in_px}", input.len()),
            ));
        }
        let out_rows = rows.end - rows.start;
        if px_stride < c || !super::gemm::fits(out.len(), out_rows * g.out_w(), px_stride, c) {
            return Err(Error::shape(
                "depthwise output",
                format!("{} pixels of {c} with stride ≥ {c}", out_rows * g.out_w()),
                format!("{} elements with stride {px_stride}", out.len()),
            ));
        }
        // Padded rows point at a zero row (as wide as an input row, copied or not: a
        // checked block may load any of its columns). Padded columns read nothing
        // (masked-off loads).
        let row_px = if copies_input(in_px, px_stride, g) {
            c + CROWD_PAD
        } else {
            in_px
        };
        // The buffer is this thread's, kept between calls.
        let zero_len = (g.in_w() * row_px).max(self.padded) + HEAD_SLACK;
        with_zeros(zero_len, |zero_row| {
            // SAFETY: extents checked above; `zero_row` holds `zero_len` zeros.
            unsafe {
                self.run_with_zeros(isa, g, input, in_px, rows, out, px_stride, act, zero_row)
            }
        });
        Ok(())
    }

    /// `run_rows` after the checks, with `zero_row` (enough zeros for the geometry).
    ///
    /// # Safety
    /// The arguments passed `run_rows`' checks and `zero_row` points at the zeros it sized.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_with_zeros(
        &self,
        isa: Tier,
        g: &ConvGeometry,
        input: &[f32],
        in_px: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
        px_stride: usize,
        act: Activation,
        zero_row: *const f32,
    ) {
        let c = self.channels;
        let interior = g.interior_cols();
        let args = DwArgs {
            head_bytes: input.as_ptr() as usize,
            g,
            channels: c,
            in_px,
            padded: self.padded,
            input: input.as_ptr(),
            zero_row,
            weights: self.weights.as_ptr(),
            bias: self.bias.as_ptr(),
            rows: rows.clone(),
            out: out.as_mut_ptr(),
            px_stride,
            interior: (interior.start, interior.end),
            epi: Epilogue::new(act),
        };
        // SAFETY: extents checked by `run_rows`.
        unsafe {
            if copies_input(in_px, px_stride, g) {
                crowd::run_copied(isa, args, input)
            } else {
                dispatch(isa, &args)
            }
        }
    }
}

/// Runs the call on tier `isa`.
///
/// # Safety
/// `a` describes buffers as `run_rows` checks them (`in_px ≥ channels` floats per input
/// pixel).
pub(super) unsafe fn dispatch(isa: Tier, a: &DwArgs) {
    // SAFETY: the function's contract; a `Tier` exists only for a tier this CPU has.
    unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => dw_avx512(a),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => dw_avx2(a),
            _ => dw_portable(a),
        }
    }
}

thread_local! {
    /// Zeros read by the padded rows and columns, grown on demand and never written, so
    /// calls (the fused path makes one per band) do not allocate and clear a row each.
    static ZEROS: std::cell::RefCell<AlignedVec> = std::cell::RefCell::new(AlignedVec::default());
}

/// Runs `f` with a pointer to at least `len` zero floats (this thread's shared zeros, or a
/// fresh buffer if they are borrowed).
fn with_zeros<R>(len: usize, f: impl FnOnce(*const f32) -> R) -> R {
    ZEROS.with(|cell| {
        if let Ok(mut z) = cell.try_borrow_mut() {
            if z.len() < len {
                *z = AlignedVec::zeros(len);
            }
        }
        match cell.try_borrow() {
            Ok(z) if z.len() >= len => f(z.as_ptr()),
            _ => {
                let z = AlignedVec::zeros(len);
                f(z.as_ptr())
            }
        }
    })
}

pub(super) struct DwArgs<'a> {
    /// Address of the input (its alignment decides the head tile, see
    /// [`Tiles`](channels::Tiles)).
    pub(super) head_bytes: usize,
    pub(super) g: &'a ConvGeometry,
    pub(super) channels: usize,
    /// Floats per input pixel (≥ channels).
    pub(super) in_px: usize,
    pub(super) padded: usize,
    pub(super) input: *const f32,
    /// Zeros, `max(in_w · C, C_pad) + HEAD_SLACK` of them when the geometry pads rows.
    pub(super) zero_row: *const f32,
    pub(super) weights: *const f32,
    pub(super) bias: *const f32,
    pub(super) rows: std::ops::Range<usize>,
    pub(super) out: *mut f32,
    pub(super) px_stride: usize,
    pub(super) interior: (usize, usize),
    pub(super) epi: Epilogue,
}

// Output pixels per register block, per tier and kernel: the last arguments of `tier!`
// (3×3 stride 1, 3×3 stride 2, 5×5).
// AVX-512 3×3 stride 1, weights in registers: 9 weights + bias + 8 accumulators + 1 input
// = 19 of 32 zmm.
// Streamed weights (`strip_streamed`: 5×5, and 3×3 at stride 2): 8 accumulators + the
// block's (8 − 1)·stride + K inputs of one kernel row + 1 weight ≤ 28 zmm; against the
// weights in registers, 1 thread GFLOP/s: 5×5 s1 C480@14² 74 → 133, 5×5 s2 C144@56²
// 33 → 65; 3×3 stride 1 at 14+ columns lost streamed (C384@14² 90 → 71), so it keeps
// them in registers (record `2026-12-02-kernels-tuning-history`).
// AVX2 3×3: 9 + 1 + 4 + 1 = 15 of 16 ymm; streamed 4-pixel blocks ≤ 16 ymm.

/// One tier's entry point: the row table, then the kernel shape's band function. Each
/// shape is its own (non-inlined) function: inlined together into one body per tier,
/// adding the 3×3 stride-1 row blocks made the untouched stride-2 paths a third slower
/// (C = 128 @ 56²: 61 → 37 GFLOP/s), the compiler's register allocation of the one
/// huge function degrading as a whole.
macro_rules! tier {
    ($entry:ident, $S:ty, [$($feat:literal)?], $pb3s1:literal, $pb3s2:literal, $pb5:literal) => {
        unsafe fn $entry(a: &DwArgs) {
            /// A non-inlined function of this tier running `$call` on `($a, $t)`.
            macro_rules! shape {
                ($a:ident, $t:ident, $call:expr) => {{
                    $(#[target_feature(enable = $feat)])?
                    #[inline(never)]
                    unsafe fn shape($a: &DwArgs, $t: &[*const f32]) {
                        // SAFETY: the entry contract; the table comes from `row_table`
                        // (`borders` checks every tap).
                        unsafe { $call }
                    }
                    shape
                }};
            }
            let run = match row_table_shape(a) {
                (3, 1) => shape!(a, t, band::<$S, 3, 1, $pb3s1>(a, t)),
                (3, 2) => shape!(a, t, band::<$S, 3, 2, $pb3s2>(a, t)),
                (5, 1) => shape!(a, t, band::<$S, 5, 1, $pb5>(a, t)),
                (5, 2) => shape!(a, t, band::<$S, 5, 2, $pb5>(a, t)),
                _ => shape!(a, t, borders::<$S>(a, t, 0..a.g.out_w(), 0..0)),
            };
            let table = row_table(a);
            // SAFETY: the entry contract (extents checked, the tier detected); the
            // table's pointers and the output rows stay within the checked buffers.
            unsafe { run(a, &table) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
tier!(
    dw_avx512,
    super::simd::Avx512,
    ["avx512f,avx512bw,avx512vl,avx2,fma"],
    8,
    8,
    8
);
#[cfg(target_arch = "x86_64")]
tier!(dw_avx2, super::simd::Avx2, ["avx2,fma"], 4, 4, 4);
tier!(dw_portable, Portable, [], 4, 2, 2);

/// The specialised shape `(K, stride)` of a square, dilation-1 kernel (`(0, 0)` for any
/// other).
fn row_table_shape(a: &DwArgs) -> (usize, usize) {
    let g = a.g;
    let square = g.kernel_h() == g.kernel_w() && g.stride_h() == g.stride_w();
    if square && g.dilation_h() == 1 && g.dilation_w() == 1 {
        (g.kernel_h(), g.stride_h())
    } else {
        (0, 0)
    }
}

/// The input row read by kernel row i for the r-th output row of the call:
/// `table[r·kH + i]` (the zero row in the padding).
fn row_table(a: &DwArgs) -> Vec<*const f32> {
    let g = a.g;
    let c = a.in_px;
    let kh = g.kernel_h();
    let mut table = vec![std::ptr::null::<f32>(); a.rows.len() * kh];
    for (r, row) in a.rows.clone().enumerate() {
        let (n, oy) = (row / g.out_h(), row % g.out_h());
        for i in 0..kh {
            let iy = g.input_row(oy, i);
            table[r * kh + i] = if (0..g.in_h() as isize).contains(&iy) {
                // The row lies inside the input (iy < in_h, n < batch); wrapping_add
                // keeps this safe code (the kernels dereference it under their contract).
                a.input
                    .wrapping_add(((n * g.in_h() + iy as usize) * g.in_w()) * c)
            } else {
                a.zero_row
            };
        }
    }
    table
}

/// The output row `r` of this call.
#[inline(always)]
pub(super) unsafe fn out_row(a: &DwArgs, r: usize) -> *mut f32 {
    // SAFETY: r < rows.len(): inside the checked output.
    unsafe { a.out.add(r * a.g.out_w() * a.px_stride) }
}
