//! NaN and ±Inf go through every path as in PyTorch, at every instruction-set tier and on
//! one and two threads: a NaN in the input is NaN in every output that reads it, whatever
//! the activation (ReLU, ReLU6 and clamp used to turn it into their bound: `max(NaN, 0)`
//! on x86 returns the second operand, and `f32::max` ignores NaN), and in no output that
//! does not read it; ±Inf come out as the f64 reference gives them (ReLU(−Inf) = 0,
//! ReLU6(+Inf) = 6, hard-swish(−Inf) = NaN, ...; see `dsconv::Activation`).
//!
//! Paths: the pointwise GEMM epilogue with each activation and its residual add, the
//! depthwise kernels (3×3 / 5×5 at stride 1 and 2, the general loop, the crowded-row
//! copy), the dense stem, the direct loop, BatchNorm, the fused separable block, the fused
//! inverted residual (banded and not), global average pooling, the classifier, and whole
//! networks (EfficientNet-Lite0, MobileNetV2, MobileNetV1 with random weights).

mod common;

use common::executors;
use dsconv::blocks::{Classifier, InvertedResidual};
use dsconv::kernels::{available_isas, PackedGemm};
use dsconv::layers::GlobalAvgPool;
use dsconv::models::Network;
use dsconv::rng::SplitMix64;
use dsconv::{
    reference, Activation, BatchNorm, Conv2d, Conv2dParams, DepthwiseConv2d,
    DepthwiseSeparableConv2d, Executor, Layout, Padding, PaddingMode, PointwiseConv2d, Tensor,
};

const ACTIVATIONS: [Activation; 7] = [
    Activation::None,
    Activation::Relu,
    Activation::Relu6,
    Activation::Clamp {
        min: -0.5,
        max: 0.75,
    },
    Activation::HardSwish,
    Activation::Sigmoid,
    Activation::Silu,
];

/// Random values in [−1, 1) with NaN at the first element (a corner of channel 0) and at
/// the centre of the last channel of the last image, +Inf at the last pixel of channel
/// C/2 of the last image and −Inf at the bottom-left pixel of channel C/3 of the first
/// (the first of these that lands on an element wins).
fn special_input(dims: [usize; 4], seed: u64) -> Tensor {
    let [n, c, h, w] = dims;
    let specials = [
        ([0, 0, 0, 0], f32::NAN),
        ([n - 1, c - 1, h / 2, w / 2], f32::NAN),
        ([n - 1, c / 2, h - 1, w - 1], f32::INFINITY),
        ([0, c / 3, h - 1, 0], f32::NEG_INFINITY),
    ];
    let mut rng = SplitMix64::new(seed);
    Tensor::from_fn(dims, Layout::Nhwc, |ni, ci, y, x| {
        let v = rng.uniform(-1.0, 1.0);
        specials
            .iter()
            .find(|(at, _)| *at == [ni, ci, y, x])
            .map_or(v, |s| s.1)
    })
    .unwrap()
}

fn random_nchw(rng: &mut SplitMix64, dims: [usize; 4]) -> Tensor {
    Tensor::from_nchw(rng.vec(dims.iter().product(), -1.0, 1.0), dims).unwrap()
}

/// `got` against the reference `want` element by element: NaN where `want` is NaN, the
/// same infinity where it is infinite, else finite and within `1e-4 · max|finite want|`.
/// Also asserts that some outputs are NaN and some finite: the planted NaN shows, and
/// does not spread to the outputs that do not read it.
fn check(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.logical_dims(), want.logical_dims(), "{what}: dims");
    let got = got.to_layout(want.layout());
    let scale = want
        .data()
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f32, |m, v| m.max(v.abs()));
    let (mut nans, mut finite) = (0, 0);
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            g.is_finite() && (g - w).abs() <= 1e-4 * scale
        };
        assert!(ok, "{what}: element {i} is {g}, want {w}");
        nans += g.is_nan() as usize;
        finite += g.is_finite() as usize;
    }
    assert!(nans > 0, "{what}: no NaN output");
    assert!(finite > 0, "{what}: no finite output");
}

