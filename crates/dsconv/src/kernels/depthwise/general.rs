//! The general loop: any kernel, stride and dilation, one pixel at a time with every tap
//! checked against the input columns. It runs every shape without a specialised band, and
//! the border columns of a band whose padding is wider than K − 1.

use super::channels::{load_in, store_out, Tiles};
use super::{out_row, DwArgs};
use crate::kernels::simd::{activate, Simd};

/// One channel tile of one output row: `rows[i]` is the input row read by kernel row `i`
/// (or the zero row), channels `c0 .. c0 + valid`.
struct ChannelTile<'r> {
    rows: &'r [*const f32],
    c0: usize,
    valid: usize,
    out_row: *mut f32,
}

/// Columns `left` and `right` of every row and channel tile by the general loop.
#[inline(always)]
pub(super) unsafe fn borders<S: Simd>(
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
