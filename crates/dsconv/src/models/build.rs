//! Shared pieces for building networks from a [`ParamSource`]: a convolution with its
//! BatchNorm folded and its activation fused, named like PyTorch's modules.

use crate::error::Result;
use crate::geometry::Conv2dParams;
use crate::layers::{Conv2d, DepthwiseConv2d, PointwiseConv2d};
use crate::ops::{Activation, BatchNorm};
use crate::tensor::{Layout, Tensor};
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

/// The weight `[classes, features]` (row-major) and bias of `nn.Linear` `fc`.
pub(crate) fn linear(
    src: &mut dyn ParamSource,
    fc: &str,
    features: usize,
    classes: usize,
) -> (Vec<f32>, Vec<f32>) {
    let w = src.param(
        &format!("{fc}.weight"),
        &[classes, features],
        ParamKind::Weight { fan_in: features },
    );
    let b = src.param(&format!("{fc}.bias"), &[classes], ParamKind::Bias);
    (w, b)
}

/// A `Linear(features → classes)` classifier head named `fc` (`{fc}.weight`, `{fc}.bias`).
pub(crate) fn classifier(
    src: &mut dyn ParamSource,
    fc: &str,
    features: usize,
    classes: usize,
) -> Result<crate::blocks::Classifier> {
    let (w, b) = linear(src, fc, features, classes);
    crate::blocks::Classifier::new(w, b, classes, features)
}

/// Runs a whole network, `forward(batch, exec) → logits [N, classes, 1, 1]`, image-parallel
/// when the batch has at least as many images as `exec` has threads: each thread takes
/// whole images and runs them one at a time on one thread, so every activation has the
/// batch-1 size that stays in its core's cache, and no layer waits for another thread.
/// Images beyond the last multiple of the thread count run as one batch over all threads.
/// Every output element goes through the same kernel operations either way (the kernels
/// never mix images), so the logits are bitwise those of one batched pass.
///
/// Measured with `dsconv bench --model M --batch 8 --threads 2` (median ms, two
/// alternating runs each, the same minutes): MobileNetV1 layer after layer 23.4 / 23.9,
/// image-parallel 23.1 / 22.3; EfficientNet-Lite0 18.4 / 17.9 against 18.2 / 17.5;
/// MobileNetV2 12.8 / 13.0 either way. A small gain: two single-thread passes side by
/// side run 7% slower each than one alone (5.73 against 5.36 ms for V1: shared L3 and
/// memory), which eats most of what the saved synchronisation brings.
pub(crate) fn batch_parallel(
    input: &Tensor,
    exec: &crate::Executor,
    classes: usize,
    forward: impl Fn(&Tensor, &crate::Executor) -> Result<Tensor> + Sync,
) -> Result<Tensor> {
    let [n, c, h, w] = input.logical_dims();
    let threads = exec.threads();
    if threads < 2 || n < threads {
        return forward(input, exec);
    }
    let whole = n / threads * threads;
    let image = c * h * w;
    let len = crate::error::f32_elements(&[n, classes], "network logits")?;
    let mut logits = crate::error::try_filled(len, 0.0, "network logits")?;
    let single = crate::Executor::single().with_isa(exec.isa())?;
    let slice = |first: usize, count: usize| {
        let data = input.data()[first * image..(first + count) * image].to_vec();
        let dims = [count, c, h, w];
        match input.layout() {
            Layout::Nchw => Tensor::from_nchw(data, dims),
            Layout::Nhwc => Tensor::from_nhwc(data, [count, h, w, c]),
        }
    };
    let (head, tail) = logits.split_at_mut(whole * classes);
    exec.try_for_each_rows(head, classes, threads, |first, chunk| {
        for (i, out) in chunk.chunks_mut(classes).enumerate() {
            let y = forward(&slice(first + i, 1)?, &single)?;
            out.copy_from_slice(y.data());
        }
        Ok(())
    })?;
    if whole < n {
        let y = forward(&slice(whole, n - whole)?, exec)?;
        tail.copy_from_slice(y.data());
    }
    Tensor::from_nchw(logits, [n, classes, 1, 1])
}

/// The body MobileNetV2 and EfficientNet-Lite share: stem, inverted residual blocks, 1×1
/// head, classifier, and the workspace their forward passes take buffers from.
#[derive(Debug, Clone)]
pub(crate) struct MbConvNet {
    pub(crate) stem: Conv2d,
    pub(crate) blocks: Vec<crate::blocks::InvertedResidual>,
    pub(crate) head: PointwiseConv2d,
    pub(crate) classifier: crate::blocks::Classifier,
    /// Activation buffers reused by every forward pass.
    workspace: crate::workspace::Workspace,
}

/// PyTorch module names for [`MbConvNet::cost_table`].
pub(crate) struct MbConvNames<'a> {
    /// The table's title.
    pub(crate) title: String,
    pub(crate) stem: &'a str,
    /// Names of block `i`'s expand, depthwise and project convolutions.
    pub(crate) block: &'a dyn Fn(usize, &crate::blocks::InvertedResidual) -> [String; 3],
    pub(crate) head: String,
    pub(crate) fc: &'a str,
}

impl MbConvNet {
    pub(crate) fn new(
        stem: Conv2d,
        blocks: Vec<crate::blocks::InvertedResidual>,
        head: PointwiseConv2d,
        classifier: crate::blocks::Classifier,
    ) -> Self {
        MbConvNet {
            stem,
            blocks,
            head,
            classifier,
            workspace: crate::workspace::Workspace::default(),
        }
    }

