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
//! The input is never copied.

use super::simd::{activate, Epilogue, Portable, Simd};
use super::{AlignedVec, Isa, Tier};
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::ops::Activation;
use std::marker::PhantomData;

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
        if !copies_input(in_px, px_stride, g) {
            // SAFETY: extents checked by `run_rows`.
            return unsafe { dispatch(isa, &args) };
        }
        // A pixel stride of a multiple of 1 KiB puts one channel tile of every pixel in
        // the same few L1 sets (C = 512: two), so a block's own input lines evict each
        // other. At stride 1, into an output whose pixels are not crowded too, the rows
        // the call reads are first copied with a pixel stride off that grid (C + 16
        // floats). Crowded outputs gain nothing from it, and stride 2 (four times the
        // input per output) loses.
        let (lo, hi) = input_row_span(g, &rows);
        let px = c + CROWD_PAD;
        super::aligned::with_local(&CROWD, (hi - lo) * g.in_w() * px, |scratch| {
            for row in lo..hi {
                for x in 0..g.in_w() {
                    let from = (row * g.in_w() + x) * in_px;
                    let to = ((row - lo) * g.in_w() + x) * px;
                    scratch[to..to + c].copy_from_slice(&input[from..from + c]);
                }
            }
            let copy = DwArgs {
                head_bytes: scratch.as_ptr() as usize,
                in_px: px,
                // Global input row `lo` is the buffer's first row (`row_table` only
                // points at rows lo..hi).
                input: scratch.as_ptr().wrapping_sub(lo * g.in_w() * px),
                ..args
            };
            // SAFETY: as above, the input rows now in the buffer.
            unsafe { dispatch(isa, &copy) };
        });
    }
}

/// Extra floats per pixel in a crowded layer's copy (see `run_with_zeros`). One thread,
/// 3×3 stride 1 into an output of C + 16 floats per pixel, GFLOP/s without → with the
/// copy: C = 512 @ 14² 83 → 96, @ 7² 92 → 119, C = 1024 @ 7² 69 → 90; a dense C = 528
/// layer runs at 170.
pub(crate) const CROWD_PAD: usize = 16;

/// Whether a call on input pixels `in_px` floats apart copies its input rows first (see
/// `run_with_zeros`).
fn copies_input(in_px: usize, px_stride: usize, g: &ConvGeometry) -> bool {
    crowded(in_px) && !crowded(px_stride) && g.stride_w() == 1
}

/// Whether pixels `px` floats apart crowd a few L1 sets (a multiple of 1 KiB).
pub(crate) fn crowded(px: usize) -> bool {
    (px * 4).is_multiple_of(1024)
}

/// The global input rows `lo..hi` (`n·in_H + y`) that output rows `rows` read.
fn input_row_span(g: &ConvGeometry, rows: &std::ops::Range<usize>) -> (usize, usize) {
    let (mut lo, mut hi) = (usize::MAX, 0);
    for row in rows.clone() {
        let (n, oy) = (row / g.out_h(), row % g.out_h());
        for i in 0..g.kernel_h() {
            let iy = g.input_row(oy, i);
            if (0..g.in_h() as isize).contains(&iy) {
                let global = n * g.in_h() + iy as usize;
                lo = lo.min(global);
                hi = hi.max(global + 1);
            }
        }
    }
    if lo > hi {
        (0, 0)
    } else {
        (lo, hi)
    }
}

thread_local! {
    /// The copy of a crowded layer's input rows, kept between calls.
    static CROWD: std::cell::RefCell<AlignedVec> = std::cell::RefCell::new(AlignedVec::default());
}

