//! Every fast kernel against the f64 reference, at every instruction-set tier this
//! machine offers, at the tile edges: channels below, at and above the vector widths
//! (8, 16), widths 1..17, each padding side, odd sizes at stride 2, 1×1 / 3×3 / 5×5 /
//! 7×7, dilation 2, every activation, and thread counts 1 and 2 (bitwise equal).
//! Kernel-level calls write into NaN-filled buffers with gaps that must stay NaN.

mod common;

use common::{assert_close, executors, reference_output as expected};
use dsconv::kernels::{available_isas, available_tiers, Isa, PackedDepthwise, PackedGemm};
use dsconv::rng::SplitMix64;
use dsconv::{
    Activation, Conv2d, Conv2dParams, ConvGeometry, DepthwiseConv2d, DepthwiseSeparableConv2d,
    Executor, Padding, PointwiseConv2d, Tensor,
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

/// Runs `conv` on an NHWC input of logical dims `input` at every tier with 1 and 2
/// threads, checks against the reference and checks the thread counts agree bitwise.
fn check_conv(conv: &Conv2d, w: &Tensor, input: [usize; 4], seed: u64, what: &str) {
    let mut rng = SplitMix64::new(seed);
    let n: usize = input.iter().product();
    let x = Tensor::from_fn(input, dsconv::Layout::Nhwc, |_, _, _, _| 0.0).unwrap();
    let x = Tensor::from_nhwc(rng.vec(n, -1.0, 1.0), x.dims()).unwrap();
    let want = expected(&x, w, conv.bias(), conv.params(), conv.activation());
    for isa in available_tiers() {
        let (one, two) = executors(isa.isa());
        let y1 = conv.forward_with(&x, &one).unwrap();
        let y2 = conv.forward_with(&x, &two).unwrap();
        assert_close(&y1, &want, &format!("{what} [{}]", isa.name()));
        assert_eq!(
            y1.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y2.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{what} [{}]: 1 and 2 threads differ",
            isa.name()
        );
    }
}

fn random_conv(
    rng: &mut SplitMix64,
    dims: [usize; 4],
    params: Conv2dParams,
    bias: bool,
    act: Activation,
) -> (Conv2d, Tensor) {
    let n: usize = dims.iter().product();
    let w = Tensor::from_nchw(rng.vec(n, -1.0, 1.0), dims).unwrap();
    let b = bias.then(|| rng.vec(dims[0], -1.0, 1.0));
    let conv = Conv2d::new(w.clone(), b, params)
        .unwrap()
        .with_activation(act);
    (conv, w)
}

#[test]
fn tiers_include_scalar_and_are_ordered() {
    let isas = available_isas();
    assert_eq!(isas[0], Isa::Scalar);
    assert!(isas.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(Executor::single().isa(), *isas.last().unwrap());
}

#[test]
fn pointwise_channel_edges_and_pixel_tails() {
    let mut rng = SplitMix64::new(1);
    for (i, &(cin, cout)) in [
        (1, 1),
        (7, 9),
        (8, 8),
        (9, 15),
        (16, 16),
        (17, 33),
        (33, 17),
        (3, 64),
        (300, 40),
    ]
    .iter()
    .enumerate()
    {
        for w in [1, 5, 13, 14, 15, 17] {
            let act = ACTIVATIONS[(i + w) % ACTIVATIONS.len()];
            let (conv, wt) = random_conv(
                &mut rng,
                [cout, cin, 1, 1],
                Conv2dParams::default(),
                w % 2 == 1,
                act,
            );
            check_conv(
                &conv,
                &wt,
                [1, cin, 2, w],
                (i * 100 + w) as u64,
                &format!("pointwise {cin}->{cout} width {w} {}", act.name()),
            );
        }
    }
}

#[test]
fn pointwise_long_reduction_crosses_k_blocks() {
    // K = 600 > KC = 256: three K blocks; C is re-read between them.
    let mut rng = SplitMix64::new(2);
    for act in ACTIVATIONS {
        let (conv, wt) = random_conv(
            &mut rng,
            [40, 600, 1, 1],
            Conv2dParams::default(),
            true,
            act,
        );
        check_conv(&conv, &wt, [2, 600, 3, 7], 3, "pointwise K=600");
    }
    // Few rows, many panels: two threads split the columns (7×7 layers at batch 1).
    for (cin, cout, size) in [(256, 1000, 7), (64, 100, 5), (128, 33, 3)] {
        let (conv, wt) = random_conv(
            &mut rng,
            [cout, cin, 1, 1],
            Conv2dParams::default(),
            true,
            Activation::HardSwish,
        );
        check_conv(
            &conv,
            &wt,
            [1, cin, size, size],
            5,
            "pointwise column split",
        );
    }
    // 512 and 1024 channels: a 2–4 KiB row stride, so A is copied into padded rows.
    for cin in [512, 1024] {
        let (conv, wt) = random_conv(
            &mut rng,
            [33, cin, 1, 1],
            Conv2dParams::default(),
            true,
            Activation::Relu6,
        );
        check_conv(&conv, &wt, [1, cin, 3, 11], 4, "pointwise packed A");
    }
}

#[test]
fn depthwise_channel_and_width_edges_3x3_5x5_strides() {
    let mut rng = SplitMix64::new(4);
    for c in [1, 7, 8, 9, 15, 16, 17, 33] {
        for k in [3, 5] {
            for stride in [1, 2] {
                for width in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17] {
                    let height = 1 + (width + c) % 5;
                    let pad = k / 2;
                    let params = Conv2dParams::default()
                        .with_stride(stride)
                        .with_padding(Padding::symmetric(pad))
                        .with_groups(c);
                    let act = ACTIVATIONS[(c + width + k) % ACTIVATIONS.len()];
                    let (conv, wt) =
                        random_conv(&mut rng, [c, 1, k, k], params, width % 3 != 0, act);
                    check_conv(
                        &conv,
                        &wt,
                        [1, c, height, width],
                        (c * 1000 + width * 10 + k) as u64,
                        &format!(
                            "depthwise {k}x{k} s{stride} C={c} {height}x{width} {}",
                            act.name()
                        ),
                    );
                }
            }
        }
    }
}

#[test]
fn depthwise_each_padding_side_asymmetric() {
    let mut rng = SplitMix64::new(5);
    let pads = [
        (1, 0, 0, 0),
        (0, 1, 0, 0),
        (0, 0, 1, 0),
        (0, 0, 0, 1),
        (2, 0, 1, 2),
        (0, 2, 2, 0),
        (0, 0, 0, 0),
        (3, 3, 3, 3),
    ];
    for (p, &(top, bottom, left, right)) in pads.iter().enumerate() {
        for (k, stride) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
            for c in [9, 16, 17] {
                let params = Conv2dParams::default()
                    .with_stride(stride)
                    .with_padding(Padding::asymmetric(top, bottom, left, right))
                    .with_groups(c);
                let (conv, wt) =
                    random_conv(&mut rng, [c, 1, k, k], params, true, Activation::Relu6);
                check_conv(
                    &conv,
                    &wt,
                    [2, c, 11, 13],
                    (p * 10 + k) as u64,
                    &format!(
                        "depthwise {k}x{k} s{stride} pads {top},{bottom},{left},{right} C={c}"
                    ),
                );
            }
        }
    }
}

