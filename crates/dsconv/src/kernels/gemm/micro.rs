//! The microkernel: an `R × NV·LANES` register tile of C over one reduction block, with
//! bias, activation and residual in its epilogue (`micro`); `run_tile` picks the instance
//! for a row tile (a ragged last tile of 5–13 rows runs one of exactly its height), and
//! column tails go through a stack tile (`EdgeTile`) so the microkernel stays unmasked.

use super::PANEL;
use crate::kernels::simd::{activate_tile, Epilogue, Simd};

/// One row tile of `min(rows, MR)` rows: the full microkernel, or for a ragged last tile
/// the largest smaller instance that fits (8, 4, 2, 1 rows) and then the rest; each reads
/// only the valid rows of A.
#[inline(always)]
pub(super) unsafe fn run_tile<S: Simd, const MR: usize, const NV: usize>(
    t: &Tile,
    rows: usize,
    epi: &Epilogue,
) {
    // SAFETY: the driver guarantees min(rows, MR) rows of the tile in A and C.
    unsafe {
        // A ragged tile of 5 or more rows gets a microkernel of exactly its height: the
        // 8/4/2/1 pieces each stream the B panel again and the 2- and 1-row ones wait on
        // their FMA latency (2 or 4 accumulator chains). 49 pixels (7×7 maps) end in a
        // 7-row tile: 4 + 2 + 1 took 12 cycles per reduction step against 7.
        macro_rules! exact {
            ($($r:literal)*) => {
                match rows {
                    $($r if $r < MR => {
                        micro::<S, $r, NV>(t, epi);
                        return;
                    })*
                    _ => {}
                }
            };
        }
        if rows < MR {
            exact!(13 12 11 10 9 8 7 6 5);
        }
        let done = if rows >= MR {
            micro::<S, MR, NV>(t, epi);
            MR
        } else if rows >= 8 {
            micro::<S, 8, NV>(t, epi);
            8
        } else if rows >= 4 {
            micro::<S, 4, NV>(t, epi);
            4
        } else if rows >= 2 {
            micro::<S, 2, NV>(t, epi);
            2
        } else {
            micro::<S, 1, NV>(t, epi);
            1
        };
        if done < MR && rows > done {
            // The rest of a ragged last tile: advance inside the tile.
            tail_rows::<S, MR, NV>(t, rows, done, epi);
        }
    }
}

/// Finishes a ragged last tile of `rows < MR` rows after its first `done` rows.
#[inline(always)]
unsafe fn tail_rows<S: Simd, const MR: usize, const NV: usize>(
    t: &Tile,
    rows: usize,
    mut done: usize,
    epi: &Epilogue,
) {
    while done < rows {
        let left = rows - done;
        // SAFETY: rows done..rows of the tile exist in A (packed) and C.
        let sub = Tile {
            a: unsafe { t.a.add(done * t.row_stride) },
            c: unsafe { t.c.add(done * t.ldc) },
            res: if t.res.is_null() {
                t.res
            } else {
                unsafe { t.res.add(done * t.ldr) }
            },
            ..*t
        };
        let step = unsafe {
            if left >= 4 {
                micro::<S, 4, NV>(&sub, epi);
                4
            } else if left >= 2 {
                micro::<S, 2, NV>(&sub, epi);
                2
            } else {
                micro::<S, 1, NV>(&sub, epi);
                1
            }
        };
        done += step;
    }
}

/// One microkernel call: `R` rows of A from `a`, `kc` reduction steps over
/// the B micro-panel at `b` (row stride [`PANEL`]), into C at `c` (stride `ldc`), of which
/// the first `cols` columns are stored.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub(super) kc: usize,
    /// A: row `r` at reduction step `p` is `a[r·row_stride + p·k_stride]` (packed:
    /// `(kc + PACKED_ROW_PAD, 1)`; in place: `(lda, 1)`).
    pub(super) a: *const f32,
    pub(super) row_stride: usize,
    pub(super) k_stride: usize,
    /// Reduction steps per run of A, and the floats skipped between runs (`kc` and 0
    /// unless A is segmented).
    pub(super) seg_len: usize,
    pub(super) seg_jump: usize,
    pub(super) b: *const f32,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    /// Residual rows at stride `ldr` (null: none), added after the activation in the
    /// last K block.
    pub(super) res: *const f32,
    pub(super) ldr: usize,
    pub(super) first: bool,
    pub(super) last: bool,
    pub(super) bias: *const f32,
    pub(super) cols: usize,
}