    /// The forward pass in NHWC, every intermediate tensor taken from the workspace and
    /// given back (steady-state passes allocate no activation buffer). Returns the logits
    /// `[N, classes, 1, 1]` (NCHW); batches run through [`batch_parallel`].
    pub(crate) fn forward_with(&self, input: &Tensor, exec: &crate::Executor) -> Result<Tensor> {
        let ws = &self.workspace;
        batch_parallel(input, exec, self.classifier.classes(), |input, exec| {
            let x = &*input.as_nhwc();
            let mut y = ws.take(
                Layout::Nhwc.dims_from_logical(self.stem.geometry(x.logical_dims())?.output_dims()),
            )?;
            self.stem.forward_into(x, &mut y, exec)?;
            for b in &self.blocks {
                let mut next =
                    ws.take(Layout::Nhwc.dims_from_logical(b.output_dims(y.logical_dims())?))?;
                b.forward_into(&y, &mut next, exec, ws)?;
                ws.give(std::mem::replace(&mut y, next));
            }
            let g = self.head.as_conv2d().geometry(y.logical_dims())?;
            let mut features = ws.take(Layout::Nhwc.dims_from_logical(g.output_dims()))?;
            self.head.forward_into(&y, &mut features, exec)?;
            ws.give(y);
            let logits = self.classifier.forward_with(&features, exec);
            ws.give(features);
            logits
        })
    }

    /// Total cost on an input of logical dims `[N, 3, H, W]`.
    pub(crate) fn cost(&self, input: [usize; 4]) -> Result<crate::cost::Cost> {
        let mut cost = self.stem.cost(input)?;
        let mut dims = self.stem.geometry(input)?.output_dims();
        for b in &self.blocks {
            cost += b.cost(dims)?;
            dims = b.output_dims(dims)?;
        }
        cost += self.head.cost(dims)?;
        dims = self.head.as_conv2d().geometry(dims)?.output_dims();
        Ok(cost + self.classifier.cost(dims)?)
    }

    /// Per-layer cost table (every convolution counted bias-free with its BatchNorm's γ, β
    /// apart) for an input of logical dims `[N, 3, H, W]`, under `names`.
    pub(crate) fn cost_table(
        &self,
        input: [usize; 4],
        names: &MbConvNames<'_>,
    ) -> Result<crate::cost::NetworkCost> {
        use crate::cost::LayerCost;
        let g = self.stem.geometry(input)?;
        let mut layers = vec![LayerCost::conv(names.stem, &g, false).with_batchnorm()];
        let mut dims = g.output_dims();
        for (i, b) in self.blocks.iter().enumerate() {
            let [e, d, p] = (names.block)(i, b);
            layers.extend(b.layer_costs([&e, &d, &p], dims)?);
            dims = b.output_dims(dims)?;
        }
        let g = self.head.as_conv2d().geometry(dims)?;
        layers.push(LayerCost::conv(names.head.clone(), &g, false).with_batchnorm());
        layers.extend(
            self.classifier
                .layer_costs("avgpool", names.fc, g.output_dims()),
        );
        Ok(crate::cost::NetworkCost {
            name: names.title.clone(),
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::models::mobilenet_v1::MobileNetV1;
    use crate::models::mobilenet_v2::MobileNetV2;
    use crate::{Executor, Layout, Tensor};

    /// Batches of 1–5 images on 1, 2 and 3 threads (image-parallel, with and without a
    /// remainder batch) give, image by image, bitwise the logits of one image on one
    /// thread, in both input layouts.
    #[test]
    fn batches_are_bitwise_image_by_image_for_every_thread_count() {
        let v1 = MobileNetV1::random(0.25, 64, 3).unwrap();
        let v2 = MobileNetV2::random(0.35, 4).unwrap();
        type Forward<'a> = Box<dyn Fn(&Tensor, &Executor) -> crate::Result<Tensor> + 'a>;
        let nets: [(&str, usize, Forward); 2] = [
            ("v1", 64, Box::new(|x, e| v1.forward_with(x, e))),
            ("v2", 48, Box::new(|x, e| v2.forward_with(x, e))),
        ];
        let one = Executor::single();
        let execs = [Executor::new(2).unwrap(), Executor::new(3).unwrap()];
        let mut rng = crate::rng::SplitMix64::new(9);
        for (name, r, forward) in &nets {
            let x = Tensor::from_nchw(rng.vec(5 * 3 * r * r, -1.0, 1.0), [5, 3, *r, *r]).unwrap();
            let per_image: Vec<Vec<f32>> = (0..5)
                .map(|i| {
                    let img = x.data()[i * 3 * r * r..(i + 1) * 3 * r * r].to_vec();
                    let img = Tensor::from_nchw(img, [1, 3, *r, *r]).unwrap();
                    forward(&img, &one).unwrap().into_data()
                })
                .collect();
            let classes = per_image[0].len();
            for n in 1..=5 {
                let img = x.data()[..n * 3 * r * r].to_vec();
                let batch = Tensor::from_nchw(img, [n, 3, *r, *r]).unwrap();
                for layout in [Layout::Nchw, Layout::Nhwc] {
                    let batch = batch.to_layout(layout);
                    for exec in [&one, &execs[0], &execs[1]] {
                        let y = forward(&batch, exec).unwrap();
                        assert_eq!(y.logical_dims(), [n, classes, 1, 1]);
                        for (i, want) in per_image.iter().take(n).enumerate() {
                            assert_eq!(
                                &y.data()[i * classes..(i + 1) * classes],
                                &want[..],
                                "{name}: image {i} of {n}, {} threads, {layout:?}",
                                exec.threads()
                            );
                        }
                    }
                }
            }
        }
    }
}