/// Runs the call on tier `isa`.
///
/// # Safety
/// `a` describes buffers as `run_rows` checks them (`in_px ≥ channels` floats per input
/// pixel).
unsafe fn dispatch(isa: Tier, a: &DwArgs) {
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

struct DwArgs<'a> {
    /// Address of the input (its alignment decides the head tile, see [`Tiles`]).
    head_bytes: usize,
    g: &'a ConvGeometry,
    channels: usize,
    /// Floats per input pixel (≥ channels).
    in_px: usize,
    padded: usize,
    input: *const f32,
    /// Zeros, `max(in_w · C, C_pad) + HEAD_SLACK` of them when the geometry pads rows.
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
// stride 1, 3–4 at stride 2; a 7-pixel stride-2 tile spilled and ran 2× slower with the
// weights in registers).
// AVX-512 3×3 stride 1, weights in registers: 9 weights + bias + 8 accumulators + 1 input
// = 19 of 32 zmm.
// Streamed weights (`strip_streamed`: 5×5, and 3×3 at stride 2): 8 accumulators + the
// block's (8 − 1)·stride + K inputs of one kernel row + 1 weight ≤ 28 zmm. Before, 5×5
// held its 25 weights and only 4 accumulators (4 dependent FMA chains: half the FMA rate
// at best) and border pixels went one at a time. Single thread, `Conv2d::forward_into`,
// best of 7 (GFLOP/s, registers → streamed + checked whole rows): 5×5 s1 C240@28² 97 →
// 120, C480@14² 74 → 133, C672@14² 75 → 127, C1152@7² 54 → 102; 5×5 s2 C144@56² 33 → 65,
// C672@14² 25 → 59; 3×3 s2 C96@112² 35 → 43, C256@28² 37 → 40, C512@14² 33 → 42,
// C144@56² 46 → 43; 3×3 s1 at 7 columns C960 70 → 91, C1024 35 → 64. 3×3 stride 1 at
// 14+ columns stayed with the weights in registers (streamed: C144@56² 107 → 90,
// C384@14² 90 → 71).
// AVX2 3×3: 9 + 1 + 4 + 1 = 15 of 16 ymm; streamed 4-pixel blocks ≤ 16 ymm.
// The block widths (3×3 stride 1, 3×3 stride 2, 5×5) are the last arguments of `tier!`.

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
unsafe fn out_row(a: &DwArgs, r: usize) -> *mut f32 {
    // SAFETY: r < rows.len(): inside the checked output.
    unsafe { a.out.add(r * a.g.out_w() * a.px_stride) }
}

/// Columns `left` and `right` of every row and channel tile by the general loop.
#[inline(always)]
unsafe fn borders<S: Simd>(
    a: &DwArgs,
    table: &[*const f32],
    left: std::ops::Range<usize>,
    right: std::ops::Range<usize>,
) {
    let kh = a.g.kernel_h();
    for r in 0..a.rows.len() {
        for (c0, valid) in Tiles::new::<S>(a) {
            let t = ChannelTile {
                rows: &table[r * kh..(r + 1) * kh],
                c0,
                valid,
                // SAFETY: r < rows.len().
                out_row: unsafe { out_row(a, r) },
            };
            // SAFETY: general_span checks every tap; columns are < out_w.
            unsafe {
                if valid < S::LANES {
                    general_span::<S, true>(a, &t, left.clone());
                    general_span::<S, true>(a, &t, right.clone());
                } else {
                    general_span::<S, false>(a, &t, left.clone());
                    general_span::<S, false>(a, &t, right.clone());
                }
            }
        }
    }
}

/// A band of K×K, stride-`STRIDE`, dilation-1 output rows: the borders by the general
/// loop; the interior channel tile by channel tile, and inside a tile column strip by
/// column strip of `PB` pixels walking down the rows, with the K·K weights and the bias
/// loaded into registers once per strip. Walking down a strip, each output row reads
/// K − STRIDE input rows the previous one already brought into L1, so only STRIDE rows
/// of `PB·STRIDE + K − 1` pixels come from L2 per row. (Channel tiles sweeping one row at
/// a time read all K rows from L2 and ran at 57 GFLOP/s at C = 128 @ 56²; see the
/// module docs of `kernels` for the current numbers.)
#[inline(always)]
unsafe fn band<S: Simd, const K: usize, const STRIDE: usize, const PB: usize>(
    a: &DwArgs,
    table: &[*const f32],
) {
    let g = a.g;
    let (x0, x1) = a.interior;
    let (x0, x1) = (x0.min(g.out_w()), x1.max(x0).min(g.out_w()));
    // Checked blocks check only their first and last K − 1 input columns (`load_span`):
    // enough when at most K − 1 padded columns lie on each side. Wider padding (rare:
    // some outputs see padding only) takes the general loop outside the interior.
    let right = ((g.out_w().max(1) - 1) * STRIDE + K).saturating_sub(g.pad_left() + g.in_w());
    let narrow = g.pad_left() < K && right < K;
    let cols = if narrow {
        0..g.out_w()
    } else {
        // SAFETY: the general loop checks every tap.
        unsafe { borders::<S>(a, table, 0..x0, x1..g.out_w()) };
        x0..x1
    };
    // SAFETY: blocks stay inside the row; blocks reaching a border column are checked
    // (see `cover_row`, `load_span`).
    unsafe {
        // 5×5 at stride 2 reuses three of its five input rows per step down a strip: it
        // takes the stride-1 bound (see STRIP_WAYS_S2).
        let ways = if STRIDE == 1 || K >= 5 {
            STRIP_WAYS
        } else {
            STRIP_WAYS_S2
        };
        // With a pixel stride of a whole multiple of 1 KiB (C = 256), walking the strips
        // pays only while the call's input and output rows stay in L2: C = 256 @ 28²
        // (1.6 MiB) on one thread ran 46 GFLOP/s down the strips, 89 row by row. Other
        // strides keep the strips even from L3 (C = 128 @ 56²: 141 strips, 105 rows).
        let in_rows = (a.rows.len() * STRIDE + K).min(g.in_h() * g.batch());
        let call_bytes = (in_rows * g.in_w() + a.rows.len() * g.out_w()) * a.in_px * 4;
        let crowded = crowded(a.in_px) || crowded(a.px_stride);
        let strips = strip_fits_l1(a.in_px, PB * STRIDE + K - 1, K, ways)
            && !(crowded && call_bytes > STRIP_L2_BYTES);
        if K >= 5 {
            // Streamed weights (see `strip_streamed`).
            let all = std::iter::once(None);
            let tiles = Tiles::new::<S>(a).map(Some);
            let rows = a.rows.len();
            if strips {
                for tile in tiles {
                    let run = StreamRun::<S, K, STRIDE> {
                        a,
                        table,
                        tile,
                        rows: 0..rows,
                        _s: PhantomData,
                    };
                    cover_row::<PB>(cols.clone(), (x0, x1), &run);
                }
            } else {
                let group = row_group::<STRIDE>(a);
                for r in (0..rows).step_by(group) {
                    for tile in all.clone() {
                        let run = StreamRun::<S, K, STRIDE> {
                            a,
                            table,
                            tile,
                            rows: r..(r + group).min(rows),
                            _s: PhantomData,
                        };
                        cover_row::<PB>(cols.clone(), (x0, x1), &run);
                    }
                }
            }
            return;
        }
        if strips {
            // Down the strips: all rows per channel tile.
            tiles::<S, K, STRIDE, PB>(a, table, &cols, x0, x1, 0..a.rows.len());
        } else {
            // Row by row, block by block, every channel tile of a block in turn: the
            // block's input streams through L1 in address order.
            let n = a.rows.len();
            let group = row_group::<STRIDE>(a);
            for r in (0..n).step_by(group) {
                cover_row::<PB>(
                    cols.clone(),
                    (x0, x1),
                    &RowRun::<S, K, STRIDE> {
                        a,
                        table,
                        rows: r..(r + group).min(n),
                        _s: PhantomData,
                    },
                );
            }
        }
    }
}

/// Output rows per block and tile in row mode: at stride 1 a few rows in turn, each
/// reading K − 1 of the previous one's input lines while they are still in L1.
fn row_group<const STRIDE: usize>(a: &DwArgs) -> usize {
    match STRIDE {
        1 if (a.in_px * 4).is_multiple_of(4096) => 2,
        1 => ROW_GROUP,
        _ => 1,
    }
}

/// Output rows per block in row mode at stride 1 (see `band`); two when every pixel
/// falls in one L1 set (C = 1024). One thread, GFLOP/s, 1 / 2 / 4 / 8 rows (`dw_probe`):
/// 3×3 C = 512 @ 14² 84 / 106 / 115 / 85, C = 256 @ 28² 105 / 107–112 / 123–125 / 120,
/// C = 1024 @ 7² 71 / 78 / 67 / 52. Stride 2 gained nothing (C = 128 @ 28²: 92 / 79).
const ROW_GROUP: usize = 4;

/// Most bytes of input and output rows one call may touch for the strip walk (see `band`):
/// three quarters of a 1 MiB L2.
const STRIP_L2_BYTES: usize = 768 * 1024;

/// Something that computes a block of `P` output pixels starting at column `x`.
trait BlockRun {
    /// Computes pixels `x .. x + P` (`x + P ≤ out_w`). `CHECKED`: some tap of the block
    /// may fall outside the input columns (it reads a zero vector); otherwise every tap
    /// of every pixel is inside the input row.
    unsafe fn run<const P: usize, const CHECKED: bool>(&self, x: usize);
}

/// Covers output columns `cols` of a row with register blocks of at most `PB` pixels:
/// `⌈w / PB⌉` blocks of near-equal width (MobileNet's 112/56/28/14 columns go in blocks
/// of 8/8/7/7, none computed twice), each checked only if it reaches a border column
/// outside `interior`. Border pixels thus run in blocks of independent accumulators too:
/// one pixel at a time (9 dependent FMAs, a branch per tap) took 20% of a 3×3 layer at
/// 28 columns, where the two border columns are 7% of the pixels.
#[inline(always)]
unsafe fn cover_row<const PB: usize>(
    cols: std::ops::Range<usize>,
    interior: (usize, usize),
    run: &impl BlockRun,
) {
    let w = cols.len();
    if w == 0 {
        return;
    }
    let blocks = w.div_ceil(PB);
    let (base, wider) = (w / blocks, w % blocks);
    let mut x = cols.start;
    for b in 0..blocks {
        let p = base + usize::from(b < wider);
        // SAFETY: x + p ≤ w; a block reaching outside the interior is checked.
        unsafe {
            if x < interior.0 || x + p > interior.1 {
                block::<PB, true>(p, x, run);
            } else {
                block::<PB, false>(p, x, run);
            }
        }
        x += p;
    }
}

/// Runs the `p`-pixel block at `x` (`1 ≤ p ≤ PB ≤ 8`).
#[inline(always)]
unsafe fn block<const PB: usize, const CHECKED: bool>(p: usize, x: usize, run: &impl BlockRun) {
    const { assert!(PB <= 8) };
    // SAFETY: the caller's contract for `run`.
    unsafe {
        match p {
            8 => run.run::<8, CHECKED>(x),
            7 => run.run::<7, CHECKED>(x),
            6 => run.run::<6, CHECKED>(x),
            5 => run.run::<5, CHECKED>(x),
            4 => run.run::<4, CHECKED>(x),
            3 => run.run::<3, CHECKED>(x),
            2 => run.run::<2, CHECKED>(x),
            _ => run.run::<1, CHECKED>(x),
        }
    }
}

/// Row mode: every channel tile of a block of one row.
struct RowRun<'a, S, const K: usize, const STRIDE: usize> {
    a: &'a DwArgs<'a>,
    table: &'a [*const f32],
    rows: std::ops::Range<usize>,
    _s: PhantomData<S>,
}

