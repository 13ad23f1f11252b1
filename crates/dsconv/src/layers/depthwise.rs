//! Depthwise convolution: one k×k filter per input channel (`groups = C_in`).

use super::Conv2d;
use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::Conv2dParams;
use crate::ops::{Activation, BatchNorm};
use crate::tensor::Tensor;

/// Depthwise convolution with depth multiplier `m`: weight `[C_in·m, 1, kH, kW]`,
/// `out[n, c·m + k, y, x] = bias + Σ_{i, j} in[n, c, y·sH + i·dH − pad_top, x·sW + j·dW −
/// pad_left] · w[c·m + k, 0, i, j]`.
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    conv: Conv2d,
    multiplier: usize,
}

impl DepthwiseConv2d {
    /// Depthwise convolution with multiplier 1: weight `[C, 1, kH, kW]`. `params.groups` is
    /// ignored (set to C).
    pub fn new(weight: Tensor, bias: Option<Vec<f32>>, params: Conv2dParams) -> Result<Self> {
        Self::with_multiplier(weight, 1, bias, params)
    }

    /// Depthwise convolution with depth multiplier `multiplier`: weight `[C·m, 1, kH, kW]`.
    pub fn with_multiplier(
        weight: Tensor,
        multiplier: usize,
        bias: Option<Vec<f32>>,
        params: Conv2dParams,
    ) -> Result<Self> {
        let dims = weight.dims();
        if dims.contains(&0) {
            // Checked first: C_out = 0 would otherwise surface as "groups must be at least 1".
            return Err(Error::shape(
                "depthwise weight",
                "all dimensions at least 1",
                format!("{dims:?}"),
            ));
        }
        if dims[1] != 1 {
            return Err(Error::shape(
                "depthwise weight",
                "[C·multiplier, 1, kH, kW]",
                format!("{dims:?}"),
            ));
        }
        if multiplier == 0 || !dims[0].is_multiple_of(multiplier) {
            return Err(Error::param(
                "depth multiplier",
                format!(
                    "{multiplier} does not divide the {} output channels",
                    dims[0]
                ),
            ));
        }
        let channels = dims[0] / multiplier;
        let conv = Conv2d::new(weight, bias, params.with_groups(channels))?;
        Ok(DepthwiseConv2d { conv, multiplier })
    }

    /// Folds a BatchNorm over the output channels.
    pub fn with_batchnorm(self, bn: &BatchNorm) -> Result<Self> {
        Ok(DepthwiseConv2d {
            conv: self.conv.with_batchnorm(bn)?,
            ..self
        })
    }

    /// Fuses an activation.
    pub fn with_activation(self, activation: Activation) -> Self {
        DepthwiseConv2d {
            conv: self.conv.with_activation(activation),
            ..self
        }
    }

    /// Input channels.
    pub fn channels(&self) -> usize {
        self.conv.in_channels()
    }
    /// Depth multiplier.
    pub fn multiplier(&self) -> usize {
        self.multiplier
    }
    /// The underlying general convolution.
    pub fn as_conv2d(&self) -> &Conv2d {
        &self.conv
    }
    /// Cost on an input of logical dims `[N, C, H, W]`.
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        self.conv.cost(input)
    }
    /// Forward pass on one thread.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.conv.forward(input)
    }
    /// Forward pass with `exec`'s threads.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        self.conv.forward_with(input, exec)
    }
    /// Forward pass of an NHWC input into a caller-owned NHWC output (no allocation).
    pub fn forward_into(&self, input: &Tensor, out: &mut Tensor, exec: &Executor) -> Result<()> {
        self.conv.forward_into(input, out, exec)
    }
}
