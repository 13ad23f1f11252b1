//! `blocks::SqueezeExcite` and `PointwiseConv2d::forward_add_into` against an f64
//! reference written from the definition, at every tier, 1, 2 and 3 threads (bitwise
//! equal), odd channel counts and sizes, and their bad input.

mod common;

use common::random_tensor;
use dsconv::blocks::SqueezeExcite;
use dsconv::kernels::available_tiers;
use dsconv::{Activation, Executor, Layout, PointwiseConv2d, Tensor};

/// `x · gate(W₂ · act(W₁ · mean(x) + b₁) + b₂)` in f64, NHWC in and out.
fn reference(
    x: &Tensor,
    (w1, b1, act): (&Tensor, &[f32], Activation),
    (w2, b2, gate): (&Tensor, &[f32], Activation),
) -> Vec<f64> {
    let [n, c, h, w] = x.logical_dims();
    let r = w1.logical_dims()[0];
    let (w1, w2) = (w1.to_layout(Layout::Nchw), w2.to_layout(Layout::Nchw));
    let mut out = vec![0f64; x.len()];
    for b in 0..n {
        let img = &x.data()[b * h * w * c..(b + 1) * h * w * c];
        let mean: Vec<f64> = (0..c)
            .map(|ch| {
                img.iter()
                    .skip(ch)
                    .step_by(c)
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / (h * w) as f64
            })
            .collect();
        let hid: Vec<f64> = (0..r)
            .map(|j| {
                let s = b1[j] as f64
                    + (0..c)
                        .map(|i| w1.data()[j * c + i] as f64 * mean[i])
                        .sum::<f64>();
                act.apply_f64(s)
            })
            .collect();
        let g: Vec<f64> = (0..c)
            .map(|i| {
                let s = b2[i] as f64
                    + (0..r)
                        .map(|j| w2.data()[i * r + j] as f64 * hid[j])
                        .sum::<f64>();
                gate.apply_f64(s)
            })
            .collect();
        for (p, px) in img.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                out[b * h * w * c + p * c + ch] = v as f64 * g[ch];
            }
        }
    }
    out
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn squeeze_excite_matches_the_f64_reference_at_every_tier_and_thread_count() {
    let cases = [
        // (N, C, H, W, R, act, gate)
        (
            1,
            16,
            7,
            6,
            4,
            Activation::Relu,
            Activation::Clamp { min: 0.0, max: 1.0 },
        ),
        (2, 37, 9, 11, 9, Activation::Silu, Activation::Sigmoid),
        (1, 96, 56, 33, 4, Activation::Silu, Activation::Sigmoid),
        (3, 5, 1, 1, 2, Activation::HardSwish, Activation::Sigmoid),
        (
            2,
            200,
            13,
            3,
            50,
            Activation::Relu,
            Activation::Clamp { min: 0.0, max: 1.0 },
        ),
        // Weights and maps large enough for the sums, both small layers (by columns)
        // and the scale to split over the threads (MobileNetV3-Large's 960 ↔ 240 at 7×7).
        (
            1,
            960,
            7,
            7,
            240,
            Activation::Relu,
            Activation::Clamp { min: 0.0, max: 1.0 },
        ),
        (2, 672, 5, 4, 168, Activation::Silu, Activation::Sigmoid),
    ];
    for (i, &(n, c, h, w, r, act, gate)) in cases.iter().enumerate() {
        let seed = 100 + i as u64;
        let x = random_tensor([n, h, w, c], Layout::Nhwc, seed, 2.0);
        let w1 = random_tensor([r, c, 1, 1], Layout::Nchw, seed + 1, 0.5);
        let w2 = random_tensor([c, r, 1, 1], Layout::Nchw, seed + 2, 0.5);
        let b1 = common::random_vec(seed + 3, r, 0.3);
        let b2 = common::random_vec(seed + 4, c, 0.3);
        let se =
            SqueezeExcite::new(&w1, Some(b1.clone()), act, &w2, Some(b2.clone()), gate).unwrap();
        assert_eq!((se.channels(), se.squeezed()), (c, r));
        let want = reference(&x, (&w1, &b1, act), (&w2, &b2, gate));
        let scale = common::max_abs(want.iter().copied()).max(1e-3);
        for tier in available_tiers() {
            let mut first: Option<Vec<u32>> = None;
            for threads in [1, 2, 3] {
                let exec = Executor::new(threads)
                    .unwrap()
                    .with_isa(tier.isa())
                    .unwrap();
                let y = se.forward_with(&x, &exec).unwrap();
                assert_eq!(y.logical_dims(), x.logical_dims());
                let err = common::max_abs_diff_f64(y.data(), &want);
                assert!(
                    err <= 1e-5 * scale,
                    "case {i} [{}] {threads} threads: error {err:e} vs max {scale}",
                    tier.name()
                );
                match &first {
                    None => first = Some(bits(&y)),
                    Some(b) => assert_eq!(b, &bits(&y), "case {i}: {threads} threads differ"),
                }
            }
        }
    }
}