impl<S: Simd, const K: usize, const STRIDE: usize> BlockRun for RowRun<'_, S, K, STRIDE> {
    #[inline(always)]
    unsafe fn run<const P: usize, const CHECKED: bool>(&self, x: usize) {
        // SAFETY: cover_row's contract.
        unsafe { row_tiles::<S, K, STRIDE, P, CHECKED>(self.a, self.table, x, self.rows.clone()) }
    }
}

/// Streamed-weight blocks with checked columns ([`strip_streamed`]) over rows `rows`: of
/// one channel tile, or of every tile in turn when `tile` is `None`.
struct StreamRun<'a, S, const K: usize, const STRIDE: usize> {
    a: &'a DwArgs<'a>,
    table: &'a [*const f32],
    tile: Option<(usize, usize)>,
    rows: std::ops::Range<usize>,
    _s: PhantomData<S>,
}

impl<S: Simd, const K: usize, const STRIDE: usize> BlockRun for StreamRun<'_, S, K, STRIDE> {
    #[inline(always)]
    unsafe fn run<const P: usize, const CHECKED: bool>(&self, x: usize) {
        let one = self.tile.into_iter();
        let all = self
            .tile
            .is_none()
            .then(|| Tiles::new::<S>(self.a))
            .into_iter()
            .flatten();
        for (c0, valid) in one.chain(all) {
            // SAFETY: x + P ≤ out_w (cover_row's contract); columns checked unless interior;
            // bias padded.
            unsafe {
                let bias = S::load(self.a.bias.add(c0));
                let rows = self.rows.clone();
                let (a, t) = (self.a, self.table);
                if valid < S::LANES {
                    strip_streamed::<S, K, STRIDE, P, true, CHECKED>(
                        a, t, c0, valid, x, bias, rows,
                    );
                } else {
                    strip_streamed::<S, K, STRIDE, P, false, CHECKED>(
                        a, t, c0, valid, x, bias, rows,
                    );
                }
            }
        }
    }
}

