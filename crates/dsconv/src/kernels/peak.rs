//! The machine's f32 FMA peak, measured rather than assumed: 24 independent FMA chains
//! (enough to cover the 4-cycle latency on two FMA pipes) running from registers. The
//! "% of peak" figures in benchmarks divide by this number for the same tier;
//! `crate::machine` runs [`fma_loop`] on every thread for the multi-thread peak.

use super::simd::{Portable, Simd};
use super::{Isa, Tier};
use std::time::Instant;

/// Independent accumulators for AVX-512: latency 4 × 2 pipes × 3 for headroom, 24 of the
/// 32 zmm registers.
const CHAINS: usize = 24;
/// Chains for AVX2: 12 of the 16 ymm registers (24 spilled and read 126 GFLOP/s on Zen 5,
/// below the AVX2 GEMM's 131).
const AVX2_CHAINS: usize = 12;
/// Chains of the portable tier: 4 × 8 lanes fill 8 of the 16 SSE registers (24 spilled
/// and measured a memory-bound 4.7 GFLOP/s, below the portable GEMM itself).
const PORTABLE_CHAINS: usize = 4;

/// Accumulator chains used at tier `isa`.
fn chains(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => CHAINS,
        Isa::Avx2 => AVX2_CHAINS,
        Isa::Scalar => PORTABLE_CHAINS,
    }
}
/// FMAs per chain per timed call of [`fma_peak_gflops`].
const STEPS: u64 = 1 << 16;
/// The chain `x ← x·A + B` converges to `B / (1 − A) = 1` from 1: values stay finite and
/// normal however long it runs.
const A: f32 = 0.5;
const B: f32 = 0.5;

/// Runs `iterations` rounds of the FMA chains at tier `isa` and returns `(flops, checksum)`; the checksum keeps the work observable.
pub fn fma_loop(isa: Tier, iterations: u64) -> (u64, f32) {
    // SAFETY: a `Tier` exists only for a tier whose features this CPU has; the bodies touch
    // no memory but a local array.
    let checksum = unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => peak_avx512(iterations),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => peak_avx2(iterations),
            _ => peak_body::<Portable, PORTABLE_CHAINS>(iterations),
        }
    };
    (
        iterations.saturating_mul(flops_per_round(isa.isa())),
        checksum,
    )
}

/// FLOPs one round of [`fma_loop`] does at tier `isa` (2 per lane per FMA).
pub fn flops_per_round(isa: Isa) -> u64 {
    (chains(isa) * isa.lanes() * 2) as u64
}

/// Single-thread f32 FMA peak in GFLOP/s (2 FLOPs per lane per FMA) at tier `isa`, the
/// best of `repeats` timed runs.
pub fn fma_peak_gflops(isa: Tier, repeats: usize) -> f64 {
    let mut best = f64::INFINITY;
    let mut flops = 0;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let (f, checksum) = fma_loop(isa, std::hint::black_box(STEPS));
        std::hint::black_box(checksum);
        best = best.min(start.elapsed().as_secs_f64());
        flops = f;
    }
    flops as f64 / best.max(1e-9) / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn peak_avx512(iterations: u64) -> f32 {
    // SAFETY: AVX-512 detected by the caller.
    unsafe { peak_body::<super::simd::Avx512, CHAINS>(iterations) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2(iterations: u64) -> f32 {
    // SAFETY: AVX2+FMA detected by the caller.
    unsafe { peak_body::<super::simd::Avx2, AVX2_CHAINS>(iterations) }
}

#[inline(always)]
unsafe fn peak_body<S: Simd, const N: usize>(iterations: u64) -> f32 {
    // SAFETY: register-only operations except the final store into a local array of 16
    // f32, at most one vector (LANES ≤ 16, checked).
    unsafe {
        // black_box: opaque constants, or constant propagation would find the fixed point.
        let a = S::splat(std::hint::black_box(A));
        let b = S::splat(std::hint::black_box(B));
        let mut acc = [S::splat(std::hint::black_box(1.0)); N];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = S::mul_add(*x, a, b);
            }
        }
        let mut sum = S::zero();
        for x in acc {
            sum = S::add(sum, x);
        }
        let mut out = [0.0f32; 16];
        if S::LANES <= 16 {
            S::store(out.as_mut_ptr(), sum);
        }
        out[..S::LANES.min(16)].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chain stays at the fixed point 1: the checksum is chains × lanes, and the
    /// FLOP count follows the tier's width, for every tier this CPU has.
    #[test]
    fn every_available_tier_counts_flops_and_keeps_the_fixed_point() {
        for isa in super::super::available_tiers() {
            let (flops, checksum) = fma_loop(isa, 1000);
            assert_eq!(
                flops,
                1000 * (chains(isa.isa()) * isa.isa().lanes() * 2) as u64,
                "{isa:?}"
            );
            assert_eq!(
                checksum,
                (chains(isa.isa()) * isa.isa().lanes()) as f32,
                "{isa:?}"
            );
            assert!(fma_peak_gflops(isa, 2) > 0.0);
        }
    }
}
