//! Property tests: every layer type against `dsconv::reference` over random geometries —
//! batch 1–2, channels 1–20 with any dividing group count, sizes 1–17, kernels 1–5, stride
//! and dilation 1–3 per axis, every padding form (valid, symmetric, per-axis, asymmetric,
//! TF `same`) and every padding mode — in both layouts, on one and two threads (which must
//! agree bitwise). Where [`ConvGeometry::new`] rejects a geometry, the layer must return
//! that same error instead of panicking.
//!
//! Seeded: a fixed RNG seed, so every run checks the same cases.

mod common;

use common::prop::{config, mode_strategy, padding_strategy, two_threads};
use common::{random_vec, relative_error};
use dsconv::{
    reference, Activation, BatchNorm, Conv2d, Conv2dParams, ConvGeometry, DepthwiseConv2d,
    DepthwiseSeparableConv2d, Executor, Layout, Padding, PaddingMode, PointwiseConv2d, Tensor,
};
use proptest::prelude::*;

/// The seed of every property test here.
const SEED: u64 = 0x0d5c_0417;

/// Layers must be within this fraction of the largest reference magnitude.
const TOLERANCE: f64 = 1e-5;

fn activation_strategy() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Relu6),
        Just(Activation::Clamp {
            min: -0.5,
            max: 0.75
        }),
        Just(Activation::HardSwish),
        Just(Activation::Sigmoid),
        Just(Activation::Silu),
    ]
}

/// Spatial hyper-parameters: kernel, stride, dilation, padding, mode.
#[derive(Debug, Clone, Copy)]
struct Spatial {
    kernel: [usize; 2],
    params: Conv2dParams,
}

fn spatial_strategy() -> impl Strategy<Value = Spatial> {
    (
        [1usize..=5, 1usize..=5],
        [1usize..=3, 1usize..=3],
        [1usize..=3, 1usize..=3],
        padding_strategy(),
        mode_strategy(),
    )
        .prop_map(
            |(kernel, stride, dilation, padding, padding_mode)| Spatial {
                kernel,
                params: Conv2dParams {
                    stride,
                    dilation,
                    padding,
                    padding_mode,
                    groups: 1,
                },
            },
        )
}

/// Input `[N, C, H, W]` with N 1–2, C 1–20, H and W 1–17.
fn input_strategy() -> impl Strategy<Value = [usize; 4]> {
    [1usize..=2, 1usize..=20, 1usize..=17, 1usize..=17]
}

fn input_tensor(dims: [usize; 4], seed: u64, scale: f32) -> Tensor {
    common::random_tensor(dims, Layout::Nchw, seed, scale)
}

/// Largest absolute value, in f64.
fn max_abs(t: &Tensor) -> f64 {
    common::max_abs(t.data().iter().map(|&v| v as f64))
}

/// Runs `forward` in both layouts and on one and two threads, and checks it against
/// `expected` (the reference output, or the geometry's error) within `TOLERANCE` of
/// `max(max|expected|, scale_floor)`.
fn check_layer(
    x: &Tensor,
    expected: &Result<Tensor, dsconv::Error>,
    scale_floor: f64,
    forward: impl Fn(&Tensor, &Executor) -> dsconv::Result<Tensor>,
) -> Result<(), TestCaseError> {
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let input = x.to_layout(layout);
        let one = forward(&input, &Executor::single());
        match (expected, &one) {
            (Err(want), Err(got)) => {
                prop_assert_eq!(got, want, "{} error", layout.name());
                continue;
            }
            (Err(want), Ok(_)) => prop_assert!(false, "{}: Ok, expected {want}", layout.name()),
            (Ok(_), Err(got)) => prop_assert!(false, "{}: unexpected error {got}", layout.name()),
            (Ok(want), Ok(got)) => {
                prop_assert_eq!(got.layout(), layout);
                let err = relative_error(got, want, scale_floor);
                prop_assert!(
                    err <= TOLERANCE,
                    "{}: relative error {err:e} > {TOLERANCE:e}",
                    layout.name()
                );
            }
        }
        let two = forward(&input, two_threads());
        prop_assert_eq!(
            one.map(Tensor::into_data),
            two.map(Tensor::into_data),
            "{}: 1 and 2 threads differ",
            layout.name()
        );
    }
    Ok(())
}

/// The divisors of `n`, smallest first.
fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

