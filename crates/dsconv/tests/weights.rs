//! Checkpoint readers against tiny files written by PyTorch
//! (`tests/fixtures/weights/gen_weights.py`), and the name-to-model mapping errors.

mod common;

use dsconv::weights::{DType, Loader, StateDict};
use dsconv::Error;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    common::fixture("weights", name)
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("tiny_expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every tensor of the file equals PyTorch's values (after conversion to f32), with the
/// file's dtype, in file order.
fn check_against_expected(sd: &StateDict, keep_dtype: bool) {
    let exp = expected();
    let exp = exp.as_object().unwrap();
    assert_eq!(sd.len(), exp.len());
    let names: Vec<&str> = sd.names().collect();
    let exp_names: Vec<&str> = exp.keys().map(String::as_str).collect();
    let mut sorted_names = names.clone();
    sorted_names.sort();
    let mut sorted_exp = exp_names.clone();
    sorted_exp.sort();
    assert_eq!(sorted_names, sorted_exp);
    for (name, e) in exp {
        let t = sd.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.dims, shape, "{name}");
        if keep_dtype {
            assert_eq!(t.dtype.name(), e["dtype"].as_str().unwrap(), "{name}");
        }
        let data: Vec<f32> = e["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(t.data, data, "{name}");
    }
}

#[test]
fn zip_checkpoint_matches_pytorch_values_including_strided_and_offset_views() {
    let sd = StateDict::load(fixture("tiny_zip.pth")).unwrap();
    check_against_expected(&sd, true);
    assert_eq!(sd.get("fc.weight_t").unwrap().dims, [4, 5]);
    assert_eq!(sd.get("bn.num_batches_tracked").unwrap().data, [12345.0]);
    assert_eq!(sd.get("half").unwrap().dtype, DType::F16);
}

#[test]
fn legacy_checkpoint_matches_pytorch_values() {
    let sd = StateDict::load(fixture("tiny_legacy.pth")).unwrap();
    check_against_expected(&sd, true);
}

#[test]
fn safetensors_matches_pytorch_values_in_file_order() {
    let sd = StateDict::load(fixture("tiny.safetensors")).unwrap();
    check_against_expected(&sd, false);
    let names: Vec<&str> = sd.names().collect();
    assert_eq!(names[0], "conv.weight");
    assert_eq!(names.last(), Some(&"empty"));
}

#[test]
fn safetensors_round_trip_of_a_pth() {
    let sd = StateDict::load(fixture("tiny_zip.pth")).unwrap();
    let bytes = sd.to_safetensors().unwrap();
    let back = StateDict::from_bytes(&bytes, "memory").unwrap();
    for name in sd.names() {
        assert_eq!(sd.get(name).unwrap().data, back.get(name).unwrap().data);
        assert_eq!(sd.get(name).unwrap().dims, back.get(name).unwrap().dims);
    }
}

#[test]
fn loader_reports_missing_unexpected_and_mismatched_together() {
    let sd = StateDict::load(fixture("tiny_zip.pth")).unwrap();
    let mut ld = Loader::new(&sd);
    assert_eq!(ld.take("conv.bias", &[3]).len(), 3);
    assert_eq!(ld.take("conv.weight", &[3, 2, 5, 5]), vec![0.0; 150]);
    assert_eq!(ld.take("nope.weight", &[2]), vec![0.0; 2]);
    let Err(Error::StateDict(report)) = ld.finish() else {
        panic!("expected a key report");
    };
    assert_eq!(report.missing, ["nope.weight"]);
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].name, "conv.weight");
    assert_eq!(report.mismatched[0].found, [3, 2, 3, 3]);
    // Everything not taken, except num_batches_tracked, is unexpected.
    assert!(report.unexpected.contains(&"base".to_string()));
    assert!(!report
        .unexpected
        .iter()
        .any(|n| n.ends_with("num_batches_tracked")));
    let msg = Error::StateDict(report).to_string();
    assert!(msg.contains("1 missing: nope.weight"), "{msg}");
    assert!(
        msg.contains("conv.weight (model [3, 2, 5, 5], file [3, 2, 3, 3])"),
        "{msg}"
    );
}

#[test]
fn loader_accepts_an_exact_fit() {
    let sd = StateDict::load(fixture("tiny_zip.pth")).unwrap();
    let mut ld = Loader::new(&sd);
    for name in sd.names().collect::<Vec<_>>() {
        let dims = sd.get(name).unwrap().dims.clone();
        ld.take(name, &dims);
    }
    ld.finish().unwrap();
}

#[test]
fn garbage_is_a_format_error() {
    for bytes in [&b""[..], b"hello", b"PK\x03\x04garbage", b"\x80\x02K\x01."] {
        let err = StateDict::from_bytes(bytes, "x").unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err:?}");
    }
}

#[test]
fn protocol_4_pickle_matches_pytorch_values() {
    let sd = StateDict::load(fixture("tiny_p4.pth")).unwrap();
    check_against_expected(&sd, true);
}

#[test]
fn training_checkpoint_with_parameters_under_state_dict_is_found() {
    let sd = StateDict::load(fixture("tiny_training.pth")).unwrap();
    check_against_expected(&sd, true);
}