/// Wherever the convolution before its activation (`raw`) is NaN, `got` is NaN: every
/// activation keeps NaN (this, unlike [`check`], does not lean on the reference's
/// activation).
fn assert_nan_kept(got: &Tensor, raw: &Tensor, what: &str) {
    let got = got.to_layout(raw.layout());
    for (i, (&g, &r)) in got.data().iter().zip(raw.data()).enumerate() {
        assert!(
            !r.is_nan() || g.is_nan(),
            "{what}: element {i}: NaN became {g}"
        );
    }
}

/// A layer's own (folded) weight as a PyTorch-order tensor.
fn weight_of(conv: &Conv2d) -> Tensor {
    Tensor::from_nchw(conv.weight().to_vec(), conv.weight_dims()).unwrap()
}

/// The reference for one layer: (before the activation, after it).
fn reference_stage(conv: &Conv2d, x: &Tensor) -> (Tensor, Tensor) {
    let raw = reference::conv2d(x, &weight_of(conv), conv.bias(), conv.params()).unwrap();
    let mut y = raw.clone();
    reference::batchnorm_activation(&mut y, None, conv.activation());
    (raw, y)
}

/// Every tier, one and two threads.
fn each_executor(mut f: impl FnMut(&Executor, &str)) {
    for &isa in available_isas() {
        let (one, two) = executors(isa);
        for exec in [&one, &two] {
            f(exec, &format!("[{} {}t]", isa.name(), exec.threads()));
        }
    }
}

/// One layer on `x` against the reference, everywhere.
fn check_conv(conv: &Conv2d, x: &Tensor, what: &str) {
    let (raw, want) = reference_stage(conv, x);
    each_executor(|exec, at| {
        let got = conv.forward_with(x, exec).unwrap();
        let what = format!("{what} {} {at}", conv.activation().name());
        check(&got, &want, &what);
        assert_nan_kept(&got, &raw, &what);
    });
}

#[test]
fn pointwise_gemm_epilogue_with_each_activation() {
    let mut rng = SplitMix64::new(1);
    // Ragged row and column tiles; a reduction over several K blocks.
    for (i, &(cin, cout, h, w)) in [(19, 37, 3, 13), (8, 16, 2, 8), (300, 24, 2, 7)]
        .iter()
        .enumerate()
    {
        for act in ACTIVATIONS {
            let weight = random_nchw(&mut rng, [cout, cin, 1, 1]);
            let bias = rng.vec(cout, -1.0, 1.0);
            let conv = Conv2d::new(weight, Some(bias), Conv2dParams::default())
                .unwrap()
                .with_activation(act);
            let x = special_input([2, cin, h, w], i as u64);
            check_conv(&conv, &x, &format!("pointwise {cin}->{cout}"));
        }
    }
}

#[test]
fn depthwise_kernels_specialised_general_and_crowded() {
    let mut rng = SplitMix64::new(2);
    // (C, k, stride, dilation, H, W): the 3×3 and 5×5 kernels at strides 1 and 2, the
    // general loop (7×7, dilation 2), and C = 256 (rows copied to C + 16 floats first).
    for &(c, k, s, d, h, w) in &[
        (19, 3, 1, 1, 9, 11),
        (19, 3, 2, 1, 9, 11),
        (24, 5, 1, 1, 8, 10),
        (17, 5, 2, 1, 11, 9),
        (9, 7, 1, 1, 8, 9),
        (16, 3, 1, 2, 9, 8),
        (256, 3, 1, 1, 6, 5),
    ] {
        for act in ACTIVATIONS {
            let weight = random_nchw(&mut rng, [c, 1, k, k]);
            let bias = rng.vec(c, -1.0, 1.0);
            let params = Conv2dParams::default()
                .with_stride(s)
                .with_dilation(d)
                .with_padding(Padding::symmetric(d * (k / 2)));
            let dw = DepthwiseConv2d::new(weight, Some(bias), params)
                .unwrap()
                .with_activation(act);
            let x = special_input([2, c, h, w], c as u64);
            let what = format!("depthwise C={c} {k}x{k} s{s} d{d}");
            check_conv(dw.as_conv2d(), &x, &what);
        }
    }
}

