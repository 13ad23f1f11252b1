//! Packing of A (the activations) per block, only when its row stride would put the rows
//! of one tile in one L1 set (`should_pack`, `pack_a`). B (the weight) is packed once, at
//! layer construction, by `PackedGemm::from_fn`/`from_rows` into panels of `PANEL`
//! columns, `k` major and zero-padded past N.

use crate::kernels::{gcd, AlignedVec};

thread_local! {
    /// Per-thread packed A block, reused by every GEMM call on that thread (the pool's
    /// threads are persistent, so steady-state calls allocate nothing).
    pub(super) static PACKED_A: std::cell::RefCell<AlignedVec> = std::cell::RefCell::new(AlignedVec::default());
}

/// L1 data cache set period (64 sets × 64 B lines on Zen 4/5 and recent Intel): addresses
/// this far apart compete for the same ways.
const L1_SET_PERIOD_BYTES: usize = 4096;
/// Most A rows of one tile allowed in one L1 set before A is packed: the L1 is 8-way
/// (Zen 4) or 12-way (Zen 5) and the B micro-panel and C need ways too.
const MAX_ROWS_PER_SET: usize = 4;

/// Whether the `mr` rows of an A tile at row stride `lda` floats would crowd one L1 set
/// (e.g. 1024 channels: a 4 KiB stride puts all 14 rows in one set: 44 GFLOP/s in place,
/// 232 from the padded copy; record `2026-12-02-kernels-tuning-history`).
/// Otherwise A is read in place: packing is a scalar transpose that cost 30% at
/// 3136×128→128 (A reused by only 4 panels).
pub(super) fn should_pack(lda: usize, mr: usize) -> bool {
    let stride = (lda % (L1_SET_PERIOD_BYTES / 4)) * 4;
    let period_rows = if stride == 0 {
        1
    } else {
        L1_SET_PERIOD_BYTES / gcd(stride, L1_SET_PERIOD_BYTES)
    };
    mr.div_ceil(period_rows) > MAX_ROWS_PER_SET
}

/// Floats added to each packed A row so that consecutive rows start 64 B apart modulo
/// the L1 set period instead of on the same set.
pub(super) const PACKED_ROW_PAD: usize = 16;

/// Copies rows `0..mc`, columns `0..kc` of A (row stride `lda`) into `out` with row stride
/// `kc + PACKED_ROW_PAD`, so the rows of a tile fall in different L1 sets. A plain row copy
/// (vectorised memcpy); a scalar transpose into `[kc][MR]` tiles cost as much as the
/// aliasing it removed at 1024→1024.
#[inline(always)]
pub(super) unsafe fn pack_a(a: *const f32, lda: usize, mc: usize, kc: usize, out: *mut f32) {
    for r in 0..mc {
        // SAFETY: the caller guarantees mc rows × kc columns of A and
        // mc·(kc + PACKED_ROW_PAD) floats at out; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(a.add(r * lda), out.add(r * (kc + PACKED_ROW_PAD)), kc)
        };
    }
}
