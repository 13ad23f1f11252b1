//! MobileNetV2 (Sandler et al., 2018) with torchvision's structure and parameter names,
//! so `torchvision.models.mobilenet_v2(width_mult=α).state_dict()` loads directly:
//! a 3×3 stride-2 stem, seventeen inverted residual blocks (linear bottlenecks, ReLU6),
//! a 1×1 head to 1280 channels (more when α > 1), global average pooling and a linear
//! classifier. Symmetric padding `(k − 1)/2`, BatchNorm eps 1e-5.
//!
//! Names: `features.0.{0,1}` (stem conv, BN); block `features.i.conv.*` — with expansion
//! `conv.0.{0,1}` (expand), `conv.1.{0,1}` (depthwise), `conv.2` (project), `conv.3` (BN);
//! without (`t = 1`) `conv.0.{0,1}` (depthwise), `conv.1`, `conv.2`; `features.18.{0,1}`
//! (head); `classifier.1` (linear).

use super::build::{classifier, conv_bn, depthwise_bn, pointwise_bn, MbConvNames, MbConvNet};
use crate::blocks::InvertedResidual;
use crate::cost::{Cost, NetworkCost};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, Padding};
use crate::ops::Activation;
use crate::tensor::Tensor;
use crate::weights::{Loader, ParamSource, RandomParams, StateDict};

/// `(t, c, n, s)`: expansion ratio, output channels at α = 1, repeats, first stride.
pub const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
/// Stem channels at α = 1.
pub const STEM_CHANNELS: usize = 32;
/// Head channels at α ≤ 1.
pub const HEAD_CHANNELS: usize = 1280;
/// BatchNorm epsilon (PyTorch's default).
pub const BN_EPS: f32 = 1e-5;

/// torchvision's `_make_divisible(v, 8)`: round to the nearest multiple of 8 (at least 8),
/// going up a step if rounding lost more than 10%.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (((v + d / 2.0) as usize) / divisor * divisor).max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// A runnable MobileNetV2 with BatchNorm folded into every convolution.
#[derive(Debug, Clone)]
pub struct MobileNetV2 {
    alpha: f64,
    net: MbConvNet,
}

