//! Bad input: truncated and bit-flipped protobufs (seeded mutants), tensors in external
//! files, absurd dims, cycles, missing initializers, unsupported operators and
//! attributes, input shapes the graph cannot take. Typed errors, never a panic.

use dsconv::rng::SplitMix64;
use dsconv::Executor;
use dsconv_onnx::{Error, Model};
use prost::Message;
use std::path::Path;

mod proto {
    // The generated types, for building hostile files (the crate keeps them private).
    #![allow(missing_docs, dead_code, clippy::all)]
    include!("../src/onnx.rs");
}
use proto::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, input: &[i64]) -> Vec<u8> {
    let graph = GraphProto {
        node: nodes,
        initializer: inits,
        input: vec![value("x", input)],
        output: vec![value("y", &[])],
        name: Some("g".into()),
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn conv_model() -> Vec<u8> {
    model(
        vec![node("Conv", "conv", &["x", "w"], &["y"])],
        vec![tensor("w", &[4, 3, 3, 3], &[0.1; 108])],
        &[1, 3, 8, 8],
    )
}

#[test]
fn a_valid_hand_built_model_runs() {
    let m = Model::from_bytes(&conv_model()).unwrap();
    let plan = m.plan(&[&[1, 3, 8, 8]]).unwrap();
    let y = plan.run(&[&[1.0; 192]], &Executor::single()).unwrap();
    assert_eq!(y[0].dims, [1, 4, 6, 6]);
    assert!(y[0].data.iter().all(|&v| (v - 2.7).abs() < 1e-5));
}

#[test]
fn truncated_and_bit_flipped_files_give_typed_errors_never_panics() {
    let mut rng = SplitMix64::new(13);
    for name in [
        "ops/conv_bn_relu.onnx",
        "ops/inverted_residual_add.onnx",
        "torch/mobilenet_v2_ts_op11.onnx",
    ] {
        let bytes = fixture(name);
        let mut outcomes = [0usize; 3];
        for i in 0..60 {
            let mut b = bytes.clone();
            if i % 2 == 0 {
                b.truncate((rng.next_u64() as usize) % b.len());
            } else {
                for _ in 0..1 + i % 5 {
                    let at = (rng.next_u64() as usize) % b.len();
                    b[at] ^= 1 << (rng.next_u64() % 8);
                }
            }
            let result = std::panic::catch_unwind(|| match Model::from_bytes(&b) {
                Err(e) => {
                    assert!(e.is_bad_input(), "{e}");
                    assert!(!e.to_string().is_empty());
                    0
                }
                Ok(m) => {
                    let shape = m
                        .declared_input_shape(Some(&[1, 3, 32, 32]))
                        .unwrap_or(vec![1, 3, 32, 32]);
                    match m.plan(&[&shape]) {
                        Err(_) => 1,
                        Ok(p) => {
                            let n: usize = shape.iter().product();
                            if n <= 1 << 22 {
                                let _ = p.run(&[&vec![0.5; n]], &Executor::single());
                            }
                            2
                        }
                    }
                }
            });
            let o = result.unwrap_or_else(|_| panic!("{name}: mutant {i} panicked"));
            outcomes[o] += 1;
        }
        assert!(outcomes[0] > 10, "{name}: {outcomes:?}");
    }
}

#[test]
fn hostile_models_are_refused_with_the_reason() {
    let err = |bytes: Vec<u8>| Model::from_bytes(&bytes).unwrap_err();
    // External data.
    let mut w = tensor("w", &[4, 3, 3, 3], &[]);
    w.raw_data = None;
    w.data_location = Some(1);
    w.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some("weights.bin".into()),
    }];
    let e = err(model(
        vec![node("Conv", "conv", &["x", "w"], &["y"])],
        vec![w],
        &[1, 3, 8, 8],
    ));
    assert!(
        matches!(e, Error::ExternalData { .. }) && e.to_string().contains("weights.bin"),
        "{e}"
    );
    // Dims whose product overflows, and dims that do not match the bytes.
    let mut w = tensor("w", &[1 << 40, 1 << 40, 1 << 40], &[1.0]);
    let e = err(model(vec![], vec![w.clone()], &[1]));
    assert!(matches!(e, Error::Overflow(_)), "{e}");
    w.dims = vec![1_000_000_000, 1000];
    let e = err(model(vec![], vec![w], &[1]));
    assert!(
        matches!(e, Error::Decode(_)) && e.to_string().contains("needs"),
        "{e}"
    );
    // A cycle.
    let e = err(model(
        vec![
            node("Relu", "a", &["x", "c"], &["b"]),
            node("Relu", "b", &["b"], &["c"]),
            node("Relu", "y", &["c"], &["y"]),
        ],
        vec![],
        &[1],
    ));
    assert!(matches!(e, Error::Cycle(_)), "{e}");
    // A missing initializer.
    let e = err(model(
        vec![node("Conv", "conv", &["x", "w"], &["y"])],
        vec![],
        &[1, 3, 8, 8],
    ));
    assert!(
        matches!(&e, Error::MissingInput { input, node, .. } if input == "w" && node == "conv"),
        "{e}"
    );
    // An unsupported operator, and an unsupported attribute value.
    let e = err(model(
        vec![node("LSTM", "rnn", &["x"], &["y"])],
        vec![],
        &[1],
    ));
    assert!(
        matches!(&e, Error::Unsupported { node, op, .. } if node == "rnn" && op == "LSTM"),
        "{e}"
    );
    let mut n = node("Pad", "pad", &["x", "p"], &["y"]);
    n.attribute.push(AttributeProto {
        name: Some("mode".into()),
        r#type: Some(3),
        s: Some(b"wrap".to_vec()),
        ..Default::default()
    });
    let p = TensorProto {
        name: Some("p".into()),
        dims: vec![8],
        data_type: Some(7),
        int64_data: vec![0; 8],
        ..Default::default()
    };
    let m = Model::from_bytes(&model(vec![n], vec![p], &[1, 3, 4, 4])).unwrap();
    let e = m.plan(&[&[1, 3, 4, 4]]).unwrap_err();
    assert!(
        matches!(&e, Error::Unsupported { node, what, .. } if node == "pad" && what.contains("wrap")),
        "{e}"
    );
    // Not protobuf at all.
    assert!(matches!(
        err(b"\xff\xff\xff\xff not onnx".to_vec()),
        Error::Decode(_)
    ));
}