/// Rows wider than a register block: `cover_row` splits them into near-equal blocks
/// (28 → 7 + 7 + 7 + 7, 57 → 8 × 6 + 9 ...), and checks only blocks that reach a padded
/// column, including padding wider than the kernel's reach (whole pixels of zeros) on
/// one side only.
#[test]
fn depthwise_wide_rows_blocks_and_checked_borders() {
    let mut rng = SplitMix64::new(15);
    let pads = [(1, 1, 1, 1), (0, 0, 2, 0), (0, 1, 0, 3), (2, 0, 3, 3)];
    for (p, &(top, bottom, left, right)) in pads.iter().enumerate() {
        for (k, stride) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
            for width in [18, 23, 28, 29, 41, 56, 57, 64] {
                let c = [16, 17, 40][(width + p) % 3];
                let params = Conv2dParams::default()
                    .with_stride(stride)
                    .with_padding(Padding::asymmetric(top, bottom, left, right))
                    .with_groups(c);
                let act = ACTIVATIONS[(width + k + p) % ACTIVATIONS.len()];
                let (conv, wt) = random_conv(&mut rng, [c, 1, k, k], params, true, act);
                check_conv(
                    &conv,
                    &wt,
                    [1, c, 5 + width % 4, width],
                    (p * 1000 + width * 10 + k) as u64,
                    &format!(
                        "depthwise {k}x{k} s{stride} pads {top},{bottom},{left},{right} C={c} width {width}"
                    ),
                );
            }
        }
    }
}

#[test]
fn depthwise_general_path_7x7_dilation_odd_strides() {
    let mut rng = SplitMix64::new(6);
    let cases = [
        (7, 1, 1, 3),
        (7, 2, 1, 3),
        (3, 1, 2, 2),
        (3, 2, 2, 1),
        (5, 3, 1, 2),
        (1, 1, 1, 0),
        (1, 2, 1, 0),
        (3, 3, 1, 0),
    ];
    for (k, stride, dilation, pad) in cases {
        for c in [7, 16, 33] {
            let params = Conv2dParams::default()
                .with_stride(stride)
                .with_dilation(dilation)
                .with_padding(Padding::asymmetric(pad, pad + 1, pad + 1, pad))
                .with_groups(c);
            let (conv, wt) =
                random_conv(&mut rng, [c, 1, k, k], params, true, Activation::HardSwish);
            check_conv(
                &conv,
                &wt,
                [1, c, 15, 17],
                (k * 100 + stride * 10 + dilation) as u64,
                &format!("depthwise general {k}x{k} s{stride} d{dilation} p{pad} C={c}"),
            );
        }
    }
}

#[test]
fn dense_im2col_shapes() {
    let mut rng = SplitMix64::new(7);
    let cases = [
        // (cin, cout, k, stride, dilation, pad, h, w)
        (3, 32, 3, 2, 1, 1, 17, 15),
        (3, 8, 3, 2, 1, 0, 9, 9),
        (8, 17, 3, 1, 1, 1, 7, 13),
        (16, 33, 5, 1, 1, 2, 6, 9),
        (7, 9, 7, 2, 1, 3, 11, 10),
        (5, 16, 3, 1, 2, 2, 8, 8),
        (9, 15, 1, 2, 1, 0, 9, 7),
        (4, 12, 2, 1, 1, 1, 5, 5),
    ];
    for (i, &(cin, cout, k, stride, dilation, pad, h, w)) in cases.iter().enumerate() {
        let params = Conv2dParams::default()
            .with_stride(stride)
            .with_dilation(dilation)
            .with_padding(Padding::asymmetric(pad, (pad + i) % 3, pad, pad / 2));
        let act = ACTIVATIONS[i % ACTIVATIONS.len()];
        let (conv, wt) = random_conv(&mut rng, [cout, cin, k, k], params, i % 2 == 0, act);
        check_conv(
            &conv,
            &wt,
            [2, cin, h, w],
            i as u64,
            &format!("dense {cin}->{cout} {k}x{k} s{stride} d{dilation}"),
        );
    }
}

