//! A small persistent thread team for batch-1 inference: the calling thread plus
//! `threads − 1` workers that spin between parallel regions.
//!
//! Why not rayon: a forward pass of MobileNetV2 is ~30 parallel regions of 20–200 µs.
//! Through a rayon pool each region injected a job from outside the pool, parked the
//! caller and woke a sleeping worker (rayon workers go to sleep after a few yields), and
//! that hand-off cost showed: 2-thread V2 2.35 ms through `pool.install` per region,
//! 1.82 ms with the whole pass inside the pool, and less again with this team (numbers in
//! `exec.rs`). Here the caller runs tasks itself, an idle worker spins on one atomic for
//! [`SPIN`] before it sleeps on a condvar, and a region costs a cache-line round trip.
//!
//! Placement. Task `t` belongs to participant `t mod threads` (the caller is 0, worker
//! `i` is `i`), which runs its own tasks first; only a participant with none left takes
//! another's unstarted ones. So when consecutive layers split their rows the same way,
//! each thread reads the rows it wrote itself, from its own L2. (First-come claiming from
//! one counter handed the halves to whichever thread came first: in 2-thread MobileNetV2
//! the task reading the other core's rows took 1.5–1.9× as long as its twin.)
//!
//! Protocol. Each participant `p` has a queue: one `u64` packing (epoch: 32 bits, its
//! task count: 16, next: 16). The caller publishes a job by writing the job slot, then
//! storing every queue with the new epoch and `next = 0` (release), then the epoch itself.
//! Anyone claims a task by a compare-and-swap that increments a queue's `next` while it is
//! below its count in the epoch the claimer works on; only after a successful claim does
//! it read the job slot and run the task, then it increments `done` (release). The caller
//! also claims tasks until none is left, then waits until `done == tasks` (acquire). So
//! the job (a pointer to the caller's closure, its lifetime erased) is only ever read
//! while the caller is inside [`Team::run`], and the slot is only written when every task
//! of the previous epoch is done and no claim can succeed. Which thread runs which task
//! may vary; what a task computes does not, so results stay bitwise identical.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins waiting for the next region before it sleeps. Regions
/// of one forward pass follow each other within microseconds; a few hundred µs also
/// cover the gap between back-to-back passes. A sleeping worker costs a futex wake
/// (~10–50 µs on this VM) on the next region.
pub const SPIN: Duration = Duration::from_micros(300);

/// Busy-wait iterations (`spin_loop`, a few ns each) before a waiting thread starts
/// yielding its core on each check instead.
const YIELD_AFTER: u32 = 2048;

/// Most tasks one region may have (the queues' 16-bit fields).
pub const MAX_TASKS: usize = 1 << 15;

type Job = dyn Fn(usize) + Sync;

/// The job slot's content before the first region.
fn noop(_: usize) {}

/// The published job: `tasks` calls of `f`, with `f`'s lifetime erased.
#[derive(Clone, Copy)]
struct JobRef {
    f: *const Job,
}

/// A participant's queue on its own cache line.
#[repr(align(128))]
struct Queue(AtomicU64);

struct Shared {
    /// The epoch of the current job: what idle workers watch.
    epoch: AtomicU64,
    queues: Vec<Queue>,
    done: AtomicUsize,
    panicked: AtomicBool,
    job: UnsafeCell<JobRef>,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
}

// SAFETY: `job` is written only by the thread holding `Team::busy` while no task can be
// claimed (see the module protocol) and read only after a successful claim, which the
// queues' release/acquire orders after the write; every other field is a sync type.
// The raw pointer inside points to a `Sync` closure, so sharing it across threads is
// sound for as long as it is valid, which the protocol guarantees.
unsafe impl Sync for Shared {}
// SAFETY: as above; the pointer is only dereferenced under the protocol.
unsafe impl Send for Shared {}