#[test]
fn dense_stem_and_direct_loop() {
    let mut rng = SplitMix64::new(3);
    let pad1 = Conv2dParams::default().with_padding(Padding::symmetric(1));
    // (weight dims, params, input dims): the stem (3→16, 3×3, stride 2), a dense 3×3, and
    // two that only the direct loop runs (grouped; reflect padding).
    for (dims, params, input) in [
        ([16, 3, 3, 3], pad1.with_stride(2), [2, 3, 15, 17]),
        ([12, 8, 3, 3], pad1, [1, 8, 7, 9]),
        ([6, 2, 3, 3], pad1.with_groups(2), [2, 4, 7, 6]),
        (
            [5, 5, 3, 3],
            pad1.with_padding_mode(PaddingMode::Reflect),
            [1, 5, 6, 7],
        ),
    ] {
        for act in ACTIVATIONS {
            let conv = Conv2d::new(
                random_nchw(&mut rng, dims),
                Some(rng.vec(dims[0], -1.0, 1.0)),
                params,
            )
            .unwrap()
            .with_activation(act);
            let x = special_input(input, dims[0] as u64);
            check_conv(
                &conv,
                &x,
                &format!("conv {dims:?} groups {}", params.groups),
            );
        }
    }
}

#[test]
fn batchnorm_folded_and_in_the_reference() {
    let mut rng = SplitMix64::new(4);
    let c = 12;
    let bn = BatchNorm::new(
        rng.vec(c, 0.5, 1.5),
        rng.vec(c, -0.2, 0.2),
        rng.vec(c, -0.2, 0.2),
        rng.vec(c, 0.5, 1.5),
        1e-3,
    )
    .unwrap();
    let weight = random_nchw(&mut rng, [c, 1, 3, 3]);
    let params = Conv2dParams::default().with_padding(Padding::symmetric(1));
    let x = special_input([1, c, 7, 8], 4);
    for act in ACTIVATIONS {
        let dw = DepthwiseConv2d::new(weight.clone(), None, params)
            .unwrap()
            .with_batchnorm(&bn)
            .unwrap()
            .with_activation(act);
        // The reference applies BatchNorm and the activation after the unfolded conv.
        let raw = reference::conv2d(&x, &weight, None, &params.with_groups(c)).unwrap();
        let mut want = raw.clone();
        reference::batchnorm_activation(&mut want, Some(&bn), act);
        each_executor(|exec, at| {
            let got = dw.forward_with(&x, exec).unwrap();
            let what = format!("depthwise + BatchNorm {} {at}", act.name());
            check(&got, &want, &what);
            assert_nan_kept(&got, &raw, &what);
        });
    }
}

#[test]
fn gemm_residual_add_carries_nan_and_inf_from_either_side() {
    let mut rng = SplitMix64::new(5);
    let (m, k, n) = (29, 33, 47);
    let w = rng.vec(k * n, -1.0, 1.0);
    let bias = rng.vec(n, -1.0, 1.0);
    let packed = PackedGemm::from_fn(k, n, Some(&bias), |kk, col| w[kk * n + col]).unwrap();
    let mut a = rng.vec(m * k, -1.0, 1.0);
    let mut res = rng.vec(m * n, -2.0, 2.0);
    a[3 * k + 5] = f32::NAN; // row 3 of the product
    a[7 * k] = f32::INFINITY; // row 7
    res[11 * n + 2] = f32::NAN;
    res[12 * n + 40] = f32::INFINITY;
    res[13 * n + 46] = f32::NEG_INFINITY;
    for act in ACTIVATIONS {
        let want: Vec<f32> = (0..m * n)
            .map(|i| {
                let (r, col) = (i / n, i % n);
                let acc = bias[col] as f64
                    + (0..k)
                        .map(|kk| a[r * k + kk] as f64 * w[kk * n + col] as f64)
                        .sum::<f64>();
                (act.apply_f64(acc) + res[i] as f64) as f32
            })
            .collect();
        let want = Tensor::from_nhwc(want, [1, m, 1, n]).unwrap();
        for isa in dsconv::kernels::available_tiers() {
            let mut c = vec![0.0; m * n];
            packed
                .run_add(isa, &a, k, m, &mut c, n, act, Some((&res, n)))
                .unwrap();
            let got = Tensor::from_nhwc(c, [1, m, 1, n]).unwrap();
            let what = format!("gemm + residual {} [{}]", act.name(), isa.name());
            check(&got, &want, &what);
            for col in 0..n {
                assert!(got.data()[3 * n + col].is_nan(), "{what}: row 3 col {col}");
            }
            assert!(got.data()[11 * n + 2].is_nan(), "{what}: residual NaN");
        }
    }
}

