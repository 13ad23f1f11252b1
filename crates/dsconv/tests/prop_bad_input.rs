//! Bad parameters never panic: arbitrary (mostly invalid) shapes, groups, strides,
//! dilations, paddings (including absurd ones), padding modes, biases, BatchNorms and
//! multipliers go through every layer constructor and `forward`, and each call returns
//! `Ok` or a typed [`dsconv::Error`]. Where a layer accepts, it must agree with
//! [`ConvGeometry::new`] and with the reference.
//!
//! Absurd paddings are chosen so that no test ever really allocates much: either the
//! sizes overflow, or the output would need more bytes than any address space has
//! (≥ 2⁵⁸ bytes), so an allocation attempt fails at once.

mod common;

use common::prop::config;
use dsconv::{
    reference, Activation, BatchNorm, Conv2d, Conv2dParams, ConvGeometry, DepthwiseConv2d,
    DepthwiseSeparableConv2d, Error, Layout, Padding, PaddingMode, PointwiseConv2d, Tensor,
};
use proptest::prelude::*;

/// A padding amount: usually small, sometimes absurd.
fn pad_amount() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..8,
        1 => Just(1usize << 58),
        1 => Just(1usize << 62),
        1 => Just(usize::MAX / 2),
        1 => Just(usize::MAX),
    ]
}

fn padding_strategy() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        pad_amount().prop_map(Padding::symmetric),
        (pad_amount(), pad_amount()).prop_map(|(h, w)| Padding::per_axis(h, w)),
        (pad_amount(), pad_amount(), pad_amount(), pad_amount())
            .prop_map(|(t, b, l, r)| Padding::asymmetric(t, b, l, r)),
        // One absurd side only: the output fits `usize` but not memory.
        (pad_amount(), 0usize..3).prop_map(|(t, p)| Padding::asymmetric(t, p, p, p)),
    ]
}

fn mode_strategy() -> impl Strategy<Value = PaddingMode> {
    prop_oneof![
        Just(PaddingMode::Zeros),
        Just(PaddingMode::Reflect),
        Just(PaddingMode::Replicate),
        Just(PaddingMode::Circular),
    ]
}

/// Mostly valid, sometimes zero.
fn count(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![9 => 1usize..=max, 1 => Just(0usize)]
}

/// A stride: mostly small, sometimes zero, sometimes huge (with an absurd padding, a huge
/// stride keeps the output small, so the forward pass really runs on that geometry).
fn stride() -> impl Strategy<Value = usize> {
    prop_oneof![
        9 => count(3),
        1 => Just(1usize << 62),
        1 => Just(1usize << 63),
    ]
}

/// Possibly invalid hyper-parameters: zero strides, dilations and groups included.
fn params_strategy() -> impl Strategy<Value = Conv2dParams> {
    (
        [stride(), stride()],
        [count(3), count(3)],
        padding_strategy(),
        mode_strategy(),
        prop_oneof![4 => Just(1usize), 3 => count(4)],
    )
        .prop_map(
            |(stride, dilation, padding, padding_mode, groups)| Conv2dParams {
                stride,
                dilation,
                padding,
                padding_mode,
                groups,
            },
        )
}

/// Small dimensions, zero sometimes.
fn dims_strategy() -> impl Strategy<Value = [usize; 4]> {
    [count(3), count(6), count(7), count(7)]
}

/// A size for the geometry alone (no tensor is built): small or huge.
fn absurd_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..9,
        Just(1usize << 31),
        Just(1usize << 62),
        Just(usize::MAX)
    ]
}

fn tensor(dims: [usize; 4], layout: Layout) -> Tensor {
    let n: usize = dims.iter().product();
    common::random_tensor(dims, layout, n as u64, 1.0)
}

