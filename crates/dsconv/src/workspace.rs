//! Reusable activation buffers for networks that run layer after layer: each forward pass
//! takes its intermediate NHWC tensors from a [`Workspace`] and gives them back, so
//! steady-state passes neither allocate nor page-fault. (Fresh multi-MiB outputs per
//! layer made the kernel zero pages for 20% of a MobileNetV1-224 forward pass.)

use crate::error::Result;
use crate::tensor::{Layout, StridedNhwc, Tensor};
use std::sync::Mutex;

/// A pool of f32 buffers. Cloning gives an empty pool; concurrent forward passes each
/// take their own buffers (the lock is held only while taking or giving one).
#[derive(Default)]
pub struct Workspace {
    free: Mutex<Vec<Vec<f32>>>,
}

impl Clone for Workspace {
    fn clone(&self) -> Self {
        Workspace::default()
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buffers = self.free.lock().map_or(0, |v| v.len());
        write!(f, "Workspace({buffers} free buffers)")
    }
}

impl Workspace {
    /// An NHWC tensor with memory-order dims `dims` (`[N, H, W, C]`). Its contents are
    /// unspecified (every kernel overwrites its whole output).
    pub fn take(&self, dims: [usize; 4]) -> Result<Tensor> {
        // Room for the elements and the skip to a 64-byte boundary (`Tensor::aligned_in`).
        let len = crate::error::product(&dims, "workspace tensor")?.saturating_add(15);
        let reused = self.free.lock().ok().and_then(|mut free| {
            // The smallest free buffer whose capacity suffices, else the largest.
            let pick = free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .or_else(|| free.iter().enumerate().max_by_key(|(_, v)| v.capacity()))
                .map(|(i, _)| i);
            pick.map(|i| free.swap_remove(i))
        });
        Tensor::aligned_in(reused.unwrap_or_default(), dims, Layout::Nhwc, 0.0)
    }

    /// Floats per pixel of a network's own activation of `c` channels: the padding policy.
    /// `c`, or `c + 16` when `c` floats are a multiple of 1 KiB, which would put one
    /// channel tile of every pixel in the same few L1 sets for the depthwise kernel and
    /// the GEMM alike (the fused depthwise bands use the same rule,
    /// `kernels::uncrowded_pixel_stride`). Measured on MobileNetV1 (C = 256/512/1024
    /// between fused separable blocks and into the pool), 2 threads, 6 alternating runs:
    /// median 2.79 → 2.68 ms (record `2026-11-26-amd-epyc-f26m2-kernels-s5`).
    pub fn pixel_stride(c: usize) -> usize {
        crate::kernels::uncrowded_pixel_stride(c)
    }

    /// An activation of logical dims `[N, C, H, W]` whose pixels lie
    /// [`pixel_stride(C)`](Self::pixel_stride) floats apart when `padded`, else `C`
    /// (a plain NHWC tensor, for consumers that read only those). Contents unspecified.
    pub fn take_strided(&self, [n, c, h, w]: [usize; 4], padded: bool) -> Result<StridedNhwc> {
        let px = if padded { Self::pixel_stride(c) } else { c };
        StridedNhwc::new(self.take([n, h, w, px])?, c)
    }

    /// Returns an activation's buffer to the pool.
    pub fn give_strided(&self, a: StridedNhwc) {
        self.give(a.into_buffer())
    }

    /// Returns a tensor's buffer to the pool.
    pub fn give(&self, t: Tensor) {
        if let Ok(mut free) = self.free.lock() {
            free.push(t.into_buffer());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_start_on_64_byte_boundaries_and_read_back_whole() {
        let ws = Workspace::default();
        for dims in [[1, 3, 5, 7], [1, 112, 112, 32], [2, 1, 1, 1], [1, 2, 2, 8]] {
            let mut t = ws.take(dims).unwrap();
            assert_eq!(t.data().as_ptr() as usize % 64, 0, "{dims:?}");
            assert_eq!(t.len(), dims.iter().product::<usize>());
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                *v = i as f32;
            }
            let copy = t.clone();
            assert_eq!(copy, t);
            let data = t.into_data();
            assert_eq!(data.len(), dims.iter().product::<usize>());
            assert!(data.iter().enumerate().all(|(i, &v)| v == i as f32));
            assert_eq!(copy.into_data(), data);
        }
    }

    #[test]
    fn buffers_are_reused_without_reallocation() {
        let ws = Workspace::default();
        let a = ws.take([1, 4, 4, 8]).unwrap();
        let ptr = a.data().as_ptr();
        ws.give(a);
        let b = ws.take([1, 2, 2, 8]).unwrap();
        assert_eq!(b.data().as_ptr(), ptr);
        assert_eq!(b.dims(), [1, 2, 2, 8]);
        ws.give(b);
        let c = ws.take([1, 4, 4, 8]).unwrap();
        assert_eq!(c.data().as_ptr(), ptr);
        assert_eq!(c.len(), 128);
    }
}
