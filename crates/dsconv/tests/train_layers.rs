//! Each trainable layer's backward (input and parameter gradients) against central finite
//! differences of `L = Σ dy · forward(x)` in training mode.

use dsconv::rng::SplitMix64;
use dsconv::train::{
    Act, BatchNorm2d, ConvLayer, Dropout, GlobalAvgPool, Layer, Linear, Mode, Residual, Sequential,
    Slot,
};
use dsconv::{Activation, Conv2dParams, Executor, Layout, Padding, PaddingMode, Tensor};

type Make = dyn Fn() -> Box<dyn Layer>;

fn nhwc(dims: [usize; 4], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let mut t = Tensor::zeros(Layout::Nhwc.dims_from_logical(dims), Layout::Nhwc).unwrap();
    for v in t.data_mut() {
        *v = rng.uniform(-2.0, 2.0);
    }
    t
}

fn loss(layer: &mut dyn Layer, x: &Tensor, dy: &Tensor, exec: &Executor) -> f64 {
    let y = layer.forward(x.clone(), Mode::Train, exec).unwrap();
    y.data()
        .iter()
        .zip(dy.data())
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// Sets element `i` of the `k`-th trainable parameter (visit order) to `v`.
fn set_param(layer: &mut dyn Layer, k: usize, i: usize, delta: f32) {
    let mut n = 0;
    layer.visit("", &mut |_, slot| {
        if let Slot::Param(p) = slot {
            if p.trainable() {
                if n == k {
                    p.value[i] += delta;
                }
                n += 1;
            }
        }
    });
}

fn check(what: &str, make: &Make, in_dims: [usize; 4]) {
    let exec = Executor::new(2).unwrap();
    let x = nhwc(in_dims, 1);
    let out = make().output_dims(in_dims).unwrap();
    let dy = nhwc(out, 2);
    let mut layer = make();
    loss(layer.as_mut(), &x, &dy, &exec);
    let dx = layer.backward(dy.clone(), true, &exec).unwrap().unwrap();
    let mut grads = Vec::new();
    layer.visit("", &mut |_, slot| {
        if let Slot::Param(p) = slot {
            if p.trainable() {
                grads.push(p.grad.clone());
            }
        }
    });
    let h = 1e-2f32;
    let fd = |perturb: &dyn Fn(&mut dyn Layer, &mut Tensor, f32)| {
        let mut xp = x.clone();
        let mut lp = make();
        perturb(lp.as_mut(), &mut xp, h);
        let up = loss(lp.as_mut(), &xp, &dy, &exec);
        let mut xm = x.clone();
        let mut lm = make();
        perturb(lm.as_mut(), &mut xm, -h);
        let down = loss(lm.as_mut(), &xm, &dy, &exec);
        (up - down) / (2.0 * f64::from(h))
    };
    let scale = dx.data().iter().fold(1f32, |m, v| m.max(v.abs())) as f64;
    for i in (0..x.len()).step_by((x.len() / 40).max(1)) {
        let num = fd(&|_, t: &mut Tensor, d| t.data_mut()[i] += d);
        let ana = f64::from(dx.data()[i]);
        assert!(
            (num - ana).abs() <= 2e-2 * scale,
            "{what}: dx[{i}] analytic {ana} vs numeric {num}"
        );
    }
    for (k, g) in grads.iter().enumerate() {
        let gscale = g.iter().fold(1f32, |m, v| m.max(v.abs())) as f64;
        for i in (0..g.len()).step_by((g.len() / 20).max(1)) {
            let num = fd(&|l: &mut dyn Layer, _: &mut Tensor, d| set_param(l, k, i, d));
            assert!(
                (num - f64::from(g[i])).abs() <= 2e-2 * gscale,
                "{what}: param {k}[{i}] analytic {} vs numeric {num}",
                g[i]
            );
        }
    }
}

fn conv(dims: [usize; 4], bias: bool, params: Conv2dParams) -> ConvLayer {
    ConvLayer::init(dims, bias, params, &mut SplitMix64::new(7)).unwrap()
}

#[test]
fn convolutions() {
    check(
        "depthwise stride 2 reflect",
        &|| {
            Box::new(conv(
                [6, 1, 3, 3],
                true,
                Conv2dParams::default()
                    .with_stride(2)
                    .with_padding(Padding::Same)
                    .with_padding_mode(PaddingMode::Reflect)
                    .with_groups(3),
            ))
        },
        [2, 3, 7, 6],
    );
    check(
        "dense 3x3",
        &|| {
            Box::new(conv(
                [4, 3, 3, 3],
                false,
                Conv2dParams::default().with_padding(Padding::symmetric(1)),
            ))
        },
        [2, 3, 5, 5],
    );
}

#[test]
fn batchnorm() {
    check(
        "batchnorm",
        &|| {
            let mut bn = BatchNorm2d::new(3);
            bn.visit("", &mut |name, slot| {
                if let Slot::Param(p) = slot {
                    match name {
                        "weight" => p.value = vec![1.3, -0.6, 0.8],
                        "bias" => p.value = vec![0.2, -0.1, 0.4],
                        _ => {}
                    }
                }
            });
            Box::new(bn)
        },
        [3, 3, 4, 2],
    );
}

#[test]
fn activations_pool_linear_dropout() {
    for kind in [Activation::Relu, Activation::Relu6, Activation::HardSwish] {
        // Values near the kinks (0, 6, ±3) would break finite differences; the input is
        // uniform in ±2 scaled by 4, and the checked points avoid kinks by chance only
        // rarely: use a shifted input that stays 0.05 away from every kink instead.
        let exec = Executor::single();
        let mut x = nhwc([2, 3, 4, 4], 3);
        for v in x.data_mut() {
            *v *= 4.0;
            for k in [0.0f32, 6.0, 3.0, -3.0] {
                if (*v - k).abs() < 0.05 {
                    *v = k + 0.1;
                }
            }
        }
        let dy = nhwc([2, 3, 4, 4], 4);
        let mut a = Act::new(kind);
        let y = a.forward(x.clone(), Mode::Train, &exec).unwrap();
        let dx = a.backward(dy.clone(), true, &exec).unwrap().unwrap();
        for i in 0..x.len() {
            let (v, h) = (x.data()[i], 1e-3f32);
            let num = (kind.apply(v + h) - kind.apply(v - h)) / (2.0 * h);
            let want = num * dy.data()[i];
            assert!(
                (dx.data()[i] - want).abs() < 1e-2,
                "{kind:?} at {v}: {} vs {want}",
                dx.data()[i]
            );
            assert_eq!(y.data()[i], kind.apply(v));
        }
    }
    check("pool", &|| Box::new(GlobalAvgPool::new()), [2, 5, 3, 4]);
    check(
        "linear",
        &|| Box::new(Linear::init(6, 4, &mut SplitMix64::new(9)).unwrap()),
        [3, 6, 1, 1],
    );
    check(
        "dropout",
        &|| Box::new(Dropout::new(0.3, 11).unwrap()),
        [2, 4, 3, 3],
    );
}

#[test]
fn residual_block() {
    check(
        "residual(conv + bn)",
        &|| {
            let mut body = Sequential::new();
            body.push(conv(
                [4, 1, 3, 3],
                false,
                Conv2dParams::default()
                    .with_padding(Padding::symmetric(1))
                    .with_groups(4),
            ));
            body.push(BatchNorm2d::new(4));
            Box::new(Residual::new(body))
        },
        [2, 4, 4, 4],
    );
}

#[test]
fn eval_mode_keeps_nothing_and_backward_without_forward_is_an_error() {
    let exec = Executor::single();
    let mut bn = BatchNorm2d::new(2);
    let x = nhwc([2, 2, 3, 3], 5);
    bn.forward(x.clone(), Mode::Eval, &exec).unwrap();
    assert!(bn.backward(x.clone(), true, &exec).is_err());
    let (_, _, count) = bn.running_stats();
    assert_eq!(count, 0);
    // One value per channel cannot be normalised in training mode.
    assert!(bn
        .forward(nhwc([1, 2, 1, 1], 6), Mode::Train, &exec)
        .is_err());
    // NCHW activations are refused.
    assert!(bn
        .forward(x.to_layout(Layout::Nchw), Mode::Train, &exec)
        .is_err());
}
