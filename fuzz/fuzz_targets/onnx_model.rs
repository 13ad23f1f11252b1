//! Any bytes given to the ONNX reader give a Model or a typed error, never a panic; a
//! model that loads is planned for a small input and, when that succeeds and no value
//! exceeds 16 M elements (a mutated Pad or Resize can ask for gigabytes, which is a valid
//! model, not a bug, but trips libFuzzer's memory limit), run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = dsconv_onnx::Model::from_bytes(data) else {
        return;
    };
    let shape = model
        .declared_input_shape(Some(&[1, 3, 16, 16]))
        .unwrap_or_else(|| vec![1, 3, 16, 16]);
    if shape.iter().product::<usize>() > 1 << 16 {
        return;
    }
    let inputs: Vec<Vec<usize>> = model.inputs().iter().map(|_| shape.clone()).collect();
    let refs: Vec<&[usize]> = inputs.iter().map(|s| s.as_slice()).collect();
    if let Ok(plan) = model.plan(&refs) {
        if plan.max_value_elements() > 1 << 24 {
            return;
        }
        let x = vec![0.5f32; shape.iter().product()];
        let xs: Vec<&[f32]> = inputs.iter().map(|_| x.as_slice()).collect();
        let _ = plan.run(&xs, &dsconv::Executor::single());
    }
});
