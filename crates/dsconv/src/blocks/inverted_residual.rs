//! The inverted residual block of MobileNetV2 and EfficientNet (MBConv without
//! squeeze-excite): expand 1×1 → depthwise k×k → project 1×1, plus the input when shapes
//! allow.

use crate::cost::{Cost, LayerCost};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::layers::{DepthwiseConv2d, DepthwiseSeparableConv2d, PointwiseConv2d};
use crate::tensor::Tensor;

/// `y = project(dw(expand(x))) [+ x]`, each stage with its BatchNorm folded and its
/// activation fused (typically ReLU6 after expand and depthwise, none after project: the
/// "linear bottleneck"). The expand stage is absent when the expansion ratio is 1.
/// The residual is added only when the depthwise stride is 1 and the channel counts of
/// input and output agree.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    expand: Option<PointwiseConv2d>,
    /// Depthwise then project: run fused (depthwise row bands fed to the project GEMM,
    /// never materialising the expanded-resolution depthwise output) where the kernels
    /// allow.
    tail: DepthwiseSeparableConv2d,
    residual: bool,
}

impl InvertedResidual {
    /// Composes the three stages, checking that channel counts chain; `residual` asks for
    /// the skip connection, which needs stride 1 and `in = out` channels.
    pub fn new(
        expand: Option<PointwiseConv2d>,
        depthwise: DepthwiseConv2d,
        project: PointwiseConv2d,
        residual: bool,
    ) -> Result<Self> {
        let dw_in = depthwise.channels();
        if let Some(e) = &expand {
            if e.out_channels() != dw_in {
                return Err(Error::shape(
                    "inverted residual expand",
                    format!("{dw_in} output channels (the depthwise input)"),
                    format!("{}", e.out_channels()),
                ));
            }
        }
        let dw_out = depthwise.as_conv2d().out_channels();
        if project.in_channels() != dw_out {
            return Err(Error::shape(
                "inverted residual project",
                format!("{dw_out} input channels (the depthwise output)"),
                format!("{}", project.in_channels()),
            ));
        }
        let block = InvertedResidual {
            expand,
            tail: DepthwiseSeparableConv2d::new(depthwise, project)?,
            residual,
        };
        if residual
            && (block.depthwise().as_conv2d().params().stride != [1, 1]
                || block.in_channels() != block.out_channels())
        {
            return Err(Error::param(
                "residual",
                "a skip connection needs stride 1 and as many output as input channels",
            ));
        }
        Ok(block)
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match &self.expand {
            Some(e) => e.in_channels(),
            None => self.depthwise().channels(),
        }
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.project().out_channels()
    }
    /// True if the input is added to the output.
    pub fn has_residual(&self) -> bool {
        self.residual
    }
    /// The expand stage, if any.
    pub fn expand(&self) -> Option<&PointwiseConv2d> {
        self.expand.as_ref()
    }
    /// The depthwise stage.
    pub fn depthwise(&self) -> &DepthwiseConv2d {
        self.tail.depthwise()
    }
    /// The project stage.
    pub fn project(&self) -> &PointwiseConv2d {
        self.tail.pointwise()
    }

    /// Output logical dims for input logical dims `[N, C, H, W]`.
    pub fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]> {
        let mid = match &self.expand {
            Some(e) => e.as_conv2d().geometry(input)?.output_dims(),
            None => input,
        };
        let dw = self.depthwise().as_conv2d().geometry(mid)?.output_dims();
        Ok(self.project().as_conv2d().geometry(dw)?.output_dims())
    }

    /// Cost of the three convolutions (the residual add is not counted as MACs).
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        let mut cost = Cost::default();
        let mut dims = input;
        if let Some(e) = &self.expand {
            cost += e.cost(dims)?;
            dims = e.as_conv2d().geometry(dims)?.output_dims();
        }
        cost += self.tail.cost(dims)?;
        Ok(cost)
    }

    /// Cost-table rows of the three convolutions, named `names = [expand, depthwise,
    /// project]`, each counted as a bias-free convolution followed by a BatchNorm (as in
    /// the PyTorch module), for an input of logical dims `[N, C, H, W]`.
    pub fn layer_costs(&self, names: [&str; 3], input: [usize; 4]) -> Result<Vec<LayerCost>> {
        let mut rows = Vec::with_capacity(3);
        let mut dims = input;
        if let Some(e) = &self.expand {
            let g = e.as_conv2d().geometry(dims)?;
            rows.push(LayerCost::conv(names[0], &g, false).with_batchnorm());
            dims = g.output_dims();
        }
        let g = self.depthwise().as_conv2d().geometry(dims)?;
        rows.push(LayerCost::conv(names[1], &g, false).with_batchnorm());
        let g = self.project().as_conv2d().geometry(g.output_dims())?;
        rows.push(LayerCost::conv(names[2], &g, false).with_batchnorm());
        Ok(rows)
    }

    /// Forward pass with `exec`'s threads; the output has the input's layout.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let expanded;
        let mid = match &self.expand {
            Some(e) => {
                expanded = e.forward_with(input, exec)?;
                &expanded
            }
            None => input,
        };
        let mut out = self.tail.forward_with(mid, exec)?;
        if self.residual {
            // Same logical dims and layout (checked at construction: stride 1, C_in = C_out).
            for (o, x) in out.data_mut().iter_mut().zip(input.data()) {
                *o += x;
            }
        }
        Ok(out)
    }

    /// Forward pass on one thread.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_with(input, &Executor::single())
    }
}
