//! Pointwise (1×1) convolution: a matrix product over channels at every pixel.

use super::Conv2d;
use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::Conv2dParams;
use crate::ops::{Activation, BatchNorm};
use crate::tensor::Tensor;

/// 1×1 convolution, stride 1, no padding: `out[n, co, y, x] = bias[co] + Σ_ci in[n, ci, y, x]
/// · w[co, ci, 0, 0]`. In NHWC this is the GEMM `[N·H·W, C_in] × [C_in, C_out]`.
#[derive(Debug, Clone)]
pub struct PointwiseConv2d {
    conv: Conv2d,
}

impl PointwiseConv2d {
    /// Builds from a weight `[C_out, C_in, 1, 1]` and an optional bias.
    pub fn new(weight: Tensor, bias: Option<Vec<f32>>) -> Result<Self> {
        let dims = weight.dims();
        if dims[2] != 1 || dims[3] != 1 {
            return Err(Error::shape(
                "pointwise weight",
                "[C_out, C_in, 1, 1]",
                format!("{dims:?}"),
            ));
        }
        Ok(PointwiseConv2d {
            conv: Conv2d::new(weight, bias, Conv2dParams::default())?,
        })
    }

    /// Folds a BatchNorm over the output channels.
    pub fn with_batchnorm(self, bn: &BatchNorm) -> Result<Self> {
        Ok(PointwiseConv2d {
            conv: self.conv.with_batchnorm(bn)?,
        })
    }

    /// Fuses an activation.
    pub fn with_activation(self, activation: Activation) -> Self {
        PointwiseConv2d {
            conv: self.conv.with_activation(activation),
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.conv.in_channels()
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }
    /// The underlying general convolution.
    pub fn as_conv2d(&self) -> &Conv2d {
        &self.conv
    }
    /// Cost on an input of logical dims `[N, C_in, H, W]`.
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

    /// [`forward_into`](Self::forward_into) plus a residual added after the activation
    /// (the skip of an inverted residual whose chain something else broke, e.g.
    /// squeeze-excitation): `out = act(conv(input)) + residual`, in the GEMM's epilogue,
    /// bitwise the same as adding afterwards. `residual` is NHWC with the output's dims.
    pub fn forward_add_into(
        &self,
        input: &Tensor,
        residual: &Tensor,
        out: &mut Tensor,
        exec: &Executor,
    ) -> Result<()> {
        let g = self.conv.geometry(input.logical_dims())?;
        crate::layers::conv2d::check_nhwc_pair(&g, input, out)?;
        if residual.layout() != crate::Layout::Nhwc || residual.logical_dims() != out.logical_dims()
        {
            return Err(crate::Error::shape(
                "pointwise residual",
                format!("NHWC with logical dims {:?}", out.logical_dims()),
                format!(
                    "{} with logical dims {:?}",
                    residual.layout().name(),
                    residual.logical_dims()
                ),
            ));
        }
        let p = self.conv.pointwise_kernel(&g).ok_or_else(|| {
            crate::Error::param("pointwise layer", "not a pointwise GEMM for this input")
        })?;
        let (cin, cout) = (g.in_channels(), g.out_channels());
        let m = g.batch() * g.out_h() * g.out_w();
        let tasks = exec.tasks_for(crate::cost::conv_macs(&g));
        let act = self.conv.activation();
        p.run_parallel_add(
            exec,
            tasks,
            input.data(),
            cin,
            m,
            out.data_mut(),
            cout,
            act,
            Some((residual.data(), cout)),
        )
    }
}