/// Strip mode: one channel tile, a block of pixels in every row of the band.
struct StripRun<'a, S: Simd, const K: usize, const STRIDE: usize, const MASKED: bool> {
    a: &'a DwArgs<'a>,
    table: &'a [*const f32],
    c0: usize,
    valid: usize,
    w: &'a [[S::V; K]; K],
    bias: S::V,
    rows: std::ops::Range<usize>,
}

impl<S: Simd, const K: usize, const STRIDE: usize, const MASKED: bool> BlockRun
    for StripRun<'_, S, K, STRIDE, MASKED>
{
    #[inline(always)]
    unsafe fn run<const P: usize, const CHECKED: bool>(&self, x: usize) {
        // SAFETY: cover_row's contract.
        unsafe {
            strip::<S, K, STRIDE, P, MASKED, CHECKED>(
                self.a,
                self.table,
                self.c0,
                self.valid,
                x,
                self.w,
                self.bias,
                self.rows.clone(),
            )
        }
    }
}

/// L1 ways the lines of one strip may take per set: Zen 4 has 8, Zen 5 12, and the
/// output and weights need some.
const STRIP_WAYS: usize = 8;

/// The same bound at stride 2, where each step down brings two new input rows: half
/// the ways. Stride 2 on Zen 5 (µs per layer, 6 runs each, strips vs row by row):
/// C = 32 @ 112² 50 vs 60, C = 64 @ 112² 87 vs 97, C = 128 @ 56² 47 vs 49 (4 lines per
/// set: strips); C = 256 @ 28² 30 vs 27, C = 512 @ 14² 20 vs 16, C = 1024 @ 14² 88 vs
/// 60 (7, 14 and 27 lines per set: rows). 3×3 only: 5×5 at stride 2 walks the strips
/// within [`STRIP_WAYS`] (1 thread, GFLOP/s, rows → strips: C = 144 @ 56² 92 → 138,
/// C = 240 @ 28² 94 → 164, C = 672 @ 14² 100 → 165; 3×3 C = 128 @ 56² lost, 56 → 49).
const STRIP_WAYS_S2: usize = 4;

