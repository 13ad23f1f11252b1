//! The GEMM on several threads of a [`Parallel`] team: by contiguous runs of whole row
//! tiles, or with few rows (7×7 layers at batch 1) by runs of column chunks (the tier's
//! microkernel width), so each thread reads only its share of the weight. Every element
//! is computed as on one thread.

use super::{col_chunk, fits, tile_rows, PackedGemm};
use crate::error::Result;
use crate::kernels::Parallel;
use crate::ops::Activation;

impl PackedGemm {
    /// [`run`](Self::run) with up to `tasks` of `exec`'s threads. Many row tiles: each
    /// thread takes a contiguous run of whole row tiles. Few rows (7×7 layers, batch 1):
    /// each thread takes a contiguous run of column chunks (32, 16 or 8 columns: the
    /// tier's microkernel width) instead, so every thread reads only its share of the
    /// weight (4 MiB at 1024→1024) and the split stays even (see `split_columns`).
    /// Either way every output element is computed by the same operations as in `run`:
    /// bitwise identical for every thread count.
    pub fn run_parallel(
        &self,
        exec: &impl Parallel,
        tasks: usize,
        a: &[f32],
        lda: usize,
        m: usize,
        out: &mut [f32],
        ldc: usize,
        act: Activation,
    ) -> Result<()> {
        self.run_parallel_add(exec, tasks, a, lda, m, out, ldc, act, None)
    }

    /// [`run_parallel`](Self::run_parallel) with a residual added after the activation, as
    /// in [`run_add`](Self::run_add).
    pub fn run_parallel_add(
        &self,
        exec: &impl Parallel,
        tasks: usize,
        a: &[f32],
        lda: usize,
        m: usize,
        out: &mut [f32],
        ldc: usize,
        act: Activation,
        residual: Option<(&[f32], usize)>,
    ) -> Result<()> {
        self.check_residual(m, residual)?;
        let isa = exec.tier();
        let tile = tile_rows(isa.isa());
        let width = col_chunk(isa.isa());
        let chunks = self.n.div_ceil(width);
        let tasks = tasks.min(exec.threads()).max(1);
        if tasks == 1 || m == 0 {
            return self.run_add(isa, a, lda, m, out, ldc, act, residual);
        }
        if lda < self.k
            || !fits(a.len(), m, lda, self.k)
            || ldc < self.n
            || !fits(out.len(), m, ldc, self.n)
        {
            // The same errors as on one thread, before any split.
            return self.run_add(isa, a, lda, m, out, ldc, act, residual);
        }
        if !split_columns(m, self.n, tile, width, tasks) {
            return exec.try_for_each_row_blocks(out, ldc, tile, tasks, &|first, chunk| {
                let rows = chunk.len().div_ceil(ldc).min(m - first.min(m));
                if rows == 0 {
                    return Ok(());
                }
                let res = residual.map(|(r, ldr)| (&r[first * ldr..], ldr));
                self.run_add(isa, &a[first * lda..], lda, rows, chunk, ldc, act, res)
            });
        }
        // Extents checked above, before any split.
        let base = SharedOut(out.as_mut_ptr());
        let base = &base;
        let res = residual.map(|(r, ld)| (SharedIn(r.as_ptr()), ld));
        let res = &res;
        exec.run_tasks(tasks, &|t| {
            let first = (t * chunks / tasks) * width;
            let last = ((t + 1) * chunks / tasks * width).min(self.n);
            if first < last {
                // SAFETY: extents checked above; the tasks' column ranges are disjoint
                // chunk runs, so no element of `out` is written by two threads, and
                // `out` stays borrowed mutably until `run_tasks` returns.
                let res = res.as_ref().map(|(r, ld)| (r.0, *ld));
                unsafe {
                    self.run_cols(isa, a, (lda, 1, 0), m, base.0, ldc, act, res, first..last)
                };
            }
        });
        Ok(())
    }
}

/// The output pointer shared by the column-split tasks of `run_parallel`.
struct SharedOut(*mut f32);
// SAFETY: the tasks write disjoint column ranges (see `run_parallel`).
unsafe impl Sync for SharedOut {}

/// The residual pointer shared (read only) by the column-split tasks of `run_parallel`.
struct SharedIn(*const f32);
// SAFETY: only read, from a slice borrowed for the whole parallel call.
unsafe impl Sync for SharedIn {}

/// Row tiles per thread below which `run_parallel` splits columns instead of rows
/// (49 rows = 4 AVX-512 tiles of a 7×7 layer: 2 + 2 would leave a thread with a
/// 7-row tail and each thread reading the whole weight).
const ROW_TILES_PER_TASK: usize = 4;

/// Row tiles per thread below which `run_parallel` splits columns whenever that gives the
/// busiest thread less to do than the row split; above it A (which every thread of a
/// column split reads whole) is large enough that rows stay the split.
const UNEVEN_ROW_TILES_PER_TASK: usize = 16;

/// Whether `run_parallel` splits an `m × n` product over `tasks` by column chunks of
/// `width` rather than by row tiles of `tile` rows: with fewer than
/// [`ROW_TILES_PER_TASK`] row tiles per task, or fewer than [`UNEVEN_ROW_TILES_PER_TASK`]
/// when the busiest thread of the row split would compute more outputs than that of the
/// column split (AVX2, 7×7 at batch 1: 49 rows are 9 tiles of 6, split 30 : 19 rows, where
/// 1152 columns split 576 : 576). Never with fewer chunks than tasks.
fn split_columns(m: usize, n: usize, tile: usize, width: usize, tasks: usize) -> bool {
    let (tiles, chunks) = (m.div_ceil(tile), n.div_ceil(width));
    if chunks < tasks {
        return false;
    }
    if tiles < ROW_TILES_PER_TASK * tasks {
        return true;
    }
    let busiest_rows = (tiles.div_ceil(tasks) * tile).min(m);
    let busiest_cols = (chunks.div_ceil(tasks) * width).min(n);
    tiles < UNEVEN_ROW_TILES_PER_TASK * tasks && m * busiest_cols < busiest_rows * n
}

#[cfg(test)]
mod tests {
    use super::split_columns;

    #[test]
    fn column_split_where_rows_split_unevenly() {
        // AVX-512 7×7: 4 tiles of 14 for 2 tasks, always columns (as before).
        assert!(split_columns(49, 1152, 14, 32, 2));
        // AVX2 7×7: 9 tiles of 6 → 30 : 19 rows; 1152, 192 and 160 columns split evenly.
        assert!(split_columns(49, 1152, 6, 16, 2));
        assert!(split_columns(49, 192, 6, 16, 2));
        assert!(split_columns(49, 160, 6, 16, 2));
        // 14×14 on AVX2: 33 tiles, rows (A would be read by both threads).
        assert!(!split_columns(196, 672, 6, 16, 2));
        // Fewer chunks than tasks: rows.
        assert!(!split_columns(49, 16, 6, 16, 2));
        // Rows split evenly (48 rows = 8 tiles of 6): rows.
        assert!(!split_columns(48, 1152, 6, 16, 2));
        // Columns no better: 3 chunks of 16 over 2 tasks (32 : 16) against 30 : 19 rows.
        assert!(!split_columns(49, 48, 6, 16, 2));
    }
}
