//! Input column loads of a register block: one column ([`column()`]) or a block's whole
//! span of one kernel row ([`load_span`]), unchecked inside the row or, for border
//! blocks, with masked-off loads that read the padding as zeros without a branch.

use super::channels::load_in;
use super::DwArgs;
use crate::kernels::simd::Simd;

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
pub(super) unsafe fn column<S: Simd, const MASKED: bool, const CHECKED: bool>(
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

/// The input vectors of padded columns `m0 .. m0 + out.len()` of `row` (as [`column()`]),
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
/// As [`column()`] for every column of the span; `CHECKED`: the columns from the K-th to
/// the K-th last are inside the row.
#[inline(always)]
pub(super) unsafe fn load_span<S: Simd, const K: usize, const MASKED: bool, const CHECKED: bool>(
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

/// The column geometry [`column()`] needs, read once per block into locals: read through
/// `a.g` (a reference inside `DwArgs`), the compiler reloaded them after every output
/// store and recomputed each row's addresses (3×3 C = 32 @ 56²: 130 against 189 GFLOP/s).
#[derive(Clone, Copy)]
pub(super) struct Columns {
    pub(super) left: usize,
    pub(super) in_w: usize,
    /// Floats per input pixel.
    pub(super) px: usize,
}

impl Columns {
    #[inline(always)]
    pub(super) fn of(a: &DwArgs) -> Self {
        Columns {
            left: a.g.pad_left(),
            in_w: a.g.in_w(),
            px: a.in_px,
        }
    }
}
