//! Element-wise passes on the SIMD tiers: an activation over a slice (for activations no
//! convolution's epilogue could take), and the per-channel scale of squeeze-excitation
//! with its gate. The activation is the epilogues' own code (`simd::activate`), so a value
//! gets the same bits here as in a kernel's epilogue at the same tier.

use super::simd::{activate, Epilogue, Simd};
use super::{Isa, Tier};
use crate::ops::Activation;

/// `x = act(x)` for every element of `data`, on tier `isa`.
pub(crate) fn activate_slice(isa: Tier, act: Activation, data: &mut [f32]) {
    if act == Activation::None {
        return;
    }
    let epi = Epilogue::new(act);
    // SAFETY: the pointer and length describe `data`; a `Tier` exists only for a tier
    // whose features this CPU has.
    unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => act_avx512(data.as_mut_ptr(), data.len(), &epi),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => act_avx2(data.as_mut_ptr(), data.len(), &epi),
            _ => act_body::<super::simd::Portable>(data.as_mut_ptr(), data.len(), &epi),
        }
    }
}

/// The body of [`activate_slice`] for one tier.
///
/// # Safety
/// `p` is valid for reads and writes of `n` floats; the tier's features are present.
#[inline(always)]
unsafe fn act_body<S: Simd>(p: *mut f32, n: usize, epi: &Epilogue) {
    let mut i = 0;
    // SAFETY: every access is inside `p[..n]` (full vectors while `i + LANES ≤ n`, then one
    // partial vector of the `n − i < LANES` left).
    unsafe {
        while i + S::LANES <= n {
            let v = activate::<S>(S::load(p.add(i)), epi);
            S::store(p.add(i), v);
            i += S::LANES;
        }
        if i < n {
            let v = activate::<S>(S::load_partial(p.add(i), n - i), epi);
            S::store_partial(p.add(i), v, n - i);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn act_avx512(p: *mut f32, n: usize, epi: &Epilogue) {
    // SAFETY: the caller's contract; AVX-512 is enabled here.
    unsafe { act_body::<super::simd::Avx512>(p, n, epi) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn act_avx2(p: *mut f32, n: usize, epi: &Epilogue) {
    // SAFETY: the caller's contract; AVX2 and FMA are enabled here.
    unsafe { act_body::<super::simd::Avx2>(p, n, epi) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units in the last place between `got` and the f64 `want` rounded to f32 (0 when
    /// both are the same special value).
    fn ulps(got: f32, want: f64) -> u64 {
        let w = want as f32;
        if got.is_nan() || w.is_nan() {
            return if got.is_nan() && w.is_nan() { 0 } else { u64::MAX };
        }
        if got == w {
            return 0;
        }
        let key = |v: f32| {
            let b = v.to_bits() as i64;
            if b < 0 {
                i64::MIN - b
            } else {
                b
            }
        };
        (key(got) - key(w)).unsigned_abs()
    }

    fn tiers() -> Vec<Tier> {
        crate::kernels::available_tiers().collect()
    }

    /// The vectorised exp (through sigmoid and SiLU, and directly) against f64 over the
    /// whole f32 range at every tier, with the special values.
    #[test]
    fn exp_sigmoid_silu_match_f64_everywhere() {
        const STEP: u32 = 331;
        let mut xs: Vec<f32> = Vec::new();
        // Every 331st f32 bit pattern from −110 to 110 (≈ 6.5 M values: a dense sweep,
        // subnormal results and both overflow edges included), plus special values.
        let (lo, hi) = (-110.0f32, 110.0f32);
        let mut b = hi.to_bits();
        while b > 0 {
            xs.push(f32::from_bits(b));
            b = b.saturating_sub(STEP);
        }
        let mut b = 0x8000_0000u32;
        while f32::from_bits(b) >= lo {
            xs.push(f32::from_bits(b));
            b += STEP;
        }
        xs.extend([
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            88.72283,
            88.72284,
            -87.33654,
            -103.97208,
            -103.97209,
            f32::MAX,
            f32::MIN,
        ]);
        for tier in tiers() {
            for (act, f, name, tol) in [
                (
                    Activation::Sigmoid,
                    (|x: f64| 1.0 / (1.0 + (-x).exp())) as fn(f64) -> f64,
                    "sigmoid",
                    3,
                ),
                (Activation::Silu, |x: f64| x / (1.0 + (-x).exp()), "silu", 3),
            ] {
                let mut y = xs.clone();
                activate_slice(tier, act, &mut y);
                let mut worst = (0u64, 0f32);
                for (&x, &g) in xs.iter().zip(&y) {
                    let want = f(x as f64);
                    // As PyTorch's f32 kernel: once e⁻ˣ overflows f32 the result is
                    // ±0 (sigmoid 0, SiLU −0), below the f64 value.
                    let want = if (-x as f64).exp() > f32::MAX as f64 {
                        if name == "silu" && x.is_finite() {
                            -0.0
                        } else if name == "silu" {
                            f64::NAN
                        } else {
                            0.0
                        }
                    } else {
                        want
                    };
                    let u = ulps(g, want);
                    if u > worst.0 {
                        worst = (u, x);
                    }
                }
                assert!(
                    worst.0 <= tol,
                    "{name} at {:?}: {} ulp at x = {}",
                    tier.isa(),
                    worst.0,
                    worst.1
                );
            }
        }
    }

    /// Special values as PyTorch's CPU kernels give them.
    #[test]
    fn specials_as_pytorch() {
        let inf = f32::INFINITY;
        for tier in tiers() {
            let mut y = [f32::NAN, inf, -inf, 0.0, -100.0, 100.0];
            activate_slice(tier, Activation::Sigmoid, &mut y);
            assert!(y[0].is_nan());
            assert_eq!(&y[1..], &[1.0, 0.0, 0.5, 0.0, 1.0]);
            let mut y = [f32::NAN, inf, -inf, 0.0, -100.0, 100.0, -0.0];
            activate_slice(tier, Activation::Silu, &mut y);
            assert!(y[0].is_nan() && y[2].is_nan());
            assert_eq!(y[1], inf);
            assert_eq!((y[3], y[4], y[5]), (0.0, -0.0, 100.0));
            assert!(y[4].is_sign_negative() && y[6].is_sign_negative());
        }
    }
}
