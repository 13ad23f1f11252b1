//! `dsconv train` / `eval` end to end: the digits reaching their accuracy, checkpoints
//! PyTorch's names, resume, and every bad input (one line, exit 2, nothing written).

use assert_cmd::Command;
use dsconv::npy::write_npy;
use predicates::prelude::*;
use std::path::Path;

fn dsconv() -> Command {
    Command::cargo_bin("dsconv").unwrap()
}

/// Writes a `.npy` of int64 labels (NumPy's default integer dtype).
fn write_labels(path: &Path, labels: &[i64], descr: &str) {
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        labels.len()
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    for &l in labels {
        if descr == "<i4" {
            bytes.extend_from_slice(&(l as i32).to_le_bytes());
        } else {
            bytes.extend_from_slice(&l.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// A small separable toy set: class = which quadrant is bright.
fn toy(dir: &Path, n: usize) -> (String, Vec<i64>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let class = (i % 4) as i64;
        for r in 0..8 {
            for c in 0..8 {
                let q = (r / 4) * 2 + c / 4;
                x.push(
                    if q == class as usize { 0.9 } else { 0.1 }
                        + ((i * 7 + r * 3 + c) % 5) as f32 * 0.01,
                );
            }
        }
        y.push(class);
    }
    write_npy(&dir.join("x.npy"), &[n, 1, 8, 8], &x).unwrap();
    write_labels(&dir.join("y.npy"), &y, "<i8");
    (
        format!(
            "{},{}",
            dir.join("x.npy").display(),
            dir.join("y.npy").display()
        ),
        y,
    )
}

#[test]
fn digits_ds_cnn_reaches_97_percent_and_eval_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds.safetensors");
    let run = dsconv()
        .args([
            "train",
            "--model",
            "ds-cnn",
            "--data",
            "digits",
            "--val",
            "digits-test",
        ])
        .args([
            "--epochs",
            "4",
            "--lr",
            "3e-3",
            "--threads",
            "2",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["parameters"], 31370);
    let val = summary["val_accuracy"].as_f64().unwrap();
    assert!(val >= 0.97, "validation accuracy {val}");
    assert!(dir.path().join("ds.optim.safetensors").is_file());
    let eval = dsconv()
        .args([
            "eval",
            "--model",
            "ds-cnn",
            "--data",
            "digits-test",
            "--json",
            "--weights",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(e["accuracy"].as_f64().unwrap(), val);
    assert_eq!(e["images"], 359);
    assert_eq!(e["per_class_accuracy"].as_array().unwrap().len(), 10);
    // PyTorch's names and an int64 num_batches_tracked, 45 steps per epoch.
    let sd = dsconv::weights::StateDict::load(&out).unwrap();
    let nbt = sd.get("features.1.4.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype, dsconv::weights::DType::I64);
    assert_eq!(nbt.data, [180.0]);
    assert_eq!(sd.get("classifier.1.weight").unwrap().dims, [10, 128]);
    // A std-cnn checkpoint is not a ds-cnn one.
    dsconv()
        .args([
            "eval",
            "--model",
            "std-cnn",
            "--data",
            "digits-test",
            "--weights",
        ])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("dsconv: error:"));
}

#[test]
fn npy_training_resumes_and_is_thread_count_independent() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = toy(dir.path(), 24);
    let train = |threads: &str, out: &str| {
        dsconv()
            .args([
                "train", "--model", "std-cnn", "--data", &data, "--steps", "5",
            ])
            .args([
                "--batch",
                "8",
                "--optimizer",
                "sgd",
                "--lr",
                "0.05",
                "--momentum",
                "0.9",
            ])
            .args([
                "--nesterov",
                "--weight-decay",
                "1e-4",
                "--schedule",
                "cosine",
            ])
            .args(["--widths", "8,16", "--threads", threads, "--out"])
            .arg(dir.path().join(out))
            .assert()
            .success();
        // The header's metadata order may differ (a hash map); the tensors must not.
        dsconv::weights::StateDict::load(dir.path().join(out)).unwrap()
    };
    assert_eq!(train("1", "a.safetensors"), train("2", "b.safetensors"));
    dsconv()
        .args([
            "train", "--model", "std-cnn", "--data", &data, "--steps", "2", "--batch", "8",
        ])
        .args([
            "--optimizer",
            "sgd",
            "--momentum",
            "0.9",
            "--widths",
            "8,16",
            "--resume",
        ])
        .arg("--init")
        .arg(dir.path().join("a.safetensors"))
        .arg("--out")
        .arg(dir.path().join("c.safetensors"))
        .assert()
        .success();
    // Resuming AdamW from an SGD state is refused.
    dsconv()
        .args([
            "train", "--model", "std-cnn", "--data", &data, "--steps", "2", "--resume",
        ])
        .arg("--init")
        .arg(dir.path().join("a.safetensors"))
        .arg("--out")
        .arg(dir.path().join("d.safetensors"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("optimizer state"));
    assert!(!dir.path().join("d.safetensors").exists());
}

fn bad(args: &[&str], dir: &Path, message: &str) {
    let out = dir.join("never.safetensors");
    dsconv()
        .args(args)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("dsconv: error:"))
        .stderr(predicate::str::contains(message));
    assert!(!out.exists(), "{args:?} left a checkpoint");
    assert!(!dir.join("never.optim.safetensors").exists());
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, y) = toy(d, 8);
    let x = d.join("x.npy").display().to_string();
    // Labels of the wrong count, out of range, negative, of a float dtype.
    write_labels(&d.join("short.npy"), &y[..5], "<i8");
    let short = format!("{x},{}", d.join("short.npy").display());
    bad(&["train", "--model", "ds-cnn", "--data", &short], d, "5");
    write_labels(&d.join("neg.npy"), &[0, 1, -1, 2, 0, 1, 2, 3], "<i4");
    let neg = format!("{x},{}", d.join("neg.npy").display());
    bad(
        &["train", "--model", "ds-cnn", "--data", &neg],
        d,
        "negative",
    );
    write_npy(&d.join("fy.npy"), &[8], &[0.0; 8]).unwrap();
    let fy = format!("{x},{}", d.join("fy.npy").display());
    bad(
        &["train", "--model", "ds-cnn", "--data", &fy],
        d,
        "int64 or int32",
    );
    write_labels(&d.join("big.npy"), &[0, 1, 2, 3, 0, 1, 2, 9], "<i8");
    let big = format!("{x},{}", d.join("big.npy").display());
    bad(
        &["train", "--model", "ds-cnn", "--data", &data, "--val", &big],
        d,
        "out of range",
    );
    // An empty folder, a folder with a corrupt image.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    bad(
        &[
            "train",
            "--model",
            "ds-cnn",
            "--data",
            d.join("empty").to_str().unwrap(),
        ],
        d,
        "no class",
    );
    std::fs::create_dir_all(d.join("imgs/cat")).unwrap();
    std::fs::write(d.join("imgs/cat/a.png"), b"not a png").unwrap();
    bad(
        &[
            "train",
            "--model",
            "ds-cnn",
            "--data",
            d.join("imgs").to_str().unwrap(),
        ],
        d,
        "cannot decode",
    );
    // Unknown model, another architecture's checkpoint, a diverging run.
    bad(
        &["train", "--model", "resnet", "--data", &data],
        d,
        "unknown",
    );
    let std_ckpt = d.join("std.safetensors");
    dsconv()
        .args([
            "train", "--model", "std-cnn", "--data", &data, "--steps", "1", "--widths", "4,8",
        ])
        .arg("--out")
        .arg(&std_ckpt)
        .assert()
        .success();
    bad(
        &[
            "train",
            "--model",
            "ds-cnn",
            "--data",
            &data,
            "--init",
            std_ckpt.to_str().unwrap(),
        ],
        d,
        "not a ds-cnn checkpoint",
    );
    bad(
        &[
            "train",
            "--model",
            "ds-cnn",
            "--data",
            &data,
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--steps",
            "20",
            "--batch",
            "4",
        ],
        d,
        "optimizer step",
    );
}

#[test]
fn image_folders_train() {
    let dir = tempfile::tempdir().unwrap();
    for (class, v) in [("a", 30u8), ("b", 220u8)] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..4u8 {
            let img = image::RgbImage::from_fn(6, 6, |x, _| {
                image::Rgb([v, v.wrapping_add(i), (x as u8) * 10])
            });
            img.save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let out = dir.path().join("f.safetensors");
    dsconv()
        .args([
            "train", "--model", "ds-cnn", "--steps", "3", "--batch", "4", "--widths", "4,8",
        ])
        .arg("--data")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("2 classes"));
    let sd = dsconv::weights::StateDict::load(&out).unwrap();
    assert_eq!(sd.get("features.0.0.weight").unwrap().dims, [4, 3, 3, 3]);
}

/// MobileNetV2 trains on a folder, its checkpoint runs in `dsconv run` (class count from
/// it) and `dsconv eval`; fine-tuning from it with another `--classes` resets only the
/// classifier; a checkpoint of another architecture is one clear line and exit 2.
#[test]
fn mobilenet_v2_trains_fine_tunes_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (class, v) in [("a", 30u8), ("b", 220u8), ("c", 120u8)] {
        std::fs::create_dir_all(d.join("imgs").join(class)).unwrap();
        for i in 0..3u8 {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([v, v.wrapping_add(i * 9), ((x + y) as u8) * 4])
            });
            img.save(d.join("imgs").join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let ckpt = d.join("m.safetensors");
    dsconv()
        .args([
            "train",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.25",
            "--steps",
            "2",
            "--batch",
            "4",
            "--optimizer",
            "sgd",
            "--lr",
            "0.01",
        ])
        .arg("--data")
        .arg(d.join("imgs"))
        .arg("--out")
        .arg(&ckpt)
        .assert()
        .success()
        .stdout(predicate::str::contains("3 classes"));
    let sd = dsconv::weights::StateDict::load(&ckpt).unwrap();
    assert_eq!(sd.get("classifier.1.weight").unwrap().dims, [3, 1280]);
    assert_eq!(
        sd.get("features.0.1.num_batches_tracked").unwrap().dtype,
        dsconv::weights::DType::I64
    );
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| (i % 7) as f32 * 0.1).collect();
    write_npy(&d.join("x.npy"), &[2, 3, 32, 32], &x).unwrap();
    dsconv()
        .args([
            "run",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.25",
            "--weights",
        ])
        .arg(&ckpt)
        .arg("--input")
        .arg(d.join("x.npy"))
        .arg("--output")
        .arg(d.join("y.npy"))
        .assert()
        .success();
    let y = dsconv::npy::read_npy(&d.join("y.npy")).unwrap();
    assert_eq!(y.data.len(), 6, "{:?}", y.shape);
    dsconv()
        .args([
            "eval",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.25",
            "--json",
            "--weights",
        ])
        .arg(&ckpt)
        .arg("--data")
        .arg(d.join("imgs"))
        .assert()
        .success()
        .stdout(predicate::str::contains("\"accuracy\""));
    // Fine-tune to 2 classes: a fresh classifier, everything else from the checkpoint.
    std::fs::remove_dir_all(d.join("imgs").join("c")).unwrap();
    let tuned = d.join("t.safetensors");
    dsconv()
        .args([
            "train",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.25",
            "--steps",
            "1",
            "--batch",
            "4",
            "--classes",
            "2",
            "--init",
        ])
        .arg(&ckpt)
        .arg("--data")
        .arg(d.join("imgs"))
        .arg("--out")
        .arg(&tuned)
        .assert()
        .success()
        .stdout(predicate::str::contains("except the classifier"));
    let sd2 = dsconv::weights::StateDict::load(&tuned).unwrap();
    assert_eq!(sd2.get("classifier.1.weight").unwrap().dims, [2, 1280]);
    // Another architecture's checkpoint, or the wrong width: one line, exit 2.
    bad(
        &[
            "train",
            "--model",
            "efficientnet-lite0",
            "--data",
            &d.join("imgs").display().to_string(),
            "--init",
            &ckpt.display().to_string(),
        ],
        d,
        "looks like a mobilenet-v2 checkpoint",
    );
    bad(
        &[
            "train",
            "--model",
            "mobilenet-v2",
            "--data",
            &d.join("imgs").display().to_string(),
            "--init",
            &ckpt.display().to_string(),
        ],
        d,
        "width multiplier",
    );
}