impl MobileNetV2 {
    /// Builds MobileNetV2 at width `alpha` with `classes` outputs from `src`.
    pub fn new(src: &mut dyn ParamSource, alpha: f64, classes: usize) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 4.0) {
            return Err(Error::param(
                "width multiplier",
                format!("{alpha} is not in (0, 4]"),
            ));
        }
        if classes == 0 {
            return Err(Error::param("classes", "at least 1"));
        }
        let pad1 = Conv2dParams::default().with_padding(Padding::symmetric(1));
        let act = Activation::Relu6;
        let stem_out = make_divisible(STEM_CHANNELS as f64 * alpha, 8);
        let stem = conv_bn(
            src,
            "features.0.0",
            "features.0.1",
            [stem_out, 3, 3, 3],
            pad1.with_stride(2),
            BN_EPS,
            act,
        )?;
        let mut blocks = Vec::new();
        let mut inp = stem_out;
        for (t, c, n, s) in SETTINGS {
            let out = make_divisible(c as f64 * alpha, 8);
            for r in 0..n {
                let stride = if r == 0 { s } else { 1 };
                let name = format!("features.{}.conv", blocks.len() + 1);
                let hidden = inp * t;
                let (expand, dw_at) = if t != 1 {
                    let e = pointwise_bn(
                        src,
                        &format!("{name}.0.0"),
                        &format!("{name}.0.1"),
                        inp,
                        hidden,
                        BN_EPS,
                        act,
                    )?;
                    (Some(e), 1)
                } else {
                    (None, 0)
                };
                let dw = depthwise_bn(
                    src,
                    &format!("{name}.{dw_at}.0"),
                    &format!("{name}.{dw_at}.1"),
                    hidden,
                    3,
                    pad1.with_stride(stride),
                    BN_EPS,
                    act,
                )?;
                let project = pointwise_bn(
                    src,
                    &format!("{name}.{}", dw_at + 1),
                    &format!("{name}.{}", dw_at + 2),
                    hidden,
                    out,
                    BN_EPS,
                    Activation::None,
                )?;
                let residual = stride == 1 && inp == out;
                blocks.push(InvertedResidual::new(expand, dw, project, residual)?);
                inp = out;
            }
        }
        let last = make_divisible(HEAD_CHANNELS as f64 * alpha.max(1.0), 8);
        let head_name = format!("features.{}", blocks.len() + 1);
        let head = pointwise_bn(
            src,
            &format!("{head_name}.0"),
            &format!("{head_name}.1"),
            inp,
            last,
            BN_EPS,
            act,
        )?;
        let classifier = classifier(src, "classifier.1", last, classes)?;
        Ok(MobileNetV2 {
            alpha,
            net: MbConvNet::new(stem, blocks, head, classifier),
        })
    }

    /// From a torchvision state_dict at width `alpha`; the class count comes from
    /// `classifier.1.weight` (1000 if absent, which is then reported as missing).
    pub fn from_state_dict(sd: &StateDict, alpha: f64) -> Result<Self> {
        let classes = sd
            .get("classifier.1.weight")
            .and_then(|t| t.dims.first().copied())
            .filter(|&c| c > 0)
            .unwrap_or(1000);
        let mut loader = Loader::new(sd);
        let net = Self::new(&mut loader, alpha, classes)?;
        loader.finish()?;
        Ok(net)
    }

    /// Seeded random weights, 1000 classes (for benchmarks and cost tables).
    pub fn random(alpha: f64, seed: u64) -> Result<Self> {
        Self::new(&mut RandomParams::new(seed), alpha, 1000)
    }

    /// Width multiplier.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// The inverted residual blocks.
    pub fn blocks(&self) -> &[InvertedResidual] {
        &self.net.blocks
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.net.classifier.classes()
    }

    /// Total cost on an input of logical dims `[N, 3, H, W]`.
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        self.net.cost(input)
    }

    /// Per-layer cost table (torchvision module names; every convolution counted bias-free
    /// with its BatchNorm's γ, β apart) for an input of logical dims `[N, 3, H, W]`.
    pub fn cost_table(&self, input: [usize; 4]) -> Result<NetworkCost> {
        let block = |i: usize, b: &InvertedResidual| {
            let p = format!("features.{}.conv", i + 1);
            if b.expand().is_some() {
                [format!("{p}.0.0"), format!("{p}.1.0"), format!("{p}.2")]
            } else {
                [String::new(), format!("{p}.0.0"), format!("{p}.1")]
            }
        };
        let names = MbConvNames {
            title: format!(
                "mobilenet-v2 (α = {}, {}×{})",
                self.alpha, input[2], input[3]
            ),
            stem: "features.0.0",
            block: &block,
            head: format!("features.{}.0", self.net.blocks.len() + 1),
            fc: "classifier.1",
        };
        self.net.cost_table(input, &names)
    }

    /// Logits `[N, classes, 1, 1]` (NCHW) for an input of logical dims `[N, 3, H, W]` in
    /// either layout; runs in NHWC with `exec`'s threads.
    /// Intermediate tensors come from the network's workspace and go back to it.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        self.net.forward_with(input, exec)
    }

    /// Forward pass on one thread.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_with(input, &Executor::single())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(16.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(96.0 * 0.1, 8), 16); // 8 < 0.9 · 9.6
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
        assert_eq!(make_divisible(24.0 * 0.75, 8), 24); // int(18 + 4) // 8 · 8 = 16 < 16.2
    }

    #[test]
    fn alpha_1_has_the_published_size() {
        let net = MobileNetV2::random(1.0, 3).unwrap();
        assert_eq!(net.blocks().len(), 17);
        assert_eq!(net.blocks().iter().filter(|b| b.has_residual()).count(), 10);
        let cost = net.cost([1, 3, 224, 224]).unwrap();
        // torchvision: 3,504,872 parameters (with BN affine: 34,112 of them fold away);
        // 300M multiply-adds per the paper.
        assert!(
            (3_400_000..3_520_000).contains(&cost.params),
            "{}",
            cost.params
        );
        assert!(
            (290_000_000..320_000_000).contains(&cost.macs),
            "{}",
            cost.macs
        );
        let table = net.cost_table([1, 3, 224, 224]).unwrap();
        // torchvision.models.mobilenet_v2(): sum(p.numel() for p in m.parameters()).
        assert_eq!(table.total().params + table.batchnorm_params(), 3_504_872);
        assert_eq!(table.total().macs, cost.macs);
        assert_eq!(table.layers[0].name, "features.0.0");
        assert_eq!(table.layers[1].name, "features.1.conv.0.0");
        assert_eq!(table.layers[3].name, "features.2.conv.0.0");
    }

    /// The forward pass (fused blocks, workspace buffers) is bitwise the chain of unfused
    /// stages, for 1 and 2 threads and on a second call (reused, dirty buffers).
    #[test]
    fn forward_is_bitwise_the_unfused_stages_and_reuses_its_workspace() {
        use crate::tensor::Layout;
        let net = MobileNetV2::random(1.0, 5).unwrap();
        let mut rng = crate::rng::SplitMix64::new(1);
        let x = Tensor::from_nchw(rng.vec(3 * 96 * 96, -1.0, 1.0), [1, 3, 96, 96]).unwrap();
        let one = Executor::single();
        let two = Executor::new(2).unwrap();
        let mut y = net
            .net
            .stem
            .forward_with(&x.to_layout(Layout::Nhwc), &one)
            .unwrap();
        for b in &net.net.blocks {
            y = b.forward_unfused_with(&y, &one).unwrap();
        }
        let y = net.net.head.forward_with(&y, &one).unwrap();
        let want = net.net.classifier.forward_with(&y, &one).unwrap();
        assert!(want.data().iter().all(|v| v.is_finite()));
        for exec in [&one, &two, &one] {
            let got = net.forward_with(&x, exec).unwrap();
            assert_eq!(got.data(), want.data(), "{} threads", exec.threads());
        }
    }
}