#[test]
fn dense_weight_larger_than_a_band() {
    // 128 → 136 channels, 3×3: K·N·4 = 627 KB of weights, so the im2col bands grow to the
    // GEMM's row block (168 pixels with AVX-512): batch 2 at 12×12 outputs is 288 pixels, one
    // full band crossing the image boundary and a shorter one; 136 channels end in a
    // partial panel.
    let mut rng = SplitMix64::new(41);
    let params = Conv2dParams::default().with_padding(Padding::asymmetric(1, 0, 2, 1));
    let (conv, wt) = random_conv(&mut rng, [136, 128, 3, 3], params, true, Activation::Relu6);
    check_conv(
        &conv,
        &wt,
        [2, 128, 13, 11],
        600,
        "dense 128->136 3x3 large weight",
    );
}

#[test]
fn fused_separable_matches_reference_and_unfused_bitwise() {
    let mut rng = SplitMix64::new(8);
    for (c, cout, stride, size) in [
        (8, 16, 1, 9),
        (17, 33, 2, 11),
        (32, 64, 1, 14),
        (3, 5, 2, 7),
    ] {
        let dw_w = Tensor::from_nchw(rng.vec(c * 9, -1.0, 1.0), [c, 1, 3, 3]).unwrap();
        let pw_w = Tensor::from_nchw(rng.vec(cout * c, -1.0, 1.0), [cout, c, 1, 1]).unwrap();
        let dw_b = rng.vec(c, -1.0, 1.0);
        let pw_b = rng.vec(cout, -1.0, 1.0);
        let params = Conv2dParams::default()
            .with_stride(stride)
            .with_padding(Padding::symmetric(1));
        let dw = DepthwiseConv2d::new(dw_w.clone(), Some(dw_b.clone()), params)
            .unwrap()
            .with_activation(Activation::Relu6);
        let pw = PointwiseConv2d::new(pw_w.clone(), Some(pw_b.clone()))
            .unwrap()
            .with_activation(Activation::Relu);
        let block = DepthwiseSeparableConv2d::new(dw, pw).unwrap();
        let x =
            Tensor::from_nhwc(rng.vec(2 * size * size * c, -1.0, 1.0), [2, size, size, c]).unwrap();
        let mid = expected(
            &x,
            &dw_w,
            Some(&dw_b),
            &params.with_groups(c),
            Activation::Relu6,
        );
        let want = expected(
            &mid,
            &pw_w,
            Some(&pw_b),
            &Conv2dParams::default(),
            Activation::Relu,
        );
        for isa in available_tiers() {
            let (one, two) = executors(isa.isa());
            let fused = block.forward_with(&x, &one).unwrap();
            assert_close(&fused, &want, &format!("fused C={c} [{}]", isa.name()));
            let fused2 = block.forward_with(&x, &two).unwrap();
            let unfused = block.forward_unfused_with(&x, &two).unwrap();
            assert_eq!(fused.data(), fused2.data(), "threads [{}]", isa.name());
            assert_eq!(
                fused.data(),
                unfused.data(),
                "fused vs unfused [{}]",
                isa.name()
            );
        }
    }
}

#[test]
fn gemm_kernel_writes_only_its_rows_and_columns() {
    let mut rng = SplitMix64::new(9);
    for isa in available_tiers() {
        for (m, k, n) in [
            (1, 1, 1),
            (13, 7, 9),
            (14, 16, 32),
            (29, 33, 47),
            (15, 300, 17),
        ] {
            let w = rng.vec(k * n, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let packed = PackedGemm::from_fn(k, n, Some(&bias), |kk, col| w[kk * n + col]).unwrap();
            let (lda, ldc) = (k + 3, n + 5);
            let a = rng.vec((m - 1) * lda + k, -1.0, 1.0);
            let mut c = vec![f32::NAN; (m - 1) * ldc + n + 7];
            packed
                .run(isa, &a, lda, m, &mut c, ldc, Activation::None)
                .unwrap();
            for r in 0..m {
                for col in 0..ldc.min(c.len() - r * ldc) {
                    let got = c[r * ldc + col];
                    if col < n {
                        let want: f64 = bias[col] as f64
                            + (0..k)
                                .map(|kk| a[r * lda + kk] as f64 * w[kk * n + col] as f64)
                                .sum::<f64>();
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (k as f64),
                            "[{}] m{m} k{k} n{n} ({r},{col}): {got} vs {want}",
                            isa.name()
                        );
                    } else {
                        assert!(got.is_nan(), "[{}] wrote a gap at ({r},{col})", isa.name());
                    }
                }
            }
            // Shape errors are reported, not panics: a stride below K, a short output.
            let short = packed.run(isa, &a, lda, m, &mut c[..n - 1], ldc, Activation::None);
            assert!(short.is_err());
            if k > 1 {
                let bad = packed.run(isa, &a, k - 1, m, &mut c, ldc, Activation::None);
                assert!(bad.is_err());
            }
        }
    }
}

