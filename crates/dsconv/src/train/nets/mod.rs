//! The trainable ImageNet networks — MobileNetV1, MobileNetV2 and EfficientNet-Lite0 —
//! built from the training layers with exactly the `state_dict` names the inference
//! loaders in [`crate::models`] read, so a checkpoint goes both ways:
//!
//! | network | names | init (no checkpoint) |
//! |---|---|---|
//! | `mobilenet-v1` | classic PyTorch `model.0.{0,1}` (stem), `model.k.{0,1,3,4}` (depthwise, BN, pointwise, BN), `fc` | torchvision's MobileNet scheme |
//! | `mobilenet-v2` | torchvision `features.0.{0,1}`, `features.i.conv.*`, `features.18.{0,1}`, `classifier.1` | torchvision's `MobileNetV2` |
//! | `efficientnet-lite0` | lukemelas `_conv_stem`, `_bn0`, `_blocks.N._expand_conv` …, `_conv_head`, `_bn1`, `_fc` | torchvision's `EfficientNet` |
//!
//! torchvision's MobileNet scheme: every convolution `kaiming_normal_(mode="fan_out")`
//! (standard deviation `√(2 / (C_out·kH·kW))`), BatchNorm weight 1 and bias 0, the linear
//! layer `normal_(0, 0.01)` with a zero bias; its EfficientNet differs only in the linear
//! layer, uniform `±1/√classes`. Each convolution is followed by a [`BnAct`] (BatchNorm
//! and the activation in one layer that keeps one tensor for backward).

mod layers;

pub use layers::{BnAct, DropPath};

use super::layers::{ConvLayer, Dropout, GlobalAvgPool, Linear, Residual, Sequential};
use crate::error::Result;
use crate::geometry::{Conv2dParams, Padding};
use crate::models::efficientnet_lite::{self, LITE};
use crate::models::{mobilenet_v1, mobilenet_v2};
use crate::ops::Activation;
use crate::rng::SplitMix64;

/// What the three builders need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetSpec {
    pub in_channels: usize,
    pub classes: usize,
    pub width_mult: f64,
    pub dropout: f32,
    pub drop_path: f32,
    pub seed: u64,
}

/// A standard normal deviate (Box–Muller on two 53-bit uniforms).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A bias-free convolution initialised `kaiming_normal_(mode="fan_out")`.
fn conv(dims: [usize; 4], params: Conv2dParams, rng: &mut SplitMix64) -> Result<ConvLayer> {
    let n = crate::error::product(&dims, "conv weight")?;
    let std = (2.0 / (dims[0] * dims[2] * dims[3]) as f64).sqrt();
    let w = (0..n).map(|_| (normal(rng) * std) as f32).collect();
    ConvLayer::new(dims, w, None, params)
}

/// Conv + BN + activation as `Sequential{0: conv, 1: BN}` (the activation has no state,
/// torchvision's index 2).
fn conv_bn_act(
    dims: [usize; 4],
    params: Conv2dParams,
    eps: f32,
    momentum: f32,
    act: Activation,
    rng: &mut SplitMix64,
) -> Result<Sequential> {
    let mut s = Sequential::new();
    s.push(conv(dims, params, rng)?);
    s.push(BnAct::new(dims[0], eps, momentum, act));
    Ok(s)
}

fn linear_normal(fin: usize, fout: usize, rng: &mut SplitMix64) -> Result<Linear> {
    let w = (0..fin * fout)
        .map(|_| (normal(rng) * 0.01) as f32)
        .collect();
    Linear::new(fout, w, vec![0.0; fout])
}

fn linear_uniform(fin: usize, fout: usize, rng: &mut SplitMix64) -> Result<Linear> {
    let r = 1.0 / (fout as f32).sqrt();
    let w = rng.vec(fin * fout, -r, r);
    Linear::new(fout, w, vec![0.0; fout])
}

fn pad1(stride: usize) -> Conv2dParams {
    Conv2dParams::default()
        .with_stride(stride)
        .with_padding(Padding::symmetric(1))
}