/// Checks a forward result against the geometry and the reference: either the same error
/// or an output of the right shape and values.
fn check_forward(
    got: dsconv::Result<Tensor>,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    params: &Conv2dParams,
) -> Result<(), TestCaseError> {
    let geometry = ConvGeometry::new(x.logical_dims(), weight.dims(), params);
    match (geometry, got) {
        (Ok(g), Ok(y)) => {
            prop_assert_eq!(y.logical_dims(), g.output_dims());
            prop_assert_eq!(y.layout(), x.layout());
            let want = reference::conv2d(x, weight, bias, params).unwrap();
            let scale = want.max_abs().max(f32::MIN_POSITIVE);
            prop_assert!(y.max_abs_diff(&want).unwrap() <= 1e-5 * scale);
        }
        // An output too large to allocate is the one error the geometry cannot foresee.
        (Ok(_), Err(Error::Allocation { .. })) => {}
        (Ok(_), Err(e)) => prop_assert!(false, "geometry accepts but forward fails: {e}"),
        (Err(want), Err(got)) => prop_assert_eq!(got, want),
        (Err(e), Ok(_)) => prop_assert!(false, "geometry rejects ({e}) but forward succeeds"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2048, 0x0bad_1a9e))]

    /// `Conv2d::new` and `forward` on arbitrary shapes and parameters.
    #[test]
    fn conv2d_never_panics(
        input in dims_strategy(),
        weight in dims_strategy(),
        params in params_strategy(),
        bias_len in prop::option::of(0usize..8),
        nhwc in any::<bool>(),
        match_channels in prop::bool::weighted(0.8),
    ) {
        let mut input = input;
        if match_channels {
            input[1] = weight[1] * params.groups;
        }
        let layout = if nhwc { Layout::Nhwc } else { Layout::Nchw };
        let x = tensor(layout.dims_from_logical(input), layout);
        let w = tensor(weight, Layout::Nchw);
        let bias = bias_len.map(|n| vec![0.5f32; n]);
        match Conv2d::new(w.clone(), bias.clone(), params) {
            Ok(layer) => {
                prop_assert_eq!(layer.out_channels(), weight[0]);
                let got = layer.forward(&x);
                if input[1] != layer.in_channels() {
                    prop_assert!(matches!(got, Err(Error::Shape { .. })), "{got:?}");
                } else {
                    check_forward(got, &x, &w, bias.as_deref(), &params)?;
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // The reference is as careful as the layers.
        let _ = reference::conv2d(&x, &w, bias.as_deref(), &params);
    }

    /// `DepthwiseConv2d::with_multiplier`, `PointwiseConv2d::new`, BatchNorm folding and
    /// `DepthwiseSeparableConv2d::new` on arbitrary shapes.
    #[test]
    fn typed_layers_never_panic(
        input in dims_strategy(),
        dw_weight in dims_strategy(),
        pw_weight in dims_strategy(),
        params in params_strategy(),
        multiplier in 0usize..4,
        bias_len in prop::option::of(0usize..8),
        bn_len in prop::option::of(0usize..8),
        eps in prop_oneof![Just(1e-5f32), Just(0.0f32), Just(-1.0f32), Just(f32::NAN)],
        nhwc in any::<bool>(),
        match_channels in prop::bool::weighted(0.8),
    ) {
        let (mut input, mut dw_weight, mut pw_weight) = (input, dw_weight, pw_weight);
        if match_channels {
            // Mostly a consistent block: [C·m, 1, kH, kW] then [C_out, C·m, 1, 1].
            let m = multiplier.max(1);
            dw_weight[0] = input[1] * m;
            dw_weight[1] = 1;
            pw_weight[1] = dw_weight[0];
            pw_weight[2] = 1;
            pw_weight[3] = 1;
        }
        if match_channels && input[1] == 0 {
            input[1] = 1;
            dw_weight[0] = multiplier.max(1);
            pw_weight[1] = dw_weight[0];
        }
        let layout = if nhwc { Layout::Nhwc } else { Layout::Nchw };
        let x = tensor(layout.dims_from_logical(input), layout);
        let bias = bias_len.map(|n| vec![0.25f32; n]);
        let bn = bn_len.and_then(|n| {
            let v = vec![1.0f32; n];
            BatchNorm::new(v.clone(), v.clone(), v.clone(), v, eps).ok()
        });
        let dw = DepthwiseConv2d::with_multiplier(
            tensor(dw_weight, Layout::Nchw), multiplier, bias.clone(), params,
        );
        let pw = PointwiseConv2d::new(tensor(pw_weight, Layout::Nchw), bias.clone());
        if let Ok(dw) = &dw {
            let got = dw.forward(&x);
            if input[1] == dw.channels() {
                let w = tensor(dw_weight, Layout::Nchw);
                check_forward(got, &x, &w, bias.as_deref(), &params.with_groups(dw.channels()))?;
            } else {
                prop_assert!(got.is_err());
            }
        }
        if let Ok(pw) = &pw {
            let got = pw.forward(&x);
            if input[1] == pw.in_channels() {
                let w = tensor(pw_weight, Layout::Nchw);
                check_forward(got, &x, &w, bias.as_deref(), &Conv2dParams::default())?;
            } else {
                prop_assert!(got.is_err());
            }
        }
        if let (Ok(dw), Ok(pw)) = (dw, pw) {
            let (dw, pw) = match &bn {
                Some(bn) => (dw.with_batchnorm(bn), pw.with_batchnorm(bn)),
                None => (Ok(dw), Ok(pw)),
            };
            if let (Ok(dw), Ok(pw)) = (dw, pw) {
                let dw = dw.with_activation(Activation::Relu6);
                let pw = pw.with_activation(Activation::HardSwish);
                if let Ok(block) = DepthwiseSeparableConv2d::new(dw, pw) {
                    let _ = block.forward(&x);
                }
            }
        }
    }

    /// The geometry itself on arbitrary (huge included) sizes.
    #[test]
    fn geometry_never_panics_on_absurd_sizes(
        input in [absurd_size(), absurd_size(), absurd_size(), absurd_size()],
        weight in [absurd_size(), absurd_size(), absurd_size(), absurd_size()],
        params in params_strategy(),
    ) {
        if let Ok(g) = ConvGeometry::new(input, weight, &params) {
            prop_assert!(g.out_h() >= 1 && g.out_w() >= 1);
            let _ = (g.interior_rows(), g.interior_cols());
        }
    }
}
