//! A band of K×K output rows (3×3 and 5×5, stride 1 or 2): `band` chooses between
//! walking column strips down the rows (`strips`) and going row by row, and covers each
//! output row with register blocks of near-equal width (`cover_row`, `block`); the
//! [`BlockRun`]s say what one block computes: every channel tile of a block in row mode
//! (`RowRun`, `row_tiles`), or the streamed-weight 5×5 blocks (`StreamRun`).

use super::channels::{tile_weights, Tiles};
use super::crowd::crowded;
use super::general::borders;
use super::strips::{
    strip, strip_fits_l1, strip_streamed, tile_strips, STRIP_L2_BYTES, STRIP_WAYS, STRIP_WAYS_S2,
};
use super::DwArgs;
use crate::kernels::simd::Simd;
use std::marker::PhantomData;

/// A band of K×K, stride-`STRIDE`, dilation-1 output rows: the borders by the general
/// loop; the interior channel tile by channel tile, and inside a tile column strip by
/// column strip of `PB` pixels walking down the rows, with the K·K weights and the bias
/// loaded into registers once per strip. Walking down a strip, each output row reads
/// K − STRIDE input rows the previous one already brought into L1, so only STRIDE rows
/// of `PB·STRIDE + K − 1` pixels come from L2 per row. When a strip's lines do not fit L1
/// (`strip_fits_l1`), or a crowded layer's rows exceed `STRIP_L2_BYTES`, it goes row by
/// row instead, block by block with every channel tile of a block in turn.
#[inline(always)]
pub(super) unsafe fn band<S: Simd, const K: usize, const STRIDE: usize, const PB: usize>(
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
        // pays only while the call's input and output rows stay in L2 (see
        // STRIP_L2_BYTES); other strides keep the strips even from L3.
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
/// falls in one L1 set (C = 1024). 1 thread GFLOP/s, 1 / 2 / 4 / 8 rows: 3×3 C = 512 @ 14²
/// 84 / 106 / 115 / 85, C = 1024 @ 7² 71 / 78 / 67 / 52 (record
/// `2026-12-02-kernels-tuning-history`).
const ROW_GROUP: usize = 4;

/// Something that computes a block of `P` output pixels starting at column `x`.
pub(super) trait BlockRun {
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
pub(super) unsafe fn cover_row<const PB: usize>(
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