/// Whether the `rows × pixels` lines one channel tile of a strip touches (`pixels`
/// apart by `C·4` bytes; rows of these layers alias to the same sets) stay in L1 while
/// the strip walks down, so each output row reuses K − 1 input rows. Pixel strides that
/// are multiples of 1 KiB crowd a few sets: C = 512 @ 14² ran at 22 GFLOP/s down the
/// strips against 38–51 row by row; C = 128 @ 56² (8 sets) gained 74 → 85–88. Stride 2
/// takes the strips only within [`STRIP_WAYS_S2`] ways (C ≤ 128).
fn strip_fits_l1(channels: usize, pixels: usize, rows: usize, ways: usize) -> bool {
    const SET_PERIOD: usize = 4096;
    let step = (channels * 4) % SET_PERIOD;
    let sets = if step == 0 {
        1
    } else {
        (SET_PERIOD / gcd(step, SET_PERIOD)).min(pixels)
    };
    (pixels * rows).div_ceil(sets) <= ways
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Every channel tile of output pixels `x .. x + PB` of row `r`, weights loaded per tile;
/// `CHECKED`: taps outside the input columns read zeros (see [`strip`]).
#[inline(always)]
unsafe fn row_tiles<
    S: Simd,
    const K: usize,
    const STRIDE: usize,
    const PB: usize,
    const CHECKED: bool,
>(
    a: &DwArgs,
    table: &[*const f32],
    x: usize,
    rows: std::ops::Range<usize>,
) {
    for (c0, valid) in Tiles::new::<S>(a) {
        let rows = rows.clone();
        // SAFETY: as in `tile_strips` (weights and bias padded; columns checked unless
        // the block is interior).
        unsafe {
            let w = tile_weights::<S, K>(a, c0);
            let bias = S::load(a.bias.add(c0));
            if valid < S::LANES {
                strip::<S, K, STRIDE, PB, true, CHECKED>(a, table, c0, valid, x, &w, bias, rows)
            } else {
                strip::<S, K, STRIDE, PB, false, CHECKED>(a, table, c0, valid, x, &w, bias, rows)
            }
        }
    }
}

/// Every channel tile of columns `cols` of rows `rows` (interior `x0..x1`).
#[inline(always)]
unsafe fn tiles<S: Simd, const K: usize, const STRIDE: usize, const PB: usize>(
    a: &DwArgs,
    table: &[*const f32],
    cols: &std::ops::Range<usize>,
    x0: usize,
    x1: usize,
    rows: std::ops::Range<usize>,
) {
    for (c0, valid) in Tiles::new::<S>(a) {
        let (cols, rows) = (cols.clone(), rows.clone());
        // SAFETY: as in `band`.
        unsafe {
            if valid < S::LANES {
                tile_strips::<S, K, STRIDE, PB, true>(a, table, c0, valid, cols, x0, x1, rows);
            } else {
                tile_strips::<S, K, STRIDE, PB, false>(a, table, c0, valid, cols, x0, x1, rows);
            }
        }
    }
}

/// The K×K weight vectors of the channel tile starting at `c0`.
///
/// # Safety
/// Weights hold K·K·padded + HEAD_SLACK floats; `c0` is a tile of this call (see `Tiles`).
#[inline(always)]
unsafe fn tile_weights<S: Simd, const K: usize>(a: &DwArgs, c0: usize) -> [[S::V; K]; K] {
    let mut w = [[S::zero(); K]; K];
    for (i, wr) in w.iter_mut().enumerate() {
        for (j, wv) in wr.iter_mut().enumerate() {
            // SAFETY: the function's contract: (i·K + j)·padded + c0 + LANES is inside.
            *wv = unsafe { S::load(a.weights.add((i * K + j) * a.padded + c0)) };
        }
    }
    w
}

/// Every strip of columns `cols` of one channel tile.
#[inline(always)]
unsafe fn tile_strips<
    S: Simd,
    const K: usize,
    const STRIDE: usize,
    const PB: usize,
    const MASKED: bool,
>(
    a: &DwArgs,
    table: &[*const f32],
    c0: usize,
    valid: usize,
    cols: std::ops::Range<usize>,
    x0: usize,
    x1: usize,
    rows: std::ops::Range<usize>,
) {
    // SAFETY: weights hold K·K·padded + HEAD_SLACK floats and bias padded + HEAD_SLACK;
    // c0 + LANES ≤ padded + HEAD_SLACK for every tile (see `Tiles`).
    unsafe {
        let w = tile_weights::<S, K>(a, c0);
        let bias = S::load(a.bias.add(c0));
        let run = StripRun::<S, K, STRIDE, MASKED> {
            a,
            table,
            c0,
            valid,
            w: &w,
            bias,
            rows,
        };
        cover_row::<PB>(cols, (x0, x1), &run);
    }
}

/// Output pixels `x .. x + PB` of channels `c0 .. c0 + valid` in rows `rows` of the band.
/// Each output accumulates its taps in `(i, j)` order from the bias; `CHECKED`: a tap
/// outside the input columns adds `0·w` (the zero padding, as every path does).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn strip<
    S: Simd,
    const K: usize,
    const STRIDE: usize,
    const PB: usize,
    const MASKED: bool,
    const CHECKED: bool,
>(
    a: &DwArgs,
    table: &[*const f32],
    c0: usize,
    valid: usize,
    x: usize,
    w: &[[S::V; K]; K],
    bias: S::V,
    rows: std::ops::Range<usize>,
) {
    if K >= 5 || STRIDE == 2 {
        // SAFETY: the same contract.
        return unsafe {
            strip_streamed::<S, K, STRIDE, PB, MASKED, CHECKED>(a, table, c0, valid, x, bias, rows)
        };
    }
    let cols = Columns::of(a);
    let span = PB + K - 1;
    // SAFETY: `load_span` reads every tap inside its row, or nothing (see there);
    // r < rows.len() = table.len() / K, and x + PB ≤ out_w, for the stores.
    unsafe {
        for r in rows {
            let mut acc = [bias; PB];
            for i in 0..K {
                let row = table.get_unchecked(r * K + i).add(c0);
                for j in 0..K {
                    for (p, acc_p) in acc.iter_mut().enumerate() {
                        // Only the first and last K − 1 columns of a checked block may
                        // lie outside the row (see `load_span`).
                        let m = p + j;
                        let edge = m + 1 < K || m + K > span;
                        let v = if edge {
                            column::<S, MASKED, CHECKED>(cols, row, x + m, valid)
                        } else {
                            column::<S, MASKED, false>(cols, row, x + m, valid)
                        };
                        *acc_p = S::mul_add(v, w[i][j], *acc_p);
                    }
                }
            }
            let out = out_row(a, r);
            for (p, &acc_p) in acc.iter().enumerate() {
                let y = activate::<S>(acc_p, &a.epi);
                store_out::<S, MASKED>(out.add((x + p) * a.px_stride + c0), y, valid);
            }
        }
    }
}

/// The input vector at padded column `m` (input column `m − pad_left`) of `row` (a row
/// pointer already offset to the tile's first channel `c0`), channels `c0 .. c0 + valid`.
/// `CHECKED`: a column outside the input reads as zeros through a load with every lane
/// masked off, aimed at a column inside the row (the nearest one), so the load never
/// needs the CPU's fault suppression. The lane count and the clamped column depend only
/// on `m`, so a block computes them once, not per row, and no branch or pointer select
/// sits between its vector loads. Measured alternatives (GFLOP/s, 1 thread): a branch per
/// column let the compiler spill the weights (3×3 C = 128 @ 28²: 69 against 175); a
/// select of the zero row cost a chain of selects per row (3×3 C = 32 @ 56²: 134 against
/// 180); masked-off loads aimed outside the row (the row before the tensor or the zero
/// row) took a microcode assist each (5×5 C = 1152 @ 7²: 23 against 144).
///
/// # Safety
/// Unchecked: `0 ≤ m − pad_left < in_w`. Either way `row` is a row of the input (or the
/// zero row, as wide) offset by `c0`, and `valid` channels from `c0` exist.
#[inline(always)]
unsafe fn column<S: Simd, const MASKED: bool, const CHECKED: bool>(
    cols: Columns,
    row: *const f32,
    m: usize,
    valid: usize,
) -> S::V {
    let ix = m.wrapping_sub(cols.left);
    // SAFETY: the function's contract; a checked load reads `n` lanes of an in-row
    // column, or none.
    unsafe {
        if CHECKED {
            let lanes = if MASKED { valid } else { S::LANES };
            let n = if ix < cols.in_w { lanes } else { 0 };
            S::load_partial(row.add(ix.min(cols.in_w - 1) * cols.px), n)
        } else {
            load_in::<S, MASKED>(row.add(ix * cols.px), valid)
        }
    }
}

/// The input vectors of padded columns `m0 .. m0 + out.len()` of `row` (as [`column`]),
/// for a block of a K-wide kernel. `CHECKED`, only the first and last K − 1 columns of
/// the span are checked (a masked load each): with at most K − 1 padded columns on each
/// side (`band` sends wider padding elsewhere), every other column of a block is inside
/// the row. Checking all of them cost a mask register per column, and the 7-pixel
/// blocks of a 14-column row are all border blocks.
/// A pointer walks the row one pixel at a time behind [`opaque`]: computed from the
/// first column, each column's offset `m·C` took a register of its own, and a stride-2
/// block's 17 of them spilled.
///
/// # Safety
/// As [`column`] for every column of the span; `CHECKED`: the columns from the K-th to
/// the K-th last are inside the row.
#[inline(always)]
unsafe fn load_span<S: Simd, const K: usize, const MASKED: bool, const CHECKED: bool>(
    cols: Columns,
    row: *const f32,
    m0: usize,
    valid: usize,
    out: &mut [S::V],
) {
    let span = out.len();
    let first = if CHECKED { K - 1 } else { 0 };
    // SAFETY: the function's contract; the walk starts at column `first`, inside the row.
    unsafe {
        let mut p = row.wrapping_add((m0 + first - cols.left) * cols.px);
        for (m, v) in out.iter_mut().enumerate() {
            if CHECKED && (m < first || m + first >= span) {
                *v = column::<S, MASKED, true>(cols, row, m0 + m, valid);
            } else {
                *v = load_in::<S, MASKED>(p, valid);
            }
            if m >= first {
                p = p.wrapping_add(opaque(cols.px));
            }
        }
    }
}

/// `n`, hidden from the optimiser (an empty asm comment, no instruction; not `pure`, so
/// two calls are two unknown values): a pointer advanced by one step at a time then stays
/// a walking pointer instead of one offset register per step (see [`load_span`]).
#[inline(always)]
fn opaque(n: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let mut n = n;
        // SAFETY: an empty instruction string; `n` stays in its register.
        unsafe {
            std::arch::asm!("/* {n} */", n = inout(reg) n, options(nomem, nostack, preserves_flags))
        };
        n
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::hint::black_box(n)
    }
}

