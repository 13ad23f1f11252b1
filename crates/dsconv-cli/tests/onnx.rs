//! `.onnx` models through the CLI: `dsconv run` (one output per --output, several into a
//! directory), `dsconv bench --model FILE.onnx --json`, `dsconv cost --model FILE.onnx`,
//! and bad input (one line, exit code 2, no output file).

use assert_cmd::Command;
use dsconv::npy::{read_npy, write_npy};
use predicates::prelude::*;
use std::path::PathBuf;

fn dsconv() -> Command {
    Command::cargo_bin("dsconv").unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dsconv-onnx/tests/fixtures")
}

#[test]
fn run_writes_onnx_runtimes_answer() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npy");
    let base = fixtures().join("torch/mobilenet_v3_small_ts_op13");
    dsconv()
        .arg("run")
        .arg("--model")
        .arg(base.with_extension("onnx"))
        .arg("--input")
        .arg(base.with_extension("in.npy"))
        .arg("--output")
        .arg(&y)
        .args(["--threads", "2"])
        .assert()
        .success();
    let got = read_npy(&y).unwrap();
    let want = read_npy(&base.with_extension("ort.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in got.data.iter().zip(&want.data) {
        assert!((a - b).abs() <= 1e-4 * scale, "{a} vs {b}");
    }
}

#[test]
fn several_outputs_go_to_files_or_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixtures().join("ops/reductions_opset13");
    let out = dir.path().join("outs");
    dsconv()
        .arg("run")
        .arg("--model")
        .arg(base.with_extension("onnx"))
        .arg("--input")
        .arg(base.with_extension("in0.npy"))
        .arg("--output")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
    let files: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("y{i}.npy")))
        .collect();
    let mut cmd = dsconv();
    cmd.arg("run")
        .arg("--model")
        .arg(base.with_extension("onnx"))
        .arg("--input")
        .arg(base.with_extension("in0.npy"));
    for f in &files {
        cmd.arg("--output").arg(f);
    }
    cmd.assert().success();
    for (i, f) in files.iter().enumerate() {
        let want = read_npy(&base.with_extension(format!("out{i}.npy"))).unwrap();
        assert_eq!(read_npy(f).unwrap().shape, want.shape);
    }
}

#[test]
fn bench_json_and_cost_table() {
    let model = fixtures().join("torch/mobilenet_v2_ts_op11.onnx");
    let out = dsconv()
        .args(["bench", "--model"])
        .arg(&model)
        .args([
            "--input-shape",
            "1x3x64x64",
            "--batch",
            "2",
            "--runs",
            "1",
            "--min-time",
            "0",
            "--max-time",
            "0",
            "--threads",
            "1",
            "--json",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["input_shape"], serde_json::json!([2, 3, 64, 64]));
    assert!(v["fused"]["inverted_residual"].as_u64().unwrap() >= 5);
    dsconv()
        .args(["cost", "--model"])
        .arg(&model)
        .args(["--input-shape", "1x3x224x224"])
        .assert()
        .success()
        .stdout(predicate::str::contains("depthwise").and(predicate::str::contains("By kind:")));
    let out = dsconv()
        .args(["cost", "--model"])
        .arg(&model)
        .args(["--input-shape", "1x3x224x224", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["by_kind"]["depthwise"]["macs"].as_u64().unwrap() > 0);
    assert!(
        v["by_kind"]["pointwise"]["macs"].as_u64().unwrap()
            > v["by_kind"]["depthwise"]["macs"].as_u64().unwrap()
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npy");
    let x = dir.path().join("x.npy");
    write_npy(&x, &[1, 3, 8, 8], &[0.0; 192]).unwrap();
    let corrupt = dir.path().join("bad.onnx");
    let mut bytes = std::fs::read(fixtures().join("ops/conv_bn_relu.onnx")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, bytes).unwrap();
    let model = fixtures().join("ops/conv_bn_relu.onnx");
    let cases: Vec<(PathBuf, &str)> = vec![
        (corrupt, "not a valid ONNX model"),
        (dir.path().join("missing.onnx"), "missing.onnx"),
        // conv_bn_relu takes [2, 3, 12, 12]: a wrong input shape.
        (model, "fixes dimension"),
    ];
    for (m, msg) in cases {
        dsconv()
            .arg("run")
            .arg("--model")
            .arg(&m)
            .arg("--input")
            .arg(&x)
            .arg("--output")
            .arg(&y)
            .assert()
            .code(2)
            .stderr(
                predicate::str::starts_with("dsconv: error:")
                    .and(predicate::str::contains(msg))
                    .and(predicate::str::ends_with("\n")),
            );
        assert!(!y.exists());
    }
    dsconv()
        .args(["bench", "--model"])
        .arg(fixtures().join("torch/mobilenet_v2_ts_op11.onnx"))
        .args(["--input-shape", "1x3xbadx4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--input-shape"));
}
