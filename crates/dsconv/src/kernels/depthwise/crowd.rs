//! The crowded-input copy. A pixel stride that is a multiple of 1 KiB puts one channel
//! tile of every pixel in the same few L1 sets (C = 512: two; C = 1024: one), so a
//! block's own input lines evict each other. At stride 1, into an output whose pixels are
//! not crowded too, the rows a call reads are first copied with a pixel stride off that
//! grid (C + [`CROWD_PAD`] floats) and the kernel runs on the copy. Crowded outputs gain
//! nothing from it, and stride 2 (four times the input per output) loses, so those read
//! in place. Fused separable bands and MobileNetV1's activations use the same padded
//! stride (`kernels::uncrowded_pixel_stride`), so in the networks the copy rarely runs.

use super::{dispatch, DwArgs};
use crate::geometry::ConvGeometry;
use crate::kernels::{AlignedVec, Tier};

/// Extra floats per pixel in a crowded layer's copy. One thread, 3×3 stride 1 into an
/// output of C + 16 floats per pixel, GFLOP/s without → with the copy: C = 512 @ 14²
/// 83 → 96, C = 1024 @ 7² 69 → 90 (record `2026-12-02-kernels-tuning-history`).
pub(crate) const CROWD_PAD: usize = 16;

/// Whether a call on input pixels `in_px` floats apart copies its input rows first (see
/// the module docs).
pub(super) fn copies_input(in_px: usize, px_stride: usize, g: &ConvGeometry) -> bool {
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

/// Runs the call `a` on a copy of the input rows it reads, `C + CROWD_PAD` floats per
/// pixel (`input` is the call's whole input, `a.in_px` floats per pixel).
///
/// # Safety
/// `a` describes buffers as `run_rows` checks them, and its zero row is as wide as a
/// copied row (`in_w·(C + CROWD_PAD)` floats).
pub(super) unsafe fn run_copied(isa: Tier, a: DwArgs, input: &[f32]) {
    let (g, c, in_px) = (a.g, a.channels, a.in_px);
    let (lo, hi) = input_row_span(g, &a.rows);
    let px = c + CROWD_PAD;
    crate::kernels::aligned::with_local(&CROWD, (hi - lo) * g.in_w() * px, |scratch| {
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
            ..a
        };
        // SAFETY: the function's contract, the input rows now in the buffer.
        unsafe { dispatch(isa, &copy) };
    });
}
