//! Depthwise separable convolution: depthwise k×k, then pointwise 1×1.

use super::{DepthwiseConv2d, PointwiseConv2d};
use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::kernels::AlignedVec;
use crate::tensor::{Layout, Tensor};

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

    /// Forward pass with `exec`'s threads. When both stages have fast kernels (depthwise
    /// multiplier 1 with zero padding), the depthwise output is computed in row bands
    /// sized to the L2 cache and consumed by the pointwise GEMM directly, never
    /// materialised as a whole; otherwise the stages run one after the other. Bitwise
    /// equal to [`forward_unfused_with`](Self::forward_unfused_with).
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let dw = self.depthwise.as_conv2d();
        let pw = self.pointwise.as_conv2d();
        let g = dw.geometry(input.logical_dims())?;
        let pg = pw.geometry(g.output_dims())?;
        let (Some(dk), Some(pk)) = (dw.depthwise_kernel(&g), pw.pointwise_kernel(&pg)) else {
            return self.forward_unfused_with(input, exec);
        };
        let nhwc_in;
        let x = match input.layout() {
            Layout::Nhwc => input.data(),
            Layout::Nchw => {
                nhwc_in = input.to_layout(Layout::Nhwc);
                nhwc_in.data()
            }
        };
        let cout = pk.n();
        let row_len = g.out_w * cout;
        let total = g.batch * g.out_h;
        let mut out = vec![super::conv2d::UNWRITTEN; total * row_len];
        let isa = exec.isa();
        let macs = crate::cost::conv_macs(&g).saturating_add(crate::cost::conv_macs(&pg));
        let errors = std::sync::Mutex::new(None);
        exec.for_each_rows(&mut out, row_len, exec.tasks_for(macs), |first, chunk| {
            let rows = first..first + chunk.len() / row_len;
            let mut scratch = AlignedVec::default();
            let r = crate::kernels::fused::separable_rows(
                isa,
                &g,
                dk,
                dw.activation(),
                pk,
                pw.activation(),
                x,
                rows,
                chunk,
                &mut scratch,
            );
            if let (Err(e), Ok(mut slot)) = (r, errors.lock()) {
                slot.get_or_insert(e);
            }
        });
        if let Ok(Some(e)) = errors.into_inner() {
            return Err(e);
        }
        let y = Tensor::from_nhwc(out, [g.batch, g.out_h, g.out_w, cout])?;
        Ok(match input.layout() {
            Layout::Nhwc => y,
            Layout::Nchw => y.to_layout(Layout::Nchw),
        })
    }

    /// Forward pass with `exec`'s threads, one stage after the other (the whole
    /// intermediate tensor is materialised). Kept for comparison with the fused path.
    pub fn forward_unfused_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let mid = self.depthwise.forward_with(input, exec)?;
        self.pointwise.forward_with(&mid, exec)
    }
}
