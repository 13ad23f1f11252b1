//! Property tests of the convolution gradients (`dsconv::grad`, `Conv2d::backward`)
//! against the f64 reference `dsconv::reference::conv2d_backward` over random geometries —
//! batch 1–2, channels 1–12 with any dividing group count and 1–3 output channels per
//! group (so depthwise with multipliers), sizes 1–11, kernels 1–4, stride and dilation 1–3
//! per axis, every padding form and mode — in both layouts, on one and two threads (which
//! must agree bitwise): each gradient within `1e-5 · max|reference|`. Where the geometry
//! is rejected the gradients return the same error. Then larger fixed cases whose work is
//! really split over threads, the pointwise GEMM path over several pixel blocks, and bad
//! input.
//!
//! Seeded: a fixed RNG seed, so every run checks the same cases.

mod common;

use common::prop::{config, mode_strategy, padding_strategy, two_threads};
use common::{random_tensor, random_vec, relative_error};
use dsconv::{
    grad, reference, Activation, Conv2d, Conv2dParams, ConvGeometry, Error, Executor, Layout,
    Padding, PaddingMode, Tensor,
};
use proptest::prelude::*;

/// The seed of every property test here.
const SEED: u64 = 0x0d5c_0012;

/// Every gradient must be within this fraction of the reference's largest magnitude.
const TOLERANCE: f64 = 1e-5;

/// The divisors of `n`, smallest first.
fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

/// The three gradients of one case, each as a tensor (the bias as `[1, C_out, 1, 1]`).
fn as_tensors(g: grad::Conv2dGrads) -> [Tensor; 3] {
    let bias = g.bias.expect("a bias gradient");
    let n = bias.len();
    [
        g.input,
        g.weight,
        Tensor::from_nchw(bias, [1, n, 1, 1]).unwrap(),
    ]
}

/// Runs the layer's backward and the free functions in `layout` on `exec`.
fn run(
    layer: &Conv2d,
    x: &Tensor,
    dy: &Tensor,
    layout: Layout,
    exec: &Executor,
) -> dsconv::Result<[Tensor; 3]> {
    let (x, dy) = (x.to_layout(layout), dy.to_layout(layout));
    let grads = layer.backward(&x, &dy, exec)?;
    let weight = Tensor::from_nchw(layer.weight().to_vec(), layer.weight_dims())?;
    let params = layer.params();
    // The free functions compute the same thing by the same code: bitwise equal.
    let dx = grad::conv2d_input(x.logical_dims(), &weight, &dy, params, layout, exec)?;
    let dw = grad::conv2d_weight(&x, layer.weight_dims(), &dy, params, exec)?;
    let db = grad::conv2d_bias(&dy)?;
    assert_eq!(dx.layout(), layout);
    assert_eq!(dx.data(), grads.input.data(), "conv2d_input vs backward");
    assert_eq!(dw.data(), grads.weight.data(), "conv2d_weight vs backward");
    assert_eq!(Some(&db), grads.bias.as_ref(), "conv2d_bias vs backward");
    Ok(as_tensors(grads))
}

