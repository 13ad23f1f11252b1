//! Depthwise separable convolution: depthwise k×k, then pointwise 1×1.

use super::{DepthwiseConv2d, PointwiseConv2d};
use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::tensor::Tensor;

/// The MobileNet block: `pointwise(act₁(bn₁(depthwise(x))))` followed by `act₂(bn₂(·))`,
/// each BatchNorm folded at construction and each activation fused. Same output shape as a
/// standard convolution with the depthwise geometry and the pointwise channel count, at
/// `1/C_out + 1/(kH·kW)` of its multiplications.
#[derive(Debug, Clone)]
pub struct DepthwiseSeparableConv2d {
    depthwise: DepthwiseConv2d,
    pointwise: PointwiseConv2d,
}

impl DepthwiseSeparableConv2d {
    /// Composes a depthwise and a pointwise layer; the pointwise input channels must equal
    /// the depthwise output channels.
    pub fn new(depthwise: DepthwiseConv2d, pointwise: PointwiseConv2d) -> Result<Self> {
        let dw_out = depthwise.as_conv2d().out_channels();
        if pointwise.in_channels() != dw_out {
            return Err(Error::shape(
                "separable pointwise weight",
                format!("{dw_out} input channels (the depthwise output)"),
                format!("{} input channels", pointwise.in_channels()),
            ));
        }
        Ok(DepthwiseSeparableConv2d {
            depthwise,
            pointwise,
        })
    }

    /// The depthwise stage.
    pub fn depthwise(&self) -> &DepthwiseConv2d {
        &self.depthwise
    }
    /// The pointwise stage.
    pub fn pointwise(&self) -> &PointwiseConv2d {
        &self.pointwise
    }

    /// Cost of both stages on an input of logical dims `[N, C, H, W]`.
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        let g = self.depthwise.as_conv2d().geometry(input)?;
        Ok(self.depthwise.cost(input)? + self.pointwise.cost(g.output_dims())?)
    }

    /// Forward pass on one thread.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_with(input, &Executor::single())
    }

    /// Forward pass with `exec`'s threads.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let mid = self.depthwise.forward_with(input, exec)?;
        self.pointwise.forward_with(&mid, exec)
    }
}