/// The column geometry [`column`] needs, read once per block into locals: read through
/// `a.g` (a reference inside `DwArgs`), the compiler reloaded them after every output
/// store and recomputed each row's addresses (3×3 C = 32 @ 56²: 130 against 189 GFLOP/s).
#[derive(Clone, Copy)]
struct Columns {
    left: usize,
    in_w: usize,
    /// Floats per input pixel.
    px: usize,
}

impl Columns {
    #[inline(always)]
    fn of(a: &DwArgs) -> Self {
        Columns {
            left: a.g.pad_left(),
            in_w: a.g.in_w(),
            px: a.in_px,
        }
    }
}

/// Most input vectors one kernel row of a [`strip_streamed`] block holds in registers:
/// `(PB − 1)·STRIDE + K` for the blocks used (8 pixels at 5×5 stride 2: 19).
const STREAM_INPUTS: usize = 24;

/// [`strip`] for large kernels (5×5): the K×K weights do not fit in registers beside
/// enough accumulators (25 weights left room for 4 pixels, 4 dependent FMA chains: at
/// most half the FMA rate), so per kernel row the block's input vectors are loaded into
/// registers once and each weight is loaded once per block and applied to every pixel:
/// PB accumulators + (PB − 1)·STRIDE + K inputs + 1 weight. Each output still
/// accumulates its taps in `(i, j)` order from the bias, as [`strip`] does.
/// `CHECKED`: input columns outside the row are zero vectors (border pixels; a padded
/// tap then adds `0·w`, as a zero from the padding would).
#[inline(always)]
unsafe fn strip_streamed<
    S: Simd,
    const K: usize,
    const STRIDE: usize,
    const PB: usize,
    const MASKED: bool,
    const CHECKED: bool,