proptest! {
    #![proptest_config(config(1024, SEED))]

    /// Standard and grouped convolution, with optional bias, folded BatchNorm and fused
    /// activation: `Conv2d` against the reference.
    #[test]
    fn conv2d_matches_reference(
        input in input_strategy(),
        spatial in spatial_strategy(),
        group_pick in 0usize..64,
        out_per_group in 1usize..=3,
        stage in stage_strategy(),
        seed in any::<u64>(),
    ) {
        let cin = input[1];
        let options = divisors(cin);
        let groups = options[group_pick % options.len()];
        let cout = groups * out_per_group;
        let params = spatial.params.with_groups(groups);
        let [kh, kw] = spatial.kernel;
        let wdims = [cout, cin / groups, kh, kw];
        let weight = Tensor::from_nchw(random_vec(seed ^ 1, wdims.iter().product(), 1.0), wdims)
            .unwrap();
        let bias = stage.bias.then(|| random_vec(seed ^ 2, cout, 1.0));
        let bn = stage.batchnorm.map(|eps| random_batchnorm(seed ^ 3, cout, eps));
        let x = input_tensor(input, seed, 1.0);
        let mut layer = Conv2d::new(weight.clone(), bias.clone(), params).unwrap();
        if let Some(bn) = &bn {
            layer = layer.with_batchnorm(bn).unwrap();
        }
        let layer = layer.with_activation(stage.activation);
        let geometry = ConvGeometry::new(input, wdims, &params);
        let reference_with = |activation: Activation| {
            reference::conv2d(&x, &weight, bias.as_deref(), &params).map(|mut y| {
                reference::batchnorm_activation(&mut y, bn.as_ref(), activation);
                y
            })
        };
        let expected = reference_with(stage.activation);
        prop_assert_eq!(geometry.is_ok(), expected.is_ok());
        if let Err(e) = &geometry {
            prop_assert_eq!(expected.as_ref().unwrap_err(), e);
        }
        // As for the separable block: a clipping activation can hide the sums' magnitude.
        let scale_floor = reference_with(Activation::None).map_or(0.0, |z| 1.5 * max_abs(&z));
        check_layer(&x, &expected, scale_floor, |x, exec| layer.forward_with(x, exec))?;
    }

    /// Depthwise convolution with depth multiplier 1–3.
    #[test]
    fn depthwise_matches_reference(
        input in input_strategy(),
        spatial in spatial_strategy(),
        multiplier in 1usize..=3,
        bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let channels = input[1];
        let cout = channels * multiplier;
        let [kh, kw] = spatial.kernel;
        let wdims = [cout, 1, kh, kw];
        let weight = Tensor::from_nchw(random_vec(seed ^ 1, wdims.iter().product(), 1.0), wdims)
            .unwrap();
        let bias = bias.then(|| random_vec(seed ^ 2, cout, 1.0));
        let x = input_tensor(input, seed, 1.0);
        // The layer sets groups itself; the reference is told explicitly.
        let layer =
            DepthwiseConv2d::with_multiplier(weight.clone(), multiplier, bias.clone(), spatial.params)
                .unwrap();
        prop_assert_eq!(layer.channels(), channels);
        prop_assert_eq!(layer.multiplier(), multiplier);
        let params = spatial.params.with_groups(channels);
        let expected = reference::conv2d(&x, &weight, bias.as_deref(), &params);
        prop_assert_eq!(ConvGeometry::new(input, wdims, &params).is_ok(), expected.is_ok());
        check_layer(&x, &expected, 0.0, |x, exec| layer.forward_with(x, exec))?;
    }

    /// Pointwise 1×1 convolution.
    #[test]
    fn pointwise_matches_reference(
        input in input_strategy(),
        cout in 1usize..=40,
        bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let cin = input[1];
        let weight = Tensor::from_nchw(random_vec(seed ^ 1, cout * cin, 1.0), [cout, cin, 1, 1])
            .unwrap();
        let bias = bias.then(|| random_vec(seed ^ 2, cout, 1.0));
        let x = input_tensor(input, seed, 1.0);
        let layer = PointwiseConv2d::new(weight.clone(), bias.clone()).unwrap();
        prop_assert_eq!((layer.in_channels(), layer.out_channels()), (cin, cout));
        let expected =
            reference::conv2d(&x, &weight, bias.as_deref(), &Conv2dParams::default());
        prop_assert!(expected.is_ok());
        check_layer(&x, &expected, 0.0, |x, exec| layer.forward_with(x, exec))?;
    }
}

/// One stage's optional extras: bias, BatchNorm (eps 1e-3 or 1e-5), activation.
#[derive(Debug, Clone, Copy)]
struct Stage {
    bias: bool,
    batchnorm: Option<f32>,
    activation: Activation,
}

fn stage_strategy() -> impl Strategy<Value = Stage> {
    (
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(1e-3f32)), Just(Some(1e-5f32))],
        activation_strategy(),
    )
        .prop_map(|(bias, batchnorm, activation)| Stage {
            bias,
            batchnorm,
            activation,
        })
}

fn random_batchnorm(seed: u64, channels: usize, eps: f32) -> BatchNorm {
    let mut rng = dsconv::rng::SplitMix64::new(seed);
    let gamma = rng.vec(channels, 0.5, 1.5);
    let beta = rng.vec(channels, -0.5, 0.5);
    let mean = rng.vec(channels, -0.5, 0.5);
    let mut var = rng.vec(channels, 0.05, 2.0);
    var[0] = 1e-4; // small enough that eps matters
    BatchNorm::new(gamma, beta, mean, var, eps).unwrap()
}

