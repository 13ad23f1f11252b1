//! The tiny SIMD contract every microkernel is written against, and its three
//! implementations: portable arrays (scalar tier), AVX2+FMA (8 lanes) and AVX-512 (16 lanes).
//!
//! Operand order is spelled out: `mul_add(a, b, acc) = a·b + acc`. Every method is
//! `#[inline(always)]` so that, once inlined into a `#[target_feature]` entry point, the
//! intrinsics compile to single instructions of that tier.
//!
//! # Safety contract
//! The methods are `unsafe` for two reasons: pointer methods read or write `LANES`
//! (or `n`) consecutive f32 at the pointer, which must be valid for that access; and the
//! AVX2/AVX-512 implementations may only run on a CPU that has those features (they are
//! reached only from entry points selected after detection, see `super::Isa`).

/// A vector of `LANES` f32 and the operations the kernels need.
pub(crate) trait Simd: Copy {
    /// Number of f32 lanes.
    const LANES: usize;
    /// The register type.
    type V: Copy;
    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// Loads `LANES` f32 from `p` (no alignment required).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Loads the first `n < LANES` f32 from `p`, zero in the other lanes; reads nothing
    /// past `p + n`.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V;
    /// Stores `LANES` f32 at `p`.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Stores the first `n < LANES` lanes at `p`; writes nothing past `p + n`.
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize);
    /// `a·b + acc` (fused on the x86 tiers).
    unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a·b`.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a − b`.
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    /// `a / b` (IEEE division, correctly rounded).
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// Rounds to the nearest integer, ties to even (NaN stays NaN).
    unsafe fn round(a: Self::V) -> Self::V;
    /// `2ⁿ` for lanes holding an integer `n` in `[−126, 127]` (built from the exponent
    /// bits; other lanes give an unspecified finite or infinite value, NaN never).
    unsafe fn pow2i(n: Self::V) -> Self::V;
    /// `y · 2ⁿ` by adding the integer `n` to `y`'s exponent field: exact, and equal to the
    /// product, only while `y` and the result are normal numbers (other lanes: garbage).
    unsafe fn scale_pow2(y: Self::V, n: Self::V) -> Self::V;
    /// Whether every lane has `|x| < bound` (false where any lane is NaN).
    unsafe fn all_abs_below(x: Self::V, bound: f32) -> bool;
    /// Lane-wise `a > b ? a : b`: **`b` when either is NaN** (and when both are zeros of
    /// either sign), the x86 `MAXPS` rule (Intel SDM: "if only one value is a NaN ... the
    /// second operand ... is written to the result"), which the portable tier copies. So
    /// `max(lo, x)` keeps a NaN `x`; `max(x, lo)` would turn it into `lo`.
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `a < b ? a : b`: `b` when either is NaN (`MINPS`), like [`Simd::max`].
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// `C = act(C) [+ res]` over `rows × cols` floats of C (row stride `ldc`; residual
    /// rows at stride `ldr`, null for none) on this tier, in a function of its own that is
    /// never inlined (see [`super::act::rows`]): the GEMM microkernel hands its
    /// exponential epilogues (sigmoid, SiLU) here.
    ///
    /// # Safety
    /// The pointers are valid for those rows and columns; the tier's features are present.
    unsafe fn rows_epilogue(
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        res: *const f32,
        ldr: usize,
        epi: &Epilogue,
    );
}

/// The portable tier: 8 lanes held in an array, plain Rust arithmetic (not fused, so no
/// software `fma` call on CPUs without FMA). The compiler vectorises it with the
/// baseline instruction set (SSE2 on x86_64, NEON on aarch64).
#[derive(Clone, Copy)]
pub(crate) struct Portable;

/// Lanes of the portable tier: two SSE/NEON registers, enough to keep a row of the
/// scalar GEMM tile in registers.
const PORTABLE_LANES: usize = 8;

