//! The training layers' threaded passes (BatchNorm statistics and normalisation,
//! activations with their byte masks, residual adds) on tensors large enough to be split:
//! against an f64 reference written from PyTorch's formulas, and bitwise identical on 1, 2
//! and 3 threads. Sizes are odd (pixel counts not a multiple of the 1,024-pixel sum block,
//! element counts not a multiple of 64) so every piece and block edge is crossed.

use dsconv::rng::SplitMix64;
use dsconv::train::{Act, BatchNorm2d, ConvLayer, Layer, Mode, Residual, Sequential, Slot};
use dsconv::{Activation, Conv2dParams, Executor, Layout, Tensor};

fn nhwc(dims: [usize; 4], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let mut t = Tensor::zeros(Layout::Nhwc.dims_from_logical(dims), Layout::Nhwc).unwrap();
    for v in t.data_mut() {
        *v = rng.uniform(lo, hi);
    }
    t
}

fn bits(t: &[f32]) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

/// Everything a BatchNorm train step produces: y, dx, dγ, dβ, running mean and var.
type BnOut = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

fn bn_step(x: &Tensor, dy: &Tensor, gamma: &[f32], beta: &[f32], threads: usize) -> BnOut {
    let exec = Executor::new(threads).unwrap();
    let c = gamma.len();
    let mut bn = BatchNorm2d::new(c);
    bn.visit("", &mut |name, slot| {
        if let Slot::Param(p) = slot {
            match name {
                "weight" => p.value = gamma.to_vec(),
                "bias" => p.value = beta.to_vec(),
                _ => {}
            }
        }
    });
    let y = bn.forward(x.clone(), Mode::Train, &exec).unwrap();
    let dx = bn.backward(dy.clone(), true, &exec).unwrap().unwrap();
    let mut grads = Vec::new();
    bn.visit("", &mut |_, slot| {
        if let Slot::Param(p) = slot {
            if p.trainable() {
                grads.push(p.grad.clone());
            }
        }
    });
    let (rm, rv, n) = bn.running_stats();
    assert_eq!(n, 1);
    (
        y.into_data(),
        dx.into_data(),
        grads[0].clone(),
        grads[1].clone(),
        rm.to_vec(),
        rv.to_vec(),
    )
}

fn close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= rel * scale,
            "{what}[{i}]: {g} vs {w} (scale {scale})"
        );
    }
}

#[test]
fn batchnorm_matches_f64_and_is_thread_count_independent() {
    // 3·37·29 = 3,219 pixels: three full sum blocks and a partial one; 24 channels. An
    // offset mean (5) tests the shifted one-pass variance.
    for (dims, offset) in [([3, 24, 37, 29], 5.0f32), ([2, 7, 61, 33], -0.5)] {
        let c = dims[1];
        let x = nhwc(dims, 1, offset - 2.0, offset + 2.0);
        let dy = nhwc(dims, 2, -1.0, 1.0);
        let mut rng = SplitMix64::new(3);
        let gamma = rng.vec(c, 0.5, 1.5);
        let beta = rng.vec(c, -0.5, 0.5);
        let one = bn_step(&x, &dy, &gamma, &beta, 1);
        for threads in [2, 3] {
            let t = bn_step(&x, &dy, &gamma, &beta, threads);
            assert_eq!(bits(&one.0), bits(&t.0), "y, {threads} threads");
            assert_eq!(bits(&one.1), bits(&t.1), "dx, {threads} threads");
            assert_eq!(bits(&one.2), bits(&t.2), "dgamma, {threads} threads");
            assert_eq!(bits(&one.3), bits(&t.3), "dbeta, {threads} threads");
            assert_eq!(bits(&one.4), bits(&t.4), "running_mean");
            assert_eq!(bits(&one.5), bits(&t.5), "running_var");
        }
        // f64 reference (PyTorch's formulas).
        let m = x.len() / c;
        let (xs, gs) = (x.data(), dy.data());
        let mut mean = vec![0f64; c];
        for (i, &v) in xs.iter().enumerate() {
            mean[i % c] += f64::from(v) / m as f64;
        }
        let mut var = vec![0f64; c];
        for (i, &v) in xs.iter().enumerate() {
            var[i % c] += (f64::from(v) - mean[i % c]).powi(2);
        }
        let invstd: Vec<f64> = var
            .iter()
            .map(|s| 1.0 / (s / m as f64 + 1e-5).sqrt())
            .collect();
        let xhat: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &v)| (f64::from(v) - mean[i % c]) * invstd[i % c])
            .collect();
        let y: Vec<f64> = xhat
            .iter()
            .enumerate()
            .map(|(i, h)| h * f64::from(gamma[i % c]) + f64::from(beta[i % c]))
            .collect();
        let mut sdy = vec![0f64; c];
        let mut sdyx = vec![0f64; c];
        for (i, (&g, h)) in gs.iter().zip(&xhat).enumerate() {
            sdy[i % c] += f64::from(g);
            sdyx[i % c] += f64::from(g) * h;
        }
        let dx: Vec<f64> = gs
            .iter()
            .zip(&xhat)
            .enumerate()
            .map(|(i, (&g, h))| {
                let ch = i % c;
                f64::from(gamma[ch])
                    * invstd[ch]
                    * (f64::from(g) - sdy[ch] / m as f64 - h * sdyx[ch] / m as f64)
            })
            .collect();
        let rm: Vec<f64> = mean.iter().map(|v| 0.1 * v).collect();
        let rv: Vec<f64> = var.iter().map(|s| 0.9 + 0.1 * s / (m - 1) as f64).collect();
        close("y", &one.0, &y, 1e-5);
        close("dx", &one.1, &dx, 1e-5);
        close("dgamma", &one.2, &sdyx, 1e-5);
        close("dbeta", &one.3, &sdy, 1e-5);
        close("running_mean", &one.4, &rm, 1e-6);
        close("running_var", &one.5, &rv, 1e-6);
    }
}