#[test]
fn input_shapes_the_graph_cannot_take() {
    let m = Model::from_bytes(&conv_model()).unwrap();
    for (shape, what) in [
        (&[1usize, 3, 8][..], "rank"),
        (&[1, 4, 8, 8][..], "fixes dimension 1"),
        (&[1, 3, 0, 8][..], "zero"),
    ] {
        let e = m.plan(&[shape]).unwrap_err();
        assert!(
            matches!(e, Error::Input { .. }) && e.to_string().contains(what),
            "{shape:?}: {e}"
        );
    }
    // Input data of the wrong size, and more shapes than inputs.
    let bytes = fixture("ops/conv_valid.onnx");
    let m = Model::from_bytes(&bytes).unwrap();
    assert!(m.plan(&[&[2, 4, 7, 9]]).is_ok());
    let plan = m.plan(&[&[2, 4, 7, 9]]).unwrap();
    let e = plan.run(&[&[0.0; 10]], &Executor::single()).unwrap_err();
    assert!(matches!(e, Error::Input { .. }), "{e}");
    let e = m.plan(&[&[2, 4, 7, 9], &[1]]).unwrap_err();
    assert!(matches!(e, Error::Input { .. }), "{e}");
}

/// What `fuzz/fuzz_targets/onnx_model.rs` does with one input, returning instead of
/// panicking: load, plan for the declared (or a small) shape, run when small.
fn fuzz_one(bytes: &[u8]) -> std::thread::Result<()> {
    std::panic::catch_unwind(|| {
        let Ok(m) = Model::from_bytes(bytes) else {
            return;
        };
        let shape = m
            .declared_input_shape(Some(&[1, 3, 16, 16]))
            .unwrap_or_else(|| vec![1, 3, 16, 16]);
        if shape.iter().product::<usize>() > 1 << 16 {
            return;
        }
        let inputs: Vec<Vec<usize>> = m.inputs().iter().map(|_| shape.clone()).collect();
        let refs: Vec<&[usize]> = inputs.iter().map(|s| s.as_slice()).collect();
        if let Ok(plan) = m.plan(&refs) {
            if plan.max_value_elements() <= 1 << 24 {
                let x = vec![0.5f32; shape.iter().product()];
                let xs: Vec<&[f32]> = inputs.iter().map(|_| x.as_slice()).collect();
                let _ = plan.run(&xs, &Executor::single());
            }
        }
    })
}

