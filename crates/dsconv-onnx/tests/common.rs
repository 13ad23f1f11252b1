//! Shared by the integration tests.
#![allow(dead_code)]

use dsconv::Executor;
use dsconv_onnx::{Model, Output};

/// Largest |got − want| relative to max |want|.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-30);
    let diff = got.iter().zip(want).fold(0f64, |m, (&a, &b)| {
        if a.is_nan() && b.is_nan() {
            m
        } else {
            m.max((a as f64 - b as f64).abs())
        }
    });
    diff / scale
}

/// Runs `model` on one input at 1 and 2 threads; asserts the two are bitwise equal.
pub fn run_both(model: &Model, shape: &[usize], x: &[f32]) -> Vec<Output> {
    let plan = model.plan(&[shape]).unwrap();
    let one = plan.run(&[x], &Executor::new(1).unwrap()).unwrap();
    let two = plan.run(&[x], &Executor::new(2).unwrap()).unwrap();
    for (a, b) in one.iter().zip(&two) {
        let bits = |o: &Output| o.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(a) == bits(b), "1 and 2 threads differ on {}", a.name);
    }
    one
}