#[test]
fn fused_separable_block() {
    let mut rng = SplitMix64::new(6);
    for (i, &(c, cout, s)) in [(8, 16, 1), (17, 33, 2), (32, 24, 1)].iter().enumerate() {
        let act = ACTIVATIONS[i % ACTIVATIONS.len()];
        let params = Conv2dParams::default()
            .with_stride(s)
            .with_padding(Padding::symmetric(1));
        let dw = DepthwiseConv2d::new(
            random_nchw(&mut rng, [c, 1, 3, 3]),
            Some(rng.vec(c, -1.0, 1.0)),
            params,
        )
        .unwrap()
        .with_activation(act);
        let x = special_input([2, c, 9, 11], 6);
        let (_, mid) = reference_stage(dw.as_conv2d(), &x);
        for pw_act in ACTIVATIONS {
            let pw = PointwiseConv2d::new(
                random_nchw(&mut rng, [cout, c, 1, 1]),
                Some(rng.vec(cout, -1.0, 1.0)),
            )
            .unwrap()
            .with_activation(pw_act);
            let (raw, want) = reference_stage(pw.as_conv2d(), &mid);
            let block = DepthwiseSeparableConv2d::new(dw.clone(), pw).unwrap();
            each_executor(|exec, at| {
                let what = format!("separable C={c} s{s} {}/{} {at}", act.name(), pw_act.name());
                let fused = block.forward_with(&x, exec).unwrap();
                check(&fused, &want, &what);
                assert_nan_kept(&fused, &raw, &what);
                let unfused = block.forward_unfused_with(&x, exec).unwrap();
                check(&unfused, &want, &format!("{what} unfused"));
            });
        }
    }
}

/// An MBConv block with random weights and BatchNorm folded: ReLU6 after expand and
/// depthwise, a linear project.
fn inverted_residual(
    seed: u64,
    cin: usize,
    t: usize,
    cout: usize,
    stride: usize,
) -> InvertedResidual {
    let mut rng = SplitMix64::new(seed);
    let hidden = cin * t;
    let mut bn = |c: usize| {
        BatchNorm::new(
            rng.vec(c, 0.5, 1.5),
            rng.vec(c, -0.2, 0.2),
            rng.vec(c, -0.2, 0.2),
            rng.vec(c, 0.5, 1.5),
            1e-3,
        )
        .unwrap()
    };
    let (bn_e, bn_d, bn_p) = (bn(hidden), bn(hidden), bn(cout));
    let expand = PointwiseConv2d::new(random_nchw(&mut rng, [hidden, cin, 1, 1]), None)
        .unwrap()
        .with_batchnorm(&bn_e)
        .unwrap()
        .with_activation(Activation::Relu6);
    let params = Conv2dParams::default()
        .with_padding(Padding::Same)
        .with_stride(stride);
    let dw = DepthwiseConv2d::new(random_nchw(&mut rng, [hidden, 1, 3, 3]), None, params)
        .unwrap()
        .with_batchnorm(&bn_d)
        .unwrap()
        .with_activation(Activation::Relu6);
    let project = PointwiseConv2d::new(random_nchw(&mut rng, [cout, hidden, 1, 1]), None)
        .unwrap()
        .with_batchnorm(&bn_p)
        .unwrap();
    let residual = stride == 1 && cin == cout;
    InvertedResidual::new(Some(expand), dw, project, residual).unwrap()
}