#[test]
fn gemm_every_ragged_tile_height() {
    // Every row count from 1 to two tiles and more (AVX-512 tiles are 14 rows, AVX2 6):
    // each ragged last tile runs its own exact-height microkernel (5–13 rows) or the
    // 4/2/1 pieces; 80 columns end in a one-vector chunk, 56 and 24 in a three-vector
    // AVX2 chunk (3-row tiles, then 2/1 pieces). Odd row counts add a residual.
    let mut rng = SplitMix64::new(12);
    for (k, n, isa) in [80, 56, 24]
        .into_iter()
        .flat_map(|n| available_tiers().map(move |isa| (19, n, isa)))
    {
        let w = rng.vec(k * n, -1.0, 1.0);
        let bias = rng.vec(n, -1.0, 1.0);
        let packed = PackedGemm::from_fn(k, n, Some(&bias), |kk, col| w[kk * n + col]).unwrap();
        for m in 1..=31 {
            let (lda, ldc, ldr) = (k + 1, n + 3, n + 2);
            let a = rng.vec((m - 1) * lda + k, -1.0, 1.0);
            let res = rng.vec((m - 1) * ldr + n, -1.0, 1.0);
            let residual = (m % 2 == 1).then_some((&res[..], ldr));
            let mut c = vec![f32::NAN; m * ldc];
            packed
                .run_add(isa, &a, lda, m, &mut c, ldc, Activation::Relu6, residual)
                .unwrap();
            for r in 0..m {
                for col in 0..ldc {
                    let got = c[r * ldc + col];
                    if col >= n {
                        assert!(
                            got.is_nan(),
                            "[{}] m{m}: gap ({r},{col}) written",
                            isa.name()
                        );
                        continue;
                    }
                    let sum: f64 = bias[col] as f64
                        + (0..k)
                            .map(|kk| a[r * lda + kk] as f64 * w[kk * n + col] as f64)
                            .sum::<f64>();
                    let skip = residual.map_or(0.0, |(x, ld)| x[r * ld + col] as f64);
                    let want = sum.clamp(0.0, 6.0) + skip;
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * k as f64,
                        "[{}] m{m} ({r},{col}): {got} vs {want}",
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn depthwise_kernel_leaves_pixel_stride_gaps() {
    let mut rng = SplitMix64::new(10);
    for isa in available_tiers() {
        for c in [7, 16, 17] {
            let params = Conv2dParams::default()
                .with_padding(Padding::symmetric(1))
                .with_groups(c);
            let g = ConvGeometry::new([1, c, 6, 9], [c, 1, 3, 3], &params).unwrap();
            let w = rng.vec(c * 9, -1.0, 1.0);
            let packed = PackedDepthwise::new(&w, [c, 1, 3, 3], None).unwrap();
            let x = rng.vec(6 * 9 * c, -1.0, 1.0);
            let stride = c + 3;
            let mut out = vec![f32::NAN; 2 * 9 * stride];
            packed
                .run_rows(isa, &g, &x, c, 2..4, &mut out, stride, Activation::None)
                .unwrap();
            let xt = Tensor::from_nhwc(x.clone(), [1, 6, 9, c]).unwrap();
            let wt = Tensor::from_nchw(w.clone(), [c, 1, 3, 3]).unwrap();
            let want = expected(&xt, &wt, None, &params, Activation::None);
            for (p, px) in out.chunks_exact(stride).enumerate() {
                let (oy, ox) = (2 + p / 9, p % 9);
                for ch in 0..stride {
                    if ch < c {
                        let r = want.at(0, ch, oy, ox);
                        assert!(
                            (px[ch] - r).abs() <= 1e-5 * 9.0,
                            "[{}] c{c} {oy},{ox},{ch}",
                            isa.name()
                        );
                    } else {
                        assert!(px[ch].is_nan(), "[{}] wrote a gap", isa.name());
                    }
                }
            }
        }
    }
}

#[test]
fn depthwise_crowded_input_copied_rows_batches_and_gaps() {
    // C·4 a multiple of 1 KiB at stride 1 into an output whose pixels are not (here C + 16
    // floats apart): the kernel copies the input rows the call reads to a padded buffer
    // first. Row ranges that start past the first input row and cross an image, both
    // padding sides, a 5×5 kernel, and the output gaps left untouched.
    let mut rng = SplitMix64::new(12);
    for isa in available_tiers() {
        for (c, k, h, w) in [(256, 3, 5, 9), (512, 5, 6, 7), (256, 5, 3, 3)] {
            let params = Conv2dParams::default()
                .with_padding(Padding::asymmetric(k / 2, 0, k / 2 + 1, 1))
                .with_groups(c);
            let g = ConvGeometry::new([2, c, h, w], [c, 1, k, k], &params).unwrap();
            let (oh, ow) = (g.out_h(), g.out_w());
            let wv = rng.vec(c * k * k, -1.0, 1.0);
            let bias = rng.vec(c, -1.0, 1.0);
            let packed = PackedDepthwise::new(&wv, [c, 1, k, k], Some(&bias)).unwrap();
            let x = rng.vec(2 * h * w * c, -1.0, 1.0);
            let xt = Tensor::from_nhwc(x.clone(), [2, h, w, c]).unwrap();
            let wt = Tensor::from_nchw(wv.clone(), [c, 1, k, k]).unwrap();
            let want = expected(&xt, &wt, Some(&bias), &params, Activation::Relu6);
            let stride = c + 16;
            let ranges = [0..2 * oh, 1..oh + 2, oh - 1..oh, 2..3];
            for rows in ranges.into_iter().filter(|r| r.end <= 2 * oh) {
                let mut out = vec![f32::NAN; rows.len() * ow * stride];
                packed
                    .run_rows(
                        isa,
                        &g,
                        &x,
                        c,
                        rows.clone(),
                        &mut out,
                        stride,
                        Activation::Relu6,
                    )
                    .unwrap();
                for (p, px) in out.chunks_exact(stride).enumerate() {
                    let row = rows.start + p / ow;
                    let (n, oy, ox) = (row / oh, row % oh, p % ow);
                    for (ch, &v) in px.iter().enumerate() {
                        if ch < c {
                            let r = want.at(n, ch, oy, ox);
                            assert!(
                                (v - r).abs() <= 1e-5 * (k * k) as f32,
                                "[{}] C={c} {k}x{k} rows {rows:?}: ({n},{oy},{ox},{ch}) {v} vs {r}",
                                isa.name()
                            );
                        } else {
                            assert!(v.is_nan(), "[{}] wrote a gap", isa.name());
                        }
                    }
                }
            }
        }
    }
}

/// Found by review when `ConvGeometry`'s fields were public: a hand-built geometry with
/// vertical padding fields of zero while its output rows reached past the input, an input
/// height whose size product wraps, a zero input width, an output width whose product
/// wraps. Now a geometry exists only through `ConvGeometry::new`, which refuses the
/// sizes, and `run_rows` (safe, public) still refuses buffers too small for a geometry,
/// a row range past its output and a pixel stride below C, on every tier.
#[test]
fn depthwise_rejects_impossible_geometries_and_short_buffers() {
    let c = 16;
    let params = |p: Padding, s: usize| {
        Conv2dParams::default()
            .with_padding(p)
            .with_stride(s)
            .with_groups(c)
    };
    let valid = params(Padding::Valid, 1);
    assert!(ConvGeometry::new([1, c, (1 << 60) + 1, 1], [c, 1, 3, 3], &valid).is_err());
    assert!(ConvGeometry::new([1, c, 3, 0], [c, 1, 3, 3], &params(Padding::Valid, 2)).is_err());
    assert!(ConvGeometry::new([1, c, 3, 1 << 62], [c, 1, 3, 3], &valid).is_err());
    let g = ConvGeometry::new(
        [1, c, 5, 6],
        [c, 1, 3, 3],
        &params(Padding::asymmetric(0, 2, 1, 1), 1),
    )
    .unwrap();
    let (in_len, out_len) = (5 * 6 * c, g.out_w() * c);
    // (input length, output length, rows, input pixel stride, output pixel stride)
    let cases = [
        (in_len - 1, out_len, 0..1, c, c),
        (in_len, out_len - 1, 0..1, c, c),
        (in_len, out_len, g.out_h()..g.out_h() + 1, c, c),
        (in_len, out_len, 0..1, c - 1, c),
        (in_len, out_len, 0..1, c, c - 1),
        (in_len, out_len, 0..2, c, c),
    ];
    let mut rng = SplitMix64::new(14);
    let w = rng.vec(c * 9, -1.0, 1.0);
    let packed = PackedDepthwise::new(&w, [c, 1, 3, 3], None).unwrap();
    for isa in available_tiers() {
        for (k, (in_len, out_len, rows, in_px, out_px)) in cases.iter().cloned().enumerate() {
            let x = vec![1.0; in_len];
            let mut out = vec![f32::NAN; out_len];
            let r = packed.run_rows(isa, &g, &x, in_px, rows, &mut out, out_px, Activation::None);
            assert!(r.is_err(), "[{}] case {k} accepted", isa.name());
        }
        let x = vec![1.0; in_len];
        let mut out = vec![f32::NAN; out_len];
        packed
            .run_rows(isa, &g, &x, c, 0..1, &mut out, c, Activation::None)
            .unwrap();
    }
}

#[test]
fn depthwise_row_by_row_and_strip_modes_at_wide_channels() {
    // A pixel stride of 2 KiB (C = 512) crowds two L1 sets, so stride 1 sweeps rows one
    // at a time; stride 2 does from C = 256 (the others check both modes' channel tails).
    let mut rng = SplitMix64::new(11);
    for (c, k) in [(512, 3), (512, 5), (260, 3), (200, 5)] {
        for stride in [1, 2] {
            let params = Conv2dParams::default()
                .with_stride(stride)
                .with_padding(Padding::asymmetric(k / 2, 1, k / 2, 0))
                .with_groups(c);
            let (conv, wt) = random_conv(&mut rng, [c, 1, k, k], params, true, Activation::Relu);
            check_conv(
                &conv,
                &wt,
                [1, c, 7, 19],
                (c + k) as u64,
                &format!("depthwise wide C={c} {k}x{k} s{stride}"),
            );
        }
    }
}

#[test]
fn depthwise_unpadded_with_non_zero_padding_mode_takes_the_kernel() {
    // Regression (found by prop_bad_input): reflect mode without padding is zero padding.
    let mut rng = SplitMix64::new(12);
    let params = Conv2dParams::default()
        .with_padding_mode(dsconv::PaddingMode::Reflect)
        .with_groups(2);
    let (conv, wt) = random_conv(&mut rng, [2, 1, 1, 1], params, true, Activation::None);
    check_conv(
        &conv,
        &wt,
        [1, 2, 1, 1],
        1,
        "depthwise 1x1 reflect unpadded",
    );
    let params = params.with_groups(5);
    let (conv, wt) = random_conv(&mut rng, [5, 1, 3, 3], params, false, Activation::None);
    check_conv(
        &conv,
        &wt,
        [2, 5, 6, 7],
        2,
        "depthwise 3x3 reflect unpadded",
    );
}

#[test]
fn depthwise_head_tile_for_every_input_alignment() {
    // C = 128 (8 AVX-512 tiles, 16 AVX2 tiles): a misaligned input gets a masked head tile
    // so later loads are aligned; every offset within a cache line must give the same result.
    let mut rng = SplitMix64::new(13);
    let (c, h, w) = (128, 5, 11);
    let params = Conv2dParams::default()
        .with_padding(Padding::asymmetric(1, 0, 1, 2))
        .with_groups(c);
    let g = ConvGeometry::new([1, c, h, w], [c, 1, 3, 3], &params).unwrap();
    let weights = rng.vec(c * 9, -1.0, 1.0);
    let bias = rng.vec(c, -1.0, 1.0);
    let packed = PackedDepthwise::new(&weights, [c, 1, 3, 3], Some(&bias)).unwrap();
    let n = h * w * c;
    let big = rng.vec(n + 16, -1.0, 1.0);
    let wt = Tensor::from_nchw(weights.clone(), [c, 1, 3, 3]).unwrap();
    for offset in 0..16 {
        let x = &big[offset..offset + n];
        let xt = Tensor::from_nhwc(x.to_vec(), [1, h, w, c]).unwrap();
        let want = expected(&xt, &wt, Some(&bias), &params, Activation::Relu6);
        for isa in available_tiers() {
            let mut out = vec![f32::NAN; g.out_h() * g.out_w() * c];
            packed
                .run_rows(isa, &g, x, c, 0..g.out_h(), &mut out, c, Activation::Relu6)
                .unwrap();
            let got = Tensor::from_nhwc(out, [1, g.out_h(), g.out_w(), c]).unwrap();
            assert_close(&got, &want, &format!("offset {offset} [{}]", isa.name()));
        }
    }
}

/// The residual epilogue `act(bias + A·B) + R` at every tier: row tails (m around the
/// register tiles), column tails (n around 8/16/32, a last chunk of one vector), K across the 512 block, every
/// activation, a residual stride unlike the output's; NaN-filled output with gaps that
/// must stay NaN; bitwise equal to `run` followed by the addition, and `run_parallel_add`
/// (row split and column split) bitwise equal to `run_add`.
#[test]
fn gemm_residual_epilogue_matches_reference_and_run_then_add() {
    let mut rng = SplitMix64::new(21);
    for isa in available_tiers() {
        let (_, two) = executors(isa.isa());
        for (i, (m, k, n)) in [
            (1, 1, 1),
            (13, 7, 9),
            (14, 16, 32),
            (29, 33, 47),
            (15, 600, 17),
            (200, 24, 64),
            (7, 96, 96),
            // A last column chunk of exactly one AVX-512 vector (one-vector microkernel).
            (30, 20, 48),
            (17, 5, 16),
            (43, 24, 144),
            // A last chunk of three AVX2 vectors (3 × 24 tiles), over K blocks.
            (50, 600, 24),
            (23, 9, 88),
            // 7×7 at batch 1: AVX2's 9 row tiles split by column chunks, cut inside a
            // panel (160 = 2 × 80, 80 = 32 + 48, 1152 at three threads: 384 each).
            (49, 40, 160),
            (49, 24, 80),
            (49, 12, 1152),
        ]
        .into_iter()
        .enumerate()
        {
            let act = ACTIVATIONS[i % ACTIVATIONS.len()];
            let w = rng.vec(k * n, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let packed = PackedGemm::from_fn(k, n, Some(&bias), |kk, col| w[kk * n + col]).unwrap();
            let (lda, ldc, ldr) = (k + 3, n + 5, n + 2);
            let a = rng.vec((m - 1) * lda + k, -1.0, 1.0);
            let res = rng.vec((m - 1) * ldr + n, -2.0, 2.0);
            let mut c = vec![f32::NAN; (m - 1) * ldc + n + 7];
            packed
                .run_add(isa, &a, lda, m, &mut c, ldc, act, Some((&res, ldr)))
                .unwrap();
            let mut plain = vec![f32::NAN; c.len()];
            packed.run(isa, &a, lda, m, &mut plain, ldc, act).unwrap();
            let what = format!("[{}] m{m} k{k} n{n} {act:?}", isa.name());
            for r in 0..m {
                for col in 0..ldc.min(c.len() - r * ldc) {
                    let got = c[r * ldc + col];
                    if col < n {
                        let acc: f64 = bias[col] as f64
                            + (0..k)
                                .map(|kk| a[r * lda + kk] as f64 * w[kk * n + col] as f64)
                                .sum::<f64>();
                        let want = act.apply_f64(acc) + res[r * ldr + col] as f64;
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (k as f64 + 2.0),
                            "{what} ({r},{col}): {got} vs {want}"
                        );
                        let then_add = plain[r * ldc + col] + res[r * ldr + col];
                        assert_eq!(got.to_bits(), then_add.to_bits(), "{what} ({r},{col})");
                    } else {
                        assert!(got.is_nan(), "{what}: wrote a gap at ({r},{col})");
                    }
                }
            }
            let mut par = vec![f32::NAN; c.len()];
            packed
                .run_parallel_add(&two, 2, &a, lda, m, &mut par, ldc, act, Some((&res, ldr)))
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&par), bits(&c), "{what}: 2 threads");
            let three = Executor::new(3).unwrap().with_isa(isa.isa()).unwrap();
            let mut par3 = vec![f32::NAN; c.len()];
            packed
                .run_parallel_add(
                    &three,
                    3,
                    &a,
                    lda,
                    m,
                    &mut par3,
                    ldc,
                    act,
                    Some((&res, ldr)),
                )
                .unwrap();
            assert_eq!(bits(&par3), bits(&c), "{what}: 3 threads");
            // A residual too short for m rows is an error, not a panic.
            let short = &res[..res.len() - 1];
            assert!(packed
                .run_add(isa, &a, lda, m, &mut c, ldc, act, Some((short, ldr)))
                .is_err());
            assert!(packed
                .run_parallel_add(&two, 2, &a, lda, m, &mut c, ldc, act, Some((short, ldr)))
                .is_err());
        }
    }
}

#[test]
fn depthwise_shared_zero_rows_grow_and_stay_zero() {
    // The padded rows read a per-thread zero buffer that grows with the widest row seen:
    // narrow, wide, then narrow again on the same threads, every output against the
    // reference (a buffer that was written or too short would show up here).
    let mut rng = SplitMix64::new(77);
    for (i, (c, hw, stride)) in [
        (16, 5, 1),
        (96, 40, 2),
        (48, 9, 1),
        (160, 33, 1),
        (16, 6, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let params = Conv2dParams::default()
            .with_stride(stride)
            .with_padding(Padding::symmetric(1))
            .with_groups(c);
        let (conv, w) = random_conv(&mut rng, [c, 1, 3, 3], params, true, Activation::Relu6);
        check_conv(
            &conv,
            &w,
            [1, c, hw, hw],
            100 + i as u64,
            &format!("zeros C={c} {hw}² s{stride}"),
        );
    }
}

#[test]
fn dense_fast_im2col_rows_bands_and_input_end() {
    // The interior fast copy of short runs (kW·C_in ≤ 16): stem-like shapes, runs of
    // exactly 16 and 17 floats, a kernel taller than the fast path's row table, odd
    // strides and asymmetric padding; batch 2 at 100² (stride 1) spans several im2col
    // bands that start mid-row and cross the image boundary, and the last pixels read
    // up to the input's final float.
    let mut rng = SplitMix64::new(31);
    let cases = [
        // (cin, cout, kh, kw, stride, pad (t, b, l, r), h, w)
        (3, 32, 3, 3, 1, (1, 1, 1, 1), 100, 100),
        (3, 24, 3, 3, 2, (0, 1, 0, 1), 23, 21),
        (4, 16, 3, 4, 1, (1, 2, 2, 1), 9, 12),
        (1, 8, 9, 17, 1, (4, 4, 8, 8), 12, 20),
        (2, 8, 9, 3, 3, (2, 0, 1, 0), 14, 11),
        (1, 5, 3, 16, 2, (1, 1, 7, 8), 6, 19),
    ];
    for (i, &(cin, cout, kh, kw, stride, (t, b, l, r), h, w)) in cases.iter().enumerate() {
        let params = Conv2dParams::default()
            .with_stride(stride)
            .with_padding(Padding::asymmetric(t, b, l, r));
        let act = ACTIVATIONS[i % ACTIVATIONS.len()];
        let (conv, wt) = random_conv(&mut rng, [cout, cin, kh, kw], params, i % 2 == 1, act);
        check_conv(
            &conv,
            &wt,
            [2, cin, h, w],
            500 + i as u64,
            &format!("dense fast im2col {cin}->{cout} {kh}x{kw} s{stride}"),
        );
    }
}

#[test]
fn depthwise_stride2_strips_multi_tile_and_batch() {
    // Stride 2 walks strips down the rows when a strip fits in half the L1 ways (C ≤ 128
    // for 3×3): several channel tiles with a masked tail, batch 2 (strips cross the
    // image boundary through the row table), odd sizes, padding on one side only.
    let mut rng = SplitMix64::new(19);
    for (i, (c, h, w)) in [(40, 23, 31), (100, 17, 12), (128, 9, 26), (24, 30, 11)]
        .into_iter()
        .enumerate()
    {
        let params = Conv2dParams::default()
            .with_stride(2)
            .with_padding(Padding::asymmetric(1, i % 2, 1 - i % 2, 1))
            .with_groups(c);
        let act = ACTIVATIONS[i % ACTIVATIONS.len()];
        let (conv, wt) = random_conv(&mut rng, [c, 1, 3, 3], params, i != 2, act);
        check_conv(
            &conv,
            &wt,
            [2, c, h, w],
            900 + i as u64,
            &format!("depthwise s2 strips C={c} {h}x{w}"),
        );
    }
}

// Found by review: the parallel GEMM on tight strided buffers and short operands.

/// run_parallel on a tight strided output ((m-1)*ldc + n elements, which `run` accepts)
/// must write every row, like `run`.
#[test]
fn run_parallel_tight_strided_output_writes_the_last_row() {
    let mut rng = dsconv::rng::SplitMix64::new(3);
    for isa in dsconv::kernels::available_tiers() {
        let two = dsconv::Executor::new(2)
            .unwrap()
            .with_isa(isa.isa())
            .unwrap();
        // n < 32: one panel, so the row split is taken for any m.
        for (m, k, n) in [
            (9, 8, 8),
            (13, 8, 9),
            (25, 16, 20),
            (57, 4, 3),
            (200, 24, 16),
        ] {
            let (lda, ldc) = (k, n + 4);
            let w = rng.vec(k * n, -1.0, 1.0);
            let g =
                dsconv::kernels::PackedGemm::from_fn(k, n, None, |kk, c| w[kk * n + c]).unwrap();
            let a = rng.vec(m * lda, -1.0, 1.0);
            let len = (m - 1) * ldc + n;
            let mut serial = vec![f32::NAN; len];
            g.run(isa, &a, lda, m, &mut serial, ldc, dsconv::Activation::None)
                .unwrap();
            let mut par = vec![f32::NAN; len];
            g.run_parallel(&two, 2, &a, lda, m, &mut par, ldc, dsconv::Activation::None)
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&par),
                bits(&serial),
                "[{}] m{m} k{k} n{n}: last row",
                isa.name()
            );
        }
    }
}

/// An output buffer too short for m rows is an error for `run`; run_parallel must not
/// return Ok with rows left unwritten.
#[test]
fn run_parallel_short_output_is_an_error() {
    let (m, k, n) = (100, 8, 8);
    let isa = dsconv::kernels::available_tiers().next().unwrap();
    let two = dsconv::Executor::new(2)
        .unwrap()
        .with_isa(isa.isa())
        .unwrap();
    let g = dsconv::kernels::PackedGemm::from_fn(k, n, None, |_, _| 1.0).unwrap();
    let a = vec![1.0; m * k];
    let mut out = vec![f32::NAN; 50 * n];
    assert!(g
        .run(isa, &a, k, m, &mut out, n, dsconv::Activation::None)
        .is_err());
    let r = g.run_parallel(&two, 2, &a, k, m, &mut out, n, dsconv::Activation::None);
    assert!(r.is_err(), "returned Ok with rows 50..100 unwritten");
}

/// A too-short A must be an error, not a panic.
#[test]
fn run_parallel_short_input_is_an_error_not_a_panic() {
    let (m, k, n) = (100, 8, 8);
    let isa = dsconv::kernels::available_tiers().next().unwrap();
    let two = dsconv::Executor::new(2)
        .unwrap()
        .with_isa(isa.isa())
        .unwrap();
    let g = dsconv::kernels::PackedGemm::from_fn(k, n, None, |_, _| 1.0).unwrap();
    let a = vec![1.0; 10 * k];
    let mut out = vec![0.0; m * n];
    assert!(g
        .run(isa, &a, k, m, &mut out, n, dsconv::Activation::None)
        .is_err());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        g.run_parallel(&two, 2, &a, k, m, &mut out, n, dsconv::Activation::None)
    }));
    assert!(matches!(r, Ok(Err(_))), "panicked: {}", r.is_err());
}

