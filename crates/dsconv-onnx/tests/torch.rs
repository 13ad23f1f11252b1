//! torchvision-style exports (TorchScript and dynamo exporters, several opsets, random
//! weights, reduced width) against PyTorch float64 and ONNX Runtime
//! (`tests/fixtures/torch/gen_torch.py`).

mod common;

use dsconv::npy::read_npy;
use dsconv_onnx::Model;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

#[test]
fn torchvision_exports_match_pytorch_float64_and_onnx_runtime() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let cases = manifest.as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = Model::load(dir().join(format!("{name}.onnx")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = read_npy(&dir().join(format!("{name}.in.npy"))).unwrap();
        let t64 = read_npy(&dir().join(format!("{name}.torch64.npy"))).unwrap();
        let ort = read_npy(&dir().join(format!("{name}.ort.npy"))).unwrap();
        let y = common::run_both(&model, &x.shape, &x.data);
        assert_eq!(y[0].dims, t64.shape, "{name}");
        let (e64, eort) = (
            common::rel_err(&y[0].data, &t64.data),
            common::rel_err(&y[0].data, &ort.data),
        );
        eprintln!(
            "{name}: vs float64 {e64:.2e}, vs ORT {eort:.2e} (ORT vs float64 {:.2e})",
            case["ort_vs_torch64"].as_f64().unwrap_or(f64::NAN)
        );
        assert!(
            e64 <= 1e-5,
            "{name}: {e64:.3e} × max|ref| from PyTorch float64"
        );
        assert!(
            eort <= 1e-4,
            "{name}: {eort:.3e} × max|ref| from ONNX Runtime"
        );
        // Squeeze-excitation runs as one step in MobileNetV3 and EfficientNet-B0, SiLU in
        // the convolutions' epilogues (no standalone activation step), and the depthwise →
        // [SE →] project chains on the fused inverted-residual block (EfficientNet-B0 has
        // SE in every block: each of them is inside one).
        let plan = model.plan(&[&x.shape]).unwrap();
        let f = plan.fusion();
        let steps = plan.describe();
        if !name.starts_with("mobilenet_v2") {
            assert!(f.squeeze_excite >= 2, "{name}: {f:?}\n{steps:#?}");
        }
        assert!(
            !steps.iter().any(|s| s.ends_with(": elementwise")),
            "{name}: an activation left unfused\n{steps:#?}"
        );
        if name.starts_with("efficientnet") {
            assert!(
                f.inverted_residual >= f.squeeze_excite && f.residual_adds >= 1,
                "{name}: {f:?}\n{steps:#?}"
            );
            continue;
        }
        assert!(
            f.inverted_residual + f.separable >= 1,
            "{name}: {f:?}\n{:#?}",
            plan.describe()
        );
    }
}

#[test]
fn mobilenet_v2_export_is_fused_like_the_built_in_network() {
    let model = Model::load(dir().join("mobilenet_v2_ts_op11.onnx")).unwrap();
    let plan = model.plan(&[&[1, 3, 224, 224]]).unwrap();
    let f = plan.fusion();
    // The reduced MobileNetV2 of gen_torch.py: 10 inverted residual blocks (the first,
    // with t = 1, as depthwise → project), 4 of them with the skip connection.
    assert_eq!(
        (f.inverted_residual + f.separable, f.residual_adds),
        (10, 4),
        "{f:?}\n{:#?}",
        plan.describe()
    );
    // Stem and final 1×1 convolution alone; one NCHW → NHWC conversion at the input.
    assert_eq!(f.convs, 2, "{f:?}");
    assert_eq!(f.conversions, 1, "{f:?}\n{:#?}", plan.describe());
    let costs = plan.cost_table("mnv2");
    assert!(costs
        .layers
        .iter()
        .any(|l| l.kind == dsconv::cost::LayerKind::Depthwise));
    assert!(costs.total().macs > 0);
}
