//! MobileNetV1 (Howard et al., 2017) as data: the layer list for a width multiplier α and
//! an input resolution, from which the cost model and the runnable network are built.
//!
//! Body (Table 1 of the paper): a standard 3×3 stride-2 convolution to 32 channels, then
//! thirteen depthwise separable blocks (depthwise 3×3 + BatchNorm + ReLU, pointwise 1×1 +
//! BatchNorm + ReLU), global average pooling and a 1024 → 1000 fully connected layer.
//! Channel counts scale with α (`floor(c·α)`); every 3×3 convolution pads by 1.
//!
//! Three things live here:
//! - the stage list ([`stages`]) for any α and resolution;
//! - the cost table ([`cost`]) of the network or of its all-standard variant
//!   ([`Variant::Standard`], every separable block replaced by a standard 3×3 convolution
//!   of the same shape), which reproduces the paper's Tables 2, 4, 6 and 7;
//! - a runnable network ([`MobileNetV1`]) built from dsconv's layers, with random or
//!   given weights ([`MobileNetV1Weights`]).
//!
//! What the paper counts, and so what [`cost`] counts: "mult-adds" are the MACs of every
//! convolution and of the fully connected layer (Table 2 gives the FC 0.18% of them);
//! parameters are convolution and FC weights. The paper's Table 2 percentages
//! (1×1 74.59%, FC 24.33%) come out exactly when the FC bias (1,000) is left out; we count
//! it, as PyTorch does, which changes 4,209,088 to 4,210,088 (both print as 4.2 M).
//! BatchNorm's γ and β are counted apart ([`NetworkCost::batchnorm_params`]).

use crate::cost::{LayerCost, NetworkCost};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, ConvGeometry, Padding};
use crate::layers::{
    Conv2d, DepthwiseConv2d, DepthwiseSeparableConv2d, GlobalAvgPool, PointwiseConv2d,
};
use crate::ops::{Activation, BatchNorm};
use crate::rng::SplitMix64;
use crate::tensor::{Layout, StridedNhwc, Tensor};

/// Output channels and stride of the thirteen depthwise separable blocks at α = 1.
pub const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// Output channels of the first (standard) convolution at α = 1.
pub const STEM_CHANNELS: usize = 32;
/// ImageNet classes.
pub const CLASSES: usize = 1000;

/// One convolutional stage of MobileNetV1 at a given α and resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// `true` for the stem (a standard 3×3 convolution), `false` for a separable block.
    pub is_stem: bool,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (of the pointwise, for a block).
    pub out_channels: usize,
    /// Stride of the 3×3 convolution (stem or depthwise).
    pub stride: usize,
    /// Input height = width.
    pub in_size: usize,
    /// Output height = width (`ceil(in / stride)` with padding 1).
    pub out_size: usize,
}

/// Scales a channel count by α the way the paper does (`floor(c·α)`, at least 1).
pub fn scale_channels(channels: usize, alpha: f64) -> usize {
    ((channels as f64 * alpha).floor() as usize).max(1)
}

/// Checks α ∈ (0, 4] and a resolution in [32, 4096].
pub fn validate(alpha: f64, resolution: usize) -> Result<()> {
    if !(alpha > 0.0 && alpha <= 4.0) {
        return Err(Error::param(
            "width multiplier",
            format!("{alpha} is not in (0, 4]"),
        ));
    }
    if !(32..=4096).contains(&resolution) {
        return Err(Error::param(
            "resolution",
            format!("{resolution} is not in [32, 4096]"),
        ));
    }
    Ok(())
}

/// The fourteen convolutional stages (stem + 13 blocks) for width α and input resolution.
pub fn stages(alpha: f64, resolution: usize) -> Result<Vec<Stage>> {
    validate(alpha, resolution)?;
    let out_of = |size: usize, stride: usize| (size + 2 - 3) / stride + 1;
    let mut stages = Vec::with_capacity(14);
    let stem_out = scale_channels(STEM_CHANNELS, alpha);
    let mut size = out_of(resolution, 2);
    stages.push(Stage {
        is_stem: true,
        in_channels: 3,
        out_channels: stem_out,
        stride: 2,
        in_size: resolution,
        out_size: size,
    });
    let mut channels = stem_out;
    for (c, stride) in BLOCKS {
        let out = scale_channels(c, alpha);
        let next = out_of(size, stride);
        stages.push(Stage {
            is_stem: false,
            in_channels: channels,
            out_channels: out,
            stride,
            in_size: size,
            out_size: next,
        });
        channels = out;
        size = next;
    }
    Ok(stages)
}

/// Which form of the network: the real MobileNet, or the paper's "Conv MobileNet"
/// baseline of Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// Thirteen depthwise separable blocks (the MobileNet).
    #[default]
    Separable,
    /// Every separable block replaced by a standard 3×3 convolution with the same input
    /// and output shape (BatchNorm and activation after it).
    Standard,
}

impl Variant {
    /// `separable` or `standard`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Separable => "separable",
            Variant::Standard => "standard",
        }
    }
}

/// Hyper-parameters of a 3×3 convolution with padding 1.
fn conv3x3(stride: usize, groups: usize) -> Conv2dParams {
    Conv2dParams::default()
        .with_stride(stride)
        .with_padding(Padding::symmetric(1))
        .with_groups(groups)
}