#[test]
fn fused_inverted_residual_banded_and_unbanded() {
    for (i, &(cin, cout, s)) in [(8, 8, 1), (8, 16, 2)].iter().enumerate() {
        let block = inverted_residual(10 + i as u64, cin, 6, cout, s);
        let x = special_input([2, cin, 13, 9], 7);
        let mut want = x.clone();
        if let Some(e) = block.expand() {
            want = reference_stage(e.as_conv2d(), &want).1;
        }
        want = reference_stage(block.depthwise().as_conv2d(), &want).1;
        want = reference_stage(block.project().as_conv2d(), &want).1;
        if block.has_residual() {
            for (o, v) in want.data_mut().iter_mut().zip(x.data()) {
                *o = (*o as f64 + *v as f64) as f32;
            }
        }
        // 1 byte: one output row per band; usize::MAX: expand as one GEMM, fused tail.
        for bytes in [1, 4 * 9 * cin * 6 * 3, usize::MAX] {
            let b = block.clone().with_band_bytes(bytes);
            each_executor(|exec, at| {
                let what = format!("inverted residual {cin}->{cout} s{s} band {bytes} {at}");
                check(&b.forward_with(&x, exec).unwrap(), &want, &what);
                let unfused = b.forward_unfused_with(&x, exec).unwrap();
                check(&unfused, &want, &format!("{what} unfused"));
            });
        }
    }
}

/// Mean over pixels in f64, `[N, C, 1, 1]` NCHW.
fn pooled_f64(x: &Tensor) -> Vec<f64> {
    let [n, c, h, w] = x.logical_dims();
    let mut out = vec![0.0f64; n * c];
    for ni in 0..n {
        for ci in 0..c {
            let mut s = 0.0f64;
            for y in 0..h {
                for xi in 0..w {
                    s += x.at(ni, ci, y, xi) as f64;
                }
            }
            out[ni * c + ci] = s / (h * w) as f64;
        }
    }
    out
}

#[test]
fn global_average_pool_in_both_layouts() {
    let [n, c, h, w] = [2, 10, 5, 6];
    let mut x = special_input([n, c, h, w], 8);
    // +Inf and −Inf in one channel: NaN, as in PyTorch's sum.
    let o = x.offset(1, 3, 0, 1);
    x.data_mut()[o] = f32::INFINITY;
    let o = x.offset(1, 3, 4, 4);
    x.data_mut()[o] = f32::NEG_INFINITY;
    let want = Tensor::from_nchw(
        pooled_f64(&x).into_iter().map(|v| v as f32).collect(),
        [n, c, 1, 1],
    )
    .unwrap();
    assert!(want.data()[c + 3].is_nan());
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let got = GlobalAvgPool.forward(&x.to_layout(layout)).unwrap();
        check(
            &got,
            &want,
            &format!("global average pool {}", layout.name()),
        );
    }
}

#[test]
fn classifier_nan_image_is_all_nan_and_others_are_not() {
    let mut rng = SplitMix64::new(9);
    let (classes, features) = (37, 20);
    let weight = rng.vec(classes * features, -1.0, 1.0);
    let bias = rng.vec(classes, -1.0, 1.0);
    let head = Classifier::new(weight.clone(), bias.clone(), classes, features).unwrap();
    // Image 0: +Inf in one pixel of channel 2; image 1: a NaN in one pixel of channel 5;
    // image 2: finite.
    let mut x = random_nchw(&mut rng, [3, features, 4, 3]).to_layout(Layout::Nhwc);
    let o = x.offset(0, 2, 1, 1);
    x.data_mut()[o] = f32::INFINITY;
    let o = x.offset(1, 5, 3, 2);
    x.data_mut()[o] = f32::NAN;
    let pooled = pooled_f64(&x);
    let want: Vec<f32> = (0..3 * classes)
        .map(|i| {
            let (img, k) = (i / classes, i % classes);
            let dot: f64 = (0..features)
                .map(|f| weight[k * features + f] as f64 * pooled[img * features + f])
                .sum();
            (bias[k] as f64 + dot) as f32
        })
        .collect();
    let want = Tensor::from_nchw(want, [3, classes, 1, 1]).unwrap();
    assert!(want.data()[..classes].iter().all(|v| v.is_infinite()));
    each_executor(|exec, at| {
        let got = head.forward_with(&x, exec).unwrap();
        check(&got, &want, &format!("classifier {at}"));
    });
}

