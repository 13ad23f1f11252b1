//! `dsconv bench` and `dsconv info` end to end: JSON shape and values, the table, and every
//! bad argument (one line on stderr, exit code 2). Sizes are tiny (α = 0.25, 32×32, one
//! run) so the tests time nothing meaningful, only the plumbing.

use assert_cmd::Command;
use predicates::prelude::*;

fn dsconv() -> Command {
    Command::cargo_bin("dsconv").unwrap()
}

const TINY: [&str; 12] = [
    "--width",
    "0.25",
    "--resolution",
    "32",
    "--runs",
    "1",
    "--min-time",
    "0",
    "--max-time",
    "0",
    "--threads",
    "1",
];

fn json_of(args: &[&str]) -> serde_json::Value {
    let out = dsconv()
        .args(args)
        .args(TINY)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

#[test]
fn layers_json_has_every_op_of_every_selected_block() {
    let v = json_of(&["bench", "--layers", "mobilenet-v1", "--blocks", "1,13"]);
    assert!(v["peak_gflops"].as_f64().unwrap() > 0.0);
    assert!(v["bandwidth_gbs"].as_f64().unwrap() > 0.0);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["batch"], 1);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 10);
    let ops: Vec<&str> = layers.iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops[..5],
        [
            "depthwise",
            "pointwise",
            "separable",
            "separable_unfused",
            "standard"
        ]
    );
    // Block 13 at α = 0.25: 256 → 256 channels, stride 1, 1×1 input at resolution 32.
    let pw = &layers[6];
    assert_eq!(pw["name"], "pw_c256_c256_1x1");
    assert_eq!(
        (pw["Cin"].as_u64(), pw["Cout"].as_u64()),
        (Some(256), Some(256))
    );
    assert_eq!(pw["macs"], 256 * 256);
    for l in layers {
        let ms = l["median_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms.is_finite(), "{l}");
        let gflops = l["gflops"].as_f64().unwrap();
        let expected = 2.0 * l["macs"].as_f64().unwrap() / (ms * 1e-3) / 1e9;
        assert!((gflops - expected).abs() <= 1e-9 * expected.max(1.0), "{l}");
        for key in ["N", "H", "W", "stride", "gbs", "pct_peak", "pct_bandwidth"] {
            assert!(l[key].is_number(), "{key} missing in {l}");
        }
    }
    // The separable cost is the sum of its two stages.
    let macs = |i: usize| layers[i]["macs"].as_u64().unwrap();
    assert_eq!(macs(2), macs(0) + macs(1));
    assert_eq!(macs(3), macs(2));
}

#[test]
fn block_0_is_the_stem_with_the_standard_op_only() {
    let v = json_of(&["bench", "--layers", "mobilenet-v1", "--blocks", "0"]);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let stem = &layers[0];
    assert_eq!(stem["op"], "standard");
    // α = 0.25: 3 → 8 channels, stride 2, on the 32×32 input.
    assert_eq!(stem["name"], "conv_k3s2_c3_c8_32x32");
    assert_eq!(stem["macs"], 8 * 16 * 16 * 3 * 9);
    let none = json_of(&[
        "bench",
        "--layers",
        "mobilenet-v1",
        "--blocks",
        "0",
        "--ops",
        "depthwise",
    ]);
    assert_eq!(none["layers"].as_array().unwrap().len(), 0);
}

#[test]
fn ops_filter_and_batch_are_honoured() {
    let v = json_of(&[
        "bench",
        "--layers",
        "mobilenet-v1",
        "--ops",
        "pointwise",
        "--blocks",
        "2",
        "--batch",
        "2",
    ]);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["op"], "pointwise");
    assert_eq!(layers[0]["N"], 2);
    assert_eq!(v["batch"], 2);
}

