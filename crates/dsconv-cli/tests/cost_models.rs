//! `dsconv cost --model mobilenet-v2 | efficientnet-lite0`: totals equal to PyTorch's
//! parameter counts (weights + BatchNorm γ, β) and the published mult-adds.

use assert_cmd::Command;
use predicates::prelude::*;

fn cost_json(args: &[&str]) -> serde_json::Value {
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args(["cost", "--json"])
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn efficientnet_lite0_cost_matches_pytorch_parameter_count() {
    let v = cost_json(&["--model", "efficientnet-lite0"]);
    let t = &v["total"];
    let params = t["params"].as_u64().unwrap() + t["batchnorm_params"].as_u64().unwrap();
    assert_eq!(params, 4_652_008);
    let macs = t["macs"].as_u64().unwrap();
    assert!((380_000_000..420_000_000).contains(&macs), "{macs}");
    assert_eq!(v["layers"][0]["name"], "_conv_stem");
}

#[test]
fn mobilenet_v2_cost_matches_torchvision_parameter_count() {
    let v = cost_json(&["--model", "mobilenet-v2"]);
    let t = &v["total"];
    let params = t["params"].as_u64().unwrap() + t["batchnorm_params"].as_u64().unwrap();
    assert_eq!(params, 3_504_872);
    let half = cost_json(&[
        "--model",
        "mobilenet-v2",
        "--width",
        "0.5",
        "--resolution",
        "160",
    ]);
    assert!(half["total"]["macs"].as_u64().unwrap() < t["macs"].as_u64().unwrap() / 4);
}

#[test]
fn meaningless_model_options_exit_2() {
    for args in [
        &["--model", "efficientnet-lite0", "--width", "0.5"][..],
        &["--model", "mobilenet-v2", "--as-standard"][..],
    ] {
        Command::cargo_bin("dsconv")
            .unwrap()
            .arg("cost")
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with("dsconv: error:"));
    }
}

#[test]
fn efficientnet_lite_family_grows_with_its_index() {
    let params: Vec<u64> = (0..5)
        .map(|i| {
            let v = cost_json(&["--model", &format!("efficientnet-lite{i}")]);
            v["total"]["params"].as_u64().unwrap()
        })
        .collect();
    assert!(params.windows(2).all(|w| w[0] < w[1]), "{params:?}");
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["cost", "--model", "efficientnet-lite9"])
        .assert()
        .code(2);
}

#[test]
fn aliases_and_default_resolutions_come_from_the_registry() {
    for alias in ["mobilenet_v2", "MobileNetV2", "mobilenet-v2"] {
        let v = cost_json(&["--model", alias]);
        assert_eq!(v["model"], "mobilenet-v2", "{alias}");
        assert_eq!(v["resolution"], 224);
    }
    // Each Lite model at its own resolution unless --resolution says otherwise.
    for (i, r) in [224, 240, 260, 280, 300].into_iter().enumerate() {
        let v = cost_json(&["--model", &format!("efficientnet-lite{i}")]);
        assert_eq!(v["resolution"], r);
    }
    let v = cost_json(&["--model", "efficientnet-lite4", "--resolution", "224"]);
    assert_eq!(v["resolution"], 224);
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["cost", "--model", "resnet-50"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown model 'resnet-50'"))
        .stderr(predicate::str::contains(
            "mobilenet-v1, mobilenet-v2 (also: ",
        ));
}