/// Checks every gradient against the reference (or its error) in both layouts, on one
/// and two threads.
fn check(
    layer: &Conv2d,
    x: &Tensor,
    dy_dims: Option<[usize; 4]>,
    expected: &Result<[Tensor; 3], Error>,
    seed: u64,
) -> Result<(), TestCaseError> {
    // An upstream gradient of the output's dims, or (when the geometry is invalid) of
    // any dims: the geometry's error comes first.
    let dy = random_tensor(dy_dims.unwrap_or([1, 1, 1, 1]), Layout::Nchw, seed ^ 7, 1.0);
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let one = run(layer, x, &dy, layout, &Executor::single());
        match (expected, &one) {
            (Err(want), Err(got)) => prop_assert_eq!(got, want, "{}", layout.name()),
            (Ok(want), Ok(got)) => {
                for (what, (w, g)) in ["input", "weight", "bias"].iter().zip(want.iter().zip(got)) {
                    let err = relative_error(g, w, 0.0);
                    prop_assert!(
                        err <= TOLERANCE,
                        "{} {what}: relative error {err:e}",
                        layout.name()
                    );
                }
            }
            (want, got) => prop_assert!(false, "{}: {got:?}, expected {want:?}", layout.name()),
        }
        let two = run(layer, x, &dy, layout, two_threads());
        let bits = |r: dsconv::Result<[Tensor; 3]>| r.map(|t| t.map(Tensor::into_data));
        prop_assert_eq!(
            bits(one),
            bits(two),
            "{}: 1 and 2 threads differ",
            layout.name()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(384, SEED))]

    /// Standard, grouped and depthwise (multiplier 1–3) convolution: every gradient
    /// against the reference.
    #[test]
    fn conv2d_gradients_match_reference(
        input in [1usize..=2, 1usize..=12, 1usize..=11, 1usize..=11],
        kernel in [1usize..=4, 1usize..=4],
        stride in [1usize..=3, 1usize..=3],
        dilation in [1usize..=3, 1usize..=3],
        padding in padding_strategy(),
        padding_mode in mode_strategy(),
        group_pick in 0usize..64,
        out_per_group in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let cin = input[1];
        let options = divisors(cin);
        // Depthwise in a third of the cases, any divisor otherwise.
        let groups = if group_pick % 3 == 0 { cin } else { options[group_pick % options.len()] };
        let cout = groups * out_per_group;
        let params = Conv2dParams { stride, dilation, padding, padding_mode, groups };
        let wdims = [cout, cin / groups, kernel[0], kernel[1]];
        let weight = Tensor::from_nchw(random_vec(seed ^ 1, wdims.iter().product(), 1.0), wdims)
            .unwrap();
        let layer = Conv2d::new(weight.clone(), Some(random_vec(seed ^ 2, cout, 1.0)), params)
            .unwrap();
        let x = random_tensor(input, Layout::Nchw, seed, 1.0);
        let geometry = ConvGeometry::new(input, wdims, &params);
        let dy_dims = geometry.as_ref().ok().map(|g| g.output_dims());
        let expected = match dy_dims {
            Some(d) => {
                let dy = random_tensor(d, Layout::Nchw, seed ^ 7, 1.0);
                reference::conv2d_backward(&x, &weight, &dy, &params).map(as_tensors)
            }
            None => Err(geometry.clone().unwrap_err()),
        };
        check(&layer, &x, dy_dims, &expected, seed)?;
    }

    /// Pointwise 1×1 (the GEMM path), more channels.
    #[test]
    fn pointwise_gradients_match_reference(
        input in [1usize..=2, 1usize..=40, 1usize..=9, 1usize..=9],
        cout in 1usize..=40,
        seed in any::<u64>(),
    ) {
        let cin = input[1];
        let weight = Tensor::from_nchw(random_vec(seed ^ 1, cout * cin, 1.0), [cout, cin, 1, 1])
            .unwrap();
        let layer = Conv2d::new(weight.clone(), Some(vec![0.0; cout]), Conv2dParams::default())
            .unwrap();
        let x = random_tensor(input, Layout::Nchw, seed, 1.0);
        let out = [input[0], cout, input[2], input[3]];
        let dy = random_tensor(out, Layout::Nchw, seed ^ 7, 1.0);
        let expected =
            reference::conv2d_backward(&x, &weight, &dy, &Conv2dParams::default()).map(as_tensors);
        check(&layer, &x, Some(out), &expected, seed)?;
    }
}

