//! `.onnx` models wherever a built-in network name is accepted: `dsconv run`, `dsconv
//! bench` and `dsconv cost` hand a `--model` ending in `.onnx` to this module, which loads
//! it through `dsconv-onnx`, plans it for the input shape and runs the plan.

use super::user_error;
use anyhow::{Context, Result};
use dsconv::npy::{read_npy, write_npy};
use dsconv::Executor;
use dsconv_onnx::{Model, Plan};
use std::path::{Path, PathBuf};

/// True when `--model` names an ONNX file rather than a built-in network.
pub fn is_onnx(model: &str) -> bool {
    model.to_ascii_lowercase().ends_with(".onnx")
}

/// Loads the model (errors name the file).
pub fn load(path: &str) -> Result<Model> {
    Model::load(path).with_context(|| path.to_string())
}

/// Parses `1x3x224x224`.
pub fn parse_shape(flag: &str, s: &str) -> Result<Vec<usize>> {
    let dims: Option<Vec<usize>> = s
        .split(['x', 'X', ','])
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect();
    match dims {
        Some(d) if !d.is_empty() && d.len() <= 8 => Ok(d),
        _ => Err(user_error(format!(
            "{flag} '{s}': expected positive dimensions separated by x, e.g. 1x3x224x224"
        ))),
    }
}

/// The input shape: `--input-shape` if given (with `--batch` replacing its first
/// dimension), else the model's declared shape with a free batch dimension set to
/// `batch`; any other free dimension needs `--input-shape`.
pub fn input_shape(model: &Model, given: Option<&str>, batch: Option<usize>) -> Result<Vec<usize>> {
    let mut shape = match given {
        Some(s) => parse_shape("--input-shape", s)?,
        None => {
            let inputs = model.inputs();
            let Some((name, Some(dims))) = inputs.first() else {
                return Err(user_error(
                    "the model declares no input shape: give --input-shape",
                ));
            };
            let mut out = Vec::new();
            for (i, d) in dims.iter().enumerate() {
                match (d, i) {
                    (Some(n), _) => out.push(*n),
                    (None, 0) => out.push(1),
                    (None, _) => {
                        let shown: Vec<String> = dims
                            .iter()
                            .map(|d| d.map_or("?".to_string(), |n| n.to_string()))
                            .collect();
                        return Err(user_error(format!(
                            "input '{name}' has free dimensions [{}]: give --input-shape, e.g. 1x3x224x224",
                            shown.join(", ")
                        )));
                    }
                }
            }
            out
        }
    };
    if let Some(b) = batch {
        shape[0] = b;
    }
    Ok(shape)
}

/// Plans `model` for one input of `shape`.
pub fn plan(model: &Model, shape: &[usize]) -> Result<Plan> {
    if model.inputs().len() != 1 {
        return Err(user_error(format!(
            "the model has {} inputs; the CLI runs single-input models",
            model.inputs().len()
        )));
    }
    Ok(model.plan(&[shape])?)
}

/// `dsconv run --model FILE.onnx --input X.npy --output Y.npy [--output ...]`.
pub fn run(model: &str, inputs: &[PathBuf], outputs: &[PathBuf], threads: usize) -> Result<()> {
    let m = load(model)?;
    if inputs.len() != m.inputs().len() {
        return Err(user_error(format!(
            "{model} takes {} input(s), {} --input given",
            m.inputs().len(),
            inputs.len()
        )));
    }
    let arrays = inputs
        .iter()
        .map(|p| read_npy(p).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let shapes: Vec<&[usize]> = arrays.iter().map(|a| a.shape.as_slice()).collect();
    let names = m.outputs().to_vec();
    // Where each output goes: one file each, or every output into one directory.
    let targets: Vec<PathBuf> =
        if outputs.len() == names.len() && !(names.len() > 1 && outputs[0].is_dir()) {
            outputs.to_vec()
        } else if outputs.len() == 1 && (outputs[0].is_dir() || names.len() > 1) {
            std::fs::create_dir_all(&outputs[0])
                .with_context(|| format!("creating {}", outputs[0].display()))?;
            names
                .iter()
                .map(|n| outputs[0].join(format!("{}.npy", file_name(n))))
                .collect()
        } else {
            return Err(user_error(format!(
                "{model} has {} output(s) ({}); give one --output each, or one directory",
                names.len(),
                names.join(", ")
            )));
        };
    let plan = m.plan(&shapes)?;
    let exec = Executor::new(threads)?;
    let data: Vec<&[f32]> = arrays.iter().map(|a| a.data.as_slice()).collect();
    let ys = plan.run(&data, &exec)?;
    for (y, path) in ys.iter().zip(&targets) {
        write_npy(path, &y.dims, &y.data)?;
    }
    Ok(())
}

fn file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("output{s}")
    } else {
        s
    }
}

/// The per-layer cost table of an ONNX model for `shape`.
pub fn cost_table(
    model: &str,
    shape: Option<&str>,
    batch: Option<usize>,
) -> Result<dsconv::cost::NetworkCost> {
    let m = load(model)?;
    let shape = input_shape(&m, shape, batch)?;
    let plan = plan(&m, &shape)?;
    let base = Path::new(model)
        .file_name()
        .map_or(model.to_string(), |f| f.to_string_lossy().into_owned());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    Ok(plan.cost_table(&format!("{base} ({})", dims.join("x"))))
}
