//! What this machine can do, measured at run time: the f32 FMA peak (GFLOP/s) and the
//! memory read bandwidth (GB/s) for a given number of threads, the CPU's name and the
//! SIMD features it reports. Benchmarks divide their speeds by these numbers to say how
//! close to the roofline a kernel runs.
//!
//! Measurements take a fraction of a second and are cached per process ([`profile`]).
//! They are best-of-several, so a briefly busy machine still gives a fair figure; a
//! machine that stays busy (other processes on the same cores) gives lower numbers.

use crate::kernels::peak::{flops_per_round, fma_loop};
use crate::kernels::selected_isa;
use std::collections::HashMap;
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Buffer for the memory bandwidth: well above any L3 cache of today's CPUs (32 MiB on the
/// dev machine), so the sum streams from DRAM.
pub const DRAM_BUFFER_BYTES: usize = 256 << 20;
/// Buffer for the L2 bandwidth, per thread: half of a 1 MiB L2 (Zen 4), so it stays resident
/// next to the stack and code.
pub const L2_BUFFER_BYTES: usize = 512 << 10;

/// How long one timed repetition of the FMA loop runs: long enough to dwarf the timer and
/// thread start-up, short enough that a busy machine (other processes sharing the cores)
/// still leaves some repetitions undisturbed: the best of them is the peak.
const PEAK_REPETITION: Duration = Duration::from_millis(3);
/// Repetitions of every bandwidth measurement; the best one is kept.
const REPETITIONS: usize = 10;
/// Repetitions of the FMA peak measurement (short ones, see [`PEAK_REPETITION`]).
const PEAK_REPETITIONS: usize = 50;

/// Measured limits of this machine for one thread count.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Threads the figures are for.
    pub threads: usize,
    /// The ISA of the FMA loop (`avx512f`, `avx2+fma`, `scalar`).
    pub isa: &'static str,
    /// f32 FMA peak over `threads` threads, GFLOP/s (10⁹ FLOP/s, 2 FLOPs per FMA).
    pub peak_gflops: f64,
    /// Read bandwidth from DRAM over `threads` threads, GB/s (10⁹ bytes/s).
    pub dram_read_gbs: f64,
    /// Read bandwidth from L2 over `threads` threads (each reading its own L2-sized
    /// buffer), GB/s. A lower bound: the safe summing loop is compiled for the baseline
    /// target (SSE2, 16-byte loads), which caps it near 32 bytes per cycle.
    pub l2_read_gbs: f64,
}

/// The measured profile for `threads` threads (0 = one per available core), measured on
/// first use and cached for the life of the process.
pub fn profile(threads: usize) -> Profile {
    static CACHE: OnceLock<Mutex<HashMap<usize, Profile>>> = OnceLock::new();
    let threads = resolve_threads(threads);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(p) = cache.lock().ok().and_then(|c| c.get(&threads).cloned()) {
        return p;
    }
    let p = Profile {
        threads,
        isa: selected_isa().name(),
        peak_gflops: fma_peak_gflops(threads),
        dram_read_gbs: read_bandwidth_gbs(DRAM_BUFFER_BYTES, threads),
        l2_read_gbs: read_bandwidth_gbs(L2_BUFFER_BYTES * threads, threads),
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(threads, p.clone());
    }
    p
}

/// `threads`, or the number of available cores when it is 0.
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// Runs `work(thread_index)` on `threads` threads started together (a barrier releases
/// them at once) and returns the wall time from the release until the last one finished.
fn timed_parallel<F: Fn(usize) + Sync>(threads: usize, work: F) -> Duration {
    let threads = threads.max(1);
    if threads == 1 {
        let t = Instant::now();
        work(0);
        return t.elapsed();
    }
    let barrier = Barrier::new(threads);
    let start = OnceLock::new();
    std::thread::scope(|s| {
        for i in 1..threads {
            let (barrier, work) = (&barrier, &work);
            s.spawn(move || {
                barrier.wait();
                work(i);
            });
        }
        barrier.wait();
        let _ = start.set(Instant::now());
        work(0);
    });
    start
        .get()
        .map_or(Duration::ZERO, |t: &Instant| t.elapsed())
}

