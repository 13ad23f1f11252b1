//! Execution context: how many threads a forward pass may use.
//!
//! An [`Executor`] owns a persistent thread team (`kernels::team`: the calling thread plus
//! `threads − 1` workers that spin briefly between regions), created once and reused by
//! every call, so no thread is spawned or woken from sleep per layer. Work is split statically into contiguous chunks of
//! output rows; every output element is computed by exactly one thread in a fixed order,
//! so results are bitwise identical for every thread count.

use crate::error::{Error, Result};
use crate::kernels::team::{self, Team};
use crate::kernels::{AlignedVec, Isa, Parallel, Tier};
use std::sync::Mutex;

/// Below this many multiply-accumulates a layer runs on the calling thread: waking a
/// worker costs a few microseconds, more than such a layer takes.
pub const MIN_MACS_PER_THREAD: u64 = 200_000;

/// Below this many values a pass over cached data (a squeeze-excitation's channel sums
/// or scaling) runs on the calling thread: 128 KiB, a few thousand cycles of loads, about
/// as long as [`MIN_MACS_PER_THREAD`] of FMAs (a 7×7×672 map of MobileNetV3 and
/// EfficientNet is just above it).
pub const MIN_FLOATS_PER_THREAD: usize = 32_768;

/// Most threads an executor accepts: far beyond any useful count for batch inference,
/// low enough that a typo (`--threads 100000`) is refused instead of spawning them.
pub const MAX_THREADS: usize = 1024;

/// Thread settings for forward passes.
#[derive(Debug)]
pub struct Executor {
    threads: usize,
    pool: Option<Team>,
    /// Instruction-set tier the kernels run at (default: the best available).
    tier: Tier,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::single()
    }
}

impl Executor {
    /// Runs everything on the calling thread.
    pub fn single() -> Self {
        Executor {
            threads: 1,
            pool: None,
            tier: Tier::best(),
        }
    }