>(
    a: &DwArgs,
    table: &[*const f32],
    c0: usize,
    valid: usize,
    x: usize,
    bias: S::V,
    rows: std::ops::Range<usize>,
) {
    let span = (PB - 1) * STRIDE + K;
    let cols = Columns::of(a);
    const { assert!((PB - 1) * STRIDE + K <= STREAM_INPUTS) };
    // SAFETY: as in `strip` (interior columns, rows inside the call); weights hold
    // K·K·padded + HEAD_SLACK floats, so every tap's vector at c0 is inside.
    unsafe {
        for r in rows {
            let mut acc = [bias; PB];
            for i in 0..K {
                let row = table.get_unchecked(r * K + i).add(c0);
                let mut input = [S::zero(); STREAM_INPUTS];
                load_span::<S, K, MASKED, CHECKED>(
                    cols,
                    row,
                    x * STRIDE,
                    valid,
                    &mut input[..span],
                );
                for j in 0..K {
                    let wv = S::load(a.weights.add((i * K + j) * a.padded + c0));
                    for (p, acc_p) in acc.iter_mut().enumerate() {
                        *acc_p = S::mul_add(input[p * STRIDE + j], wv, *acc_p);
                    }
                }
            }
            let out = out_row(a, r);
            for (p, &acc_p) in acc.iter().enumerate() {
                let y = activate::<S>(acc_p, &a.epi);
                store_out::<S, MASKED>(out.add((x + p) * a.px_stride + c0), y, valid);
            }
        }
    }
}