/// MobileNetV1 with the classic PyTorch names: `model` (stem and thirteen separable
/// blocks, ReLU, BN eps 1e-5), global pooling, optional dropout, `fc`.
pub(crate) fn mobilenet_v1(spec: &NetSpec) -> Result<Sequential> {
    mobilenet_v1::validate(spec.width_mult, 224)?;
    let mut rng = SplitMix64::new(spec.seed);
    let relu = Activation::Relu;
    let mut model = Sequential::new();
    let stem = mobilenet_v1::scale_channels(mobilenet_v1::STEM_CHANNELS, spec.width_mult);
    model.push(conv_bn_act(
        [stem, spec.in_channels, 3, 3],
        pad1(2),
        1e-5,
        0.1,
        relu,
        &mut rng,
    )?);
    let mut cin = stem;
    for (c, stride) in mobilenet_v1::BLOCKS {
        let cout = mobilenet_v1::scale_channels(c, spec.width_mult);
        let mut block = Sequential::new();
        block.push_named(
            "0",
            conv([cin, 1, 3, 3], pad1(stride).with_groups(cin), &mut rng)?,
        );
        block.push_named("1", BnAct::new(cin, 1e-5, 0.1, relu));
        block.push_named(
            "3",
            conv([cout, cin, 1, 1], Conv2dParams::default(), &mut rng)?,
        );
        block.push_named("4", BnAct::new(cout, 1e-5, 0.1, relu));
        model.push(block);
        cin = cout;
    }
    let mut net = Sequential::new();
    net.push_named("model", model);
    net.push_named("pool", GlobalAvgPool::new());
    if spec.dropout > 0.0 {
        net.push_named("dropout", Dropout::new(spec.dropout, spec.seed ^ 0x5EED)?);
    }
    net.push_named("fc", linear_normal(cin, spec.classes, &mut rng)?);
    Ok(net)
}

/// MobileNetV2 with torchvision's structure and names (ReLU6, BN eps 1e-5, momentum 0.1,
/// `classifier = Sequential(Dropout, Linear)`).
pub(crate) fn mobilenet_v2(spec: &NetSpec) -> Result<Sequential> {
    use mobilenet_v2::{make_divisible, HEAD_CHANNELS, SETTINGS, STEM_CHANNELS};
    let alpha = spec.width_mult;
    if !(alpha > 0.0 && alpha <= 4.0) {
        return Err(crate::Error::param(
            "width multiplier",
            format!("{alpha} is not in (0, 4]"),
        ));
    }
    let mut rng = SplitMix64::new(spec.seed);
    let act = Activation::Relu6;
    let cba =
        |dims, params, act, rng: &mut SplitMix64| conv_bn_act(dims, params, 1e-5, 0.1, act, rng);
    let mut features = Sequential::new();
    let stem = make_divisible(STEM_CHANNELS as f64 * alpha, 8);
    features.push(cba([stem, spec.in_channels, 3, 3], pad1(2), act, &mut rng)?);
    let mut inp = stem;
    for (t, c, n, s) in SETTINGS {
        let out = make_divisible(c as f64 * alpha, 8);
        for r in 0..n {
            let stride = if r == 0 { s } else { 1 };
            let hidden = inp * t;
            let mut body = Sequential::new();
            if t != 1 {
                body.push(cba(
                    [hidden, inp, 1, 1],
                    Conv2dParams::default(),
                    act,
                    &mut rng,
                )?);
            }
            body.push(cba(
                [hidden, 1, 3, 3],
                pad1(stride).with_groups(hidden),
                act,
                &mut rng,
            )?);
            body.push(conv(
                [out, hidden, 1, 1],
                Conv2dParams::default(),
                &mut rng,
            )?);
            body.push(BnAct::new(out, 1e-5, 0.1, Activation::None));
            let mut block = Sequential::new();
            block.push_named("conv", body);
            if stride == 1 && inp == out {
                features.push(Residual::new(block));
            } else {
                features.push(block);
            }
            inp = out;
        }
    }
    let last = make_divisible(HEAD_CHANNELS as f64 * alpha.max(1.0), 8);
    features.push(cba(
        [last, inp, 1, 1],
        Conv2dParams::default(),
        act,
        &mut rng,
    )?);
    let mut classifier = Sequential::new();
    classifier.push(Dropout::new(spec.dropout, spec.seed ^ 0x5EED)?);
    classifier.push(linear_normal(last, spec.classes, &mut rng)?);
    let mut net = Sequential::new();
    net.push_named("features", features);
    net.push_named("pool", GlobalAvgPool::new());
    net.push_named("classifier", classifier);
    Ok(net)
}

