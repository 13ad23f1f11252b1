//! The trainable ImageNet networks (MobileNetV1, MobileNetV2, EfficientNet-Lite0):
//! `BnAct` against `BatchNorm2d` + `Act`, checkpoints that the inference loaders read
//! (train → save → `Network` gives the same logits), fine-tuning with a fresh classifier,
//! and checkpoints of another architecture or width refused with a clear error.

use dsconv::models::registry;
use dsconv::rng::SplitMix64;
use dsconv::train::{
    save_checkpoint, Act, Arch, BatchNorm2d, BnAct, CnnConfig, Layer, Mode, Model, Optimizer, Sgd,
    Slot,
};
use dsconv::weights::StateDict;
use dsconv::{Activation, Error, Executor, Layout, Tensor};

const IMAGENET: [Arch; 3] = [
    Arch::MobileNetV1,
    Arch::MobileNetV2,
    Arch::EfficientNetLite0,
];

fn input(n: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    Tensor::from_nchw(rng.vec(n * 3 * size * size, -1.5, 1.5), [n, 3, size, size]).unwrap()
}

/// A small model of `arch`: MobileNets at α = 0.25, all 32×32, 5 classes.
fn small(arch: Arch, seed: u64) -> Model {
    let mut config = CnnConfig::new(3, 32, 32, 5);
    config.width_mult = 0.25;
    Model::new(arch, config, seed).unwrap()
}

