//! `dsconv run`: a checkpoint and a .npy batch in, logits .npy out, checked against
//! PyTorch's float64 logits (tiny MobileNetV2 fixture); bad input exits 2 with one line.

use assert_cmd::Command;
use dsconv::npy::{read_npy, write_npy};
use dsconv::weights::StateDict;
use predicates::prelude::*;
use std::path::{Path, PathBuf};

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

/// The MobileNetV2 fixture's input batch `[2, 3, 41, 37]` as `.npy` at `path`.
fn write_v2_input(path: &Path) {
    let data = read_le("mobilenet_v2_a010_input.f32", f32::from_le_bytes);
    write_npy(path, &[2, 3, 41, 37], &data).unwrap();
}

#[test]
fn run_mobilenet_v2_matches_pytorch_float64() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_v2_input(&x);
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

/// The MobileNetV2 fixture with `classifier.1.bias` (the last operation: nothing after it
/// can drop a NaN) set by `edit`, written as safetensors into `dir`.
fn v2_checkpoint_with_bias(dir: &Path, edit: impl Fn(&mut [f32])) -> PathBuf {
    let mut sd = StateDict::load(fixture("mobilenet_v2_a010.pth")).unwrap();
    let mut bias = sd.get("classifier.1.bias").unwrap().clone();
    edit(&mut bias.data);
    sd.insert("classifier.1.bias".into(), bias);
    let path = dir.join("bad_bias.safetensors");
    std::fs::write(&path, sd.to_safetensors().unwrap()).unwrap();
    path
}

/// `dsconv run` of `model` at width `alpha` from `weights` on `x` into `y`.
fn run_cmd(model: &str, alpha: &str, weights: &Path, x: &Path, y: &Path) -> Command {
    let mut c = Command::cargo_bin("dsconv").unwrap();
    c.args(["run", "--model", model, "--alpha", alpha])
        .arg("--weights")
        .arg(weights)
        .arg("--input")
        .arg(x)
        .arg("--output")
        .arg(y);
    c
}

fn run_v2(weights: &Path, x: &Path, y: &Path) -> Command {
    run_cmd("mobilenet-v2", "0.1", weights, x, y)
}

/// Non-finite logits: the .npy is still written, as computed, and stderr says how many are
/// NaN and how many infinite (exit 0). Independent of the kernels' NaN handling: the bias
/// is added last.
#[test]
fn non_finite_logits_are_written_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let weights = v2_checkpoint_with_bias(dir.path(), |b| {
        b[0] = f32::NAN;
        b[1] = f32::INFINITY;
    });
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_v2_input(&x);
    let out = run_v2(&weights, &x, &y).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("4 of 20 logits are not finite (2 NaN, 2 inf)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 weights are not finite (1 NaN, 1 inf; first in 'classifier.1.bias')"),
        "{stderr}"
    );
    assert!(
        stderr.lines().all(|l| l.starts_with("dsconv: warning: ")),
        "{stderr}"
    );
    let got = read_npy(&y).unwrap();
    assert_eq!(got.shape, [2, 10]);
    for row in got.data.chunks(10) {
        assert!(row[0].is_nan() && row[1] == f32::INFINITY, "{row:?}");
        assert!(row[2..].iter().all(|v| v.is_finite()));
    }
}

/// Runs the MobileNetV2 fixture on an all-NaN 32×32 input: stderr and the logits.
fn run_on_nan_input() -> (String, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[1, 3, 32, 32], &[f32::NAN; 3 * 32 * 32]).unwrap();
    let out = run_v2(&fixture("mobilenet_v2_a010.pth"), &x, &y)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let y = read_npy(&y).unwrap();
    assert_eq!(y.shape, [1, 10]);
    (stderr, y.data)
}

/// An all-NaN input: the logits are written and the input's NaN are reported, whatever the
/// kernels make of them.
#[test]
fn nan_input_is_reported() {
    let (stderr, _) = run_on_nan_input();
    assert!(
        stderr.contains("3072 of 3072 input values are not finite (3072 NaN, 0 inf)"),
        "{stderr}"
    );
}

/// NaN must propagate from the input to every logit (PyTorch gives NaN logits); before
/// the fused activations kept NaN (ReLU6 as max/min on AVX returned 0), EfficientNet-Lite0
/// turned an all-NaN input into finite, plausible logits.
#[test]
fn nan_input_gives_nan_logits_and_a_warning() {
    let (stderr, logits) = run_on_nan_input();
    assert!(
        stderr.contains("10 of 10 logits are not finite (10 NaN, 0 inf)"),
        "{stderr}"
    );
    assert!(logits.iter().all(|v| v.is_nan()));
}

#[test]
fn aliases_any_case_and_the_lite_width() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[1, 3, 32, 32], &[0.5; 3 * 32 * 32]).unwrap();
    let mut logits = Vec::new();
    let weights = fixture("mobilenet_v2_a010.pth");
    for model in ["mobilenet-v2", "MobileNet_V2", "mobilenetv2"] {
        let y = dir.path().join(format!("{model}.npy"));
        run_cmd(model, "0.1", &weights, &x, &y)
            .assert()
            .success()
            .stderr("");
        logits.push(read_npy(&y).unwrap().data);
    }
    assert!(logits.windows(2).all(|w| w[0] == w[1]));
    // A width multiplier means nothing to the Lite models: refused, not ignored.
    let z = dir.path().join("z.npy");
    run_cmd("efficientnet-lite0", "0.5", &weights, &x, &z)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--alpha: invalid width multiplier",
        ))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}
