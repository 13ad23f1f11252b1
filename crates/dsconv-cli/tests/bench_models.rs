//! `dsconv bench --model mobilenet-v2 | efficientnet-lite0 [--weights]`: whole-network
//! latency JSON for the networks that load from checkpoints, and one-line errors.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;

const FAST: [&str; 9] = [
    "--runs",
    "1",
    "--min-time",
    "0",
    "--max-time",
    "0",
    "--threads",
    "1",
    "--quiet",
];

fn bench_json(args: &[&str], weights: Option<PathBuf>) -> serde_json::Value {
    let mut cmd = Command::cargo_bin("dsconv").unwrap();
    cmd.args(["bench", "--json"]).args(args).args(FAST);
    if let Some(w) = weights {
        cmd.arg("--weights").arg(w);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dsconv/tests/fixtures/weights")
        .join(name)
}

#[test]
fn mobilenet_v2_random_and_from_a_checkpoint() {
    let random = bench_json(
        &[
            "--model",
            "mobilenet-v2",
            "--width",
            "0.1",
            "--resolution",
            "64",
        ],
        None,
    );
    assert_eq!(random["network"], "mobilenet-v2");
    assert!(random["median_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(random["weights"], serde_json::Value::Null);
    // The width-0.1 checkpoint has 10 classes instead of 1000: fewer MACs in the classifier.
    let loaded = bench_json(
        &[
            "--model",
            "mobilenet-v2",
            "--width",
            "0.1",
            "--resolution",
            "64",
        ],
        Some(fixture("mobilenet_v2_a010.pth")),
    );
    assert_eq!(
        random["macs"].as_u64().unwrap() - loaded["macs"].as_u64().unwrap(),
        (1000 - 10) * 1280
    );
    assert!(loaded["weights"]
        .as_str()
        .unwrap()
        .ends_with("mobilenet_v2_a010.pth"));
}

#[test]
fn mobilenet_v1_from_a_classic_pytorch_checkpoint() {
    let random = bench_json(
        &[
            "--model",
            "mobilenet-v1",
            "--width",
            "0.125",
            "--resolution",
            "64",
        ],
        None,
    );
    let loaded = bench_json(
        &[
            "--model",
            "mobilenet-v1",
            "--width",
            "0.125",
            "--resolution",
            "64",
        ],
        Some(fixture("mobilenet_v1_a0125.pth")),
    );
    // 10 classes instead of 1000 on 128 features.
    assert_eq!(
        random["macs"].as_u64().unwrap() - loaded["macs"].as_u64().unwrap(),
        (1000 - 10) * 128
    );
}

#[test]
fn efficientnet_lite0_random_at_a_small_resolution() {
    let v = bench_json(
        &["--model", "efficientnet-lite0", "--resolution", "64"],
        None,
    );
    assert_eq!(v["network"], "efficientnet-lite0");
    assert!(v["gflops"].as_f64().unwrap() > 0.0);
}

#[test]
fn model_options_that_do_not_apply_exit_2() {
    let cases: [&[&str]; 4] = [
        &["bench", "--layers", "mobilenet-v2"],
        &["bench", "--model", "efficientnet-lite0", "--width", "0.5"],
        &["bench", "--model", "mobilenet-v1", "--weights", "x.pth"],
        &[
            "bench",
            "--model",
            "mobilenet-v2",
            "--weights",
            "/nonexistent.pth",
        ],
    ];
    for args in cases {
        Command::cargo_bin("dsconv")
            .unwrap()
            .args(args)
            .args(FAST)
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with("dsconv: error:"))
            .stderr(predicate::function(|s: &str| s.lines().count() == 1));
    }
}

#[test]
fn every_registry_name_and_alias_is_a_model() {
    let v = bench_json(
        &[
            "--model",
            "MobileNetV2",
            "--width",
            "0.25",
            "--resolution",
            "32",
        ],
        None,
    );
    assert_eq!(v["network"], "mobilenet-v2");
    assert_eq!(v["resolution"], 32);
    let v = bench_json(
        &["--model", "efficientnet_lite1", "--resolution", "32"],
        None,
    );
    assert_eq!(v["network"], "efficientnet-lite1");
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["bench", "--model", "resnet-50"])
        .args(FAST)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "not one of efficientnet-lite0, efficientnet-lite1, efficientnet-lite2, \
             efficientnet-lite3, efficientnet-lite4, mobilenet-v1, mobilenet-v2",
        ));
}
