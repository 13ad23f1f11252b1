//! The cost model: multiply-accumulates (MACs), FLOPs (= 2·MACs, always named as such),
//! parameters, bytes read and written, and arithmetic intensity, for one convolution
//! and summed over a network.

use crate::geometry::ConvGeometry;
use std::ops::{Add, AddAssign};

/// Multiply-accumulates of one convolution: `N · C_out · out_H · out_W · (C_in/g) · kH · kW`.
pub fn conv_macs(g: &ConvGeometry) -> u64 {
    [
        g.batch,
        g.out_channels,
        g.out_h,
        g.out_w,
        g.in_channels_per_group(),
        g.kernel_h,
        g.kernel_w,
    ]
    .iter()
    .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

/// The cost of a layer or a sum of layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Multiply-accumulates.
    pub macs: u64,
    /// Learned parameters: weights plus biases (BatchNorm folded away, so not counted).
    pub params: u64,
    /// Bytes read: input activations, weights and biases (f32), each once.
    pub bytes_read: u64,
    /// Bytes written: output activations (f32), once.
    pub bytes_written: u64,
}

/// Bytes per f32 element.
const F32_BYTES: u64 = 4;

impl Cost {
    /// Cost of one convolution with the given geometry, with or without a bias.
    pub fn conv(g: &ConvGeometry, bias: bool) -> Cost {
        let weights = (g.out_channels * g.in_channels_per_group() * g.kernel_h * g.kernel_w) as u64;
        let params = weights + if bias { g.out_channels as u64 } else { 0 };
        let input = (g.batch * g.in_channels * g.in_h * g.in_w) as u64;
        let output = (g.batch * g.out_channels * g.out_h * g.out_w) as u64;
        Cost {
            macs: conv_macs(g),
            params,
            bytes_read: (input + params) * F32_BYTES,
            bytes_written: output * F32_BYTES,
        }
    }

    /// Cost of a fully connected layer `in_features → out_features` over `batch` rows.
    pub fn linear(batch: usize, in_features: usize, out_features: usize, bias: bool) -> Cost {
        let weights = (in_features * out_features) as u64;
        let params = weights + if bias { out_features as u64 } else { 0 };
        Cost {
            macs: batch as u64 * weights,
            params,
            bytes_read: (batch as u64 * in_features as u64 + params) * F32_BYTES,
            bytes_written: batch as u64 * out_features as u64 * F32_BYTES,
        }
    }

    /// Floating-point operations: 2 per multiply-accumulate.
    pub fn flops(&self) -> u64 {
        2 * self.macs
    }

    /// Total bytes moved (read + written).
    pub fn bytes(&self) -> u64 {
        self.bytes_read + self.bytes_written
    }

    /// Arithmetic intensity in FLOPs per byte moved.
    pub fn intensity(&self) -> f64 {
        if self.bytes() == 0 {
            0.0
        } else {
            self.flops() as f64 / self.bytes() as f64
        }
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            macs: self.macs + o.macs,
            params: self.params + o.params,
            bytes_read: self.bytes_read + o.bytes_read,
            bytes_written: self.bytes_written + o.bytes_written,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}
