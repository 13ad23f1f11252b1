//! Every operator and attribute form against ONNX Runtime's outputs
//! (`tests/fixtures/ops/gen_ops.py` writes the graphs and the references), at 1 and 2
//! threads, bitwise identical between them (and at 3 threads, an odd split), with the
//! fusions each case expects.

use dsconv::npy::read_npy;
use dsconv::Executor;
use dsconv_onnx::Model;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops")
}

/// Largest |got − want| relative to max |want| (1 when that is 0).
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    let diff = got.iter().zip(want).fold(0f64, |m, (&a, &b)| {
        if a.is_nan() && b.is_nan() {
            m
        } else {
            m.max((a as f64 - b as f64).abs())
        }
    });
    diff / scale
}

#[test]
fn every_operator_matches_onnx_runtime() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap())
            .unwrap();
    let cases = manifest.as_array().unwrap();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let (one, two) = (Executor::new(1).unwrap(), Executor::new(2).unwrap());
    let three = Executor::new(3).unwrap();
    let mut worst = (0f64, String::new());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = Model::load(dir().join(format!("{name}.onnx")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let inputs: Vec<_> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| read_npy(&dir().join(f.as_str().unwrap())).unwrap())
            .collect();
        let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape.as_slice()).collect();
        let plan = model
            .plan(&shapes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let data: Vec<&[f32]> = inputs.iter().map(|a| a.data.as_slice()).collect();
        let got1 = plan
            .run(&data, &one)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got2 = plan.run(&data, &two).unwrap();
        // A second run reuses the workspace and must give the same bits.
        let again = plan.run(&data, &two).unwrap();
        assert_eq!(got2, again, "{name}: second run differs");
        let got3 = plan.run(&data, &three).unwrap();
        let outs = case["outputs"].as_array().unwrap();
        assert_eq!(got1.len(), outs.len(), "{name}");
        for (i, f) in outs.iter().enumerate() {
            let want = read_npy(&dir().join(f.as_str().unwrap())).unwrap();
            assert_eq!(got1[i].dims, want.shape, "{name} output {i} dims");
            assert!(
                plan.max_value_elements() >= got1[i].data.len(),
                "{name}: output {i} larger than the largest value"
            );
            let bits =
                |o: &dsconv_onnx::Output| o.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got1[i]),
                bits(&got2[i]),
                "{name} output {i}: 1 and 2 threads differ"
            );
            assert_eq!(
                bits(&got1[i]),
                bits(&got3[i]),
                "{name} output {i}: 1 and 3 threads differ"
            );
            let e = rel_err(&got1[i].data, &want.data);
            assert!(
                e <= 1e-4,
                "{name} output {i}: error {e:.3e} × max|ref|\n{:#?}",
                plan.describe()
            );
            if e > worst.0 {
                worst = (e, format!("{name}[{i}]"));
            }
        }
        if let Some(f) = case.get("fused").and_then(|f| f.as_object()) {
            let fu = plan.fusion();
            for (k, v) in f {
                let got = match k.as_str() {
                    "separable" => fu.separable,
                    "inverted_residual" => fu.inverted_residual,
                    "residual_adds" => fu.residual_adds,
                    "batchnorms_folded" => fu.batchnorms_folded,
                    "activations_fused" => fu.activations_fused,
                    "squeeze_excite" => fu.squeeze_excite,
                    "pointwise_adds" => fu.pointwise_adds,
                    other => panic!("unknown fusion key {other}"),
                };
                assert_eq!(
                    got as u64,
                    v.as_u64().unwrap(),
                    "{name}: {k}\n{:#?}",
                    plan.describe()
                );
            }
        }
    }
    eprintln!("worst error {:.2e} × max|ref| ({})", worst.0, worst.1);
}
