//! Depthwise separable convolution: depthwise k×k, then pointwise 1×1.

use super::{DepthwiseConv2d, PointwiseConv2d};
use crate::cost::Cost;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::ConvGeometry;
use crate::tensor::{Layout, NhwcView, NhwcViewMut, Tensor};

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
        (self.depthwise.cost(input)? + self.pointwise.cost(g.output_dims())?)
            .checked("depthwise separable cost")
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
        let g = self.depthwise.as_conv2d().geometry(input.logical_dims())?;
        let pg = self.pointwise.as_conv2d().geometry(g.output_dims())?;
        if !self.is_fused(&g, &pg) {
            return self.forward_unfused_with(input, exec);
        }
        let x = &*input.as_nhwc();
        let [n, c, h, w] = pg.output_dims();
        let mut out = Tensor::filled([n, h, w, c], Layout::Nhwc, super::conv2d::UNWRITTEN)?;
        self.forward_into(x, &mut out, exec)?;
        Ok(match input.layout() {
            Layout::Nhwc => out,
            Layout::Nchw => out.to_layout(Layout::Nchw),
        })
    }

    fn is_fused(&self, g: &ConvGeometry, pg: &ConvGeometry) -> bool {
        self.depthwise.as_conv2d().depthwise_kernel(g).is_some()
            && self.pointwise.as_conv2d().pointwise_kernel(pg).is_some()
    }

    /// Forward pass of an NHWC `input` into an NHWC `out` the caller owns (dims
    /// `[N, out_H, out_W, C_out]`): fused when both stages have fast kernels, else the
    /// two stages with an intermediate tensor.
    pub fn forward_into(&self, input: &Tensor, out: &mut Tensor, exec: &Executor) -> Result<()> {
        let dw = self.depthwise.as_conv2d();
        let pw = self.pointwise.as_conv2d();
        let g = dw.geometry(input.logical_dims())?;
        let pg = pw.geometry(g.output_dims())?;
        super::conv2d::check_nhwc_pair(&pg, input, out)?;
        if !self.is_fused(&g, &pg) {
            let mut mid = Tensor::zeros(
                [g.batch(), g.out_h(), g.out_w(), g.out_channels()],
                Layout::Nhwc,
            )?;
            dw.forward_into(input, &mut mid, exec)?;
            return pw.forward_into(&mid, out, exec);
        }
        self.forward_fused(NhwcView::of(input)?, NhwcViewMut::of(out)?, exec)
    }

    /// Whether [`forward_fused`](Self::forward_fused) runs on an input of logical dims
    /// `dims` (`[N, C, H, W]`): both stages have fast kernels for it.
    pub(crate) fn fuses(&self, dims: [usize; 4]) -> bool {
        let dw = self.depthwise.as_conv2d();
        let pw = self.pointwise.as_conv2d();
        match dw.geometry(dims) {
            Ok(g) => pw
                .geometry(g.output_dims())
                .is_ok_and(|pg| self.is_fused(&g, &pg)),
            Err(_) => false,
        }
    }

    /// The fused forward pass on activations whose pixels may lie further apart than
    /// their channel counts (a network's padded activations, see
    /// [`Workspace::pixel_stride`](crate::workspace::Workspace::pixel_stride)); the
    /// output's padding is not written. Errors if the stages do not fuse for the input
    /// (see [`fuses`](Self::fuses)) or the output's dims are not the block's.
    pub(crate) fn forward_fused(
        &self,
        x: NhwcView,
        mut out: NhwcViewMut,
        exec: &Executor,
    ) -> Result<()> {
        let dw = self.depthwise.as_conv2d();
        let pw = self.pointwise.as_conv2d();
        let g = &dw.geometry(x.logical_dims())?;
        let pg = pw.geometry(g.output_dims())?;
        let (Some(dk), Some(pk)) = (dw.depthwise_kernel(g), pw.pointwise_kernel(&pg)) else {
            return Err(Error::shape(
                "fused separable geometry",
                "a depthwise and a pointwise stage with fast kernels",
                format!("{g:?}"),
            ));
        };
        if out.logical_dims() != pg.output_dims() {
            return Err(Error::shape(
                "fused separable output",
                format!("logical dims {:?}", pg.output_dims()),
                format!("{:?}", out.logical_dims()),
            ));
        }
        let out_px = out.pixel_stride();
        let row_len = g.out_w() * out_px;
        let isa = exec.tier();
        let macs = crate::cost::conv_macs(g).saturating_add(crate::cost::conv_macs(&pg));
        exec.try_rows_with_scratch(out.data_mut(), row_len, macs, |rows, chunk, scratch| {
            let (dw_act, pw_act) = (dw.activation(), pw.activation());
            crate::kernels::fused::separable_rows(
                isa,
                g,
                dk,
                dw_act,
                pk,
                pw_act,
                x,
                rows,
                (chunk, out_px),
                scratch,
            )
        })
    }

    /// Forward pass with `exec`'s threads, one stage after the other (the whole
    /// intermediate tensor is materialised). Kept for comparison with the fused path.
    pub fn forward_unfused_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let mid = self.depthwise.forward_with(input, exec)?;
        self.pointwise.forward_with(&mid, exec)
    }
}