proptest! {
    #![proptest_config(config(512, SEED))]

    /// The MobileNet block: depthwise (any geometry, multiplier) → bias/BN/activation →
    /// pointwise → bias/BN/activation, against the reference chain in f64.
    #[test]
    fn depthwise_separable_matches_reference(
        input in input_strategy(),
        spatial in spatial_strategy(),
        multiplier in 1usize..=2,
        cout in 1usize..=24,
        dw_stage in stage_strategy(),
        pw_stage in stage_strategy(),
        seed in any::<u64>(),
    ) {
        let channels = input[1];
        let mid = channels * multiplier;
        let [kh, kw] = spatial.kernel;
        let dw_dims = [mid, 1, kh, kw];
        let dw_w = Tensor::from_nchw(random_vec(seed ^ 1, mid * kh * kw, 1.0), dw_dims).unwrap();
        let dw_b = dw_stage.bias.then(|| random_vec(seed ^ 2, mid, 1.0));
        let dw_bn = dw_stage.batchnorm.map(|eps| random_batchnorm(seed ^ 3, mid, eps));
        let pw_w = Tensor::from_nchw(random_vec(seed ^ 4, cout * mid, 1.0), [cout, mid, 1, 1])
            .unwrap();
        let pw_b = pw_stage.bias.then(|| random_vec(seed ^ 5, cout, 1.0));
        let pw_bn = pw_stage.batchnorm.map(|eps| random_batchnorm(seed ^ 6, cout, eps));

        let mut dw = DepthwiseConv2d::with_multiplier(dw_w.clone(), multiplier, dw_b.clone(),
                                                      spatial.params).unwrap();
        if let Some(bn) = &dw_bn {
            dw = dw.with_batchnorm(bn).unwrap();
        }
        let dw = dw.with_activation(dw_stage.activation);
        let mut pw = PointwiseConv2d::new(pw_w.clone(), pw_b.clone()).unwrap();
        if let Some(bn) = &pw_bn {
            pw = pw.with_batchnorm(bn).unwrap();
        }
        let pw = pw.with_activation(pw_stage.activation);
        let block = DepthwiseSeparableConv2d::new(dw, pw).unwrap();

        // Scaled so that ReLU6 and the clamp actually clip.
        let x = input_tensor(input, seed, 3.0);
        let dw_params = spatial.params.with_groups(channels);
        let chain = |last: Activation| {
            reference::conv2d(&x, &dw_w, dw_b.as_deref(), &dw_params).and_then(|mut y| {
                reference::batchnorm_activation(&mut y, dw_bn.as_ref(), dw_stage.activation);
                let mut z =
                    reference::conv2d(&y, &pw_w, pw_b.as_deref(), &Conv2dParams::default())?;
                reference::batchnorm_activation(&mut z, pw_bn.as_ref(), last);
                Ok(z)
            })
        };
        let expected = chain(pw_stage.activation);
        // A clipping last activation (ReLU6 to ≤ 6) can make the output far smaller than the
        // sums that produced it; f32 rounding scales with those sums, i.e. with the output
        // before the activation (every activation here is at most 1.5-Lipschitz).
        let scale_floor = chain(Activation::None).map_or(0.0, |z| 1.5 * max_abs(&z));
        prop_assert_eq!(ConvGeometry::new(input, dw_dims, &dw_params).is_ok(), expected.is_ok());
        if let Ok(y) = &expected {
            let cost = block.cost(input).unwrap();
            prop_assert_eq!(y.logical_dims()[1], cout);
            prop_assert!(cost.macs > 0);
        }
        check_layer(&x, &expected, scale_floor, |x, exec| block.forward_with(x, exec))?;
    }
}

/// Large enough (≈ 4.7 M MACs) that the executor really splits rows across threads: the
/// result must not depend on the thread count, for either layout.
#[test]
fn threads_split_rows_bitwise_identical_to_one_thread() {
    let x = input_tensor([2, 16, 33, 31], 7, 1.0);
    let weight = Tensor::from_nchw(random_vec(8, 32 * 16 * 9, 1.0), [32, 16, 3, 3]).unwrap();
    let params = Conv2dParams::default()
        .with_padding(Padding::asymmetric(1, 2, 0, 1))
        .with_padding_mode(PaddingMode::Reflect);
    let layer = Conv2d::new(weight.clone(), Some(random_vec(9, 32, 1.0)), params).unwrap();
    let expected = reference::conv2d(&x, &weight, layer.bias(), &params).unwrap();
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let input = x.to_layout(layout);
        let one = layer.forward(&input).unwrap();
        assert!(relative_error(&one, &expected, 0.0) <= TOLERANCE);
        for threads in [2, 3, 5] {
            let exec = Executor::new(threads).unwrap();
            assert!(exec.tasks_for(layer.cost(x.logical_dims()).unwrap().macs) > 1);
            let many = layer.forward_with(&input, &exec).unwrap();
            assert_eq!(
                one.data(),
                many.data(),
                "{threads} threads, {}",
                layout.name()
            );
        }
    }
}