/// The cost table of MobileNetV1 at width α and input `resolution`×`resolution`, for a
/// batch of `batch` images. Rows: `conv1` (the stem), then per block `blockK.dw` and
/// `blockK.pw` (or `blockK.conv` for [`Variant::Standard`]), then `pool` and `fc`.
/// Convolutions have no bias (a BatchNorm follows each, recorded in `batchnorm_params`);
/// the FC layer has weights and a bias.
///
/// ```
/// use dsconv::models::mobilenet_v1::{cost, Variant};
/// let net = cost(1.0, 224, 1, Variant::Separable)?;
/// assert_eq!(net.total().macs, 568_740_352); // the paper: 569 M mult-adds
/// assert_eq!(net.total().params, 4_210_088); // the paper: 4.2 M parameters
/// # Ok::<(), dsconv::Error>(())
/// ```
pub fn cost(alpha: f64, resolution: usize, batch: usize, variant: Variant) -> Result<NetworkCost> {
    if batch == 0 {
        return Err(Error::param("batch", "must be at least 1"));
    }
    let mut layers = Vec::with_capacity(29);
    let mut last = [batch, 3, resolution, resolution];
    for (k, s) in stages(alpha, resolution)?.iter().enumerate() {
        let input = [batch, s.in_channels, s.in_size, s.in_size];
        if s.is_stem || variant == Variant::Standard {
            let name = if s.is_stem {
                "conv1".to_string()
            } else {
                format!("block{k}.conv")
            };
            let g = ConvGeometry::new(
                input,
                [s.out_channels, s.in_channels, 3, 3],
                &conv3x3(s.stride, 1),
            )?;
            layers.push(LayerCost::conv(name, &g, false).with_batchnorm());
            last = g.output_dims();
        } else {
            let dw = ConvGeometry::new(
                input,
                [s.in_channels, 1, 3, 3],
                &conv3x3(s.stride, s.in_channels),
            )?;
            let pw = ConvGeometry::new(
                dw.output_dims(),
                [s.out_channels, s.in_channels, 1, 1],
                &Conv2dParams::default(),
            )?;
            // The depthwise stage whatever its width: at α small enough for one channel,
            // groups = 1 and the geometry alone would call it "standard".
            layers.push(
                LayerCost {
                    kind: crate::cost::LayerKind::Depthwise,
                    ..LayerCost::conv(format!("block{k}.dw"), &dw, false)
                }
                .with_batchnorm(),
            );
            layers.push(LayerCost::conv(format!("block{k}.pw"), &pw, false).with_batchnorm());
            last = pw.output_dims();
        }
    }
    layers.push(LayerCost::global_avg_pool("pool", last));
    layers.push(LayerCost::linear("fc", batch, last[1], CLASSES, true));
    // A large batch can take the saturating counts past u64: an error, not a wrong total.
    if layers.iter().any(|l| l.cost.overflowed()) {
        return Err(Error::Overflow("mobilenet-v1 cost"));
    }
    let total: crate::cost::Cost = layers.iter().map(|l| l.cost).sum();
    total.checked("mobilenet-v1 total cost")?;
    Ok(NetworkCost {
        name: format!(
            "mobilenet-v1 (width {alpha}, {resolution}×{resolution}, {})",
            variant.name()
        ),
        layers,
    })
}

/// The activation after every BatchNorm. The paper uses ReLU; like most implementations
/// (TensorFlow's reference MobileNetV1 among them) we use ReLU6, which bounds activations
/// and changes nothing about the cost.
pub const ACTIVATION: Activation = Activation::Relu6;

/// BatchNorm epsilon of the random networks (TensorFlow's MobileNetV1 uses 1e-3).
pub const BATCHNORM_EPS: f32 = 1e-3;

/// An unfused convolution: weight `[C_out, C_in/groups, 3, 3]` or `[C_out, C_in, 1, 1]`
/// and the BatchNorm that follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvBn {
    /// The convolution weight in PyTorch order, no bias.
    pub weight: Tensor,
    /// The BatchNorm over its output channels.
    pub batchnorm: BatchNorm,
}

/// The weights of one of the thirteen blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockWeights {
    /// Depthwise 3×3 (`[C_in, 1, 3, 3]`) and pointwise 1×1 (`[C_out, C_in, 1, 1]`).
    Separable {
        /// The depthwise convolution and its BatchNorm.
        depthwise: ConvBn,
        /// The pointwise convolution and its BatchNorm.
        pointwise: ConvBn,
    },
    /// A standard 3×3 convolution `[C_out, C_in, 3, 3]` (the all-standard variant).
    Standard(ConvBn),
}

impl BlockWeights {
    /// Which form of block these weights are for.
    pub fn variant(&self) -> Variant {
        match self {
            BlockWeights::Separable { .. } => Variant::Separable,
            BlockWeights::Standard(_) => Variant::Standard,
        }
    }
}

/// All the parameters of a MobileNetV1, unfused (BatchNorm kept apart), in PyTorch order.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetV1Weights {
    /// Width multiplier the shapes follow.
    pub alpha: f64,
    /// The stem: `[32α, 3, 3, 3]`.
    pub stem: ConvBn,
    /// The thirteen blocks.
    pub blocks: Vec<BlockWeights>,
    /// Classifier weight `[classes, 1024α, 1, 1]` (a 1×1 convolution on the pooled
    /// features; 1000 classes for ImageNet).
    pub fc_weight: Tensor,
    /// Classifier bias, one per class.
    pub fc_bias: Vec<f32>,
    /// The activation after every BatchNorm: [`ACTIVATION`] (ReLU6) for random weights,
    /// ReLU for checkpoints in the classic PyTorch naming.
    pub activation: Activation,
}