#[test]
fn activations_match_pytorch_masks_on_every_thread_count() {
    // 2·13·41·31 = 33,046 elements (not a multiple of 64): split into pieces; values at
    // and around every bound, NaN and ±∞ included.
    let dims = [2, 13, 41, 31];
    let mut x = nhwc(dims, 7, -8.0, 8.0);
    let specials = [
        0.0,
        -0.0,
        6.0,
        3.0,
        -3.0,
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
    ];
    for (i, v) in x.data_mut().iter_mut().enumerate().step_by(97) {
        *v = specials[i % specials.len()];
    }
    let dy = nhwc(dims, 8, -1.0, 1.0);
    for kind in [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::Clamp {
            min: -1.5,
            max: 2.5,
        },
        Activation::HardSwish,
        Activation::Sigmoid,
        Activation::Silu,
    ] {
        let run = |threads: usize| {
            let exec = Executor::new(threads).unwrap();
            let mut a = Act::new(kind);
            let y = a.forward(x.clone(), Mode::Train, &exec).unwrap();
            let dx = a.backward(dy.clone(), true, &exec).unwrap().unwrap();
            (bits(y.data()), bits(dx.data()))
        };
        let one = run(1);
        for (i, (&v, &g)) in x.data().iter().zip(dy.data()).enumerate() {
            assert_eq!(one.0[i], kind.apply(v).to_bits(), "{kind:?} y at {v}");
            // PyTorch: the gradient passes where the input is strictly inside the bounds
            // (ReLU: > 0), else it is 0; hard-swish its derivative; none everywhere.
            let want = match kind {
                Activation::None => g,
                Activation::Sigmoid => {
                    let s = 1.0 / (1.0 + (-v).exp());
                    g * (s * (1.0 - s))
                }
                Activation::Silu => {
                    let s = 1.0 / (1.0 + (-v).exp());
                    g * (s * (1.0 + v * (1.0 - s)))
                }
                Activation::Relu => {
                    if v > 0.0 {
                        g
                    } else {
                        0.0
                    }
                }
                Activation::Relu6 => {
                    if v > 0.0 && v < 6.0 {
                        g
                    } else {
                        0.0
                    }
                }
                Activation::Clamp { min, max } => {
                    if v > min && v < max {
                        g
                    } else {
                        0.0
                    }
                }
                Activation::HardSwish => {
                    g * if v < -3.0 {
                        0.0
                    } else if v <= 3.0 {
                        v / 3.0 + 0.5
                    } else {
                        1.0
                    }
                }
            };
            assert_eq!(
                f32::from_bits(one.1[i]).to_bits(),
                want.to_bits(),
                "{kind:?} dx at {v}"
            );
        }
        for threads in [2, 3] {
            assert_eq!(one, run(threads), "{kind:?} on {threads} threads");
        }
    }
}

