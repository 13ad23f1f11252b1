//! `dsconv info`: the tiers and kernels it reports agree with the library, and
//! `DSCONV_MAX_ISA` caps them.

use assert_cmd::Command;
use serde_json::Value;

fn info(env: Option<&str>) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsconv"));
    cmd.args(["info", "--json", "--no-measure"]);
    match env {
        Some(v) => cmd.env("DSCONV_MAX_ISA", v),
        None => cmd.env_remove("DSCONV_MAX_ISA"),
    };
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn reports_the_selected_tier_and_its_gemm_kernel() {
    let v = info(None);
    let selected = v["selected_isa"].as_str().unwrap().to_string();
    let available: Vec<&str> = v["available_isas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(available.first(), Some(&"scalar"));
    assert_eq!(available.last(), Some(&selected.as_str()));
    let pointwise = v["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["op"] == "pointwise")
        .unwrap();
    assert!(pointwise["kernel"]
        .as_str()
        .unwrap()
        .ends_with(&format!("__{selected}")));
}

#[test]
fn max_isa_scalar_caps_everything() {
    let v = info(Some("scalar"));
    assert_eq!(v["selected_isa"], "scalar");
    assert_eq!(v["available_isas"].as_array().unwrap().len(), 1);
    assert_eq!(v["max_isa_env"], "scalar");
}