/// He-uniform weights `U(−a, a)`, `a = sqrt(6 / fan_in)`: keeps the activations' scale
/// roughly constant through ReLU layers.
fn he_uniform(rng: &mut SplitMix64, dims: [usize; 4]) -> Result<Tensor> {
    rng.weight_tensor(dims, std::f32::consts::SQRT_2)
}

/// A BatchNorm with plausible trained statistics: γ ∈ [0.5, 1.5), β ∈ [−0.1, 0.1),
/// mean ∈ [−0.1, 0.1), var ∈ [0.5, 1.5).
fn random_batchnorm(rng: &mut SplitMix64, channels: usize) -> Result<BatchNorm> {
    BatchNorm::new(
        rng.vec(channels, 0.5, 1.5),
        rng.vec(channels, -0.1, 0.1),
        rng.vec(channels, -0.1, 0.1),
        rng.vec(channels, 0.5, 1.5),
        BATCHNORM_EPS,
    )
}

fn random_conv_bn(rng: &mut SplitMix64, dims: [usize; 4]) -> Result<ConvBn> {
    Ok(ConvBn {
        weight: he_uniform(rng, dims)?,
        batchnorm: random_batchnorm(rng, dims[0])?,
    })
}

impl MobileNetV1Weights {
    /// Random weights for width α (the resolution does not change any shape), reproducible
    /// from `seed`.
    pub fn random(alpha: f64, variant: Variant, seed: u64) -> Result<Self> {
        // The resolution is irrelevant to the weights; 224 only satisfies `stages`.
        let stages = stages(alpha, 224)?;
        let mut rng = SplitMix64::new(seed);
        let stem = random_conv_bn(&mut rng, [stages[0].out_channels, 3, 3, 3])?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for s in &stages[1..] {
            blocks.push(match variant {
                Variant::Separable => BlockWeights::Separable {
                    depthwise: random_conv_bn(&mut rng, [s.in_channels, 1, 3, 3])?,
                    pointwise: random_conv_bn(&mut rng, [s.out_channels, s.in_channels, 1, 1])?,
                },
                Variant::Standard => BlockWeights::Standard(random_conv_bn(
                    &mut rng,
                    [s.out_channels, s.in_channels, 3, 3],
                )?),
            });
        }
        let features = stages[stages.len() - 1].out_channels;
        let fc_weight = he_uniform(&mut rng, [CLASSES, features, 1, 1])?;
        let fc_bias = rng.vec(CLASSES, -0.1, 0.1);
        Ok(MobileNetV1Weights {
            alpha,
            stem,
            blocks,
            fc_weight,
            fc_bias,
            activation: ACTIVATION,
        })
    }

    /// Reads a checkpoint in the classic PyTorch MobileNetV1 naming (an `nn.Sequential`
    /// `model` of `conv_bn(3, 32α, 2)` and thirteen `conv_dw(inp, oup, stride)`, then
    /// `nn.Linear` `fc`), at width `alpha`:
    ///
    /// | module | keys |
    /// |---|---|
    /// | stem conv, BN | `model.0.0.weight`, `model.0.1.{weight,bias,running_mean,running_var}` |
    /// | block k = 1…13 depthwise, BN | `model.k.0.weight` `[C, 1, 3, 3]`, `model.k.1.*` |
    /// | block k pointwise, BN | `model.k.3.weight` `[C', C, 1, 1]`, `model.k.4.*` |
    /// | classifier | `fc.weight` `[classes, 1024α]`, `fc.bias` |
    ///
    /// That code uses `nn.ReLU` and PyTorch's BatchNorm eps 1e-5, so these weights do
    /// too. Every missing, unexpected or mismatched key is reported at once
    /// ([`Error::StateDict`]); the class count comes from `fc.weight`.
    pub fn from_state_dict(sd: &crate::weights::StateDict, alpha: f64) -> Result<Self> {
        let classes = sd
            .get("fc.weight")
            .and_then(|t| t.dims.first().copied())
            .filter(|&c| c > 0)
            .unwrap_or(CLASSES);
        let mut loader = crate::weights::Loader::new(sd);
        // Missing or mismatched keys read as zeros and never fail `from_source`, so an
        // error from it is real (bad α, negative variance): report it, not the keys it
        // left unread.
        let weights = Self::from_source(&mut loader, alpha, classes)?;
        loader.finish()?;
        Ok(weights)
    }