/// The register-blocked microkernel: `R × NV` accumulators.
/// `acc = first ? bias : C`; `acc += Σ_p a[r, p] · b[p, :]`;
/// `C = last ? act(acc) [+ res] : acc` (sigmoid and SiLU applied to C after the store,
/// by a call: their code inlined here slowed the loop for every activation).
#[inline(always)]
unsafe fn micro<S: Simd, const R: usize, const NV: usize>(t: &Tile, epi: &Epilogue) {
    let lanes = S::LANES;
    let full = t.cols == NV * lanes;
    // Every loop over `acc` below has a constant trip count and no branch, so it unrolls
    // and `acc` lives in registers; a branchy loop kept it on the stack and stored every
    // accumulator after each FMA.
    // SAFETY: the driver guarantees R rows × kc steps of A at the tile's strides,
    // kc rows × NV·LANES of B (padded panel), NV·LANES bias entries and R rows × `cols`
    // columns of C.
    unsafe {
        let mut acc = [[S::zero(); NV]; R];
        if t.first {
            for v in 0..NV {
                let bv = S::load(t.bias.add(v * lanes));
                for row in acc.iter_mut() {
                    row[v] = bv;
                }
            }
        } else if full {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = S::load(t.c.add(r * t.ldc + v * lanes));
                }
            }
        } else {
            let mut tmp = EdgeTile::<R>::zeros();
            tmp.copy_in(t.c, t.ldc, t.cols);
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = S::load(tmp.0.as_ptr().add(r * EDGE_WIDTH + v * lanes));
                }
            }
        }
        let mut a = t.a;
        let mut b = t.b;
        let mut left = t.kc;
        loop {
            let run = t.seg_len.min(left);
            for _ in 0..run {
                let mut bv = [S::zero(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = S::load(b.add(v * lanes));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = S::splat(*a.add(r * t.row_stride));
                    for v in 0..NV {
                        row[v] = S::mul_add(av, bv[v], row[v]);
                    }
                }
                a = a.add(t.k_stride);
                b = b.add(PANEL);
            }
            left -= run;
            if left == 0 {
                break;
            }
            a = a.add(t.seg_jump);
        }
        // Sigmoid and SiLU run after the store, out of line, once per row block of the
        // driver (`gemm_body`; see `Epilogue::out_of_line`).
        let later = t.last && epi.out_of_line();
        if t.last && !later {
            activate_tile::<S, R, NV>(&mut acc, epi);
            if !t.res.is_null() {
                if full {
                    for (r, row) in acc.iter_mut().enumerate() {
                        for (v, x) in row.iter_mut().enumerate() {
                            *x = S::add(*x, S::load(t.res.add(r * t.ldr + v * lanes)));
                        }
                    }
                } else {
                    let mut tmp = EdgeTile::<R>::zeros();
                    tmp.copy_in(t.res, t.ldr, t.cols);
                    for (r, row) in acc.iter_mut().enumerate() {
                        for (v, x) in row.iter_mut().enumerate() {
                            let y = S::load(tmp.0.as_ptr().add(r * EDGE_WIDTH + v * lanes));
                            *x = S::add(*x, y);
                        }
                    }
                }
            }
        }
        if full {
            for (r, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    S::store(t.c.add(r * t.ldc + v * lanes), x);
                }
            }
        } else {
            let mut tmp = EdgeTile::<R>::zeros();
            for (r, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    S::store(tmp.0.as_mut_ptr().add(r * EDGE_WIDTH + v * lanes), x);
                }
            }
            tmp.copy_out(t.c, t.ldc, t.cols);
        }
    }
}

/// Width of the edge buffer: one whole panel, the widest microkernel row.
const EDGE_WIDTH: usize = PANEL;

/// A stack buffer for a column-edge tile (`cols` < the microkernel's width): C is staged
/// through it so the microkernel's own loads and stores stay unmasked and unrolled.
struct EdgeTile<const R: usize>([f32; PANEL * 16]);

impl<const R: usize> EdgeTile<R> {
    #[inline(always)]
    fn zeros() -> Self {
        debug_assert!(R <= 16);
        EdgeTile([0.0; PANEL * 16])
    }
    /// Copies `cols` columns of R rows of C in.
    #[inline(always)]
    unsafe fn copy_in(&mut self, c: *const f32, ldc: usize, cols: usize) {
        for r in 0..R {
            // SAFETY: the caller guarantees R rows × cols of C; cols ≤ EDGE_WIDTH.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    c.add(r * ldc),
                    self.0.as_mut_ptr().add(r * EDGE_WIDTH),
                    cols,
                )
            };
        }
    }
    /// Copies `cols` columns of R rows out to C.
    #[inline(always)]
    unsafe fn copy_out(&self, c: *mut f32, ldc: usize, cols: usize) {
        for r in 0..R {
            // SAFETY: the caller guarantees R rows × cols of C; cols ≤ EDGE_WIDTH.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.0.as_ptr().add(r * EDGE_WIDTH),
                    c.add(r * ldc),
                    cols,
                )
            };
        }
    }
}
