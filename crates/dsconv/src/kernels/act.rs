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
