//! The PP-OCR models of rapidocr-onnxruntime 1.4.4 (fetched by
//! `scripts/fetch_ppocr_models.sh`, named by `DSCONV_PPOCR_DIR`) against ONNX Runtime's
//! outputs (`tests/fixtures/ppocr/gen_ppocr.py`). Without the models the tests skip,
//! except under `CI=true`, where they fail.

mod common;

use dsconv::npy::read_npy;
use dsconv_onnx::Model;
use std::path::{Path, PathBuf};

fn models() -> Option<PathBuf> {
    let dir = std::env::var_os("DSCONV_PPOCR_DIR").map(PathBuf::from);
    match dir.filter(|d| d.join("ch_PP-OCRv4_det_infer.onnx").is_file()) {
        Some(d) => Some(d),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but DSCONV_PPOCR_DIR does not hold the PP-OCR models (scripts/fetch_ppocr_models.sh)")
        }
        None => {
            eprintln!("skipping: set DSCONV_PPOCR_DIR (scripts/fetch_ppocr_models.sh)");
            None
        }
    }
}

fn check(tag: &str) {
    let Some(dir) = models() else { return };
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ppocr");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("manifest.json")).unwrap()).unwrap();
    let case = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == tag)
        .unwrap();
    let model = Model::load(dir.join(case["model"].as_str().unwrap())).unwrap();
    let x = read_npy(&fx.join(format!("{tag}.in.npy"))).unwrap();
    let want = read_npy(&fx.join(format!("{tag}.ort.npy"))).unwrap();
    let y = common::run_both(&model, &x.shape, &x.data);
    assert_eq!(y[0].dims, want.shape);
    let e = common::rel_err(&y[0].data, &want.data);
    eprintln!("{tag}: {e:.2e} × max|ref| from ONNX Runtime");
    assert!(e <= 1e-4, "{tag}: {e:.3e}");
}

#[test]
fn det_matches_onnx_runtime() {
    check("det");
}

#[test]
fn rec_matches_onnx_runtime() {
    check("rec");
}

#[test]
fn cls_matches_onnx_runtime() {
    check("cls");
}