/// Cases large enough that the executor splits the work (input rows, output channels,
/// the pointwise GEMM's columns, several pointwise pixel blocks): 1, 2 and 3 threads
/// bitwise equal, and all within tolerance of the reference.
#[test]
fn large_cases_split_over_threads_bitwise_identical() {
    let cases = [
        // Dense 3×3, asymmetric reflect padding.
        (
            [2, 16, 33, 31],
            [32, 16, 3, 3],
            Conv2dParams::default()
                .with_padding(Padding::asymmetric(1, 2, 0, 1))
                .with_padding_mode(PaddingMode::Reflect),
        ),
        // Depthwise 3×3 stride 2, TF same, replicate.
        (
            [4, 48, 40, 37],
            [48, 1, 3, 3],
            Conv2dParams::default()
                .with_stride(2)
                .with_padding(Padding::Same)
                .with_padding_mode(PaddingMode::Replicate)
                .with_groups(48),
        ),
        // Depthwise 5×5 with multiplier 2, circular.
        (
            [1, 24, 30, 29],
            [48, 1, 5, 5],
            Conv2dParams::default()
                .with_padding(Padding::symmetric(2))
                .with_padding_mode(PaddingMode::Circular)
                .with_groups(24),
        ),
        // Pointwise over 3·50·57 = 8,550 pixels: three pixel blocks of 4,096, dW = dyᵀ·x.
        ([3, 40, 50, 57], [24, 40, 1, 1], Conv2dParams::default()),
        // The same with more outputs than inputs: the GEMM yields dWᵀ.
        ([3, 24, 50, 57], [40, 24, 1, 1], Conv2dParams::default()),
    ];
    for (k, (input, wdims, params)) in cases.into_iter().enumerate() {
        let weight =
            Tensor::from_nchw(random_vec(k as u64, wdims.iter().product(), 1.0), wdims).unwrap();
        let layer = Conv2d::new(weight.clone(), Some(vec![0.0; wdims[0]]), params).unwrap();
        let x = random_tensor(input, Layout::Nchw, 100 + k as u64, 1.0);
        let g = layer.geometry(input).unwrap();
        let dy = random_tensor(g.output_dims(), Layout::Nchw, 200 + k as u64, 1.0);
        let want = as_tensors(reference::conv2d_backward(&x, &weight, &dy, &params).unwrap());
        let macs = layer.cost(input).unwrap().macs;
        for layout in [Layout::Nhwc, Layout::Nchw] {
            let (xl, dyl) = (x.to_layout(layout), dy.to_layout(layout));
            let one = as_tensors(layer.backward(&xl, &dyl, &Executor::single()).unwrap());
            for (what, (w, o)) in ["input", "weight", "bias"]
                .iter()
                .zip(want.iter().zip(&one))
            {
                let err = relative_error(o, w, 0.0);
                assert!(err <= TOLERANCE, "case {k} {what}: {err:e}");
            }
            for threads in [2, 3] {
                let exec = Executor::new(threads).unwrap();
                assert!(exec.tasks_for(macs) > 1, "case {k} must split");
                let many = as_tensors(layer.backward(&xl, &dyl, &exec).unwrap());
                for (a, b) in one.iter().zip(&many) {
                    assert_eq!(
                        a.data(),
                        b.data(),
                        "case {k}, {threads} threads, {}",
                        layout.name()
                    );
                }
            }
        }
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let params = Conv2dParams::default().with_padding(Padding::symmetric(1));
    let weight = Tensor::from_nchw(vec![0.5; 4 * 3 * 9], [4, 3, 3, 3]).unwrap();
    let layer = Conv2d::new(weight.clone(), None, params).unwrap();
    let x = Tensor::from_nchw(vec![1.0; 2 * 3 * 6 * 5], [2, 3, 6, 5]).unwrap();
    let exec = Executor::single();
    let shape =
        |what: &'static str| move |e: Error| matches!(e, Error::Shape { what: w, .. } if w == what);

    // grad_output of the wrong dims: channels, spatial size, batch.
    for dims in [[2, 3, 6, 5], [2, 4, 5, 5], [1, 4, 6, 5]] {
        let dy = Tensor::from_nchw(vec![0.0; dims.iter().product()], dims).unwrap();
        assert!(shape("conv2d grad_output")(
            layer.backward(&x, &dy, &exec).unwrap_err()
        ));
        let e = grad::conv2d_input(x.logical_dims(), &weight, &dy, &params, Layout::Nchw, &exec);
        assert!(shape("conv2d grad_output")(e.unwrap_err()));
        let e = grad::conv2d_weight(&x, weight.dims(), &dy, &params, &exec);
        assert!(shape("conv2d grad_output")(e.unwrap_err()));
    }
    let dy = Tensor::from_nchw(vec![0.0; 2 * 4 * 6 * 5], [2, 4, 6, 5]).unwrap();
    // The input's channels do not match the weight.
    let x4 = Tensor::from_nchw(vec![1.0; 2 * 4 * 6 * 5], [2, 4, 6, 5]).unwrap();
    assert!(shape("conv2d input")(
        layer.backward(&x4, &dy, &exec).unwrap_err()
    ));
    let e = grad::conv2d_weight(&x4, weight.dims(), &dy, &params, &exec).unwrap_err();
    assert!(shape("conv2d weight")(e));
    // Weight dims that do not fit the groups, or with a zero.
    let grouped = params.with_groups(2);
    let e = grad::conv2d_input([2, 4, 6, 5], &weight, &dy, &grouped, Layout::Nhwc, &exec);
    assert!(matches!(e.unwrap_err(), Error::Shape { .. }));
    let e = grad::conv2d_weight(&x, [0, 3, 3, 3], &dy, &params, &exec).unwrap_err();
    assert!(shape("conv2d weight")(e));
    let e = grad::conv2d_weight(&x, [3, 3, 3, 3], &dy, &params.with_groups(2), &exec);
    assert!(matches!(e.unwrap_err(), Error::InvalidParam { .. }));
    // Absurd sizes: an overflow from the geometry, before anything is allocated.
    let big = usize::MAX / 4;
    let e = grad::conv2d_input([big, 3, big, 5], &weight, &dy, &params, Layout::Nchw, &exec);
    assert!(matches!(e.unwrap_err(), Error::Overflow(_)));
    let e = grad::conv2d_weight(&x, [big, 3, 3, 3], &dy, &params, &exec);
    assert!(matches!(e.unwrap_err(), Error::Overflow(_)));
    // A kernel larger than the padded input.
    let e = grad::conv2d_weight(&x, [4, 3, 9, 3], &dy, &params, &exec);
    assert!(matches!(e.unwrap_err(), Error::Geometry(_)));
    // A fused activation is refused, not silently ignored.
    let relu = layer.clone().with_activation(Activation::Relu);
    let e = relu.backward(&x, &dy, &exec).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidParam {
                param: "activation",
                ..
            }
        ),
        "{e}"
    );
    // A layer without bias has no bias gradient; conv2d_bias sums any tensor's channels.
    assert!(layer.backward(&x, &dy, &exec).unwrap().bias.is_none());
    assert_eq!(
        grad::conv2d_bias(&dy.to_layout(Layout::Nhwc)).unwrap(),
        vec![0.0; 4]
    );
}
