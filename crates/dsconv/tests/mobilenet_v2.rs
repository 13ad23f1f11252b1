//! MobileNetV2 in torchvision's naming, loaded from a float16 `.pth` made by PyTorch
//! (`tests/fixtures/weights/gen_mobilenet_v2.py`, width 0.1, 10 classes, odd input size
//! 41×37), against PyTorch's float64 logits on the same rounded weights.

use dsconv::models::mobilenet_v2::MobileNetV2;
use dsconv::weights::{Loader, StateDict};
use dsconv::{Error, Executor, Layout, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(fixture(name))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn read_f64(name: &str) -> Vec<f64> {
    std::fs::read(fixture(name))
        .unwrap()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn mobilenet_v2_matches_pytorch_float64_in_both_layouts_and_thread_counts() {
    let sd = StateDict::load(fixture("mobilenet_v2_a010.pth")).unwrap();
    let net = MobileNetV2::from_state_dict(&sd, 0.1).unwrap();
    assert_eq!(net.classes(), 10);
    let reference = read_f64("mobilenet_v2_a010_logits.f64");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let x = Tensor::from_nchw(read_f32("mobilenet_v2_a010_input.f32"), [2, 3, 41, 37]).unwrap();
    for (layout, threads) in [(Layout::Nchw, 1), (Layout::Nhwc, 2)] {
        let exec = Executor::new(threads).unwrap();
        let y = net.forward_with(&x.to_layout(layout), &exec).unwrap();
        assert_eq!(y.logical_dims(), [2, 10, 1, 1]);
        let diff = y
            .data()
            .iter()
            .zip(&reference)
            .map(|(&g, &r)| (g as f64 - r).abs())
            .fold(0.0, f64::max);
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
