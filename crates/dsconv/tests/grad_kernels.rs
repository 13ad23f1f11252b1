//! The fast depthwise backward kernels (`kernels::dwgrad`, reached through
//! `dsconv::grad` for depthwise multiplier-1 zero-padded convolutions) against the f64
//! reference `reference::conv2d_backward`, at every instruction-set tier this CPU has:
//! 3×3 and 5×5 at stride 1 and 2, widths 1..=17 (register blocks of 4, 6 and 8 pixels and
//! their tails, both stride-2 phases), channel counts around the 8- and 16-lane tiles,
//! every padding side on its own (asymmetric), TF `Same`, batch 2, dilation, other kernel
//! widths (tap groups of 1..5 columns, 7 = 5 + 2), both layouts; each gradient within
//! `1e-5 · max|reference|`, and 1, 2 and 3 threads bitwise equal (cases large enough to
//! split).

mod common;

use common::relative_error;
use dsconv::kernels::available_tiers;
use dsconv::{grad, reference, Conv2dParams, ConvGeometry, Executor, Layout, Padding, Tensor};

const TOLERANCE: f64 = 1e-5;

/// Channel counts cycled through: around the AVX2 (8) and AVX-512 (16) tiles.
const CHANNELS: [usize; 7] = [1, 9, 17, 33, 8, 16, 7];

/// Checks one depthwise case at every tier on 1, 2 and 3 threads; `None` when the
/// geometry is invalid (no output pixels).
fn check(input: [usize; 4], kernel: [usize; 2], params: Conv2dParams, seed: u64) -> Option<()> {
    let c = input[1];
    let wdims = [c, 1, kernel[0], kernel[1]];
    let g = ConvGeometry::new(input, wdims, &params).ok()?;
    let w = Tensor::from_nchw(
        common::random_vec(seed ^ 1, c * kernel[0] * kernel[1], 1.0),
        wdims,
    )
    .unwrap();
    let x = common::random_tensor(input, Layout::Nchw, seed, 1.0);
    let dy = common::random_tensor(g.output_dims(), Layout::Nchw, seed ^ 7, 1.0);
    let want = reference::conv2d_backward(&x, &w, &dy, &params).unwrap();
    for tier in available_tiers() {
        let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
        for threads in 1..=3 {
            let exec = Executor::new(threads)
                .unwrap()
                .with_isa(tier.isa())
                .unwrap();
            for layout in [Layout::Nhwc, Layout::Nchw] {
                let (xl, dyl) = (x.to_layout(layout), dy.to_layout(layout));
                let dx = grad::conv2d_input(input, &w, &dyl, &params, layout, &exec).unwrap();
                let dw = grad::conv2d_weight(&xl, wdims, &dyl, &params, &exec).unwrap();
                let what = format!(
                    "{input:?} k{kernel:?} {params:?} {} {threads}t",
                    tier.name()
                );
                let e_in = relative_error(&dx, &want.input, 0.0);
                let e_w = relative_error(&dw, &want.weight, 0.0);
                assert!(e_in <= TOLERANCE, "{what}: input gradient error {e_in:e}");
                assert!(e_w <= TOLERANCE, "{what}: weight gradient error {e_w:e}");
                let bits = (dx.to_layout(Layout::Nhwc).into_data(), dw.into_data());
                match &first {
                    None => first = Some(bits),
                    Some(f) => assert!(*f == bits, "{what}: differs from 1 thread"),
                }
            }
        }
    }
    Some(())
}

/// 3×3 and 5×5, stride 1 and 2, widths 1..=17, each padding side varied on its own.
#[test]
fn depthwise_3x3_5x5_every_width_and_padding_side() {
    let mut checked = 0;
    for (k, s) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
        for w in 1..=17usize {
            let c = CHANNELS[w % CHANNELS.len()];
            let h = 1 + (w * 5) % 8;
            let n = 1 + w % 2;
            // Every side gets 0..k−1 over the widths, the sides out of step.
            let pads = [w % k, (w / 2) % k, (w + 1) % k, (w / 3 + 2) % k];
            let params = Conv2dParams::default()
                .with_stride(s)
                .with_padding(Padding::asymmetric(pads[0], pads[1], pads[2], pads[3]))
                .with_groups(c);
            checked += check([n, c, h, w], [k, k], params, (k * 100 + s * 10 + w) as u64).is_some()
                as usize;
            let same = Conv2dParams::default()
                .with_stride(s)
                .with_padding(Padding::Same)
                .with_groups(c);
            checked += check([n, c, w.max(2), w], [k, k], same, w as u64).is_some() as usize;
        }
    }
    assert!(checked > 100, "only {checked} valid cases");
}

/// Kernel, stride, dilation, padding.
type Shape = ([usize; 2], [usize; 2], [usize; 2], Padding);