#[test]
fn table_is_readable_and_progress_stays_on_stderr() {
    dsconv()
        .args([
            "bench",
            "--layers",
            "mobilenet-v1",
            "--blocks",
            "3",
            "--ops",
            "depthwise",
        ])
        .args(TINY)
        .assert()
        .success()
        .stdout(predicate::str::contains("dw_k3s1_c32_8x8"))
        .stdout(predicate::str::contains("GFLOP/s"))
        .stdout(predicate::str::contains("bench: block").not())
        .stderr(predicate::str::contains("bench: block 3"));
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    let cases: [&[&str]; 12] = [
        &["bench"],
        &[
            "bench",
            "--layers",
            "mobilenet-v1",
            "--model",
            "mobilenet-v1",
        ],
        &["bench", "--layers", "mobilenet-v1", "--batch", "two"],
        &[
            "bench",
            "--model",
            "mobilenet-v1",
            "--batch",
            "4096",
            "--resolution",
            "1024",
        ],
        &["bench", "--layers", "resnet50"],
        &["bench", "--layers", "mobilenet-v1", "--width", "0"],
        &["bench", "--layers", "mobilenet-v1", "--resolution", "8"],
        &["bench", "--layers", "mobilenet-v1", "--batch", "0"],
        &["bench", "--layers", "mobilenet-v1", "--runs", "0"],
        &["bench", "--layers", "mobilenet-v1", "--ops", "winograd"],
        &["bench", "--layers", "mobilenet-v1", "--blocks", "14"],
        &["bench", "--layers", "mobilenet-v1", "--min-time", "nan"],
    ];
    for args in cases {
        let out = dsconv().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("dsconv: error:"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_has_examples() {
    dsconv()
        .args(["bench", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("--layers mobilenet-v1"));
}

#[test]
fn info_names_the_cpu_features_and_measurements() {
    dsconv()
        .args(["info", "--threads", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cpu:"))
        .stdout(predicate::str::contains("features:"))
        .stdout(predicate::str::contains("kernels:"))
        .stdout(predicate::str::contains("GFLOP/s"))
        .stdout(predicate::str::contains("GB/s"));
}

#[test]
fn model_json_has_latency_and_throughput() {
    let v = json_of(&["bench", "--model", "mobilenet-v1"]);
    let ms = v["median_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms.is_finite());
    assert!(v["min_ms"].as_f64().unwrap() <= ms);
    assert!(v["runs"].as_u64().unwrap() >= 1);
    assert!(v["gflops"].as_f64().unwrap() > 0.0);
    assert!(v["pct_peak"].is_number());
    assert_eq!(v["network"], "mobilenet-v1");
    // α = 0.25 at 32×32 has far fewer MACs than the full network's 569 M.
    let macs = v["macs"].as_u64().unwrap();
    assert!(macs > 0 && macs < 569_000_000 / 16, "{macs}");
}

#[test]
fn model_runs_the_other_networks() {
    for name in ["mobilenet-v2", "efficientnet-lite0"] {
        let mut args = vec!["bench", "--model", name];
        args.extend(TINY);
        if name.starts_with("efficientnet") {
            // The Lite models have their width in their name: --width (args[3]) goes to 1.
            args[4] = "1";
        }
        let out = dsconv().args(&args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["network"], name);
        assert!(v["median_ms"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["macs"].as_u64().unwrap() > 0, "{v}");
    }
}

#[test]
fn layers_of_other_networks_and_width_of_lite_models_are_refused() {
    for args in [
        &["bench", "--layers", "mobilenet-v2"][..],
        &["bench", "--model", "efficientnet-lite0", "--width", "0.5"],
    ] {
        let out = dsconv().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr)
                .trim_end()
                .lines()
                .count(),
            1
        );
    }
}

#[test]
fn model_rejects_layer_filters() {
    let out = dsconv()
        .args(["bench", "--model", "mobilenet-v1", "--ops", "depthwise"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}

#[test]
fn train_reports_every_phase_and_refuses_bad_input() {
    let out = dsconv()
        .args(["bench", "--train", "--model", "ds-cnn", "--batch", "4"])
        .args(["--runs", "2", "--min-time", "0", "--max-time", "0"])
        .args(["--threads", "2", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "ds-cnn");
    assert_eq!(v["batch"], 4);
    assert_eq!(v["runs"], 2);
    let phases = v["phases_median_ms"].as_object().unwrap();
    for p in ["zero_grad", "forward", "loss", "backward", "optimizer"] {
        assert!(phases[&format!("{p}_ms")].as_f64().unwrap() >= 0.0, "{p}");
    }
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["flops_step"].as_f64().unwrap() > 0.0);
    for bad in [
        &["--model", "nope"][..],
        &["--model", "ds-cnn", "--batch", "1"],
        &["--model", "ds-cnn", "--optimizer", "lbfgs"],
        &["--model", "ds-cnn", "--width", "0.5"],
        &["--model", "ds-cnn", "--resolution", "0"],
    ] {
        let out = dsconv()
            .args(["bench", "--train", "--quiet"])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}