    /// Uses `threads` threads (the caller's plus `threads − 1` workers, started here and
    /// joined when the executor is dropped); 0 means one per available core. After each
    /// parallel region an idle worker spins for up to 300 µs (`kernels::team::SPIN`)
    /// waiting for the next one, then sleeps: back-to-back layers cost no wake-up, and an
    /// idle executor costs no CPU. Share one executor rather than creating many: a region
    /// started while another thread's region runs on the same executor runs inline.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        } else {
            threads
        };
        if threads > MAX_THREADS {
            return Err(Error::param(
                "threads",
                format!("{threads} is more than {MAX_THREADS}"),
            ));
        }
        if threads == 1 {
            return Ok(Executor::single());
        }
        let pool = Team::new(threads).map_err(|e| Error::Threads(e.to_string()))?;
        Ok(Executor {
            threads,
            pool: Some(pool),
            tier: Tier::best(),
        })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the kernels at tier `isa` instead of the best available one (for tests and
    /// tier comparisons); an error if this CPU (or `DSCONV_MAX_ISA`) does not allow it.
    pub fn with_isa(mut self, isa: Isa) -> Result<Self> {
        self.tier = Tier::new(isa)?;
        Ok(self)
    }

    /// The instruction-set tier the kernels run at.
    pub fn isa(&self) -> Isa {
        self.tier.isa()
    }

    /// The token of that tier, for calling kernels directly.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Like [`Executor::for_each_rows`], but every chunk except the last holds a multiple
    /// of `block_rows` rows (a kernel's register tile), so no thread gets a ragged tile.
    pub fn for_each_row_blocks<F>(
        &self,
        out: &mut [f32],
        row_len: usize,
        block_rows: usize,
        tasks: usize,
        f: F,
    ) where
        F: Fn(usize, &mut [f32]) + Sync + Send,
    {
        // A trailing partial row (a tight strided buffer) counts as a row, so the
        // chunks cover all of `out` (as rayon's par_chunks_mut did).
        let rows = out
            .len()
            .checked_div(row_len)
            .map_or(0, |_| out.len().div_ceil(row_len));
        let block_rows = block_rows.max(1);
        let blocks = rows.div_ceil(block_rows);
        let tasks = tasks.clamp(1, blocks.max(1));
        if tasks == 1 || self.pool.is_none() {
            return f(0, out);
        }
        let rows_per_task = blocks.div_ceil(tasks) * block_rows;
        team::for_each_chunk(
            self.pool.as_ref(),
            out,
            rows_per_task * row_len,
            tasks,
            |t, chunk| f(t * rows_per_task, chunk),
        );
    }

    /// [`for_each_row_blocks`](Self::for_each_row_blocks) for fallible work: every chunk
    /// runs, and the error returned is that of the chunk with the lowest first row (the
    /// same whichever thread finished first); `Ok` when all succeed.
    pub fn try_for_each_row_blocks<F>(
        &self,
        out: &mut [f32],
        row_len: usize,
        block_rows: usize,
        tasks: usize,
        f: F,
    ) -> Result<()>
    where
        F: Fn(usize, &mut [f32]) -> Result<()> + Sync + Send,
    {
        let first_error: Mutex<Option<(usize, Error)>> = Mutex::new(None);
        self.for_each_row_blocks(out, row_len, block_rows, tasks, |first, chunk| {
            if let Err(e) = f(first, chunk) {
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_none_or(|(row, _)| first < *row) {
                    *slot = Some((first, e));
                }
            }
        });
        match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// [`for_each_rows`](Self::for_each_rows) for fallible work, as
    /// [`try_for_each_row_blocks`](Self::try_for_each_row_blocks).
    pub fn try_for_each_rows<F>(
        &self,
        out: &mut [f32],
        row_len: usize,
        tasks: usize,
        f: F,
    ) -> Result<()>
    where
        F: Fn(usize, &mut [f32]) -> Result<()> + Sync + Send,
    {
        self.try_for_each_row_blocks(out, row_len, 1, tasks, f)
    }

    /// The banded kernels' split: the rows of `out` (`row_len` floats each) over as many
    /// threads as a job of `macs` deserves, each chunk run as `f(rows, chunk, scratch)`
    /// with its thread's reusable scratch; the lowest chunk's error.
    pub(crate) fn try_rows_with_scratch<F>(
        &self,
        out: &mut [f32],
        row_len: usize,
        macs: u64,
        f: F,
    ) -> Result<()>
    where
        F: Fn(std::ops::Range<usize>, &mut [f32], &mut AlignedVec) -> Result<()> + Sync + Send,
    {
        self.try_for_each_rows(out, row_len, self.tasks_for(macs), |first, chunk| {
            let rows = first..first + chunk.len() / row_len;
            crate::kernels::with_scratch(0, |scratch| f(rows, chunk, scratch))
        })
    }

    /// How many parallel tasks a pass over `floats` values from cache deserves (a
    /// reduction, a scaling: a few operations per value, [`MIN_FLOATS_PER_THREAD`] a task).
    pub fn tasks_for_pass(&self, floats: usize) -> usize {
        let by_work = (floats / MIN_FLOATS_PER_THREAD).max(1);
        self.threads.min(by_work)
    }

    /// How many parallel tasks a job of `macs` multiply-accumulates deserves.
    pub fn tasks_for(&self, macs: u64) -> usize {
        let by_work = (macs / MIN_MACS_PER_THREAD).max(1);
        self.threads.min(by_work.try_into().unwrap_or(usize::MAX))
    }

    /// Calls `f(first_row, rows)` on disjoint chunks of `out`, which holds `out.len() /
    /// row_len` rows of `row_len` elements, using up to `tasks` threads. Chunks are
    /// contiguous and as equal as possible.
    pub fn for_each_rows<F>(&self, out: &mut [f32], row_len: usize, tasks: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync + Send,
    {
        self.for_each_row_blocks(out, row_len, 1, tasks, f);
    }

    /// Calls `f(0)`, ..., `f(tasks − 1)`, each once, spread over the threads (inline in
    /// order with one thread, or when called from inside another task), and returns when
    /// all have finished. A panic in any task is resumed on the caller.
    pub fn run_tasks(&self, tasks: usize, f: impl Fn(usize) + Sync) {
        match &self.pool {
            Some(pool) => pool.run(tasks, &f),
            None => (0..tasks).for_each(f),
        }
    }
}

impl Parallel for Executor {
    fn tier(&self) -> Tier {
        self.tier
    }
    fn threads(&self) -> usize {
        self.threads
    }
    fn run_tasks(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        Executor::run_tasks(self, tasks, f)
    }
    fn try_for_each_row_blocks(
        &self,
        out: &mut [f32],
        row_len: usize,
        block_rows: usize,
        tasks: usize,
        f: &(dyn Fn(usize, &mut [f32]) -> Result<()> + Sync + Send),
    ) -> Result<()> {
        Executor::try_for_each_row_blocks(self, out, row_len, block_rows, tasks, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk runs, and the error kept is the lowest chunk's whatever the thread
    /// count and whichever task finishes first.
    #[test]
    fn try_for_each_rows_returns_the_lowest_chunks_error() {
        for threads in [1, 2, 3] {
            let exec = Executor::new(threads).unwrap();
            let mut out = vec![0.0f32; 12 * 4];
            let r = exec.try_for_each_rows(&mut out, 4, threads, |first, chunk| {
                chunk.fill(1.0);
                if first > 0 || threads == 1 {
                    Err(Error::param("row", format!("{first}")))
                } else {
                    Ok(())
                }
            });
            let msg = r.unwrap_err().to_string();
            let want = if threads == 1 { "0" } else { "6" };
            let want = if threads == 3 { "4" } else { want };
            assert!(msg.ends_with(want), "{threads} threads: {msg}");
            assert!(out.iter().all(|&v| v == 1.0), "every chunk ran");
            let ok = exec.try_for_each_rows(&mut out, 4, threads, |_, _| Ok(()));
            assert!(ok.is_ok());
        }
    }
}