/// Dilation, rectangular kernels and strides per axis, widths of 1..7 and 7 columns
/// (tap groups of 1..5 and 5 + 2), no padding.
#[test]
fn depthwise_general_shapes() {
    let shapes: [Shape; 7] = [
        ([3, 3], [1, 1], [2, 2], Padding::symmetric(2)),
        ([5, 5], [2, 2], [2, 1], Padding::asymmetric(0, 3, 4, 1)),
        ([1, 4], [1, 1], [1, 1], Padding::asymmetric(0, 0, 2, 1)),
        ([2, 1], [1, 2], [1, 1], Padding::Valid),
        ([7, 7], [1, 1], [1, 1], Padding::symmetric(3)),
        ([3, 7], [2, 3], [1, 2], Padding::asymmetric(1, 1, 3, 0)),
        ([4, 2], [3, 3], [1, 1], Padding::Same),
    ];
    for (i, (kernel, stride, dilation, padding)) in shapes.into_iter().enumerate() {
        for w in [1usize, 6, 13, 17] {
            let c = CHANNELS[(i + w) % CHANNELS.len()];
            let params = Conv2dParams {
                stride,
                dilation,
                padding,
                groups: c,
                ..Conv2dParams::default()
            };
            check([2, c, 9, w], kernel, params, (i * 31 + w) as u64);
        }
    }
}

/// Cases whose work really splits over 2 and 3 threads (input rows; weight chunks).
#[test]
fn depthwise_large_cases_split_bitwise() {
    for (input, k, s, pad) in [
        ([4, 48, 41, 33], 3, 1, Padding::asymmetric(1, 0, 2, 1)),
        ([3, 40, 37, 29], 5, 2, Padding::Same),
        ([2, 96, 23, 19], 3, 2, Padding::symmetric(1)),
    ] {
        let params = Conv2dParams::default()
            .with_stride(s)
            .with_padding(pad)
            .with_groups(input[1]);
        check(input, [k, k], params, 11).expect("a valid geometry");
    }
}

/// Dense and grouped k×k gradients (the GEMM paths: dX by GEMM + col2im, dW by im2col
/// block GEMMs summed in block order) over several 4,096-pixel blocks and every padding
/// mode: within tolerance of the reference at every tier, 1, 2 and 3 threads bitwise
/// equal.
#[test]
fn dense_gemm_paths_over_several_blocks() {
    use dsconv::PaddingMode;
    let cases = [
        (
            [1, 4, 70, 71],
            [6, 4, 3, 3],
            1,
            Padding::symmetric(1),
            PaddingMode::Zeros,
        ),
        (
            [2, 6, 50, 47],
            [4, 3, 3, 3],
            2,
            Padding::asymmetric(0, 2, 1, 0),
            PaddingMode::Reflect,
        ),
        (
            [1, 3, 66, 65],
            [5, 3, 5, 5],
            1,
            Padding::Same,
            PaddingMode::Circular,
        ),
        (
            [2, 8, 30, 33],
            [8, 2, 3, 3],
            4,
            Padding::symmetric(1),
            PaddingMode::Replicate,
        ),
    ];
    for (k, (input, wdims, groups, padding, mode)) in cases.into_iter().enumerate() {
        let params = Conv2dParams {
            padding,
            padding_mode: mode,
            groups,
            ..Conv2dParams::default()
        };
        let w = Tensor::from_nchw(
            common::random_vec(k as u64, wdims.iter().product(), 1.0),
            wdims,
        )
        .unwrap();
        let g = ConvGeometry::new(input, wdims, &params).unwrap();
        let x = common::random_tensor(
            Layout::Nhwc.dims_from_logical(input),
            Layout::Nhwc,
            3 + k as u64,
            1.0,
        );
        let dy = common::random_tensor(
            Layout::Nhwc.dims_from_logical(g.output_dims()),
            Layout::Nhwc,
            9 + k as u64,
            1.0,
        );
        let want = reference::conv2d_backward(&x, &w, &dy, &params).unwrap();
        for tier in available_tiers() {
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for threads in 1..=3 {
                let exec = Executor::new(threads)
                    .unwrap()
                    .with_isa(tier.isa())
                    .unwrap();
                let dx = grad::conv2d_input(input, &w, &dy, &params, Layout::Nhwc, &exec).unwrap();
                let dw = grad::conv2d_weight(&x, wdims, &dy, &params, &exec).unwrap();
                let what = format!("case {k} {} {threads}t", tier.name());
                let e_in = relative_error(&dx, &want.input, 0.0);
                let e_w = relative_error(&dw, &want.weight, 0.0);
                assert!(e_in <= TOLERANCE, "{what}: input gradient error {e_in:e}");
                assert!(e_w <= TOLERANCE, "{what}: weight gradient error {e_w:e}");
                let bits = (dx.into_data(), dw.into_data());
                match &first {
                    None => first = Some(bits),
                    Some(f) => assert!(*f == bits, "{what}: differs from 1 thread"),
                }
            }
        }
    }
}

