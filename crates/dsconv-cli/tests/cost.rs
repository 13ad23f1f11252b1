//! `dsconv cost` end to end: the seed's numbers and the MobileNet paper's totals from the
//! JSON output, the text tables, and one-line exit-2 errors for bad arguments.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn dsconv() -> Command {
    Command::cargo_bin("dsconv").unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = dsconv()
        .arg("cost")
        .args(args)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("valid JSON")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn seed_example_json_is_exact() {
    let v = json(&["--input", "7x7x3", "--out-channels", "128", "--kernel", "3"]);
    assert_eq!(u(&v["standard"]["macs"]), 86_400);
    assert_eq!(u(&v["standard"]["flops"]), 172_800);
    assert_eq!(u(&v["standard"]["params"]), 3_456);
    assert_eq!(u(&v["depthwise"]["macs"]), 675);
    assert_eq!(u(&v["depthwise"]["params"]), 27);
    assert_eq!(u(&v["pointwise"]["macs"]), 9_600);
    assert_eq!(u(&v["pointwise"]["params"]), 384);
    assert_eq!(u(&v["separable"]["macs"]), 10_275);
    assert_eq!(u(&v["separable"]["params"]), 411);
    assert_eq!(v["standard"]["output"], serde_json::json!([5, 5, 128]));
    assert_eq!(v["depthwise"]["output"], serde_json::json!([5, 5, 3]));
    let ratio = v["ratio"].as_f64().unwrap();
    assert!((ratio - 10_275.0 / 86_400.0).abs() < 1e-12);
    let formula = v["formula_ratio"].as_f64().unwrap();
    assert!((formula - (1.0 / 128.0 + 1.0 / 9.0)).abs() < 1e-12);
    // Bytes: f32 input + weights read, output written.
    assert_eq!(u(&v["standard"]["bytes_read"]), (7 * 7 * 3 + 3_456) * 4);
    assert_eq!(u(&v["standard"]["bytes_written"]), 5 * 5 * 128 * 4);
}

