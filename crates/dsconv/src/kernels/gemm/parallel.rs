//! The GEMM on several threads of a [`Parallel`] team: by contiguous runs of whole row
//! tiles, or with few rows (7×7 layers at batch 1) by runs of 32-column panels, so each
//! thread reads only its share of the weight. Every element is computed as on one thread.

use super::{fits, tile_rows, PackedGemm, PANEL};
use crate::error::Result;
use crate::kernels::Parallel;
use crate::ops::Activation;

impl PackedGemm {
    /// [`run`](Self::run) with up to `tasks` of `exec`'s threads. Many row tiles: each
    /// thread takes a contiguous run of whole row tiles. Few rows (7×7 layers, batch 1):
    /// each thread takes a contiguous run of 32-column panels instead, so every thread
    /// reads only its share of the weight (4 MiB at 1024→1024) and the split stays even.
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
        let panels = self.n.div_ceil(PANEL);
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
        if m.div_ceil(tile) >= ROW_TILES_PER_TASK * tasks || panels < tasks {
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
            let first = (t * panels / tasks) * PANEL;
            let last = ((t + 1) * panels / tasks * PANEL).min(self.n);
            if first < last {
                // SAFETY: extents checked above; the tasks' column ranges are disjoint
                // panel runs, so no element of `out` is written by two threads, and
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
