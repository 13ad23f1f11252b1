//! Strip mode and the block bodies. Down a column strip, each output row reads K − STRIDE
//! input rows the previous one already brought into L1 (`StripRun`, `tile_strips`), as
//! long as a strip's lines fit the L1 ways (`strip_fits_l1`, `STRIP_WAYS*`). The bodies
//! of one block of pixels over rows: `strip` (3×3 stride 1, the 9 weights in registers)
//! and `strip_streamed` (5×5 and stride 2: each kernel row's input vectors in registers,
//! the weights streamed).

use super::blocks::{cover_row, BlockRun};
use super::channels::{store_out, tile_weights};
use super::columns::{column, load_span, Columns};
use super::{out_row, DwArgs};
use crate::kernels::gcd;
use crate::kernels::simd::{activate, Simd};

/// Most bytes of input and output rows a crowded call may touch for the strip walk (see
/// `band`): three quarters of a 1 MiB L2. C = 256 @ 28² (1.6 MiB), 1 thread: 46 GFLOP/s
/// down the strips, 89 row by row (record `2026-12-02-kernels-tuning-history`).
pub(super) const STRIP_L2_BYTES: usize = 768 * 1024;

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
/// output and weights need some. C = 128 @ 56² s1 (8 sets): 74 → 85–88 GFLOP/s down the
/// strips; 12 (Zen 5's count) was tried and reverted (record
/// `2026-12-02-kernels-tuning-history`).
pub(super) const STRIP_WAYS: usize = 8;

/// The same bound at stride 2, where each step down brings two new input rows: half
/// the ways. µs per layer, strips vs row by row: C = 32 @ 112² 50 vs 60 (4 lines per set:
/// strips), C = 512 @ 14² 20 vs 16 (14 lines: rows). 3×3 only: 5×5 at stride 2 walks the
/// strips within [`STRIP_WAYS`] (C = 240 @ 28²: 94 → 164 GFLOP/s). Record
/// `2026-12-02-kernels-tuning-history`.
pub(super) const STRIP_WAYS_S2: usize = 4;

/// Whether the `rows × pixels` lines one channel tile of a strip touches (`pixels`
/// apart by `C·4` bytes; rows of these layers alias to the same sets) stay in L1 while
/// the strip walks down, so each output row reuses K − 1 input rows. Pixel strides that
/// are multiples of 1 KiB crowd a few sets (C = 512 @ 14², 2 sets: 22 GFLOP/s down the
/// strips, 38–51 row by row). Stride 2 takes the strips only within [`STRIP_WAYS_S2`]
/// ways (C ≤ 128).
pub(super) fn strip_fits_l1(channels: usize, pixels: usize, rows: usize, ways: usize) -> bool {
    const SET_PERIOD: usize = 4096;
    let step = (channels * 4) % SET_PERIOD;
    let sets = if step == 0 {
        1
    } else {
        (SET_PERIOD / gcd(step, SET_PERIOD)).min(pixels)
    };
    (pixels * rows).div_ceil(sets) <= ways
}

/// Every strip of columns `cols` of one channel tile.
#[inline(always)]
pub(super) unsafe fn tile_strips<
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
pub(super) unsafe fn strip<
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
pub(super) unsafe fn strip_streamed<
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