/// Streamed-weight depthwise blocks: 5×5 (and 3×3 rows of at most 8 columns) run whole
/// rows in blocks with checked columns, in strip mode (C = 48, 240) and row by row
/// (C = 1152), at stride 1 and 2, with TF-style asymmetric `same` padding and a batch of
/// 2 (rows of two images in one call).
#[test]
fn depthwise_streamed_blocks_whole_rows_strip_and_row_modes() {
    let mut rng = SplitMix64::new(77);
    for (c, k, stride, h, w) in [
        (48, 5, 1, 7, 7),
        (240, 5, 1, 14, 14),
        (1152, 5, 1, 7, 7),
        (240, 5, 2, 9, 14),
        (144, 5, 2, 13, 11),
        (1152, 5, 2, 8, 6),
        (48, 3, 1, 7, 7),
        (1024, 3, 1, 7, 8),
        (96, 3, 2, 11, 15),
        (512, 3, 2, 14, 14),
    ] {
        let params = Conv2dParams::default()
            .with_stride(stride)
            .with_padding(Padding::Same)
            .with_groups(c);
        let act = ACTIVATIONS[(c + k) % ACTIVATIONS.len()];
        let (conv, wt) = random_conv(&mut rng, [c, 1, k, k], params, true, act);
        check_conv(
            &conv,
            &wt,
            [2, c, h, w],
            (c + h * w) as u64,
            &format!("depthwise streamed {k}x{k} s{stride} C={c} {h}x{w}"),
        );
    }
}

