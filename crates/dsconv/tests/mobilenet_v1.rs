//! MobileNetV1 in the classic PyTorch naming (`model.N.M`, `fc`), loaded from a float32
//! `.pth` made by PyTorch (`tests/fixtures/weights/gen_mobilenet_v1.py`, width 0.125,
//! 10 classes, batch 3 at 64×64), against PyTorch's float64 logits.

mod common;

use dsconv::models::mobilenet_v1::{MobileNetV1, MobileNetV1Weights};
use dsconv::models::Network;
use dsconv::ops::Activation;
use dsconv::weights::StateDict;
use dsconv::{Error, Executor, Layout, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    common::fixture("weights", name)
}

#[test]
fn mobilenet_v1_matches_pytorch_float64_in_both_layouts_and_thread_counts() {
    let sd = StateDict::load(fixture("mobilenet_v1_a0125.pth")).unwrap();
    let weights = MobileNetV1Weights::from_state_dict(&sd, 0.125).unwrap();
    assert_eq!(weights.activation, Activation::Relu);
    let net = MobileNetV1::from_weights(&weights, 64).unwrap();
    assert_eq!(net.classes(), 10);
    let reference = common::read_f64_le(fixture("mobilenet_v1_a0125_logits.f64"));
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let input = common::read_f32_le(fixture("mobilenet_v1_a0125_input.f32"));
    let x = Tensor::from_nchw(input, [3, 3, 64, 64]).unwrap();
    // 2 threads on a batch of 3: two images in parallel, the third over both threads.
    for (layout, threads) in [(Layout::Nchw, 1), (Layout::Nhwc, 2)] {
        let exec = Executor::new(threads).unwrap();
        let y = net.forward_with(&x.to_layout(layout), &exec).unwrap();
        assert_eq!(y.logical_dims(), [3, 10, 1, 1]);
        let diff = common::max_abs_diff_f64(y.data(), &reference);
        eprintln!("{threads} thread(s), {layout:?}: max |diff| {diff:.3e}, max |logit| {scale:.3}");
        assert!(diff <= 1e-5 * scale, "max diff {diff} (scale {scale})");
    }
}

#[test]
fn wrong_width_or_foreign_checkpoint_reports_the_keys() {
    let sd = StateDict::load(fixture("mobilenet_v1_a0125.pth")).unwrap();
    let Err(Error::StateDict(report)) = MobileNetV1Weights::from_state_dict(&sd, 0.25) else {
        panic!("width 0.25 must not fit a width-0.125 checkpoint");
    };
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    // Every conv, BN and the fc weight change shape; fc.bias (10 classes) does not.
    assert!(report.mismatched.len() > 60, "{report:?}");
    let v2 = StateDict::load(fixture("mobilenet_v2_a010.pth")).unwrap();
    let Err(Error::StateDict(report)) = MobileNetV1Weights::from_state_dict(&v2, 0.125) else {
        panic!("a MobileNetV2 checkpoint is not a MobileNetV1 one");
    };
    assert!(report.missing.iter().any(|k| k == "model.0.0.weight"));
    assert!(report.unexpected.iter().any(|k| k.starts_with("features.")));
}

#[test]
fn network_by_name_loads_it_for_224_inputs() {
    let sd = StateDict::load(fixture("mobilenet_v1_a0125.pth")).unwrap();
    let net = Network::from_state_dict("mobilenet-v1", &sd, 0.125).unwrap();
    let x = Tensor::from_nchw(vec![0.25; 3 * 224 * 224], [1, 3, 224, 224]).unwrap();
    let y = net.forward_with(&x, &Executor::single()).unwrap();
    assert_eq!(y.logical_dims(), [1, 10, 1, 1]);
    let small = Tensor::from_nchw(vec![0.25; 3 * 64 * 64], [1, 3, 64, 64]).unwrap();
    assert!(matches!(
        net.forward_with(&small, &Executor::single()),
        Err(Error::Shape { .. })
    ));
    assert!(net.cost([1, 3, 224, 224]).unwrap().macs > 0);
}

/// A checkpoint whose only fault is a negative running_var in block 3: the error should
/// name it, not report every later key as unexpected.
#[test]
fn v1_bad_bn_is_reported_as_such() {
    let mut sd = StateDict::load(fixture("mobilenet_v1_a0125.pth")).unwrap();
    let mut t = sd.get("model.3.1.running_var").unwrap().clone();
    t.data[0] = -1.0;
    sd.insert("model.3.1.running_var".into(), t);
    let e = MobileNetV1Weights::from_state_dict(&sd, 0.125).unwrap_err();
    assert!(!matches!(e, Error::StateDict(_)), "{e:?}");
}

#[test]
fn v1_bad_alpha_is_reported_as_such() {
    let sd = StateDict::load(fixture("mobilenet_v1_a0125.pth")).unwrap();
    let e = MobileNetV1Weights::from_state_dict(&sd, 5.0).unwrap_err();
    assert!(!matches!(e, Error::StateDict(_)), "{e:?}");
}