/// Whole networks with random weights: an image with one NaN pixel has all its logits
/// NaN while the other image of the batch keeps finite ones; an all-NaN batch and an
/// all-+Inf batch (Inf · weights of both signs = NaN in the stem) give NaN everywhere.
#[test]
fn whole_networks_nan_and_inf_inputs() {
    // (name, width, input size): MobileNetV1 is built for 224.
    for (name, alpha, size) in [
        ("efficientnet-lite0", 1.0, 64),
        ("mobilenet-v2", 0.35, 64),
        ("mobilenet-v1", 0.25, 224),
    ] {
        let net = Network::random(name, alpha, 11).unwrap();
        let dims = [2, 3, size, size];
        let mut rng = SplitMix64::new(12);
        let mut one_pixel = random_nchw(&mut rng, dims);
        let o = one_pixel.offset(0, 1, size / 3, size / 2);
        one_pixel.data_mut()[o] = f32::NAN;
        let all_nan = Tensor::filled(dims, Layout::Nchw, f32::NAN).unwrap();
        let all_inf = Tensor::filled(dims, Layout::Nchw, f32::INFINITY).unwrap();
        each_executor(|exec, at| {
            let what = format!("{name} {at}");
            let y = net.forward_with(&one_pixel, exec).unwrap();
            let classes = y.logical_dims()[1];
            assert!(
                y.data()[..classes].iter().all(|v| v.is_nan()),
                "{what}: the NaN image has non-NaN logits"
            );
            assert!(
                y.data()[classes..].iter().all(|v| v.is_finite()),
                "{what}: the clean image has non-finite logits"
            );
            for (input, kind) in [(&all_nan, "NaN"), (&all_inf, "+Inf")] {
                let y = net.forward_with(input, exec).unwrap();
                assert!(
                    y.data().iter().all(|v| v.is_nan()),
                    "{what}: an all-{kind} input gave non-NaN logits"
                );
            }
        });
    }
}

/// A clamp with a NaN bound is NaN everywhere, on a finite input too (PyTorch's
/// `clamp_out` fills the result with NaN), on the GEMM, depthwise and direct paths.
#[test]
fn clamp_with_a_nan_bound_is_nan_everywhere() {
    let mut rng = SplitMix64::new(13);
    let pad1 = Conv2dParams::default().with_padding(Padding::symmetric(1));
    for (dims, params) in [
        ([24, 19, 1, 1], Conv2dParams::default()),
        ([19, 1, 3, 3], pad1.with_groups(19)),
        ([6, 19, 3, 3], pad1.with_padding_mode(PaddingMode::Reflect)),
    ] {
        for act in [
            Activation::Clamp {
                min: f32::NAN,
                max: 1.0,
            },
            Activation::Clamp {
                min: 0.0,
                max: f32::NAN,
            },
        ] {
            let conv = Conv2d::new(random_nchw(&mut rng, dims), None, params)
                .unwrap()
                .with_activation(act);
            let x = common::random_tensor([2, 19, 5, 6], Layout::Nchw, 14, 1.0);
            let (_, want) = reference_stage(&conv, &x);
            assert!(want.data().iter().all(|v| v.is_nan()), "reference {act:?}");
            each_executor(|exec, at| {
                let got = conv.forward_with(&x, exec).unwrap();
                assert!(
                    got.data().iter().all(|v| v.is_nan()),
                    "conv {dims:?} {act:?} {at}"
                );
            });
        }
    }
}
