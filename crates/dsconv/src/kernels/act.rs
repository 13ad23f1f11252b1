//! Element-wise passes on the SIMD tiers: an activation (then a residual add) over rows of
//! a matrix, for activations no convolution's epilogue could take and for the GEMM
//! microkernel's exponential epilogues. The activation is the epilogues' own code (`simd::activate`), so a value
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
    let (p, n, res) = (data.as_mut_ptr(), data.len(), std::ptr::null());
    // SAFETY: the pointer and length describe `data` (one row); a `Tier` exists only for
    // a tier whose features this CPU has.
    unsafe {
        match isa.isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => rows_avx512(p, n, 1, n, res, 0, &epi),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => rows_avx2(p, n, 1, n, res, 0, &epi),
            _ => rows_portable(p, n, 1, n, res, 0, &epi),
        }
    }
}

/// `C = act(C) [+ res]` over `rows × cols` of C at stride `ldc` (residual at stride `ldr`,
/// null: none): the activation first, then the add, as in the microkernel's epilogue.
///
/// Its per-tier instances below are `#[inline(never)]` on purpose: inlined into the GEMM
/// microkernel, the exponential's code cost every GEMM (whatever its activation) ~2.8× in
/// speed; as a call over each finished row block it costs nothing where it does not run.
///
/// # Safety
/// `c` is valid for reads and writes, and `res` (unless null) for reads, of `rows` rows of
/// `cols` floats at their strides; the tier's features are present.
#[inline(always)]
unsafe fn rows<S: Simd>(
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    res: *const f32,
    ldr: usize,
    epi: &Epilogue,
) {
    if rows > 1 && ldc == cols && (res.is_null() || ldr == cols) {
        // Rows back to back (a GEMM of N columns at stride N): one long row, so narrow
        // rows (a 2-column transposed-convolution output) run in full vectors.
        // SAFETY: the same `rows · cols` floats, contiguous.
        return unsafe { self::rows::<S>(c, rows * cols, 1, rows * cols, res, rows * cols, epi) };
    }
    let lanes = S::LANES;
    // SAFETY: every access is inside row `r`'s `cols` floats of C (and of `res`): full
    // vectors while `i + LANES ≤ cols`, then one partial vector of the `cols − i` left.
    unsafe {
        for r in 0..rows {
            let p = c.add(r * ldc);
            let q = if res.is_null() { res } else { res.add(r * ldr) };
            let mut i = 0;
            while i < cols {
                let n = lanes.min(cols - i);
                let x = if n == lanes {
                    S::load(p.add(i))
                } else {
                    S::load_partial(p.add(i), n)
                };
                let mut y = activate::<S>(x, epi);
                if !q.is_null() {
                    let z = if n == lanes {
                        S::load(q.add(i))
                    } else {
                        S::load_partial(q.add(i), n)
                    };
                    y = S::add(y, z);
                }
                if n == lanes {
                    S::store(p.add(i), y);
                } else {
                    S::store_partial(p.add(i), y, n);
                }
                i += n;
            }
        }
    }
}

/// [`rows`] on the portable tier.
///
/// # Safety
/// As [`rows`].
#[inline(never)]
pub(crate) unsafe fn rows_portable(
    c: *mut f32,
    ldc: usize,
    n_rows: usize,
    cols: usize,
    res: *const f32,
    ldr: usize,
    epi: &Epilogue,
) {
    // SAFETY: the caller's contract.
    unsafe { rows::<super::simd::Portable>(c, ldc, n_rows, cols, res, ldr, epi) }
}

/// [`rows`] on the AVX2 tier.
///
/// # Safety
/// As [`rows`]; AVX2 and FMA are present.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rows_avx2(
    c: *mut f32,
    ldc: usize,
    n_rows: usize,
    cols: usize,
    res: *const f32,
    ldr: usize,
    epi: &Epilogue,
) {
    // SAFETY: the caller's contract; AVX2 and FMA are enabled here.
    unsafe { rows::<super::simd::Avx2>(c, ldc, n_rows, cols, res, ldr, epi) }
}

/// [`rows`] on the AVX-512 tier.
///
/// # Safety
/// As [`rows`]; AVX-512 F/BW/VL are present.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn rows_avx512(
    c: *mut f32,
    ldc: usize,
    n_rows: usize,
    cols: usize,
    res: *const f32,
    ldr: usize,
    epi: &Epilogue,
) {
    // SAFETY: the caller's contract; AVX-512 is enabled here.
    unsafe { rows::<super::simd::Avx512>(c, ldc, n_rows, cols, res, ldr, epi) }
}
