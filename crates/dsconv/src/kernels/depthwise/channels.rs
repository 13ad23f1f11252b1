//! The channel tiles of a call ([`Tiles`]: one vector each, the last masked, and a masked
//! head tile that aligns the input loads), a tile's K×K weight vectors, and the masked
//! loads and stores every body uses.

use super::DwArgs;
use crate::kernels::simd::Simd;

/// Floats of slack after the packed weights, the bias and the zero row: a head tile moves
/// every later tile off the 16-float grid, so the last (masked) tile's full-width weight
/// loads may run up to 15 floats past the padded channels.
pub(super) const HEAD_SLACK: usize = 16;

/// Fewest channel tiles for which a head tile pays: it adds one masked tile per pixel
/// block. 1 thread GFLOP/s without → with a head tile: C = 128 @ 56² 72 → 100, C = 32 @
/// 112² 88 → 65 (record `2026-12-02-kernels-tuning-history`).
const HEAD_MIN_TILES: usize = 8;

/// The channel tiles `(c0, valid)` of a call. When C·4 bytes is a multiple of the vector
/// size, every pixel of the input has the same alignment, and a first, masked "head" tile
/// of the channels before the first vector boundary makes every later input load
/// aligned: tensors are plain `Vec<f32>` (16-byte aligned from malloc), and loads that
/// straddle two cache lines ran the depthwise kernel up to 1.8× slower.
pub(super) struct Tiles {
    next: usize,
    channels: usize,
    lanes: usize,
    head: usize,
}

impl Tiles {
    #[inline(always)]
    pub(super) fn new<S: Simd>(a: &DwArgs) -> Self {
        let vector_bytes = S::LANES * 4;
        let misaligned = a.head_bytes % vector_bytes;
        let head = if misaligned != 0
            && (a.in_px * 4).is_multiple_of(vector_bytes)
            && a.channels >= HEAD_MIN_TILES * S::LANES
            && a.g.stride_w() == 1
        {
            (vector_bytes - misaligned) / 4
        } else {
            0
        };
        Tiles {
            next: 0,
            channels: a.channels,
            lanes: S::LANES,
            head: head.min(a.channels),
        }
    }
}

impl Iterator for Tiles {
    type Item = (usize, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.next >= self.channels {
            return None;
        }
        let c0 = self.next;
        let width = if c0 == 0 && self.head > 0 {
            self.head
        } else {
            self.lanes
        };
        let valid = width.min(self.channels - c0);
        self.next = c0 + width;
        Some((c0, valid))
    }
}

/// The K×K weight vectors of the channel tile starting at `c0`.
///
/// # Safety
/// Weights hold K·K·padded + HEAD_SLACK floats; `c0` is a tile of this call (see `Tiles`).
#[inline(always)]
pub(super) unsafe fn tile_weights<S: Simd, const K: usize>(
    a: &DwArgs,
    c0: usize,
) -> [[S::V; K]; K] {
    let mut w = [[S::zero(); K]; K];
    for (i, wr) in w.iter_mut().enumerate() {
        for (j, wv) in wr.iter_mut().enumerate() {
            // SAFETY: the function's contract: (i·K + j)·padded + c0 + LANES is inside.
            *wv = unsafe { S::load(a.weights.add((i * K + j) * a.padded + c0)) };
        }
    }
    w
}

#[inline(always)]
pub(super) unsafe fn load_in<S: Simd, const MASKED: bool>(p: *const f32, valid: usize) -> S::V {
    // SAFETY: the caller guarantees `valid` (LANES when not masked) readable floats at p.
    unsafe {
        if MASKED {
            S::load_partial(p, valid)
        } else {
            S::load(p)
        }
    }
}

#[inline(always)]
pub(super) unsafe fn store_out<S: Simd, const MASKED: bool>(p: *mut f32, v: S::V, valid: usize) {
    // SAFETY: the caller guarantees `valid` (LANES when not masked) writable floats at p.
    unsafe {
        if MASKED {
            S::store_partial(p, v, valid)
        } else {
            S::store(p, v)
        }
    }
}