    fn from_source(
        src: &mut dyn crate::weights::ParamSource,
        alpha: f64,
        classes: usize,
    ) -> Result<Self> {
        use super::build::{batchnorm, conv_weight};
        const EPS: f32 = 1e-5;
        let stages = stages(alpha, 224)?;
        let mut conv_bn = |conv: &str, bn: &str, dims: [usize; 4]| -> Result<ConvBn> {
            Ok(ConvBn {
                weight: conv_weight(src, conv, dims)?,
                batchnorm: batchnorm(src, bn, dims[0], EPS)?,
            })
        };
        let stem = conv_bn("model.0.0", "model.0.1", [stages[0].out_channels, 3, 3, 3])?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (k, s) in stages.iter().enumerate().skip(1) {
            let (cin, cout) = (s.in_channels, s.out_channels);
            let depthwise = conv_bn(
                &format!("model.{k}.0"),
                &format!("model.{k}.1"),
                [cin, 1, 3, 3],
            )?;
            let pointwise = conv_bn(
                &format!("model.{k}.3"),
                &format!("model.{k}.4"),
                [cout, cin, 1, 1],
            )?;
            blocks.push(BlockWeights::Separable {
                depthwise,
                pointwise,
            });
        }
        let features = stages[stages.len() - 1].out_channels;
        let fc = super::build::linear(src, "fc", features, classes);
        let (fc_weight, fc_bias) = fc;
        Ok(MobileNetV1Weights {
            alpha,
            stem,
            blocks,
            fc_weight: Tensor::from_nchw(fc_weight, [classes, features, 1, 1])?,
            fc_bias,
            activation: Activation::Relu,
        })
    }
}

/// One block of the runnable network.
#[derive(Debug, Clone)]
enum Block {
    Separable(Box<DepthwiseSeparableConv2d>),
    Standard(Box<Conv2d>),
}

/// A runnable MobileNetV1: stem 3×3/2 convolution, thirteen blocks, global average pool and
/// a 1000-way classifier; every BatchNorm folded into the convolution before it, [`ACTIVATION`]
/// fused after each.
///
/// ```
/// use dsconv::models::mobilenet_v1::MobileNetV1;
/// use dsconv::{Executor, Tensor};
/// let net = MobileNetV1::random(0.25, 32, 7)?;
/// let x = Tensor::from_nchw(vec![0.5; 3 * 32 * 32], [1, 3, 32, 32])?;
/// let logits = net.forward_with(&x, &Executor::single())?;
/// assert_eq!(logits.dims(), [1, 1000, 1, 1]);
/// # Ok::<(), dsconv::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MobileNetV1 {
    alpha: f64,
    resolution: usize,
    variant: Variant,
    stem: Conv2d,
    blocks: Vec<Block>,
    pool: GlobalAvgPool,
    /// The classifier as a 1×1 convolution on `[N, 1024α, 1, 1]`.
    fc: PointwiseConv2d,
    /// Activation buffers reused by every forward pass.
    workspace: crate::workspace::Workspace,
}

fn fused_conv(w: &ConvBn, params: Conv2dParams, act: Activation) -> Result<Conv2d> {
    Ok(Conv2d::new(w.weight.clone(), None, params)?
        .with_batchnorm(&w.batchnorm)?
        .with_activation(act))
}

impl MobileNetV1 {
    /// Random weights ([`MobileNetV1Weights::random`]) for width α, input
    /// `resolution`×`resolution`, the separable (real) network.
    pub fn random(alpha: f64, resolution: usize, seed: u64) -> Result<Self> {
        let w = MobileNetV1Weights::random(alpha, Variant::Separable, seed)?;
        MobileNetV1::from_weights(&w, resolution)
    }

    /// The same with every separable block replaced by a standard 3×3 convolution.
    pub fn random_standard(alpha: f64, resolution: usize, seed: u64) -> Result<Self> {
        let w = MobileNetV1Weights::random(alpha, Variant::Standard, seed)?;
        MobileNetV1::from_weights(&w, resolution)
    }

    /// Builds the network from unfused weights for inputs `resolution`×`resolution`;
    /// checks every shape against the stage list of `weights.alpha`.
    pub fn from_weights(weights: &MobileNetV1Weights, resolution: usize) -> Result<Self> {
        let stages = stages(weights.alpha, resolution)?;
        if weights.blocks.len() != BLOCKS.len() {
            return Err(Error::Checkpoint(format!(
                "{} blocks, expected {}",
                weights.blocks.len(),
                BLOCKS.len()
            )));
        }
        let expect = |what: &str, got: [usize; 4], want: [usize; 4]| {
            if got == want {
                Ok(())
            } else {
                Err(Error::Checkpoint(format!(
                    "{what}: weight {got:?}, expected {want:?} for width {}",
                    weights.alpha
                )))
            }
        };
        let s0 = &stages[0];
        expect(
            "conv1",
            weights.stem.weight.dims(),
            [s0.out_channels, 3, 3, 3],
        )?;
        let act = weights.activation;
        let stem = fused_conv(&weights.stem, conv3x3(2, 1), act)?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        // One form for all blocks: the first block's.
        let variant = match weights.blocks.first() {
            Some(BlockWeights::Standard(_)) => Variant::Standard,
            _ => Variant::Separable,
        };
        for (k, (s, b)) in stages[1..].iter().zip(&weights.blocks).enumerate() {
            let name = format!("block{}", k + 1);
            if b.variant() != variant {
                return Err(Error::Checkpoint(format!(
                    "{name} is {} but block1 is {}: blocks mix separable and standard forms",
                    b.variant().name(),
                    variant.name()
                )));
            }
            blocks.push(match b {
                BlockWeights::Separable {
                    depthwise,
                    pointwise,
                } => {
                    expect(&name, depthwise.weight.dims(), [s.in_channels, 1, 3, 3])?;
                    expect(
                        &name,
                        pointwise.weight.dims(),
                        [s.out_channels, s.in_channels, 1, 1],
                    )?;
                    let dw =
                        DepthwiseConv2d::new(depthwise.weight.clone(), None, conv3x3(s.stride, 1))?
                            .with_batchnorm(&depthwise.batchnorm)?
                            .with_activation(act);
                    let pw = PointwiseConv2d::new(pointwise.weight.clone(), None)?
                        .with_batchnorm(&pointwise.batchnorm)?
                        .with_activation(act);
                    Block::Separable(Box::new(DepthwiseSeparableConv2d::new(dw, pw)?))
                }
                BlockWeights::Standard(conv) => {
                    expect(
                        &name,
                        conv.weight.dims(),
                        [s.out_channels, s.in_channels, 3, 3],
                    )?;
                    Block::Standard(Box::new(fused_conv(conv, conv3x3(s.stride, 1), act)?))
                }
            });
        }
        let features = stages[stages.len() - 1].out_channels;
        let classes = weights.fc_weight.dims()[0].max(1);
        expect("fc", weights.fc_weight.dims(), [classes, features, 1, 1])?;
        if weights.fc_bias.len() != classes {
            return Err(Error::Checkpoint(format!(
                "fc: bias of {} elements, expected {classes}",
                weights.fc_bias.len()
            )));
        }
        let fc = PointwiseConv2d::new(weights.fc_weight.clone(), Some(weights.fc_bias.clone()))?;
        Ok(MobileNetV1 {
            alpha: weights.alpha,
            resolution,
            variant,
            stem,
            blocks,
            pool: GlobalAvgPool,
            fc,
            workspace: crate::workspace::Workspace::default(),
        })
    }