#[test]
fn seed_example_table_shows_each_count_and_the_ratio() {
    dsconv()
        .args([
            "cost",
            "--input",
            "7x7x3",
            "--out-channels",
            "128",
            "--kernel",
            "3",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("86,400"))
        .stdout(predicate::str::contains("675"))
        .stdout(predicate::str::contains("9,600"))
        .stdout(predicate::str::contains("10,275"))
        .stdout(predicate::str::contains("11.9%"))
        .stdout(predicate::str::contains("5x5x128"));
}

#[test]
fn layer_options_change_the_geometry() {
    // 112x112x64 → 128, stride 2, same padding: 56x56 output, pads (0, 1, 0, 1).
    let v = json(&[
        "--input",
        "112x112x64",
        "--out-channels",
        "128",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--padding",
        "same",
    ]);
    assert_eq!(v["standard"]["output"], serde_json::json!([56, 56, 128]));
    assert_eq!(v["padding"], serde_json::json!([0, 1, 0, 1]));
    assert_eq!(u(&v["depthwise"]["macs"]), 56 * 56 * 64 * 9);
    assert_eq!(u(&v["pointwise"]["macs"]), 56 * 56 * 64 * 128);
    // Explicit padding, a rectangular kernel, bias and a batch.
    let v = json(&[
        "--input",
        "10x8x4",
        "--out-channels",
        "6",
        "--kernel",
        "3x5",
        "--padding",
        "1,2",
        "--bias",
        "--batch",
        "2",
    ]);
    assert_eq!(v["standard"]["output"], serde_json::json!([10, 8, 6]));
    assert_eq!(u(&v["standard"]["macs"]), 2 * 10 * 8 * 6 * 4 * 15);
    assert_eq!(u(&v["standard"]["params"]), 6 * 4 * 15 + 6);
    assert_eq!(u(&v["depthwise"]["params"]), 4 * 15 + 4);
}

/// (width, resolution, as-standard, mult-adds, params): exact counts behind the paper's
/// 569 M / 4.2 M, 325 M / 2.6 M, 149 M / 1.3 M, 41 M / 0.5 M, 418 M, 290 M, 186 M and
/// the all-standard 4,866 M / 29.3 M.
const MOBILENET: [(&str, &str, bool, u64, u64); 8] = [
    ("1", "224", false, 568_740_352, 4_210_088),
    ("0.75", "224", false, 325_400_448, 2_569_144),
    ("0.5", "224", false, 149_497_088, 1_320_648),
    ("0.25", "224", false, 41_030_272, 464_600),
    ("1", "192", false, 418_121_728, 4_210_088),
    ("1", "160", false, 290_675_200, 4_210_088),
    ("1", "128", false, 186_400_768, 4_210_088),
    ("1", "224", true, 4_867_293_184, 29_282_120),
];

#[test]
fn mobilenet_totals_match_the_paper() {
    for (width, res, standard, macs, params) in MOBILENET {
        let mut args = vec![
            "--model",
            "mobilenet-v1",
            "--width",
            width,
            "--resolution",
            res,
        ];
        if standard {
            args.push("--as-standard");
        }
        let v = json(&args);
        assert_eq!(u(&v["total"]["macs"]), macs, "{width} {res} {standard}");
        assert_eq!(u(&v["total"]["params"]), params, "{width} {res} {standard}");
        let layers = v["layers"].as_array().unwrap();
        let sum: u64 = layers.iter().map(|l| u(&l["macs"])).sum();
        assert_eq!(sum, macs);
        assert_eq!(layers.len(), if standard { 16 } else { 29 });
    }
}

#[test]
fn mobilenet_json_rows_have_names_kinds_and_shapes() {
    let v = json(&["--model", "mobilenet-v1"]);
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers[0]["name"], "conv1");
    assert_eq!(layers[0]["kind"], "standard");
    assert_eq!(layers[1]["name"], "block1.dw");
    assert_eq!(layers[1]["kind"], "depthwise");
    assert_eq!(layers[2]["kind"], "pointwise");
    assert_eq!(layers[2]["output"], serde_json::json!([112, 112, 64]));
    assert_eq!(layers[28]["name"], "fc");
    assert_eq!(layers[28]["kind"], "fc");
    assert_eq!(u(&layers[28]["params"]), 1_025_000);
    assert_eq!(u(&v["total"]["batchnorm_params"]), 21_888);
    assert_eq!(u(&v["total"]["flops"]), 2 * 568_740_352);
}

#[test]
fn mobilenet_table_has_a_row_per_layer_and_totals() {
    dsconv()
        .args(["cost", "--model", "mobilenet-v1", "--as-standard"])
        .assert()
        .success()
        .stdout(predicate::str::contains("block13.conv"))
        .stdout(predicate::str::contains("4,867,293,184"))
        .stdout(predicate::str::contains("29,282,120"));
}

