//! Shared pieces for building networks from a [`ParamSource`]: a convolution with its
//! BatchNorm folded and its activation fused, named like PyTorch's modules.

use crate::error::Result;
use crate::geometry::Conv2dParams;
use crate::layers::{Conv2d, DepthwiseConv2d, PointwiseConv2d};
use crate::ops::{Activation, BatchNorm};
use crate::tensor::Tensor;
use crate::weights::{ParamKind, ParamSource};

/// Reads the four tensors of BatchNorm `bn` (`weight`, `bias`, `running_mean`,
/// `running_var`) over `channels`.
pub(crate) fn batchnorm(
    src: &mut dyn ParamSource,
    bn: &str,
    channels: usize,
    eps: f32,
) -> Result<BatchNorm> {
    let shape = [channels];
    BatchNorm::new(
        src.param(&format!("{bn}.weight"), &shape, ParamKind::BnScale),
        src.param(&format!("{bn}.bias"), &shape, ParamKind::BnShift),
        src.param(&format!("{bn}.running_mean"), &shape, ParamKind::BnMean),
        src.param(&format!("{bn}.running_var"), &shape, ParamKind::BnVar),
        eps,
    )
}

/// Reads the bias-free convolution weight `{conv}.weight` of PyTorch dims `dims`.
pub(crate) fn conv_weight(
    src: &mut dyn ParamSource,
    conv: &str,
    dims: [usize; 4],
) -> Result<Tensor> {
    let fan_in = dims[1] * dims[2] * dims[3];
    let w = src.param(
        &format!("{conv}.weight"),
        &dims,
        ParamKind::Weight { fan_in },
    );
    Tensor::from_nchw(w, dims)
}

/// A bias-free standard convolution followed by BatchNorm `bn` (folded) and `act`.
pub(crate) fn conv_bn(
    src: &mut dyn ParamSource,
    conv: &str,
    bn: &str,
    dims: [usize; 4],
    params: Conv2dParams,
    eps: f32,
    act: Activation,
) -> Result<Conv2d> {
    let w = conv_weight(src, conv, dims)?;
    let bn = batchnorm(src, bn, dims[0], eps)?;
    Ok(Conv2d::new(w, None, params)?
        .with_batchnorm(&bn)?
        .with_activation(act))
}

/// A bias-free depthwise convolution (`channels` filters of `kernel × kernel`) followed by
/// BatchNorm `bn` (folded) and `act`.
pub(crate) fn depthwise_bn(
    src: &mut dyn ParamSource,
    conv: &str,
    bn: &str,
    channels: usize,
    kernel: usize,
    params: Conv2dParams,
    eps: f32,
    act: Activation,
) -> Result<DepthwiseConv2d> {
    let w = conv_weight(src, conv, [channels, 1, kernel, kernel])?;
    let bn = batchnorm(src, bn, channels, eps)?;
    Ok(DepthwiseConv2d::new(w, None, params)?
        .with_batchnorm(&bn)?
        .with_activation(act))
}

/// A bias-free 1×1 convolution `in → out` followed by BatchNorm `bn` (folded) and `act`.
pub(crate) fn pointwise_bn(
    src: &mut dyn ParamSource,
    conv: &str,
    bn: &str,
    in_channels: usize,
    out_channels: usize,
    eps: f32,
    act: Activation,
) -> Result<PointwiseConv2d> {
    let w = conv_weight(src, conv, [out_channels, in_channels, 1, 1])?;
    let bn = batchnorm(src, bn, out_channels, eps)?;
    Ok(PointwiseConv2d::new(w, None)?
        .with_batchnorm(&bn)?
        .with_activation(act))
}

/// A `Linear(features → classes)` classifier head named `fc` (`{fc}.weight`, `{fc}.bias`).
pub(crate) fn classifier(
    src: &mut dyn ParamSource,
    fc: &str,
    features: usize,
    classes: usize,
) -> Result<crate::blocks::Classifier> {
    let w = src.param(
        &format!("{fc}.weight"),
        &[classes, features],
        ParamKind::Weight { fan_in: features },
    );
    let b = src.param(&format!("{fc}.bias"), &[classes], ParamKind::Bias);
    crate::blocks::Classifier::new(w, b, classes, features)
}

/// The forward pass shared by MobileNetV2 and EfficientNet-Lite: stem, inverted residual
/// blocks, 1×1 head, classifier, in NHWC, every intermediate tensor taken from `ws` and
/// given back (steady-state passes allocate no activation buffer). Returns the logits
/// `[N, classes, 1, 1]` (NCHW).
pub(crate) fn mbconv_forward(
    stem: &Conv2d,
    blocks: &[crate::blocks::InvertedResidual],
    head: &PointwiseConv2d,
    classifier: &crate::blocks::Classifier,
    ws: &crate::workspace::Workspace,
    input: &Tensor,
    exec: &crate::Executor,
) -> Result<Tensor> {
    use crate::tensor::Layout;
    let converted;
    let x = match input.layout() {
        Layout::Nhwc => input,
        Layout::Nchw => {
            converted = input.to_layout(Layout::Nhwc);
            &converted
        }
    };
    let nhwc = |[n, c, h, w]: [usize; 4]| [n, h, w, c];
    let mut y = ws.take(nhwc(stem.geometry(x.logical_dims())?.output_dims()))?;
    stem.forward_into(x, &mut y, exec)?;
    for b in blocks {
        let mut next = ws.take(nhwc(b.output_dims(y.logical_dims())?))?;
        b.forward_into(&y, &mut next, exec, ws)?;
        ws.give(std::mem::replace(&mut y, next));
    }
    let g = head.as_conv2d().geometry(y.logical_dims())?;
    let mut features = ws.take(nhwc(g.output_dims()))?;
    head.forward_into(&y, &mut features, exec)?;
    ws.give(y);
    let logits = classifier.forward_with(&features, exec);
    ws.give(features);
    logits
}
