//! MobileNetV2 in torchvision's naming, loaded from a float16 `.pth` made by PyTorch
//! (`tests/fixtures/weights/gen_mobilenet_v2.py`, width 0.1, 10 classes, odd input size
//! 41×37), against PyTorch's float64 logits on the same rounded weights.

mod common;

use dsconv::models::mobilenet_v2::MobileNetV2;
use dsconv::weights::{Loader, StateDict};
use dsconv::{Error, Executor, Layout, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    common::fixture("weights", name)
}

#[test]
fn mobilenet_v2_matches_pytorch_float64_in_both_layouts_and_thread_counts() {
    let sd = StateDict::load(fixture("mobilenet_v2_a010.pth")).unwrap();
    let net = MobileNetV2::from_state_dict(&sd, 0.1).unwrap();
    assert_eq!(net.classes(), 10);
    let reference = common::read_f64_le(fixture("mobilenet_v2_a010_logits.f64"));
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let input = common::read_f32_le(fixture("mobilenet_v2_a010_input.f32"));
    let x = Tensor::from_nchw(input, [2, 3, 41, 37]).unwrap();
    for (layout, threads) in [(Layout::Nchw, 1), (Layout::Nhwc, 2)] {
        let exec = Executor::new(threads).unwrap();
        let y = net.forward_with(&x.to_layout(layout), &exec).unwrap();
        assert_eq!(y.logical_dims(), [2, 10, 1, 1]);
        let diff = common::max_abs_diff_f64(y.data(), &reference);
        assert!(diff <= 1e-5 * scale, "max diff {diff} (scale {scale})");
    }
}

#[test]
fn wrong_width_reports_every_mismatched_key() {
    let sd = StateDict::load(fixture("mobilenet_v2_a010.pth")).unwrap();
    let Err(Error::StateDict(report)) = MobileNetV2::from_state_dict(&sd, 0.5) else {
        panic!("width 0.5 must not fit a width-0.1 checkpoint");
    };
    assert!(report.missing.is_empty());
    assert!(report.unexpected.is_empty());
    assert!(report
        .mismatched
        .iter()
        .any(|m| m.name == "features.0.0.weight" && m.expected == [16, 3, 3, 3]));
}

#[test]
fn dataparallel_prefix_and_random_init_build_the_same_structure() {
    let sd = StateDict::load(fixture("mobilenet_v2_a010.pth")).unwrap();
    let mut prefixed = StateDict::default();
    for name in sd.names() {
        prefixed.insert(format!("module.{name}"), sd.get(name).unwrap().clone());
    }
    let mut loader = Loader::new(&prefixed).with_prefix("module.");
    let net = MobileNetV2::new(&mut loader, 0.1, 10).unwrap();
    loader.finish().unwrap();
    let random = MobileNetV2::random(0.1, 5).unwrap();
    assert_eq!(
        net.cost([1, 3, 224, 224]).unwrap().macs,
        random.cost([1, 3, 224, 224]).unwrap().macs - (1000 - 10) * 1280
    );
}
