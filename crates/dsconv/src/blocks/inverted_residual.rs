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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Conv2dParams, Padding};
    use crate::layers::Conv2d;
    use crate::ops::{Activation, BatchNorm};
    use crate::rng::SplitMix64;
    use crate::tensor::Layout;

    fn bn(rng: &mut SplitMix64, c: usize) -> BatchNorm {
        BatchNorm::new(
            rng.vec(c, 0.5, 1.5),
            rng.vec(c, -0.2, 0.2),
            rng.vec(c, -0.2, 0.2),
            rng.vec(c, 0.5, 1.5),
            1e-3,
        )
        .unwrap()
    }

    /// The block against the f64 reference applied stage by stage to the folded weights.
    fn reference(block: &InvertedResidual, x: &Tensor) -> Tensor {
        let stage = |conv: &Conv2d, x: &Tensor| {
            let w = Tensor::from_nchw(conv.weight().to_vec(), conv.weight_dims()).unwrap();
            let mut y = crate::reference::conv2d(x, &w, conv.bias(), conv.params()).unwrap();
            crate::reference::batchnorm_activation(&mut y, None, conv.activation());
            y
        };
        let mut y = x.clone();
        if let Some(e) = block.expand() {
            y = stage(e.as_conv2d(), &y);
        }
        y = stage(block.depthwise().as_conv2d(), &y);
        y = stage(block.project().as_conv2d(), &y);
        if block.has_residual() {
            for (o, v) in y.data_mut().iter_mut().zip(x.data()) {
                *o += v;
            }
        }
        y
    }

    fn block(
        seed: u64,
        cin: usize,
        t: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> InvertedResidual {
        let mut rng = SplitMix64::new(seed);
        let hidden = cin * t;
        let expand = (t != 1).then(|| {
            let w =
                Tensor::from_nchw(rng.vec(hidden * cin, -0.5, 0.5), [hidden, cin, 1, 1]).unwrap();
            PointwiseConv2d::new(w, None)
                .unwrap()
                .with_batchnorm(&bn(&mut rng, hidden))
                .unwrap()
                .with_activation(Activation::Relu6)
        });
        let w = Tensor::from_nchw(rng.vec(hidden * k * k, -0.5, 0.5), [hidden, 1, k, k]).unwrap();
        let params = Conv2dParams::default()
            .with_padding(Padding::Same)
            .with_stride(stride);
        let dw = DepthwiseConv2d::new(w, None, params)
            .unwrap()
            .with_batchnorm(&bn(&mut rng, hidden))
            .unwrap()
            .with_activation(Activation::Relu6);
        let w = Tensor::from_nchw(rng.vec(cout * hidden, -0.5, 0.5), [cout, hidden, 1, 1]).unwrap();
        let project = PointwiseConv2d::new(w, None)
            .unwrap()
            .with_batchnorm(&bn(&mut rng, cout))
            .unwrap();
        let residual = stride == 1 && cin == cout;
        InvertedResidual::new(expand, dw, project, residual).unwrap()
    }

    #[test]
    fn matches_reference_with_and_without_expand_residual_and_stride_2_same_padding() {
        // (C_in, t, C_out, k, stride): MBConv shapes at small sizes, odd widths, 17 and 5
        // channels (around a vector width), asymmetric SAME padding at stride 2.
        for (i, &(cin, t, cout, k, s)) in [
            (16, 1, 8, 3, 1),
            (8, 6, 8, 3, 1),
            (8, 6, 17, 5, 2),
            (17, 6, 17, 5, 1),
            (5, 4, 7, 3, 2),
        ]
        .iter()
        .enumerate()
        {
            let b = block(i as u64, cin, t, cout, k, s);
            let mut rng = SplitMix64::new(100 + i as u64);
            let x = Tensor::from_nchw(rng.vec(2 * cin * 11 * 9, -1.0, 1.0), [2, cin, 11, 9])
                .unwrap()
                .to_layout(Layout::Nhwc);
            let want = reference(&b, &x);
            for threads in [1, 2] {
                let got = b
                    .forward_with(&x, &Executor::new(threads).unwrap())
                    .unwrap();
                assert_eq!(got.logical_dims(), want.logical_dims());
                let tol = 1e-5 * want.max_abs().max(1.0);
                let diff = got.max_abs_diff(&want).unwrap();
                assert!(diff <= tol, "case {i}: diff {diff} > {tol}");
            }
        }
    }

    #[test]
    fn residual_needs_stride_1_and_equal_channels() {
        let b = block(1, 8, 6, 16, 3, 1);
        assert!(!b.has_residual());
        let (e, d, p) = (
            b.expand().cloned(),
            b.depthwise().clone(),
            b.project().clone(),
        );
        assert!(matches!(
            InvertedResidual::new(e, d, p, true),
            Err(crate::Error::InvalidParam { .. })
        ));
    }
}