#[test]
fn residual_add_is_thread_count_independent() {
    let dims = [2, 24, 31, 29];
    let x = nhwc(dims, 11, -1.0, 1.0);
    let dy = nhwc(dims, 12, -1.0, 1.0);
    let run = |threads: usize| {
        let exec = Executor::new(threads).unwrap();
        let mut body = Sequential::new();
        body.push(
            ConvLayer::init(
                [24, 24, 1, 1],
                false,
                Conv2dParams::default(),
                &mut SplitMix64::new(5),
            )
            .unwrap(),
        );
        body.push(Act::new(Activation::Relu6));
        let mut r = Residual::new(body);
        let y = r.forward(x.clone(), Mode::Train, &exec).unwrap();
        let dx = r.backward(dy.clone(), true, &exec).unwrap().unwrap();
        (bits(y.data()), bits(dx.data()))
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

/// The networks' fused `BnAct` (the activation's gradient and BatchNorm's sums in one
/// threaded pass) on a tensor of several 1,024-pixel blocks and pool-sized buffers: on 1,
/// 2 and 3 threads bitwise what `BatchNorm2d` then `Act` give on one thread, forward,
/// backward and parameter gradients, for every kind of activation gradient.
#[test]
fn bnact_is_bitwise_batchnorm_then_activation_on_every_thread_count() {
    use dsconv::train::BnAct;
    // 3·61·53 = 9,699 pixels (not a multiple of the sum block) × 29 channels: above the
    // pool's 2^18 floats.
    let dims = [3, 29, 61, 53];
    let x = nhwc(dims, 21, -4.0, 8.0);
    let dy = nhwc(dims, 22, -1.0, 1.0);
    let c = dims[1];
    let mut rng = SplitMix64::new(23);
    let gamma: Vec<f32> = (0..c).map(|_| rng.uniform(0.5, 2.0)).collect();
    let beta: Vec<f32> = (0..c).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let set = |l: &mut dyn Layer| {
        l.visit("", &mut |name, slot| {
            if let Slot::Param(p) = slot {
                match name {
                    "weight" => p.value = gamma.clone(),
                    "bias" => p.value = beta.clone(),
                    _ => {}
                }
            }
        })
    };
    let grads = |l: &mut dyn Layer| {
        let mut out = Vec::new();
        l.visit("", &mut |_, slot| {
            if let Slot::Param(p) = slot {
                out.push((bits(&p.value), bits(&p.grad)));
            }
        });
        out
    };
    for act in [
        Activation::Relu6,
        Activation::Relu,
        Activation::None,
        Activation::Silu,
        Activation::HardSwish,
    ] {
        let single = Executor::single();
        let mut bn = BatchNorm2d::new(c).with_eps_momentum(1e-3, 0.01);
        let mut a = Act::new(act);
        set(&mut bn);
        let y = a
            .forward(
                bn.forward(x.clone(), Mode::Train, &single).unwrap(),
                Mode::Train,
                &single,
            )
            .unwrap();
        let d = a.backward(dy.clone(), true, &single).unwrap().unwrap();
        let dx = bn.backward(d, true, &single).unwrap().unwrap();
        let want = (bits(y.data()), bits(dx.data()), grads(&mut bn));
        for threads in [1, 2, 3] {
            let exec = Executor::new(threads).unwrap();
            let mut fused = BnAct::new(c, 1e-3, 0.01, act);
            set(&mut fused);
            let y = fused.forward(x.clone(), Mode::Train, &exec).unwrap();
            let dx = fused.backward(dy.clone(), true, &exec).unwrap().unwrap();
            let got = (bits(y.data()), bits(dx.data()), grads(&mut fused));
            assert!(got == want, "{act:?} on {threads} threads");
        }
    }
}