#[test]
fn inputs_the_fuzzer_found_give_typed_errors() {
    // Every file in tests/fixtures/fuzz/ once made the fuzz target panic (named after
    // the bug); kept here so that it stays fixed on stable.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(fuzz_one(&bytes).is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(n >= 1, "no fuzz inputs in {}", dir.display());
}

fn i64_tensor(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(7),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(2),
        i: Some(v),
        ..Default::default()
    }
}

#[test]
fn attributes_that_would_overflow_the_shape_arithmetic_are_refused() {
    let plan_err = |bytes: Vec<u8>, shape: &[usize]| {
        let m = Model::from_bytes(&bytes).unwrap();
        let r = std::panic::catch_unwind(|| m.plan(&[shape]).map(|_| ()));
        r.expect("planning panicked").unwrap_err()
    };
    // Pad whose begin + end overflow i64 (what the fuzzer found), and one far beyond any
    // real pad.
    for pads in [
        [0, 0, 1, 1, 0, 0, i64::MAX, 1],
        [0, 0, 0, 0, 0, 0, 1 << 56, -(1 << 40)],
        [0, 0, 0, 0, 0, i64::MIN, 0, 3],
    ] {
        let e = plan_err(
            model(
                vec![node("Pad", "pad", &["x", "p"], &["y"])],
                vec![i64_tensor("p", &pads)],
                &[1, 3, 4, 4],
            ),
            &[1, 3, 4, 4],
        );
        assert!(
            matches!(&e, Error::Invalid { node, .. } if node == "pad")
                && e.to_string().contains("out of range"),
            "{pads:?}: {e}"
        );
    }
    // Conv and ConvTranspose strides, dilations, pads and groups at i64::MAX.
    let w = || tensor("w", &[3, 1, 3, 3], &[0.1; 27]);
    for (op, attr) in [
        ("Conv", ints_attr("strides", &[i64::MAX, 1])),
        ("Conv", ints_attr("dilations", &[1, i64::MAX])),
        ("Conv", ints_attr("pads", &[0, 0, i64::MAX, 0])),
        ("Conv", int_attr("group", i64::MAX)),
        ("ConvTranspose", ints_attr("strides", &[1 << 40, 1])),
        (
            "ConvTranspose",
            ints_attr("pads", &[i64::MAX, 0, i64::MAX, 0]),
        ),
        ("ConvTranspose", ints_attr("output_padding", &[i64::MAX, 0])),
        ("ConvTranspose", int_attr("group", 1 << 62)),
    ] {
        let mut n = node(op, "c", &["x", "w"], &["y"]);
        let what = attr.name.clone().unwrap();
        n.attribute.push(attr);
        let e = plan_err(model(vec![n], vec![w()], &[1, 3, 8, 8]), &[1, 3, 8, 8]);
        assert!(e.is_bad_input(), "{op} {what}: {e}");
    }
    // An empty weight with SAME padding (the pad arithmetic subtracts 1 from its size).
    let mut n = node("Conv", "c", &["x", "w"], &["y"]);
    n.attribute.push(AttributeProto {
        name: Some("auto_pad".into()),
        r#type: Some(3),
        s: Some(b"SAME_UPPER".to_vec()),
        ..Default::default()
    });
    let e = plan_err(
        model(
            vec![n],
            vec![tensor("w", &[3, 3, 0, 3], &[])],
            &[1, 3, 8, 8],
        ),
        &[1, 3, 8, 8],
    );
    assert!(e.to_string().contains("empty"), "{e}");
}