fn fails_with(args: &[&str], message: &str) {
    let out = dsconv().arg("cost").args(args).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert!(out.get_output().stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    fails_with(&[], "give a layer");
    fails_with(
        &["--input", "7x7", "--out-channels", "8", "--kernel", "3"],
        "HxWxC",
    );
    fails_with(
        &["--input", "7x0x3", "--out-channels", "8", "--kernel", "3"],
        "at least 1",
    );
    fails_with(
        &["--input", "7x7x3", "--out-channels", "0", "--kernel", "3"],
        "at least 1",
    );
    fails_with(
        &["--input", "7x7x3", "--out-channels", "x", "--kernel", "3"],
        "positive integer",
    );
    fails_with(
        &["--input", "2x2x3", "--out-channels", "8", "--kernel", "3"],
        "larger than",
    );
    fails_with(
        &[
            "--input",
            "7x7x3",
            "--out-channels",
            "8",
            "--kernel",
            "3",
            "--padding",
            "-1",
        ],
        "--padding",
    );
    fails_with(
        &[
            "--input",
            "7x7x3",
            "--out-channels",
            "8",
            "--kernel",
            "3",
            "--padding",
            "1,2,3",
        ],
        "--padding",
    );
    fails_with(
        &[
            "--input",
            "7x7x3",
            "--out-channels",
            "8",
            "--kernel",
            "3",
            "--stride",
            "0",
        ],
        "--stride",
    );
    fails_with(
        &[
            "--input",
            "4000000000x4000000000x4000000000",
            "--out-channels",
            "8",
            "--kernel",
            "3",
        ],
        "overflow",
    );
    fails_with(&["--model", "resnet-50"], "unknown model");
    fails_with(&["--model", "mobilenet-v1", "--width", "0"], "width");
    fails_with(&["--model", "mobilenet-v1", "--width", "-1"], "width");
    fails_with(&["--model", "mobilenet-v1", "--width", "abc"], "--width");
    fails_with(
        &["--model", "mobilenet-v1", "--resolution", "8"],
        "resolution",
    );
    fails_with(&["--model", "mobilenet-v1", "--kernel", "3"], "--model");
    fails_with(&["--as-standard"], "--model");
}

#[test]
fn counts_beyond_u64_are_refused_not_saturated() {
    // Every size is addressable, but the MACs (~9e20) are not a u64: this printed
    // 18,446,744,073,709,551,615 MACs and a 100% ratio.
    fails_with(
        &[
            "--input",
            "100000x100000x100000",
            "--out-channels",
            "100000",
            "--kernel",
            "3",
        ],
        "overflow",
    );
    fails_with(
        &[
            "--model",
            "mobilenet-v1",
            "--width",
            "4",
            "--resolution",
            "4096",
            "--batch",
            "100000000",
        ],
        "overflow",
    );
    // Padding that fits usize but not isize.
    fails_with(
        &[
            "--input",
            "7x7x3",
            "--out-channels",
            "8",
            "--kernel",
            "3",
            "--padding",
            "9223372036854775808,0,0,0",
            "--stride",
            "9223372036854775808",
        ],
        "overflow",
    );
    fails_with(
        &["--model", "mobilenet-v1", "--width", "NaN"],
        "width multiplier",
    );
    fails_with(
        &["--model", "mobilenet-v1", "--width", "inf"],
        "width multiplier",
    );
    fails_with(
        &["--model", "mobilenet-v1", "--resolution", "1000000"],
        "resolution",
    );
    fails_with(
        &["--input", "0x7x3", "--out-channels", "8", "--kernel", "3"],
        "at least 1",
    );
    fails_with(
        &["--input", "7x7x3", "--out-channels", "8", "--kernel", "0"],
        "--kernel",
    );
}

#[test]
fn one_channel_depthwise_layers_are_still_depthwise() {
    // At --width 0.001 every layer has one channel: block1.dw has groups = 1 and was
    // listed as "standard".
    let v = json(&["--model", "mobilenet-v1", "--width", "0.001"]);
    let layers = v["layers"].as_array().unwrap();
    for l in layers {
        let name = l["name"].as_str().unwrap();
        if name.ends_with(".dw") {
            assert_eq!(l["kind"], "depthwise", "{name}");
        }
    }
    assert_eq!(layers[1]["name"], "block1.dw");
}

#[test]
fn padding_messages_match_conv2d() {
    // cost had its own padding parser: '-1' and a 20-digit value were "not P, PH,PW, ...".
    let layer = ["--input", "7x7x3", "--out-channels", "8", "--kernel", "3"];
    for (padding, message) in [
        ("-1", "'-1' is negative"),
        ("99999999999999999999", "too large"),
        ("1,2,3", "has 3 values"),
        ("x", "'x' is not a non-negative integer"),
    ] {
        let mut args = layer.to_vec();
        args.extend(["--padding", padding]);
        fails_with(&args, message);
    }
}

#[test]
fn help_shows_examples() {
    dsconv()
        .args(["cost", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "dsconv cost --input 7x7x3 --out-channels 128 --kernel 3",
        ))
        .stdout(predicate::str::contains("--as-standard"));
}