/// Found by review: a dense convolution with one kernel row, short rows and a large stride
/// reads its input in place as a single-run A whose row stride crowds one L1 set, so the
/// GEMM packs it; on a thread that had run no other GEMM the packing buffer was empty
/// (heap write out of bounds, SIGSEGV). Fresh threads, every tier.
#[test]
fn dense_single_kernel_row_large_stride_on_a_fresh_thread() {
    for (cin, kw, stride, w) in [(4, 3, 256, 259), (16, 1, 32, 97)] {
        std::thread::spawn(move || {
            let mut rng = SplitMix64::new(cin as u64);
            let params = Conv2dParams::default().with_stride(stride);
            let act = Activation::None;
            let (conv, wt) = random_conv(&mut rng, [8, cin, 1, kw], params, true, act);
            check_conv(
                &conv,
                &wt,
                [1, cin, 1, w],
                9,
                &format!("1x{kw} s{stride} C={cin}"),
            );
        })
        .join()
        .unwrap();
    }
    std::thread::spawn(|| {
        let k = 16;
        let packed = PackedGemm::from_fn(k, 32, None, |a, b| (a + b) as f32).unwrap();
        let (lda, m) = (1024, 30);
        let a = vec![1.0f32; (m - 1) * lda + k];
        for isa in available_tiers() {
            let mut got = vec![f32::NAN; m * 32];
            let mut want = vec![f32::NAN; m * 32];
            packed
                .run_segmented(isa, &a, lda, 1, k, m, &mut got, 32, Activation::None)
                .unwrap();
            packed
                .run(isa, &a, lda, m, &mut want, 32, Activation::None)
                .unwrap();
            assert_eq!(got, want, "{}", isa.name());
        }
    })
    .join()
    .unwrap();
}