/// EfficientNet-Lite0 with lukemelas' names: TF `same` padding, ReLU6, BN eps 1e-3 and
/// momentum 0.01 (TensorFlow's 0.99), stochastic depth `drop_path · i / 16` on block
/// `i`'s residual branch (its `drop_connect_rate`), dropout before `_fc`.
pub(crate) fn efficientnet_lite0(spec: &NetSpec) -> Result<Sequential> {
    const EPS: f32 = efficientnet_lite::BN_EPS;
    const MOM: f32 = 0.01;
    let mut rng = SplitMix64::new(spec.seed);
    let act = Activation::Relu6;
    let same = Conv2dParams::default().with_padding(Padding::Same);
    let stages = LITE[0].stages();
    let total: usize = stages.iter().map(|s| s.repeats).sum();
    let mut net = Sequential::new();
    let stem = efficientnet_lite::STEM_CHANNELS;
    net.push_named(
        "_conv_stem",
        conv(
            [stem, spec.in_channels, 3, 3],
            same.with_stride(2),
            &mut rng,
        )?,
    );
    net.push_named("_bn0", BnAct::new(stem, EPS, MOM, act));
    let mut blocks = Sequential::new();
    for st in stages {
        for r in 0..st.repeats {
            let (inp, stride) = if r == 0 {
                (st.in_channels, st.stride)
            } else {
                (st.out_channels, 1)
            };
            let hidden = inp * st.expand_ratio;
            let mut b = Sequential::new();
            if st.expand_ratio != 1 {
                b.push_named(
                    "_expand_conv",
                    conv([hidden, inp, 1, 1], Conv2dParams::default(), &mut rng)?,
                );
                b.push_named("_bn0", BnAct::new(hidden, EPS, MOM, act));
            }
            b.push_named(
                "_depthwise_conv",
                conv(
                    [hidden, 1, st.kernel, st.kernel],
                    same.with_stride(stride).with_groups(hidden),
                    &mut rng,
                )?,
            );
            b.push_named("_bn1", BnAct::new(hidden, EPS, MOM, act));
            b.push_named(
                "_project_conv",
                conv(
                    [st.out_channels, hidden, 1, 1],
                    Conv2dParams::default(),
                    &mut rng,
                )?,
            );
            b.push_named(
                "_bn2",
                BnAct::new(st.out_channels, EPS, MOM, Activation::None),
            );
            let idx = blocks.len();
            if stride == 1 && inp == st.out_channels {
                let p = spec.drop_path * idx as f32 / total as f32;
                if p > 0.0 {
                    let seed = spec.seed ^ 0xD209_0000 ^ idx as u64;
                    b.push_named("drop_path", DropPath::new(p, seed)?);
                }
                blocks.push(Residual::new(b));
            } else {
                blocks.push(b);
            }
        }
    }
    net.push_named("_blocks", blocks);
    let last = stages[stages.len() - 1].out_channels;
    let head = efficientnet_lite::HEAD_CHANNELS;
    net.push_named(
        "_conv_head",
        conv([head, last, 1, 1], Conv2dParams::default(), &mut rng)?,
    );
    net.push_named("_bn1", BnAct::new(head, EPS, MOM, act));
    net.push_named("pool", GlobalAvgPool::new());
    net.push_named("_dropout", Dropout::new(spec.dropout, spec.seed ^ 0x5EED)?);
    net.push_named("_fc", linear_uniform(head, spec.classes, &mut rng)?);
    Ok(net)
}