/// Pointwise weight gradients with fewer 4,096-pixel blocks than threads (one GEMM per
/// block split over the threads) and with more (a wave of whole blocks per thread): both
/// within tolerance of the reference at every tier, and 1, 2 and 3 threads bitwise equal,
/// so the two schedules give the same bits (2 blocks run as waves on 2 threads and one
/// after another, each split, on 3). Both operand orders (fewer input or output
/// channels).
#[test]
fn pointwise_weight_gradient_few_blocks_split_bitwise() {
    for (input, cout) in [
        ([2, 24, 30, 31], 70), // 1 block, C_in < C_out
        ([3, 40, 40, 37], 18), // 2 blocks, C_in > C_out
        ([1, 33, 70, 71], 41), // 2 blocks, C_in < C_out
    ] {
        let params = Conv2dParams::default();
        let wdims = [cout, input[1], 1, 1];
        let w = Tensor::from_nchw(common::random_vec(5, cout * input[1], 1.0), wdims).unwrap();
        let g = ConvGeometry::new(input, wdims, &params).unwrap();
        let x = common::random_tensor(Layout::Nhwc.dims_from_logical(input), Layout::Nhwc, 6, 1.0);
        let dy = common::random_tensor(
            Layout::Nhwc.dims_from_logical(g.output_dims()),
            Layout::Nhwc,
            7,
            1.0,
        );
        let want = reference::conv2d_backward(&x, &w, &dy, &params).unwrap();
        for tier in available_tiers() {
            let mut first: Option<Vec<f32>> = None;
            for threads in 1..=3 {
                let exec = Executor::new(threads)
                    .unwrap()
                    .with_isa(tier.isa())
                    .unwrap();
                let dw = grad::conv2d_weight(&x, wdims, &dy, &params, &exec).unwrap();
                let what = format!("{input:?}→{cout} {} {threads}t", tier.name());
                let e = relative_error(&dw, &want.weight, 0.0);
                assert!(e <= TOLERANCE, "{what}: weight gradient error {e:e}");
                let bits = dw.into_data();
                match &first {
                    None => first = Some(bits),
                    Some(f) => assert!(*f == bits, "{what}: differs from 1 thread"),
                }
            }
        }
    }
}

/// The `_into` entries write every element of a dirty buffer, bitwise as the allocating
/// functions, and refuse buffers of the wrong length.
#[test]
fn into_variants_overwrite_and_check_lengths() {
    for (wdims, groups) in [([12, 1, 3, 3], 12), ([6, 12, 3, 3], 1), ([24, 1, 5, 5], 12)] {
        let params = Conv2dParams::default()
            .with_stride(2)
            .with_padding(Padding::Same)
            .with_groups(groups);
        let input = [2, 12, 13, 11];
        let g = ConvGeometry::new(input, wdims, &params).unwrap();
        let w =
            Tensor::from_nchw(common::random_vec(1, wdims.iter().product(), 1.0), wdims).unwrap();
        let x = common::random_tensor(Layout::Nhwc.dims_from_logical(input), Layout::Nhwc, 2, 1.0);
        let out = Layout::Nhwc.dims_from_logical(g.output_dims());
        let dy = common::random_tensor(out, Layout::Nhwc, 3, 1.0);
        let exec = Executor::new(2).unwrap();
        let mut dx = vec![f32::NAN; x.len()];
        let mut dw = vec![f32::NAN; w.len()];
        grad::conv2d_input_nhwc_into(&g, w.data(), dy.data(), &mut dx, &exec).unwrap();
        grad::conv2d_weight_nhwc_into(&g, x.data(), dy.data(), &mut dw, &exec).unwrap();
        let want_dx = grad::conv2d_input(input, &w, &dy, &params, Layout::Nhwc, &exec).unwrap();
        let want_dw = grad::conv2d_weight(&x, wdims, &dy, &params, &exec).unwrap();
        assert_eq!(dx, want_dx.data());
        assert_eq!(dw, want_dw.data());
        let mut short = vec![0.0; x.len() - 1];
        assert!(matches!(
            grad::conv2d_input_nhwc_into(&g, w.data(), dy.data(), &mut short, &exec),
            Err(dsconv::Error::Shape { .. })
        ));
        assert!(matches!(
            grad::conv2d_weight_nhwc_into(&g, &x.data()[1..], dy.data(), &mut dw, &exec),
            Err(dsconv::Error::Shape { .. })
        ));
    }
}