#[test]
fn squeeze_excite_bad_input_is_an_error() {
    let w1 = random_tensor([4, 8, 1, 1], Layout::Nchw, 1, 1.0);
    let w2 = random_tensor([8, 4, 1, 1], Layout::Nchw, 2, 1.0);
    let bad_w2 = random_tensor([8, 3, 1, 1], Layout::Nchw, 2, 1.0);
    let k3 = random_tensor([8, 4, 3, 3], Layout::Nchw, 2, 1.0);
    let (relu, sig) = (Activation::Relu, Activation::Sigmoid);
    assert!(SqueezeExcite::new(&w1, None, relu, &bad_w2, None, sig).is_err());
    assert!(SqueezeExcite::new(&w1, None, relu, &k3, None, sig).is_err());
    assert!(SqueezeExcite::new(&w1, Some(vec![0.0; 3]), relu, &w2, None, sig).is_err());
    assert!(SqueezeExcite::new(&w1, None, relu, &w2, Some(vec![0.0; 9]), sig).is_err());
    let se = SqueezeExcite::new(&w1, None, relu, &w2, None, sig).unwrap();
    let exec = Executor::new(2).unwrap();
    // Wrong channel count, NCHW input, output of other dims.
    let x7 = random_tensor([1, 3, 3, 7], Layout::Nhwc, 3, 1.0);
    assert!(se.forward_with(&x7, &exec).is_err());
    let nchw = random_tensor([1, 8, 3, 3], Layout::Nchw, 3, 1.0);
    assert!(se.forward_with(&nchw, &exec).is_err());
    let x = random_tensor([1, 3, 3, 8], Layout::Nhwc, 3, 1.0);
    let mut out = Tensor::zeros([1, 3, 4, 8], Layout::Nhwc).unwrap();
    assert!(se.forward_into(&x, &mut out, &exec).is_err());
}

#[test]
fn pointwise_with_residual_equals_conv_then_add_bitwise() {
    for (i, &(n, cin, cout, h, w, act)) in [
        (1, 24, 40, 7, 9, Activation::None),
        (2, 64, 16, 11, 5, Activation::Silu),
        (1, 200, 33, 3, 3, Activation::HardSwish),
    ]
    .iter()
    .enumerate()
    {
        let seed = 200 + i as u64;
        let wt = random_tensor([cout, cin, 1, 1], Layout::Nchw, seed, 0.3);
        let bias = common::random_vec(seed + 1, cout, 0.2);
        let pw = PointwiseConv2d::new(wt, Some(bias))
            .unwrap()
            .with_activation(act);
        let x = random_tensor([n, h, w, cin], Layout::Nhwc, seed + 2, 1.0);
        let res = random_tensor([n, h, w, cout], Layout::Nhwc, seed + 3, 1.0);
        for tier in available_tiers() {
            let exec1 = Executor::single().with_isa(tier.isa()).unwrap();
            let mut want = Tensor::zeros([n, h, w, cout], Layout::Nhwc).unwrap();
            pw.forward_into(&x, &mut want, &exec1).unwrap();
            for (o, r) in want.data_mut().iter_mut().zip(res.data()) {
                *o += r;
            }
            for threads in [1, 2, 3] {
                let exec = Executor::new(threads)
                    .unwrap()
                    .with_isa(tier.isa())
                    .unwrap();
                let mut got = Tensor::zeros([n, h, w, cout], Layout::Nhwc).unwrap();
                pw.forward_add_into(&x, &res, &mut got, &exec).unwrap();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "case {i} [{}] {threads}",
                    tier.name()
                );
            }
        }
        // A residual of other dims or layout is an error.
        let exec = Executor::new(2).unwrap();
        let mut got = Tensor::zeros([n, h, w, cout], Layout::Nhwc).unwrap();
        let short = random_tensor([n, h, w + 1, cout], Layout::Nhwc, 9, 1.0);
        assert!(pw.forward_add_into(&x, &short, &mut got, &exec).is_err());
        let nchw = res.to_layout(Layout::Nchw);
        assert!(pw.forward_add_into(&x, &nchw, &mut got, &exec).is_err());
    }
}