thread_local! {
    /// Set while this thread runs a task: a nested region then runs inline.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

const fn pack(epoch: u64, tasks: usize, next: usize) -> u64 {
    (epoch << 32) | ((tasks as u64) << 16) | next as u64
}

const fn unpack(t: u64) -> (u64, usize, usize) {
    (
        t >> 32,
        ((t >> 16) & 0xffff) as usize,
        (t & 0xffff) as usize,
    )
}

impl Shared {
    /// Claims the next task of `epoch` from participant `q`'s queue, if any is left.
    fn claim(&self, q: usize, epoch: u64) -> Option<usize> {
        let queue = &self.queues[q].0;
        let mut t = queue.load(Ordering::Acquire);
        loop {
            let (e, count, next) = unpack(t);
            if e != epoch || next >= count {
                return None;
            }
            match queue.compare_exchange_weak(
                t,
                pack(e, count, next + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(q + next * self.queues.len()),
                Err(now) => t = now,
            }
        }
    }

    /// Participant `me` runs its own tasks of `epoch`, then any other queue's leftovers.
    fn work(&self, me: usize, epoch: u64) {
        let n = self.queues.len();
        for q in (0..n).map(|i| (me + i) % n) {
            while let Some(task) = self.claim(q, epoch) {
                // SAFETY: the claim succeeded, so the caller that published this epoch
                // is still inside `Team::run` (it waits for this task's `done`), the job
                // slot holds its closure and nobody writes the slot until then.
                let f = unsafe { &*(*self.job.get()).f };
                let was = IN_TASK.with(|c| c.replace(true));
                if catch_unwind(AssertUnwindSafe(|| f(task))).is_err() {
                    self.panicked.store(true, Ordering::Relaxed);
                }
                IN_TASK.with(|c| c.set(was));
                self.done.fetch_add(1, Ordering::Release);
            }
        }
    }
}

/// The team: workers and the shared state. Dropping it stops and joins the workers.
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the thread running a region: a second thread calling `run` meanwhile (the
    /// same executor shared between threads) runs its region inline instead of waiting.
    busy: Mutex<u64>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &(self.workers.len() + 1))
            .finish()
    }
}

impl Team {
    /// The calling thread plus `threads − 1` spawned workers (named `dsconv-1`, ...).
    pub fn new(threads: usize) -> std::io::Result<Team> {
        let threads = threads.clamp(1, MAX_TASKS);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            queues: (0..threads)
                .map(|_| Queue(AtomicU64::new(pack(0, 0, 0))))
                .collect(),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            job: UnsafeCell::new(JobRef {
                f: &noop as &Job as *const Job,
            }),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let mut team = Team {
            shared,
            workers: Vec::new(),
            busy: Mutex::new(0),
        };
        for i in 1..threads {
            let shared = Arc::clone(&team.shared);
            let handle = std::thread::Builder::new()
                .name(format!("dsconv-{i}"))
                .spawn(move || worker(&shared, i))?;
            // On an error `team` drops here and stops the workers already started.
            team.workers.push(handle);
        }
        Ok(team)
    }

    /// Runs `f(0)`, ..., `f(tasks − 1)`, each exactly once, on the caller and the workers,
    /// and returns when all have finished. A panic in a task is resumed here after every
    /// task has finished. Nested calls (from inside a task) and calls while another
    /// thread runs a region run every task inline, in order.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if tasks <= 1 || self.workers.is_empty() || IN_TASK.with(Cell::get) {
            return (0..tasks).for_each(f);
        }
        let mut epoch = match self.busy.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return (0..tasks).for_each(f),
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if tasks > MAX_TASKS {
            // Split into rounds the ticket can count.
            drop(epoch);
            for start in (0..tasks).step_by(MAX_TASKS) {
                let n = MAX_TASKS.min(tasks - start);
                self.run(n, &|t| f(start + t));
            }
            return;
        }
        let sh = &*self.shared;
        *epoch = (*epoch + 1) & 0xffff_ffff;
        let e = *epoch;
        sh.done.store(0, Ordering::Relaxed);
        sh.panicked.store(false, Ordering::Relaxed);
        // SAFETY: every task of the previous epoch is done (the previous `run` waited for
        // them) and its queues are exhausted, so no thread reads the slot now; holding
        // `busy` makes this thread the only writer. The erased lifetime is sound because
        // this function does not return before every claimed task has finished, and no
        // claim of this epoch can succeed after that (`next == tasks`).
        unsafe {
            let f: *const (dyn Fn(usize) + Sync + '_) = f;
            *sh.job.get() = JobRef {
                f: std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(f),
            };
        }
        let n = sh.queues.len();
        for (q, queue) in sh.queues.iter().enumerate() {
            let count = tasks.saturating_sub(q).div_ceil(n);
            queue.0.store(pack(e, count, 0), Ordering::Release);
        }
        sh.epoch.store(e, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(|p| p.into_inner());
            sh.wake.notify_all();
        }
        sh.work(0, e);
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) < tasks {
            // Spin a little, then yield: if the workers are descheduled (more runnable
            // threads than cores) they need this core more than the wait does.
            if spins < YIELD_AFTER {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if sh.panicked.load(Ordering::Relaxed) {
            drop(epoch);
            resume_unwind(Box::new("a dsconv worker task panicked"));
        }
    }
}