/// Floats of slack after the packed weights, the bias and the zero row: a head tile moves
/// every later tile off the 16-float grid, so the last (masked) tile's full-width weight
/// loads may run up to 15 floats past the padded channels.
const HEAD_SLACK: usize = 16;

/// Fewest channel tiles for which a head tile pays: it adds one masked tile per pixel
/// block (C = 32: 2 → 3 tiles, 88 → 65 GFLOP/s at 112²; C = 128: 8 → 9 tiles,
/// 72 → 100 at 56²).
const HEAD_MIN_TILES: usize = 8;

/// The channel tiles `(c0, valid)` of a call. When C·4 bytes is a multiple of the vector
/// size, every pixel of the input has the same alignment, and a first, masked "head" tile
/// of the channels before the first vector boundary makes every later input load
/// aligned: tensors are plain `Vec<f32>` (16-byte aligned from malloc), and loads that
/// straddle two cache lines ran the depthwise kernel up to 1.8× slower (DESIGN.md §4).
struct Tiles {
    next: usize,
    channels: usize,
    lanes: usize,
    head: usize,
}

impl Tiles {
    #[inline(always)]
    fn new<S: Simd>(a: &DwArgs) -> Self {
        let vector_bytes = S::LANES * 4;
        let misaligned = a.head_bytes % vector_bytes;
        let head = if misaligned != 0
            && (a.in_px * 4).is_multiple_of(vector_bytes)
            && a.channels >= HEAD_MIN_TILES * S::LANES
            && a.g.stride_w() == 1
        {
            (vector_bytes - misaligned) / 4
        } else {
            0
        };
        Tiles {
            next: 0,
            channels: a.channels,
            lanes: S::LANES,
            head: head.min(a.channels),
        }
    }
}

impl Iterator for Tiles {
    type Item = (usize, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.next >= self.channels {
            return None;
        }
        let c0 = self.next;
        let width = if c0 == 0 && self.head > 0 {
            self.head
        } else {
            self.lanes
        };
        let valid = width.min(self.channels - c0);
        self.next = c0 + width;
        Some((c0, valid))
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

/// Any kernel, stride and dilation, one pixel at a time, each tap checked against the
/// input columns (rows are already resolved to the input or the zero row).
#[inline(always)]
unsafe fn general_span<S: Simd, const MASKED: bool>(
    a: &DwArgs,
    t: &ChannelTile,
    xs: std::ops::Range<usize>,
) {
    let g = a.g;
    let c = a.in_px;
    // SAFETY: taps are used only when 0 ≤ ix < in_w, so reads stay in the row; weights
    // and bias are padded (see `row_tile`); x < out_w keeps the store in the output row.
    unsafe {
        let bias = S::load(a.bias.add(t.c0));
        for x in xs {
            let mut acc = bias;
            for i in 0..g.kernel_h() {
                let row = t.rows[i];
                for j in 0..g.kernel_w() {
                    let ix = g.input_col(x, j);
                    if !(0..g.in_w() as isize).contains(&ix) {
                        continue;
                    }
                    let v = load_in::<S, MASKED>(row.add(ix as usize * c + t.c0), t.valid);
                    let w = S::load(a.weights.add((i * g.kernel_w() + j) * a.padded + t.c0));
                    acc = S::mul_add(v, w, acc);
                }
            }
            let y = activate::<S>(acc, &a.epi);
            store_out::<S, MASKED>(t.out_row.add(x * a.px_stride + t.c0), y, t.valid);
        }
    }
}