    /// Number of classes (the classifier's outputs).
    pub fn classes(&self) -> usize {
        self.fc.out_channels()
    }

    /// From a checkpoint in the classic PyTorch naming
    /// ([`MobileNetV1Weights::from_state_dict`]) for inputs `resolution`×`resolution`.
    pub fn from_state_dict(
        sd: &crate::weights::StateDict,
        alpha: f64,
        resolution: usize,
    ) -> Result<Self> {
        MobileNetV1::from_weights(&MobileNetV1Weights::from_state_dict(sd, alpha)?, resolution)
    }

    /// Width multiplier α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// Input height = width.
    pub fn resolution(&self) -> usize {
        self.resolution
    }
    /// Separable (the MobileNet) or all-standard.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The cost table for a batch of `batch` images ([`cost`] with this network's α,
    /// resolution, variant and class count). Its rows count convolutions without bias and BatchNorm
    /// apart, as the paper does; this network has folded each BatchNorm into a bias.
    pub fn cost(&self, batch: usize) -> Result<NetworkCost> {
        let mut table = cost(self.alpha, self.resolution, batch, self.variant)?;
        if self.classes() != CLASSES {
            // A checkpoint with its own class count: the classifier row follows it.
            if let Some(fc) = table.layers.last_mut() {
                *fc = LayerCost::linear("fc", batch, self.fc.in_channels(), self.classes(), true);
            }
        }
        Ok(table)
    }