/// The dense path that reads short kernel rows in place (kW·C_in ≤ 16), from a review:
/// runs of exactly 16 floats, stride 3, row dilation 2–4, padding wider than the kernel,
/// 1×1 / 1×9 / 9×1 inputs, batch 1 and 3.
#[test]
fn dense_in_place_geometry_sweep() {
    let mut rng = SplitMix64::new(5);
    // (cin, kh, kw, stride, dilation_h, (t, b, l, r), h, w)
    let cases = [
        (1, 1, 16, 3, 1, (0, 0, 0, 0), 5, 40),
        (16, 1, 1, 3, 1, (0, 0, 0, 0), 7, 7),
        (8, 2, 2, 3, 3, (4, 5, 3, 6), 9, 8),
        (4, 3, 4, 3, 2, (0, 0, 0, 0), 7, 4),
        (2, 4, 8, 1, 3, (1, 0, 2, 3), 10, 8),
        (3, 3, 3, 2, 2, (5, 5, 5, 5), 1, 1),
        (3, 3, 3, 1, 1, (1, 1, 1, 1), 1, 9),
        (3, 3, 3, 1, 1, (1, 1, 1, 1), 9, 1),
        (3, 3, 3, 3, 1, (0, 2, 0, 2), 3, 3),
        (1, 5, 2, 2, 2, (0, 0, 0, 0), 9, 2),
        (16, 3, 1, 1, 4, (0, 1, 0, 0), 12, 5),
        (5, 2, 3, 2, 1, (3, 0, 0, 3), 6, 11),
    ];
    for (i, &(cin, kh, kw, s, dh, (t, b, l, r), h, w)) in cases.iter().enumerate() {
        for batch in [1, 3] {
            let params = Conv2dParams {
                dilation: [dh, 1],
                ..Conv2dParams::default()
                    .with_stride(s)
                    .with_padding(Padding::asymmetric(t, b, l, r))
            };
            let act = ACTIVATIONS[i % ACTIVATIONS.len()];
            let (conv, wt) = random_conv(&mut rng, [19, cin, kh, kw], params, i % 2 == 0, act);
            check_conv(
                &conv,
                &wt,
                [batch, cin, h, w],
                (i * 10 + batch) as u64,
                &format!("dense in place {cin} {kh}x{kw} s{s} dh{dh} n{batch} {h}x{w}"),
            );
        }
    }
}
