//! The f32 FMA peak of this CPU, measured rather than assumed: a loop of independent fused
//! multiply-adds on register-resident accumulators, with no memory traffic at all.
//!
//! Contract: [`fma_loop`] runs `iterations` rounds, each of `ACCUMULATORS` vector FMAs
//! `acc_k = acc_k · a + b` on `lanes` f32 lanes, and returns the FLOPs done
//! (`2 · iterations · ACCUMULATORS · lanes`) and a checksum of the accumulators (so the
//! work cannot be optimised away).
//!
//! Why many accumulators: an FMA has a latency of ~4 cycles and a CPU retires up to two per
//! cycle, so at least 8 independent chains are needed to keep both pipes busy; 12 leaves
//! margin and still fits the 16 ymm registers of AVX2 (the AVX-512 form has 32 registers).
//! Zen 4 runs zmm FMAs as two 256-bit halves, so both forms reach the same FLOP/s there
//! (DESIGN.md §1: ~115 GFLOP/s per core).
//!
//! The ISA is chosen at run time with `is_x86_feature_detected!`; this file is
//! self-contained and does not depend on the kernel tables of the other kernels.

/// Independent accumulator chains per iteration.
pub const ACCUMULATORS: usize = 12;

/// Multiplier of the FMA chain: slightly below 1, so every chain converges to
/// `B / (1 − A)` and never overflows or becomes denormal, however long the loop runs.
const A: f32 = 0.999_9;
/// Addend of the FMA chain.
const B: f32 = 1.0e-4;

/// The instruction set a peak loop runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakIsa {
    /// AVX-512F, 16 f32 lanes (zmm).
    Avx512,
    /// AVX2 + FMA, 8 f32 lanes (ymm).
    Avx2Fma,
    /// Portable code: separate multiply and add on whatever the compiler vectorises to
    /// for the baseline target.
    Scalar,
}

impl PeakIsa {
    /// The best tier this CPU supports.
    pub fn detect() -> PeakIsa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return PeakIsa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return PeakIsa::Avx2Fma;
            }
        }
        PeakIsa::Scalar
    }

    /// Whether this CPU can run the tier.
    pub fn is_available(self) -> bool {
        match self {
            PeakIsa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            PeakIsa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            PeakIsa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// f32 lanes per vector.
    pub fn lanes(self) -> usize {
        match self {
            PeakIsa::Avx512 => 16,
            PeakIsa::Avx2Fma => 8,
            PeakIsa::Scalar => 1,
        }
    }

    /// FLOPs of one iteration of the loop (all accumulators, all lanes, 2 per FMA).
    pub fn flops_per_iteration(self) -> u64 {
        2 * (ACCUMULATORS * self.lanes()) as u64
    }

    /// Lower-case name (`avx512f`, `avx2+fma`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            PeakIsa::Avx512 => "avx512f",
            PeakIsa::Avx2Fma => "avx2+fma",
            PeakIsa::Scalar => "scalar",
        }
    }
}

/// Runs the FMA loop for `iterations` rounds on `isa` and returns `(flops, checksum)`.
/// Falls back to the scalar loop when `isa` is not available on this CPU (the FLOP count
/// then follows the scalar loop).
pub fn fma_loop(isa: PeakIsa, iterations: u64) -> (u64, f32) {
    let isa = if isa.is_available() {
        isa
    } else {
        PeakIsa::Scalar
    };
    let checksum = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa.is_available()` checked avx512f on this CPU just above.
        PeakIsa::Avx512 => unsafe { x86::fma_loop_avx512(iterations) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa.is_available()` checked avx2 and fma on this CPU just above.
        PeakIsa::Avx2Fma => unsafe { x86::fma_loop_avx2(iterations) },
        _ => fma_loop_scalar(iterations),
    };
    (
        iterations.saturating_mul(isa.flops_per_iteration()),
        checksum,
    )
}

/// The portable loop: one f32 per chain, multiply then add.
fn fma_loop_scalar(iterations: u64) -> f32 {
    // black_box: opaque values, so constant propagation cannot find the fixed point.
    let (a, b) = (std::hint::black_box(A), std::hint::black_box(B));
    let mut acc = [std::hint::black_box(1.0f32); ACCUMULATORS];
    for _ in 0..iterations {
        for v in &mut acc {
            *v = *v * a + b;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{A, ACCUMULATORS, B};
    use std::arch::x86_64::*;

    /// AVX-512 loop: `ACCUMULATORS` zmm chains (constant-indexed arrays are promoted to
    /// registers once the inner loop is unrolled).
    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_loop_avx512(iterations: u64) -> f32 {
        // black_box: opaque start values, or constant propagation would find the chain's
        // fixed point (1.0 · A + B rounds to 1.0) and delete the loop.
        let a = _mm512_set1_ps(std::hint::black_box(A));
        let b = _mm512_set1_ps(std::hint::black_box(B));
        let mut acc = [_mm512_set1_ps(std::hint::black_box(1.0)); ACCUMULATORS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut sum = _mm512_setzero_ps();
        for v in acc {
            sum = _mm512_add_ps(sum, v);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// AVX2 loop: `ACCUMULATORS` ymm chains (12 of the 16 ymm registers, plus `a` and `b`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_loop_avx2(iterations: u64) -> f32 {
        // black_box: opaque start values, or constant propagation would find the chain's
        // fixed point (1.0 · A + B rounds to 1.0) and delete the loop.
        let a = _mm256_set1_ps(std::hint::black_box(A));
        let b = _mm256_set1_ps(std::hint::black_box(B));
        let mut acc = [_mm256_set1_ps(std::hint::black_box(1.0)); ACCUMULATORS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut sum = _mm256_setzero_ps();
        for v in acc {
            sum = _mm256_add_ps(sum, v);
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds exactly 8 f32, the width of one unaligned ymm store.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chain converges to B / (1 − A) = 1: the checksum is the chain count times
    /// the lane count, whatever the tier, once the loop has run long enough.
    #[test]
    fn every_available_tier_counts_flops_and_converges() {
        for isa in [PeakIsa::Avx512, PeakIsa::Avx2Fma, PeakIsa::Scalar] {
            if !isa.is_available() {
                continue;
            }
            let iterations = 200_000;
            let (flops, checksum) = fma_loop(isa, iterations);
            assert_eq!(flops, iterations * isa.flops_per_iteration(), "{isa:?}");
            let expected = (ACCUMULATORS * isa.lanes()) as f32;
            assert!(
                (checksum - expected).abs() < 1e-2 * expected,
                "{isa:?}: checksum {checksum}, expected {expected}"
            );
        }
    }

    #[test]
    fn zero_iterations_do_no_work() {
        let (flops, checksum) = fma_loop(PeakIsa::detect(), 0);
        assert_eq!(flops, 0);
        let expected = (ACCUMULATORS * PeakIsa::detect().lanes()) as f32;
        assert_eq!(checksum, expected);
    }
}