fn train_a_little(model: &mut Model, exec: &Executor) {
    let mut opt = Optimizer::sgd(Sgd {
        lr: 0.05,
        momentum: 0.9,
        ..Sgd::default()
    });
    for step in 0..2 {
        let x = input(4, 32, 10 + step);
        let s = model
            .train_step(&x, &[0, 1, 2, 3], &mut opt, 0.05, 0.0, exec)
            .unwrap();
        assert!(s.loss.is_finite());
    }
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b
        .iter()
        .fold(0f64, |m, &v| m.max(f64::from(v).abs()))
        .max(1e-12);
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn bnact_is_bitwise_batchnorm_then_activation() {
    let exec = Executor::single();
    for act in [
        Activation::Relu6,
        Activation::Relu,
        Activation::None,
        Activation::HardSwish,
    ] {
        let dims = [3, 5, 4, 6];
        let mut rng = SplitMix64::new(3);
        let x = Tensor::from_nhwc(rng.vec(3 * 4 * 6 * 5, -4.0, 8.0), [3, 4, 6, 5]).unwrap();
        let dy = Tensor::from_nhwc(rng.vec(x.len(), -1.0, 1.0), [3, 4, 6, 5]).unwrap();
        assert_eq!(x.logical_dims(), dims);
        let gamma = rng.vec(5, 0.5, 2.0);
        let beta = rng.vec(5, -1.0, 1.0);
        let set = |l: &mut dyn Layer| {
            l.visit("", &mut |name, slot| {
                if let Slot::Param(p) = slot {
                    if name == "weight" {
                        p.value = gamma.clone();
                    } else if name == "bias" {
                        p.value = beta.clone();
                    }
                }
            })
        };
        let mut fused = BnAct::new(5, 1e-3, 0.01, act);
        let mut bn = BatchNorm2d::new(5).with_eps_momentum(1e-3, 0.01);
        let mut a = Act::new(act);
        set(&mut fused);
        set(&mut bn);
        for mode in [Mode::Train, Mode::Eval, Mode::Train] {
            let y1 = fused.forward(x.clone(), mode, &exec).unwrap();
            let y2 = a
                .forward(bn.forward(x.clone(), mode, &exec).unwrap(), mode, &exec)
                .unwrap();
            assert_eq!(y1.data(), y2.data(), "{act:?} {mode:?}");
        }
        let dx1 = fused.backward(dy.clone(), true, &exec).unwrap().unwrap();
        let d = a.backward(dy.clone(), true, &exec).unwrap().unwrap();
        let dx2 = bn.backward(d, true, &exec).unwrap().unwrap();
        assert_eq!(dx1.data(), dx2.data(), "{act:?}");
        let state = |l: &mut dyn Layer| {
            let mut out = Vec::new();
            l.visit("", &mut |name, slot| match slot {
                Slot::Param(p) => out.push((name.to_string(), p.value.clone(), p.grad.clone())),
                Slot::Count(c) => out.push((name.to_string(), vec![*c as f32], vec![])),
            });
            out
        };
        assert_eq!(state(&mut fused), state(&mut bn), "{act:?}");
        assert!(fused.backward(dy, true, &exec).is_err(), "no forward kept");
    }
}

/// Every network's state_dict is exactly what the inference loader reads, and after a
/// few training steps a saved checkpoint gives the inference `Network` the model's own
/// evaluation logits: bitwise the fused evaluation, and within float rounding of the
/// training layers run in evaluation mode.
#[test]
fn checkpoints_load_in_the_inference_network_with_equal_logits() {
    let exec = Executor::new(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for arch in IMAGENET {
        let mut model = small(arch, 1);
        train_a_little(&mut model, &exec);
        let path = dir.path().join(format!("{}.safetensors", arch.name()));
        save_checkpoint(&path, &mut model, &[]).unwrap();
        let sd = StateDict::load(&path).unwrap();
        let tracked = sd.get(&format!(
            "{}num_batches_tracked",
            match arch {
                Arch::MobileNetV1 => "model.0.1.",
                Arch::MobileNetV2 => "features.0.1.",
                _ => "_bn0.",
            }
        ));
        assert_eq!(tracked.map(|t| t.data.clone()), Some(vec![2.0]), "{arch:?}");
        let width = if arch == Arch::EfficientNetLite0 {
            1.0
        } else {
            0.25
        };
        let net = registry::lookup(arch.name())
            .unwrap()
            .from_state_dict(&sd, width, 32)
            .unwrap();
        let x = input(3, 32, 99);
        let want = net.forward_with(&x, &exec).unwrap();
        assert_eq!(want.dims(), [3, 5, 1, 1]);
        let fused = model.logits(&x, &exec).unwrap();
        assert_eq!(fused, want.data(), "{arch:?}: fused evaluation");
        model.set_fused_eval(false);
        let layers = model.logits(&x, &exec).unwrap();
        let err = max_rel(&layers, want.data());
        // Folded BatchNorm rounds differently; small random classifier weights make the
        // logits small against the features, so this is relative to the largest logit.
        assert!(
            err < 1e-3,
            "{arch:?}: training layers in eval mode off by {err:e}"
        );
        // And the train model reads the checkpoint back: same logits.
        let mut back = Model::from_state_dict(arch, model.config(), &sd).unwrap();
        back.set_fused_eval(false);
        assert_eq!(back.logits(&x, &exec).unwrap(), layers, "{arch:?}: reload");
    }
}

/// The parameter counts PyTorch reports (`sum(p.numel() for p in m.parameters())`) at
/// α = 1 and 1000 classes.
#[test]
fn parameter_counts_are_pytorchs() {
    for (arch, want) in [
        (Arch::MobileNetV2, 3_504_872),
        (Arch::MobileNetV1, 4_231_976),
        (Arch::EfficientNetLite0, 4_652_008),
    ] {
        let mut m = Model::new(arch, CnnConfig::new(3, 224, 224, 1000), 0).unwrap();
        assert_eq!(m.parameter_count(), want, "{arch:?}");
    }
}

#[test]
fn fine_tuning_keeps_the_body_and_reinitialises_only_the_classifier() {
    let exec = Executor::single();
    for arch in IMAGENET {
        let mut src = small(arch, 5);
        let sd = src.to_state_dict();
        let mut base = src.config().clone();
        base.classes = 3;
        let (mut tuned, fresh) = Model::fine_tune(arch, &base, &sd, 9).unwrap();
        assert!(fresh);
        assert_eq!(tuned.config().classes, 3);
        let fc = arch.classifier_name();
        let sd2 = tuned.to_state_dict();
        for name in sd.names() {
            let a = &sd.get(name).unwrap();
            let b = sd2.get(name).unwrap();
            if name.starts_with(fc) {
                assert_eq!(b.dims[0], 3, "{name}");
            } else {
                assert_eq!((&a.dims, &a.data), (&b.dims, &b.data), "{name}");
            }
        }
        assert_eq!(tuned.logits(&input(2, 32, 1), &exec).unwrap().len(), 6);
        // Same class count: nothing is reset.
        let (mut same, fresh) = Model::fine_tune(arch, src.config(), &sd, 9).unwrap();
        assert!(!fresh);
        assert_eq!(same.to_state_dict(), sd);
    }
}

#[test]
fn checkpoints_of_another_architecture_or_width_are_clear_errors() {
    let v1 = small(Arch::MobileNetV1, 1).to_state_dict();
    let v2 = small(Arch::MobileNetV2, 1).to_state_dict();
    let lite = small(Arch::EfficientNetLite0, 1).to_state_dict();
    let ds = Model::new(Arch::DsCnn, CnnConfig::new(3, 32, 32, 5), 0)
        .unwrap()
        .to_state_dict();
    let base = small(Arch::MobileNetV2, 0).config().clone();
    for (arch, sd, looks) in [
        (Arch::MobileNetV2, &v1, "mobilenet-v1"),
        (Arch::MobileNetV2, &lite, "efficientnet-lite0"),
        (Arch::MobileNetV1, &v2, "mobilenet-v2"),
        (Arch::EfficientNetLite0, &ds, "ds-cnn"),
        (Arch::DsCnn, &v2, "mobilenet-v2"),
    ] {
        let err = Model::from_state_dict(arch, &base, sd).unwrap_err();
        assert!(matches!(err, Error::Checkpoint(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(arch.name()) && msg.contains(looks), "{msg}");
        assert!(err.is_bad_input());
    }
    let mut wide = base.clone();
    wide.width_mult = 1.0;
    let err = Model::from_state_dict(Arch::MobileNetV2, &wide, &v2).unwrap_err();
    assert!(err.to_string().contains("width multiplier"), "{err}");
    // A tensor of the wrong shape inside is named.
    let mut bad = v2.clone();
    let t = bad.get("features.3.conv.1.0.weight").unwrap().clone();
    bad.insert(
        "features.3.conv.1.0.weight".into(),
        dsconv::weights::WeightTensor {
            dims: vec![t.dims[0], 1, 5, 5],
            data: vec![0.0; t.dims[0] * 25],
            ..t
        },
    );
    let err = Model::from_state_dict(Arch::MobileNetV2, &base, &bad).unwrap_err();
    assert!(
        err.to_string().contains("features.3.conv.1.0.weight"),
        "{err}"
    );
}

#[test]
fn names_and_train_mode_details() {
    assert_eq!(Arch::lookup("MobileNetV2"), Some(Arch::MobileNetV2));
    assert_eq!(
        Arch::lookup("efficientnet_lite0"),
        Some(Arch::EfficientNetLite0)
    );
    assert_eq!(Arch::lookup("efficientnet-lite1"), None);
    assert_eq!(Arch::lookup("mobilenet_v1"), Some(Arch::MobileNetV1));
    // Train-mode forward on a batch with one value per channel at the end is refused.
    let exec = Executor::single();
    let mut m = small(Arch::MobileNetV2, 0);
    let one = input(1, 32, 0);
    assert!(m.forward(&one, Mode::Train, &exec).is_err());
    // NCHW and NHWC inputs give the same logits.
    let x = input(2, 32, 3);
    let a = m.logits(&x, &exec).unwrap();
    let b = m.logits(&x.to_layout(Layout::Nhwc), &exec).unwrap();
    assert_eq!(a, b);
}