/// f32 FMA peak in GFLOP/s over `threads` threads (0 = all cores), best of several runs of
/// [`fma_loop`] on the best ISA this CPU has.
pub fn fma_peak_gflops(threads: usize) -> f64 {
    let threads = resolve_threads(threads);
    let isa = crate::kernels::Tier::best();
    // Calibrate: iterations per repetition from a short run on one thread.
    let probe = 100_000u64;
    let t = Instant::now();
    std::hint::black_box(fma_loop(isa, probe));
    let per_iteration = t.elapsed().as_secs_f64().max(1e-9) / probe as f64;
    let iterations = ((PEAK_REPETITION.as_secs_f64() / per_iteration) as u64).max(probe);
    let flops = iterations.saturating_mul(flops_per_round(isa.isa())) as f64 * threads as f64;
    (0..PEAK_REPETITIONS)
        .map(|_| {
            let elapsed = timed_parallel(threads, |_| {
                std::hint::black_box(fma_loop(isa, std::hint::black_box(iterations)));
            });
            flops / elapsed.as_secs_f64().max(1e-9) / 1e9
        })
        .fold(0.0, f64::max)
}

/// Sum of `data` with 32 independent accumulators, so the compiler vectorises it and the
/// additions never limit a read from memory.
fn sum_f32(data: &[f32]) -> f32 {
    const WIDTH: usize = 32;
    let mut acc = [0.0f32; WIDTH];
    let chunks = data.chunks_exact(WIDTH);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += *x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Read bandwidth in GB/s (10⁹ bytes/s): `threads` threads (0 = all cores) each sum their
/// share of a `bytes`-byte buffer; best of several passes after one warm-up pass.
pub fn read_bandwidth_gbs(bytes: usize, threads: usize) -> f64 {
    let threads = resolve_threads(threads);
    let elements = (bytes / 4).max(threads * 64);
    // Filled with non-zero values: a zeroed allocation could map every page to the one
    // shared zero page and never touch DRAM.
    let data = vec![1.0f32; elements];
    let share = elements.div_ceil(threads);
    let moved = (elements * 4) as f64;
    // Small buffers pass in microseconds: each thread repeats its sum so that a timing
    // lasts ≥ ~1 ms and thread start-up does not count.
    let inner = (1 << 20) / (elements * 4).max(1) + 1;
    let pass = |repeats: usize| {
        timed_parallel(threads, |i| {
            let part = data.chunks(share).nth(i).unwrap_or(&[]);
            for _ in 0..repeats {
                std::hint::black_box(sum_f32(std::hint::black_box(part)));
            }
        })
    };
    pass(1);
    (0..REPETITIONS)
        .map(|_| moved * inner as f64 / pass(inner).as_secs_f64().max(1e-9) / 1e9)
        .fold(0.0, f64::max)
}

/// The CPU's model name (`/proc/cpuinfo`'s `model name` on Linux), if known.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The SIMD features dsconv cares about and whether this CPU has them, in a fixed order.
pub fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![
            ("sse4.1", is_x86_feature_detected!("sse4.1")),
            ("avx", is_x86_feature_detected!("avx")),
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("f16c", is_x86_feature_detected!("f16c")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512bw", is_x86_feature_detected!("avx512bw")),
            ("avx512vl", is_x86_feature_detected!("avx512vl")),
            ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
            ("avx512bf16", is_x86_feature_detected!("avx512bf16")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec![("neon", std::arch::is_aarch64_feature_detected!("neon"))]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_covers_chunks_and_tail() {
        let v: Vec<f32> = (0..100).map(|i| i as f32).collect();
        assert_eq!(sum_f32(&v), 4950.0);
        assert_eq!(sum_f32(&v[..31]), 465.0);
        assert_eq!(sum_f32(&[]), 0.0);
    }

    #[test]
    fn measurements_are_positive_and_finite() {
        let peak = fma_peak_gflops(1);
        assert!(peak.is_finite() && peak > 0.0, "{peak}");
        let bw = read_bandwidth_gbs(1 << 20, 2);
        assert!(bw.is_finite() && bw > 0.0, "{bw}");
    }

    #[test]
    fn zero_threads_means_all_cores() {
        assert!(resolve_threads(0) >= 1);
        assert_eq!(resolve_threads(3), 3);
    }

    #[test]
    fn features_are_listed() {
        #[cfg(target_arch = "x86_64")]
        assert!(cpu_features().iter().any(|(name, _)| *name == "avx2"));
    }
}