    /// Forward pass on one thread.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.forward_with(input, &Executor::single())
    }

    /// Forward pass of `input` (logical dims `[N, 3, R, R]`, either layout) using `exec`'s
    /// threads. Returns the logits as logical dims `[N, 1000, 1, 1]` in NCHW, i.e. the
    /// `[N, 1000]` matrix row-major in `data()`. Runs in NHWC inside (an NCHW input is
    /// converted once).
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        super::build::batch_parallel(input, exec, self.classes(), |x, exec| {
            self.forward_batch(x, exec)
        })
    }

    /// [`forward_with`](Self::forward_with) layer after layer over the whole batch.
    fn forward_batch(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        let [n, c, h, w] = input.logical_dims();
        if n == 0 || c != 3 || h != self.resolution || w != self.resolution {
            return Err(Error::shape(
                "mobilenet-v1 input",
                format!("logical dims [N ≥ 1, 3, {r}, {r}]", r = self.resolution),
                format!("{:?}", input.logical_dims()),
            ));
        }
        let x = &*input.as_nhwc();
        // Intermediate tensors come from the workspace and go back to it: no allocation
        // or page fault in steady state.
        let ws = &self.workspace;
        let mut y = ws.take(
            Layout::Nhwc.dims_from_logical(self.stem.geometry(x.logical_dims())?.output_dims()),
        )?;
        self.stem.forward_into(x, &mut y, exec)?;
        let mut y = StridedNhwc::from_tensor(y)?;
        // From a fused separable block into another (or into the pool) the activations
        // have the workspace's padded pixel stride (`Workspace::pixel_stride`: C = 256,
        // 512, 1024 get 16 floats more), so the depthwise kernel needs no copy of crowded
        // rows and the GEMM writes and reads uncrowded rows. Every other block reads and
        // writes plain tensors.
        for (i, block) in self.blocks.iter().enumerate() {
            let dims = y.logical_dims();
            let next = match block {
                Block::Separable(b) if b.fuses(dims) => {
                    let g = b.depthwise().as_conv2d().geometry(dims)?;
                    let out = [
                        g.batch(),
                        b.pointwise().out_channels(),
                        g.out_h(),
                        g.out_w(),
                    ];
                    let padded = match self.blocks.get(i + 1) {
                        None => true,
                        Some(Block::Separable(next)) => next.fuses(out),
                        Some(_) => false,
                    };
                    let mut next = ws.take_strided(out, padded)?;
                    b.forward_fused(y.view(), next.view_mut(), exec)?;
                    next
                }
                _ => {
                    // Only a fused separable block is given padded pixels (above).
                    let Some(x) = y.as_tensor() else {
                        return Err(Error::shape(
                            "mobilenet-v1 activation",
                            "a plain NHWC tensor",
                            "padded pixels",
                        ));
                    };
                    let out = match block {
                        Block::Separable(b) => {
                            let g = b.depthwise().as_conv2d().geometry(dims)?;
                            let [n, _, h, w] = g.output_dims();
                            [n, b.pointwise().out_channels(), h, w]
                        }
                        Block::Standard(b) => b.geometry(dims)?.output_dims(),
                    };
                    let mut next = ws.take(Layout::Nhwc.dims_from_logical(out))?;
                    match block {
                        Block::Separable(b) => b.forward_into(x, &mut next, exec)?,
                        Block::Standard(b) => b.forward_into(x, &mut next, exec)?,
                    }
                    StridedNhwc::from_tensor(next)?
                }
            };
            ws.give_strided(std::mem::replace(&mut y, next));
        }
        let pooled = self.pool.forward_view(y.view())?;
        ws.give_strided(y);
        let logits = self.fc.forward_with(&pooled, exec)?;
        Tensor::from_nchw(logits.into_data(), [n, self.classes(), 1, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::LayerKind;
    use crate::Layout;

    #[test]
    fn alpha_1_224_shapes_follow_table_1() {
        let s = stages(1.0, 224).unwrap();
        assert_eq!(s.len(), 14);
        assert_eq!((s[0].out_channels, s[0].out_size), (32, 112));
        assert_eq!(
            (s[1].in_channels, s[1].out_channels, s[1].out_size),
            (32, 64, 112)
        );
        assert_eq!(
            (s[13].in_channels, s[13].out_channels, s[13].out_size),
            (1024, 1024, 7)
        );
        assert_eq!(s[12].in_size, 14);
    }

    /// The paper's numbers (Howard et al. 2017), in millions, as printed.
    /// (width, resolution, mult-adds, params).
    const PAPER_TABLES_6_AND_7: [(f64, usize, f64, f64); 7] = [
        (1.0, 224, 569.0, 4.2),
        (0.75, 224, 325.0, 2.6),
        (0.5, 224, 149.0, 1.3),
        (0.25, 224, 41.0, 0.5),
        (1.0, 192, 418.0, 4.2),
        (1.0, 160, 290.0, 4.2),
        (1.0, 128, 186.0, 4.2),
    ];

    fn millions(v: u64) -> f64 {
        v as f64 / 1e6
    }

    #[test]
    fn mult_adds_match_tables_6_and_7_within_half_a_percent() {
        for (alpha, res, madds, _) in PAPER_TABLES_6_AND_7 {
            let ours = millions(
                cost(alpha, res, 1, Variant::Separable)
                    .unwrap()
                    .total()
                    .macs,
            );
            let rel = (ours - madds).abs() / madds;
            assert!(
                rel < 0.005,
                "α {alpha} R {res}: {ours:.2} M vs paper {madds} M"
            );
            // The paper truncates (290.68 → 290) or rounds (568.74 → 569): one unit either way.
            assert!((ours - madds).abs() < 1.0, "α {alpha} R {res}: {ours:.2} M");
        }
    }

    #[test]
    fn params_match_tables_6_and_7_at_the_papers_precision() {
        // The paper prints parameters to 0.1 M, so 2.57 M is "2.6" and 0.46 M is "0.5":
        // compare at that precision (within 0.5% is impossible for a 0.1 M-rounded 0.5 M).
        for (alpha, res, _, params) in PAPER_TABLES_6_AND_7 {
            let ours = millions(
                cost(alpha, res, 1, Variant::Separable)
                    .unwrap()
                    .total()
                    .params,
            );
            assert_eq!(
                format!("{ours:.1}"),
                format!("{params:.1}"),
                "α {alpha} R {res}: {ours:.3} M"
            );
        }
    }

    #[test]
    fn exact_totals_at_224() {
        let t = cost(1.0, 224, 1, Variant::Separable).unwrap();
        assert_eq!(t.total().macs, 568_740_352);
        assert_eq!(t.total().params, 4_210_088);
        // γ and β over 10,944 channels: the stem's 32, each block's depthwise inputs
        // (4,960 in all) and pointwise outputs (5,952).
        assert_eq!(t.batchnorm_params(), 2 * (32 + 4_960 + 5_952));
        let s = cost(1.0, 224, 1, Variant::Standard).unwrap();
        assert_eq!(s.total().macs, 4_867_293_184);
        assert_eq!(s.total().params, 29_282_120);
    }

    #[test]
    fn standard_variant_matches_table_4() {
        // "Conv MobileNet": 4,866 M mult-adds, 29.3 M parameters.
        let s = cost(1.0, 224, 1, Variant::Standard).unwrap().total();
        assert!((millions(s.macs) - 4866.0).abs() / 4866.0 < 0.005);
        assert_eq!(format!("{:.1}", millions(s.params)), "29.3");
    }

    #[test]
    fn table_2_breakdown_by_layer_type() {
        // Table 2: Conv 1×1 94.86% of mult-adds, Conv DW 3×3 3.06%, FC 0.18%; parameters
        // 1×1 74.59%, DW 1.06%, FC 24.33% — exact to the printed digit when the 1,000 FC
        // biases are left out (the paper counts weights). (Its "Conv 3×3 1.19%" row does not
        // match the stem's 10.8 M MACs = 1.91%, and the rows then sum to 99.29%: a known
        // slip in the paper.)
        let t = cost(1.0, 224, 1, Variant::Separable).unwrap();
        let total = t.total();
        let pct = |v: u64, of: u64| format!("{:.2}", 100.0 * v as f64 / of as f64);
        assert_eq!(
            pct(t.total_of(LayerKind::Pointwise).macs, total.macs),
            "94.86"
        );
        assert_eq!(
            pct(t.total_of(LayerKind::Depthwise).macs, total.macs),
            "3.06"
        );
        assert_eq!(
            pct(t.total_of(LayerKind::FullyConnected).macs, total.macs),
            "0.18"
        );
        assert_eq!(
            pct(t.total_of(LayerKind::Standard).macs, total.macs),
            "1.91"
        );
        let weights = total.params - CLASSES as u64;
        assert_eq!(
            pct(t.total_of(LayerKind::Pointwise).params, weights),
            "74.59"
        );
        assert_eq!(
            pct(t.total_of(LayerKind::Depthwise).params, weights),
            "1.06"
        );
        assert_eq!(
            pct(t.total_of(LayerKind::FullyConnected).params - 1000, weights),
            "24.33"
        );
    }

    #[test]
    fn table_rows_are_named_and_shaped() {
        let t = cost(1.0, 224, 2, Variant::Separable).unwrap();
        assert_eq!(t.layers.len(), 1 + 26 + 2);
        assert_eq!(t.layers[0].name, "conv1");
        assert_eq!(t.layers[1].name, "block1.dw");
        assert_eq!(t.layers[2].name, "block1.pw");
        assert_eq!(t.layers[27].name, "pool");
        assert_eq!(t.layers[28].name, "fc");
        assert_eq!(t.layers[26].output, [2, 1024, 7, 7]);
        // Batch 2 doubles MACs, not parameters.
        let one = cost(1.0, 224, 1, Variant::Separable).unwrap().total();
        assert_eq!(t.total().macs, 2 * one.macs);
        assert_eq!(t.total().params, one.params);
        let s = cost(0.5, 160, 1, Variant::Standard).unwrap();
        assert_eq!(s.layers.len(), 1 + 13 + 2);
        assert_eq!(s.layers[5].name, "block5.conv");
        assert_eq!(s.layers[5].kind, LayerKind::Standard);
        assert!(cost(1.0, 224, 0, Variant::Separable).is_err());
    }

    /// The network composed from `reference` ops on the unfused weights, in f64 per layer.
    fn reference_forward(w: &MobileNetV1Weights, x: &Tensor) -> Tensor {
        use crate::reference::{batchnorm_activation, conv2d};
        let conv_bn = |x: &Tensor, cb: &ConvBn, p: Conv2dParams| {
            let mut y = conv2d(x, &cb.weight, None, &p).unwrap();
            batchnorm_activation(&mut y, Some(&cb.batchnorm), ACTIVATION);
            y
        };
        let mut y = conv_bn(x, &w.stem, conv3x3(2, 1));
        for (b, &(_, stride)) in w.blocks.iter().zip(BLOCKS.iter()) {
            y = match b {
                BlockWeights::Separable {
                    depthwise,
                    pointwise,
                } => {
                    let c = depthwise.weight.dims()[0];
                    let mid = conv_bn(&y, depthwise, conv3x3(stride, c));
                    conv_bn(&mid, pointwise, Conv2dParams::default())
                }
                BlockWeights::Standard(conv) => conv_bn(&y, conv, conv3x3(stride, 1)),
            };
        }
        let [n, c, h, ww] = y.logical_dims();
        let pooled = Tensor::from_fn([n, c, 1, 1], Layout::Nchw, |n, c, _, _| {
            let mut sum = 0.0f64;
            for yy in 0..h {
                for xx in 0..ww {
                    sum += y.at(n, c, yy, xx) as f64;
                }
            }
            (sum / (h * ww) as f64) as f32
        })
        .unwrap();
        conv2d(
            &pooled,
            &w.fc_weight,
            Some(&w.fc_bias),
            &Conv2dParams::default(),
        )
        .unwrap()
    }

    fn check_against_reference(variant: Variant) {
        let (alpha, res) = (0.25, 32);
        let w = MobileNetV1Weights::random(alpha, variant, 11).unwrap();
        let net = MobileNetV1::from_weights(&w, res).unwrap();
        assert_eq!(net.variant(), variant);
        let x = Tensor::from_nchw(
            SplitMix64::new(5).vec(2 * 3 * res * res, -1.0, 1.0),
            [2, 3, res, res],
        )
        .unwrap();
        let want = reference_forward(&w, &x);
        let got = net.forward(&x).unwrap();
        assert_eq!(got.dims(), [2, CLASSES, 1, 1]);
        let tolerance = 1e-5 * want.max_abs();
        let err = got.max_abs_diff(&want).unwrap();
        assert!(err <= tolerance, "{variant:?}: error {err} > {tolerance}");
        // Random weights must give a non-trivial output for the comparison to mean anything.
        assert!(want.max_abs() > 1e-3, "{}", want.max_abs());
        // NHWC input, and two threads: the same bits.
        let threads = Executor::new(2).unwrap();
        let nhwc = net
            .forward_with(&x.to_layout(Layout::Nhwc), &threads)
            .unwrap();
        assert_eq!(nhwc.data(), got.data());
    }

    #[test]
    fn separable_network_matches_reference_composition() {
        check_against_reference(Variant::Separable);
    }

    #[test]
    fn standard_network_matches_reference_composition() {
        check_against_reference(Variant::Standard);
    }

    #[test]
    fn network_layers_cost_what_the_table_says() {
        for variant in [Variant::Separable, Variant::Standard] {
            let w = MobileNetV1Weights::random(0.5, variant, 3).unwrap();
            let net = MobileNetV1::from_weights(&w, 64).unwrap();
            let table = net.cost(1).unwrap();
            let mut dims = [1, 3, 64, 64];
            let mut macs = net.stem.cost(dims).unwrap().macs;
            dims = net.stem.geometry(dims).unwrap().output_dims();
            for b in &net.blocks {
                let (c, out) = match b {
                    Block::Separable(b) => {
                        let g = b.depthwise().as_conv2d().geometry(dims).unwrap();
                        (
                            b.cost(dims).unwrap(),
                            [1, b.pointwise().out_channels(), g.out_h(), g.out_w()],
                        )
                    }
                    Block::Standard(b) => (
                        b.cost(dims).unwrap(),
                        b.geometry(dims).unwrap().output_dims(),
                    ),
                };
                macs += c.macs;
                dims = out;
            }
            macs += net.fc.cost([1, dims[1], 1, 1]).unwrap().macs;
            assert_eq!(macs, table.total().macs, "{variant:?}");
        }
    }

    #[test]
    fn wrong_inputs_and_weights_are_errors() {
        let net = MobileNetV1::random(0.25, 32, 1).unwrap();
        let bad = Tensor::from_nchw(vec![0.0; 3 * 33 * 33], [1, 3, 33, 33]).unwrap();
        assert!(net.forward(&bad).is_err());
        let bad = Tensor::from_nchw(vec![0.0; 4 * 32 * 32], [1, 4, 32, 32]).unwrap();
        assert!(net.forward(&bad).is_err());
        let mut w = MobileNetV1Weights::random(0.25, Variant::Separable, 1).unwrap();
        w.alpha = 0.5;
        assert!(MobileNetV1::from_weights(&w, 32).is_err());
        let mut w = MobileNetV1Weights::random(0.25, Variant::Separable, 1).unwrap();
        w.blocks.pop();
        assert!(MobileNetV1::from_weights(&w, 32).is_err());
        let mut w = MobileNetV1Weights::random(0.25, Variant::Separable, 1).unwrap();
        let s = MobileNetV1Weights::random(0.25, Variant::Standard, 1).unwrap();
        w.blocks[3] = s.blocks[3].clone();
        assert!(MobileNetV1::from_weights(&w, 32).is_err());
        let mut s = s;
        s.blocks[5] = MobileNetV1Weights::random(0.25, Variant::Separable, 1)
            .unwrap()
            .blocks[5]
            .clone();
        assert!(MobileNetV1::from_weights(&s, 32).is_err());
        assert!(MobileNetV1::random(0.25, 8, 1).is_err());
    }

    /// At α = 0.5 the 256- and 512-channel activations are laid out with pixels of C + 16
    /// floats between fused blocks and into the pool: the logits are bitwise those of the
    /// layers run one by one on plain tensors, for both variants, batch 1 and 2 (whole
    /// images per thread), 1 and 2 threads.
    #[test]
    fn padded_activations_give_the_layer_by_layer_bits() {
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for variant in [Variant::Separable, Variant::Standard] {
            let w = MobileNetV1Weights::random(0.5, variant, 3).unwrap();
            let net = MobileNetV1::from_weights(&w, 32).unwrap();
            let mut rng = SplitMix64::new(5);
            for n in [1, 2] {
                let x =
                    Tensor::from_nchw(rng.vec(n * 3 * 32 * 32, -1.0, 1.0), [n, 3, 32, 32]).unwrap();
                for threads in [1, 2] {
                    let exec = Executor::new(threads).unwrap();
                    let got = net.forward_with(&x, &exec).unwrap();
                    let x = x.to_layout(crate::Layout::Nhwc);
                    let mut y = net.stem.forward_with(&x, &exec).unwrap();
                    for block in &net.blocks {
                        y = match block {
                            Block::Separable(b) => b.forward_with(&y, &exec).unwrap(),
                            Block::Standard(b) => b.forward_with(&y, &exec).unwrap(),
                        };
                    }
                    let logits = net.fc.forward_with(&net.pool.forward(&y).unwrap(), &exec);
                    let want = logits.unwrap();
                    assert_eq!(got.data().len(), n * 1000);
                    assert!(bits(&got) == bits(&want), "{variant:?} N={n} T={threads}");
                }
            }
        }
    }

    #[test]
    fn bad_alpha_and_resolution_rejected() {
        assert!(stages(0.0, 224).is_err());
        assert!(stages(f64::NAN, 224).is_err());
        assert!(stages(1.0, 16).is_err());
    }
}
