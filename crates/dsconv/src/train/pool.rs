//! Reuse of the large activation and gradient buffers from one training step to the
//! next.
//!
//! A training step allocates every activation in its forward (each layer's output, kept
//! for backward) and a gradient of the same size in its backward, then frees them all.
//! Fresh large allocations are new pages from the system (glibc maps anything above
//! 32 MiB on its own and unmaps it on free), so without reuse every step faulted in and
//! zeroed its whole activation set again: ~500,000 page faults per MobileNetV2 step at
//! batch 32. The layers take their large outputs from this pool and give back the
//! buffers they are done with; the next step's same-sized tensors find them there.
//!
//! Only buffers of at least [`MIN_POOLED`] floats are kept (the allocator reuses small
//! ones itself), at most [`MAX_POOLED_BYTES`] in all (the oldest are freed first), and
//! [`release_buffers`] (called when a [`Model`](super::Model) is dropped) frees them. A
//! taken tensor's contents are unspecified (NaN in debug builds, so a layer that leaves
//! an element unwritten fails the tests): every caller overwrites all of it.

use crate::error::Result;
use crate::tensor::{Layout, Tensor};
use std::sync::Mutex;

/// Smallest buffer kept, in floats (1 MiB).
pub(crate) const MIN_POOLED: usize = 1 << 18;

/// Most bytes kept at once.
pub(crate) const MAX_POOLED_BYTES: usize = 4 << 30;

/// Floats a buffer needs beyond the tensor for [`Tensor::aligned_in`]'s 64-byte
/// alignment.
const SLACK: usize = 15;

/// Buffers given back, oldest first, holding at most `cap` bytes.
#[derive(Debug)]
struct Pool {
    buffers: Vec<Vec<f32>>,
    cap: usize,
}

impl Pool {
    const fn new(cap: usize) -> Self {
        Pool {
            buffers: Vec::new(),
            cap,
        }
    }

    fn bytes(&self) -> usize {
        self.buffers.iter().map(|b| b.capacity() * 4).sum()
    }

    /// The smallest buffer with room for `need` floats that wastes at most a quarter of
    /// it.
    fn take(&mut self, need: usize) -> Option<Vec<f32>> {
        let best = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= need && b.capacity() - need <= need / 4)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        Some(self.buffers.remove(best))
    }

    /// Keeps `buffer` (freeing the oldest while over the cap), or frees it when small.
    fn give(&mut self, buffer: Vec<f32>) {
        let bytes = buffer.capacity() * 4;
        if buffer.capacity() < MIN_POOLED || bytes > self.cap {
            return;
        }
        let mut held = self.bytes();
        while held + bytes > self.cap && !self.buffers.is_empty() {
            held -= self.buffers.remove(0).capacity() * 4;
        }
        self.buffers.push(buffer);
    }
}

/// The process's pool.
static POOL: Mutex<Pool> = Mutex::new(Pool::new(MAX_POOLED_BYTES));

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A tensor of memory-order `dims` whose contents are unspecified (the caller writes
/// every element): a pooled buffer when one fits (the smallest with room, wasting at
/// most a quarter of it), else a new one.
pub(crate) fn tensor(dims: [usize; 4], layout: Layout) -> Result<Tensor> {
    const UNWRITTEN: f32 = if cfg!(debug_assertions) {
        f32::NAN
    } else {
        0.0
    };
    let len = crate::error::f32_elements(&dims, "tensor size")?;
    let buffer = if len >= MIN_POOLED {
        pool().take(len.saturating_add(SLACK))
    } else {
        None
    };
    let mut t = Tensor::aligned_in(buffer.unwrap_or_default(), dims, layout, UNWRITTEN)?;
    if cfg!(debug_assertions) {
        t.data_mut().fill(UNWRITTEN);
    }
    Ok(t)
}

/// A copy of `x` in a pooled buffer.
pub(crate) fn copy(x: &Tensor) -> Result<Tensor> {
    let mut t = tensor(x.dims(), x.layout())?;
    t.data_mut().copy_from_slice(x.data());
    Ok(t)
}

/// Gives `t`'s buffer back for reuse (or frees it when small).
pub(crate) fn recycle(t: Tensor) {
    let buffer = t.into_buffer();
    if buffer.capacity() >= MIN_POOLED {
        pool().give(buffer);
    }
}

/// Frees every buffer the training layers keep for reuse between steps (dropping a
/// [`Model`](super::Model) does this; call it after driving the layers by hand).
pub fn release_buffers() {
    let freed = std::mem::take(&mut pool().buffers);
    drop(freed);
}

/// Bytes the training layers hold for reuse between steps now.
pub fn pooled_bytes() -> usize {
    pool().bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(floats: usize) -> Vec<f32> {
        Vec::with_capacity(floats)
    }

    #[test]
    fn best_fit_within_a_quarter() {
        let mut p = Pool::new(usize::MAX);
        p.give(buf(MIN_POOLED * 4));
        p.give(buf(MIN_POOLED * 2));
        p.give(buf(MIN_POOLED * 3));
        // The smallest with room.
        assert_eq!(
            p.take(MIN_POOLED * 2).map(|b| b.capacity()),
            Some(MIN_POOLED * 2)
        );
        // 3× is the fit for just under 3× (4× would waste more than a quarter).
        assert_eq!(
            p.take(MIN_POOLED * 3 - 1).map(|b| b.capacity()),
            Some(MIN_POOLED * 3)
        );
        // Too wasteful: 4× for 2× is refused.
        assert!(p.take(MIN_POOLED * 2).is_none());
        assert!(p.take(MIN_POOLED * 5).is_none());
        assert_eq!(p.bytes(), MIN_POOLED * 16);
    }

    #[test]
    fn small_buffers_are_not_kept_and_the_cap_frees_the_oldest() {
        let mut p = Pool::new(MIN_POOLED * 14);
        p.give(buf(MIN_POOLED - 1));
        assert_eq!(p.bytes(), 0);
        p.give(buf(MIN_POOLED));
        p.give(buf(MIN_POOLED * 2));
        assert_eq!(p.bytes(), MIN_POOLED * 12);
        p.give(buf(MIN_POOLED + 1));
        // The oldest (MIN_POOLED) went to make room.
        let caps: Vec<usize> = p.buffers.iter().map(|b| b.capacity()).collect();
        assert_eq!(caps, [MIN_POOLED * 2, MIN_POOLED + 1]);
        // Larger than the cap: never kept.
        p.give(buf(MIN_POOLED * 4));
        assert_eq!(p.buffers.len(), 2);
    }

    #[test]
    fn pooled_tensors_have_their_dims() {
        let dims = [1, 8, 8, MIN_POOLED / 64];
        let t = tensor(dims, Layout::Nhwc).unwrap();
        assert_eq!((t.dims(), t.len()), (dims, MIN_POOLED));
        if cfg!(debug_assertions) {
            assert!(t.data().iter().all(|v| v.is_nan()));
        }
        recycle(t);
        let c = copy(&Tensor::filled(dims, Layout::Nhwc, 2.0).unwrap()).unwrap();
        assert!(c.data().iter().all(|&v| v == 2.0));
        assert_eq!(c.dims(), dims);
    }
}