impl Simd for Portable {
    const LANES: usize = PORTABLE_LANES;
    type V = [f32; PORTABLE_LANES];
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; PORTABLE_LANES]
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; PORTABLE_LANES]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees LANES readable f32 at p.
        unsafe { p.cast::<[f32; PORTABLE_LANES]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V {
        let mut v = [0.0; PORTABLE_LANES];
        for (l, x) in v.iter_mut().enumerate().take(n) {
            // SAFETY: the caller guarantees n readable f32 at p, and l < n.
            *x = unsafe { *p.add(l) };
        }
        v
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees LANES writable f32 at p.
        unsafe { p.cast::<[f32; PORTABLE_LANES]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize) {
        for (l, x) in v.iter().enumerate().take(n) {
            // SAFETY: the caller guarantees n writable f32 at p, and l < n.
            unsafe { *p.add(l) = *x };
        }
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l] + acc[l])
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] - b[l])
    }
    #[inline(always)]
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] / b[l])
    }
    #[inline(always)]
    unsafe fn round(a: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l].round_ties_even())
    }
    #[inline(always)]
    unsafe fn pow2i(n: Self::V) -> Self::V {
        // `as i32` saturates (NaN → 0); the shift keeps the exponent field's 8 bits.
        std::array::from_fn(|l| f32::from_bits((((n[l] as i32) + 127) as u32 & 0xff) << 23))
    }
    #[inline(always)]
    unsafe fn scale_pow2(y: Self::V, n: Self::V) -> Self::V {
        std::array::from_fn(|l| {
            f32::from_bits(y[l].to_bits().wrapping_add(((n[l] as i32) << 23) as u32))
        })
    }
    #[inline(always)]
    unsafe fn all_abs_below(x: Self::V, bound: f32) -> bool {
        x.iter().all(|v| v.abs() < bound)
    }
    #[inline(always)]
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| if a[l] > b[l] { a[l] } else { b[l] })
    }
    #[inline(always)]
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| if a[l] < b[l] { a[l] } else { b[l] })
    }
    #[inline(always)]
    unsafe fn rows_epilogue(
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        res: *const f32,
        ldr: usize,
        epi: &Epilogue,
    ) {
        // SAFETY: the caller's contract, which is the callee's.
        unsafe { super::act::rows_portable(c, ldc, rows, cols, res, ldr, epi) }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Epilogue, Simd};
    use std::arch::x86_64::*;

    /// AVX2 + FMA, 8 lanes in a ymm register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    impl Avx2 {
        /// A lane mask (all ones in lanes `< n`) for `vmaskmovps`.
        #[inline(always)]
        unsafe fn mask(n: usize) -> __m256i {
            // SAFETY: AVX2 is present (module contract); the intrinsics touch no memory.
            unsafe {
                _mm256_cmpgt_epi32(
                    _mm256_set1_epi32(n as i32),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                )
            }
        }
    }

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 readable f32 at p; AVX is present.
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> __m256 {
            // SAFETY: masked-off lanes are not accessed (no fault); lanes < n are readable.
            unsafe { _mm256_maskload_ps(p, Self::mask(n)) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: the caller guarantees 8 writable f32 at p; AVX is present.
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_partial(p: *mut f32, v: __m256, n: usize) {
            // SAFETY: masked-off lanes are not written; lanes < n are writable.
            unsafe { _mm256_maskstore_ps(p, Self::mask(n), v) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m256, b: __m256, acc: __m256) -> __m256 {
            // SAFETY: FMA is present (module contract).
            unsafe { _mm256_fmadd_ps(a, b, acc) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn round(a: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m256) -> __m256 {
            // SAFETY: AVX2 is present (module contract); register-only operations.
            unsafe {
                let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
                let e = _mm256_and_si256(e, _mm256_set1_epi32(0xff));
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
            }
        }
        #[inline(always)]
        unsafe fn scale_pow2(y: __m256, n: __m256) -> __m256 {
            // SAFETY: AVX2 is present (module contract); register-only operations.
            unsafe {
                let e = _mm256_slli_epi32::<23>(_mm256_cvtps_epi32(n));
                _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), e))
            }
        }
        #[inline(always)]
        unsafe fn all_abs_below(x: __m256, bound: f32) -> bool {
            // SAFETY: AVX2 is present (module contract); register-only operations.
            unsafe {
                let a = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
                _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(bound))) == 0xff
            }
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            // SAFETY: AVX is present (module contract).
            unsafe { _mm256_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn rows_epilogue(
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            res: *const f32,
            ldr: usize,
            epi: &Epilogue,
        ) {
            // SAFETY: the caller's contract, which is the callee's.
            unsafe { crate::kernels::act::rows_avx2(c, ldc, rows, cols, res, ldr, epi) }
        }
    }

    /// AVX-512 F (+BW/VL required by the tier), 16 lanes in a zmm register, masked tails.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    /// The mask selecting lanes `< n` (n < 16).
    #[inline(always)]
    fn mask16(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 readable f32 at p; AVX-512F is present.
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_partial(p: *const f32, n: usize) -> __m512 {
            // SAFETY: masked-off lanes are not accessed (fault-suppressed); lanes < n readable.
            unsafe { _mm512_maskz_loadu_ps(mask16(n), p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: the caller guarantees 16 writable f32 at p; AVX-512F is present.
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_partial(p: *mut f32, v: __m512, n: usize) {
            // SAFETY: masked-off lanes are not written; lanes < n are writable.
            unsafe { _mm512_mask_storeu_ps(p, mask16(n), v) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: __m512, b: __m512, acc: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_fmadd_ps(a, b, acc) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn div(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_div_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn round(a: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract); register-only operations.
            unsafe {
                let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
                let e = _mm512_and_si512(e, _mm512_set1_epi32(0xff));
                _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
            }
        }
        #[inline(always)]
        unsafe fn scale_pow2(y: __m512, n: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract); register-only operations.
            unsafe {
                let e = _mm512_slli_epi32::<23>(_mm512_cvtps_epi32(n));
                _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(y), e))
            }
        }
        #[inline(always)]
        unsafe fn all_abs_below(x: __m512, bound: f32) -> bool {
            // SAFETY: AVX-512F is present (module contract); register-only operations.
            unsafe {
                let a = _mm512_abs_ps(x);
                _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_set1_ps(bound)) == 0xffff
            }
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn min(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512F is present (module contract).
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn rows_epilogue(
            c: *mut f32,
            ldc: usize,
            rows: usize,
            cols: usize,
            res: *const f32,
            ldr: usize,
            epi: &Epilogue,
        ) {
            // SAFETY: the caller's contract, which is the callee's.
            unsafe { crate::kernels::act::rows_avx512(c, ldc, rows, cols, res, ldr, epi) }
        }
    }
}

/// `min(hi, max(lo, x))` with the variable last in both, so a NaN `x` comes through
/// (see [`Simd::max`]): ATen's `vec::clamp` (`_mm512_min_ps(max, _mm512_max_ps(min, a))`),
/// which PyTorch's ReLU, ReLU6/hardtanh and clamp run on x86. ±Inf clamp like any number.
#[inline(always)]
unsafe fn clamp<S: Simd>(x: S::V, lo: S::V, hi: S::V) -> S::V {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe { S::min(hi, S::max(lo, x)) }
}

/// `x · clamp(x + 3, 0, 6) / 6` (the division as a product with 1/6): NaN stays NaN,
/// +Inf stays +Inf and −Inf gives NaN (−Inf · 0), as PyTorch's CPU kernel
/// (`x * min(max(x + 3, 0), 6) / 6` with NaN-propagating `minimum`/`maximum`).
#[inline(always)]
unsafe fn hard_swish<S: Simd>(x: S::V, three: S::V, six: S::V, sixth: S::V) -> S::V {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe {
        let gate = clamp::<S>(S::add(x, three), S::zero(), six);
        S::mul(S::mul(x, gate), sixth)
    }
}

/// `eˣ` lane-wise, within 2 ulp of the correctly rounded result over the whole f32 range
/// (tested against f64 at every tier), subnormal results included: `x > 88.72…` gives
/// +Inf, `x < −103.97…` gives 0, NaN stays NaN, +Inf → +Inf, −Inf → 0.
///
/// Cody–Waite reduction `x = n·ln 2 + r`, `|r| ≤ ½ ln 2` (ln 2 split in Cephes's two
/// constants, the first with few enough bits that `n·LN2_HI` is exact without FMA), the
/// degree-6 Cephes `expf` polynomial for `eʳ`, then `2ⁿ` applied as two factors `2^⌊n/2⌉`
/// and `2^(n − ⌊n/2⌉)` so that neither leaves the normal range (the product rounds once,
/// into the subnormals where it must). A vector whose lanes are all within ±86 (every
/// vector of a network's activations in practice) takes a shorter path to the same bits.
/// EfficientNet-B0, one thread: 20.2 → 18.8 ms (best of 5 alternating runs, Zen 3).
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe {
        if S::all_abs_below(x, EXP_FAST_BOUND) {
            // |x| < 86: n ∈ [−124, 124] and eʳ ∈ [0.7, 1.42], so y·2ⁿ and its halfway
            // product y·2^⌊n/2⌉ are normal and exact: adding n to the exponent field gives
            // the very bits of the two-factor product below, in ~10 fewer operations.
            let (y, n) = exp_reduced::<S>(x);
            S::scale_pow2(y, n)
        } else {
            let x = clamp::<S>(x, S::splat(-104.0), S::splat(89.0));
            let (y, n) = exp_reduced::<S>(x);
            let n1 = S::round(S::mul(n, S::splat(0.5)));
            let n2 = S::sub(n, n1);
            S::mul(S::mul(y, S::pow2i(n1)), S::pow2i(n2))
        }
    }
}

/// Below this |x| [`exp`] scales by exponent addition (see there).
const EXP_FAST_BOUND: f32 = 86.0;

/// [`exp`]'s reduction: `(eʳ, n)` with `x = n·ln 2 + r`, for `x` in `[−104, 89]`.
#[inline(always)]
unsafe fn exp_reduced<S: Simd>(x: S::V) -> (S::V, S::V) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe {
        let n = S::round(S::mul(x, S::splat(LOG2E)));
        let r = S::sub(x, S::mul(n, S::splat(LN2_HI)));
        let r = S::sub(r, S::mul(n, S::splat(LN2_LO)));
        let mut p = S::splat(1.987_569_1e-4);
        p = S::mul_add(p, r, S::splat(1.398_199_9e-3));
        p = S::mul_add(p, r, S::splat(8.333_452e-3));
        p = S::mul_add(p, r, S::splat(4.166_579_6e-2));
        p = S::mul_add(p, r, S::splat(1.666_666_5e-1));
        p = S::mul_add(p, r, S::splat(0.5));
        (S::add(S::mul_add(p, S::mul(r, r), r), S::splat(1.0)), n)
    }
}

/// `1 / (1 + e⁻ˣ)`: NaN stays NaN, +Inf → 1, −Inf → 0 (PyTorch's `sigmoid`).
#[inline(always)]
unsafe fn sigmoid<S: Simd>(x: S::V, one: S::V) -> S::V {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe { S::div(one, S::add(one, exp::<S>(S::sub(S::zero(), x)))) }
}

/// `x / (1 + e⁻ˣ)` (PyTorch's CPU `silu` formula): NaN stays NaN, +Inf → +Inf,
/// −Inf → NaN (−Inf / +Inf), large negative x → −0.
#[inline(always)]
unsafe fn silu<S: Simd>(x: S::V, one: S::V) -> S::V {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe { S::div(x, S::add(one, exp::<S>(S::sub(S::zero(), x)))) }
}

/// Applies an activation to one register, lane-wise (the fused epilogue). NaN and ±Inf
/// come out as PyTorch gives them (see [`Epilogue`]).
#[inline(always)]
pub(crate) unsafe fn activate<S: Simd>(v: S::V, act: &Epilogue) -> S::V {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe {
        match act.kind {
            EpilogueKind::None => v,
            EpilogueKind::Clamp => clamp::<S>(v, S::splat(act.lo), S::splat(act.hi)),
            EpilogueKind::HardSwish => {
                hard_swish::<S>(v, S::splat(3.0), S::splat(6.0), S::splat(1.0 / 6.0))
            }
            EpilogueKind::Sigmoid => sigmoid::<S>(v, S::splat(1.0)),
            EpilogueKind::Silu => silu::<S>(v, S::splat(1.0)),
            EpilogueKind::Nan => S::splat(f32::NAN),
        }
    }
}

/// Applies an activation to a whole register tile; the kind is matched once outside the
/// loops so that they stay branch-free (and the tile stays in registers). Sigmoid and SiLU
/// are left to the caller ([`Epilogue::out_of_line`]).
#[inline(always)]
pub(crate) unsafe fn activate_tile<S: Simd, const R: usize, const NV: usize>(
    acc: &mut [[S::V; NV]; R],
    act: &Epilogue,
) {
    // SAFETY: register-only operations; the tier's features are present (module contract).
    unsafe {
        match act.kind {
            EpilogueKind::None => {}
            EpilogueKind::Clamp => {
                let (lo, hi) = (S::splat(act.lo), S::splat(act.hi));
                for row in acc.iter_mut() {
                    for x in row.iter_mut() {
                        *x = clamp::<S>(*x, lo, hi);
                    }
                }
            }
            EpilogueKind::HardSwish => {
                let (three, six, sixth) = (S::splat(3.0), S::splat(6.0), S::splat(1.0 / 6.0));
                for row in acc.iter_mut() {
                    for x in row.iter_mut() {
                        *x = hard_swish::<S>(*x, three, six, sixth);
                    }
                }
            }
            // Out of line, after the store (`Simd::rows_epilogue`): the exponential's code
            // inlined here, even never run, slowed every GEMM ~2.8x (the microkernel's
            // accumulators and loop lost their registers).
            EpilogueKind::Sigmoid | EpilogueKind::Silu => {}
            EpilogueKind::Nan => {
                let nan = S::splat(f32::NAN);
                for row in acc.iter_mut() {
                    for x in row.iter_mut() {
                        *x = nan;
                    }
                }
            }
        }
    }
}

/// What the epilogue does after the accumulation, decoded once per call from
/// [`crate::Activation`]: ReLU, ReLU6 and Clamp are all a clamp to `[lo, hi]` (ReLU's
/// `hi` is +Inf). NaN and ±Inf follow PyTorch, as [`crate::Activation::apply`] documents:
/// a NaN input stays NaN, a clamp with a NaN bound gives NaN everywhere.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue {
    kind: EpilogueKind,
    lo: f32,
    hi: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpilogueKind {
    None,
    Clamp,
    HardSwish,
    Sigmoid,
    Silu,
    /// Every output NaN: `Clamp` with a NaN bound (PyTorch's `clamp_out` fills the result
    /// with NaN then).
    Nan,
}

impl Epilogue {
    /// Whether [`activate_tile`] leaves this activation to the caller: the exponential
    /// ones (sigmoid, SiLU), which a register-tiled kernel applies through
    /// [`Simd::rows_epilogue`] once a whole row block is stored (the GEMM driver).
    #[inline(always)]
    pub(crate) fn out_of_line(&self) -> bool {
        matches!(self.kind, EpilogueKind::Sigmoid | EpilogueKind::Silu)
    }

    /// Decodes an activation.
    pub(crate) fn new(act: crate::ops::Activation) -> Self {
        use crate::ops::Activation as A;
        let (kind, lo, hi) = match act {
            A::None => (EpilogueKind::None, 0.0, 0.0),
            A::Relu => (EpilogueKind::Clamp, 0.0, f32::INFINITY),
            A::Relu6 => (EpilogueKind::Clamp, 0.0, 6.0),
            A::Clamp { min, max } if min.is_nan() || max.is_nan() => (EpilogueKind::Nan, 0.0, 0.0),
            A::Clamp { min, max } => (EpilogueKind::Clamp, min, max),
            A::HardSwish => (EpilogueKind::HardSwish, 0.0, 0.0),
            A::Sigmoid => (EpilogueKind::Sigmoid, 0.0, 0.0),
            A::Silu => (EpilogueKind::Silu, 0.0, 0.0),
        };
        Epilogue { kind, lo, hi }
    }
}
