//! `dsconv run`: a checkpoint and a .npy batch in, logits .npy out, checked against
//! PyTorch's float64 logits (tiny MobileNetV2 fixture); bad input exits 2 with one line.

use assert_cmd::Command;
use dsconv::npy::{read_npy, write_npy};
use predicates::prelude::*;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dsconv/tests/fixtures/weights")
        .join(name)
}

fn read_le<const N: usize, T>(name: &str, f: fn([u8; N]) -> T) -> Vec<T> {
    std::fs::read(fixture(name))
        .unwrap()
        .chunks_exact(N)
        .map(|b| f(b.try_into().unwrap()))
        .collect()
}

#[test]
fn run_mobilenet_v2_matches_pytorch_float64() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(
        &x,
        &[2, 3, 41, 37],
        &read_le("mobilenet_v2_a010_input.f32", f32::from_le_bytes),
    )
    .unwrap();
    Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "run",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.1",
            "--threads",
            "2",
        ])
        .arg("--weights")
        .arg(fixture("mobilenet_v2_a010.pth"))
        .arg("--input")
        .arg(&x)
        .arg("--output")
        .arg(&y)
        .assert()
        .success();
    let got = read_npy(&y).unwrap();
    assert_eq!(got.shape, [2, 10]);
    let reference = read_le("mobilenet_v2_a010_logits.f64", f64::from_le_bytes);
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (g, r) in got.data.iter().zip(&reference) {
        assert!((*g as f64 - r).abs() <= 1e-5 * scale, "{g} vs {r}");
    }
}

#[test]
fn run_rejects_bad_model_rank_and_width_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let x3 = dir.path().join("x3.npy");
    write_npy(&x3, &[3, 8, 8], &[0.0; 192]).unwrap();
    let x4 = dir.path().join("x4.npy");
    write_npy(&x4, &[1, 3, 8, 8], &[0.0; 192]).unwrap();
    let y = dir.path().join("y.npy");
    let base = |model: &str, alpha: &str, input: &PathBuf| {
        let mut c = Command::cargo_bin("dsconv").unwrap();
        c.args(["run", "--model", model, "--alpha", alpha])
            .arg("--weights")
            .arg(fixture("mobilenet_v2_a010.pth"))
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&y);
        c
    };
    base("resnet-50", "0.1", &x4)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "not one of efficientnet-lite0, efficientnet-lite1",
        ));
    base("mobilenet-v2", "0.1", &x3)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("rank-4"));
    base("mobilenet-v2", "1.0", &x4)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("wrong shape: features.0.0.weight"))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
    assert!(!y.exists());
}

/// The classic PyTorch MobileNetV1 naming through `dsconv run` (224×224 inputs: the fixture's
/// logits are for 64×64, so this checks the shapes and that both thread counts agree).
#[test]
fn run_mobilenet_v1_checkpoint_at_224() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let data: Vec<f32> = (0..2 * 3 * 224 * 224u64)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    write_npy(&x, &[2, 3, 224, 224], &data).unwrap();
    let mut outputs = Vec::new();
    for threads in ["1", "2"] {
        let y = dir.path().join(format!("y{threads}.npy"));
        Command::cargo_bin("dsconv")
            .unwrap()
            .args(["run", "--model", "mobilenet-v1", "--alpha", "0.125"])
            .args(["--threads", threads])
            .arg("--weights")
            .arg(fixture("mobilenet_v1_a0125.pth"))
            .arg("--input")
            .arg(&x)
            .arg("--output")
            .arg(&y)
            .assert()
            .success();
        let got = read_npy(&y).unwrap();
        assert_eq!(got.shape, [2, 10]);
        assert!(got.data.iter().all(|v| v.is_finite()));
        outputs.push(got.data);
    }
    assert_eq!(outputs[0], outputs[1]);
    // 64×64 is not what a mobilenet-v1 network is built for: one line, exit 2.
    write_npy(&x, &[1, 3, 64, 64], &data[..3 * 64 * 64]).unwrap();
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["run", "--model", "mobilenet-v1", "--alpha", "0.125"])
        .arg("--weights")
        .arg(fixture("mobilenet_v1_a0125.pth"))
        .arg("--input")
        .arg(&x)
        .arg("--output")
        .arg(dir.path().join("z.npy"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("224").and(predicate::str::contains('\n').count(1)));
    assert!(!dir.path().join("z.npy").exists());
}
