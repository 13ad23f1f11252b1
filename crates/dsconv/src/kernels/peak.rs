//! The machine's f32 FMA peak, measured rather than assumed: 24 independent FMA chains
//! (enough to cover the 4-cycle latency on two FMA pipes) running from registers. The
//! "% of peak" figures in benchmarks divide by this number for the same tier.

use super::simd::{Portable, Simd};
use super::Isa;
use std::time::Instant;

/// Independent accumulators: latency 4 × 2 pipes × 3 for headroom.
const CHAINS: usize = 24;
/// FMAs per chain per timed call.
const STEPS: usize = 1 << 16;

/// Single-thread f32 FMA peak in GFLOP/s (2 FLOPs per lane per FMA) at tier `isa` (the
/// portable tier if `isa` is not available), the best of `repeats` timed runs.
pub fn fma_peak_gflops(isa: Isa, repeats: usize) -> f64 {
    let isa = super::runnable(isa);
    let mut best = f64::INFINITY;
    let mut sink = 0.0f32;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        // SAFETY: `runnable` returned a tier whose features this CPU has; the bodies
        // touch no memory.
        sink += unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => peak_avx512(),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => peak_avx2(),
                _ => peak_body::<Portable>(),
            }
        };
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    let flops = (CHAINS * STEPS * isa.lanes() * 2) as f64;
    flops / best.max(1e-9) / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn peak_avx512() -> f32 {
    // SAFETY: AVX-512 detected by the caller.
    unsafe { peak_body::<super::simd::Avx512>() }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2() -> f32 {
    // SAFETY: AVX2+FMA detected by the caller.
    unsafe { peak_body::<super::simd::Avx2>() }
}

#[inline(always)]
unsafe fn peak_body<S: Simd>() -> f32 {
    // SAFETY: register-only operations except the final store into a local array.
    unsafe {
        let a = S::splat(std::hint::black_box(0.999_999));
        let b = S::splat(std::hint::black_box(1e-7));
        let mut acc = [S::splat(1.0); CHAINS];
        for _ in 0..STEPS {
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
        out[0]
    }
}