fn worker(sh: &Shared, me: usize) {
    let mut seen = sh.epoch.load(Ordering::Acquire);
    loop {
        // Wait for a new epoch: spin, then yield, then sleep.
        let start = Instant::now();
        let mut i = 0u32;
        let epoch = loop {
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen || sh.shutdown.load(Ordering::Relaxed) {
                break e;
            }
            i = i.wrapping_add(1);
            if i < YIELD_AFTER {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            if i.is_multiple_of(64) && start.elapsed() > SPIN {
                let mut guard = sh.lock.lock().unwrap_or_else(|p| p.into_inner());
                sh.sleepers.fetch_add(1, Ordering::SeqCst);
                while sh.epoch.load(Ordering::SeqCst) == seen && !sh.shutdown.load(Ordering::SeqCst)
                {
                    guard = sh.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
                }
                sh.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
            }
        };
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = epoch;
        sh.work(me, epoch);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Raw base pointer of an output buffer shared by the tasks of one region.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only used by `for_each_chunk`, whose tasks write disjoint ranges.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Calls `f(t, chunk_t)` for `t < tasks` where `chunk_t = out[t·chunk_len ..][..chunk_len]`
/// (the last one shorter; tasks whose chunk would be empty are not run), on `team`'s
/// threads or inline without one.
pub fn for_each_chunk<F>(team: Option<&Team>, out: &mut [f32], chunk_len: usize, tasks: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let chunk_len = chunk_len.max(1);
    let tasks = tasks.min(out.len().div_ceil(chunk_len));
    match team {
        Some(team) if tasks > 1 => {
            let len = out.len();
            let base = OutPtr(out.as_mut_ptr());
            team.run(tasks, &|t| {
                let start = t * chunk_len;
                let n = chunk_len.min(len - start);
                // SAFETY: `t < tasks ≤ ceil(len / chunk_len)`, so `start < len` and the
                // range `start..start + n` lies inside `out`; distinct tasks get disjoint
                // ranges and each task runs once, so no element is aliased mutably; `out`
                // stays mutably borrowed until `run` returns after every task.
                let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
                f(t, chunk);
            });
        }
        _ => {
            for (t, chunk) in out.chunks_mut(chunk_len).take(tasks.max(1)).enumerate() {
                f(t, chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_exactly_once_across_many_regions() {
        for threads in [1, 2, 3, 5] {
            let team = Team::new(threads).unwrap();
            for tasks in [0, 1, 2, 3, 7, 64, 1000] {
                let hits: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
                for _ in 0..50 {
                    team.run(tasks, &|t| {
                        hits[t].fetch_add(1, Ordering::Relaxed);
                    });
                }
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 50));
            }
        }
    }

    #[test]
    fn regions_after_the_workers_slept_still_run() {
        let team = Team::new(2).unwrap();
        let sum = AtomicUsize::new(0);
        for _ in 0..3 {
            std::thread::sleep(SPIN * 4);
            team.run(4, &|t| {
                sum.fetch_add(t, Ordering::Relaxed);
            });
        }
        assert_eq!(sum.load(Ordering::Relaxed), 18);
    }

    #[test]
    fn nested_and_concurrent_regions_run_inline() {
        let team = Team::new(2).unwrap();
        let count = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..100 {
                        team.run(3, &|_| {
                            team.run(2, &|_| {
                                count.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed), 3 * 100 * 3 * 2);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_after_the_others_finish_and_the_team_survives() {
        let team = Team::new(2).unwrap();
        let done = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(8, &|t| {
                if t == 5 {
                    panic!("task 5");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(r.is_err());
        assert_eq!(done.load(Ordering::Relaxed), 7);
        let after = AtomicUsize::new(0);
        team.run(4, &|_| {
            after.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(after.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn chunks_are_disjoint_and_cover_the_buffer() {
        let team = Team::new(3).unwrap();
        for (len, chunk, tasks) in [(10, 3, 4), (10, 3, 9), (9, 3, 3), (5, 10, 2), (0, 4, 3)] {
            let mut out = vec![-1.0f32; len];
            for_each_chunk(Some(&team), &mut out, chunk, tasks, |t, c| {
                for (i, v) in c.iter_mut().enumerate() {
                    *v = (t * chunk + i) as f32;
                }
            });
            let want: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let covered = tasks.min(len.div_ceil(chunk)) * chunk;
            assert_eq!(&out[..covered.min(len)], &want[..covered.min(len)]);
        }
    }
}
