//! ONNX models (`crates/dsconv-onnx`): `_load_onnx` reads and validates a file;
//! `OnnxModel.run`/`predict` plan it for the input shapes they are given (plans are cached
//! per shape) and run the plan with the GIL released.

use crate::convert::{self, executor, read};
use dsconv_onnx::{Model, Plan};
use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A `dsconv_onnx::Error` as the Python exception its kind calls for.
fn onnx_err(e: dsconv_onnx::Error) -> PyErr {
    match e {
        dsconv_onnx::Error::Dsconv(d) => convert::err(d),
        dsconv_onnx::Error::Io { .. } => PyOSError::new_err(e.to_string()),
        e if e.is_bad_input() => PyValueError::new_err(e.to_string()),
        e => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Plans kept per input shapes; a model fed many shapes keeps the last few.
const PLAN_CACHE: usize = 8;

/// An ONNX model loaded by `dsconv.load("model.onnx")`.
#[pyclass(frozen, name = "OnnxModel", module = "dsconv._dsconv")]
pub struct PyOnnx {
    model: Model,
    path: String,
    threads: Option<usize>,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Arc<Plan>>>,
}

impl PyOnnx {
    fn plan(&self, py: Python<'_>, shapes: &[Vec<usize>]) -> PyResult<Arc<Plan>> {
        let key = shapes.to_vec();
        if let Some(p) = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let plan = Arc::new(py.detach(|| self.model.plan(&refs)).map_err(onnx_err)?);
        let mut cache = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PLAN_CACHE {
            cache.clear();
        }
        cache.insert(key, plan.clone());
        Ok(plan)
    }
}

/// _load_onnx(path, threads=None)
///
/// Reads and validates an ONNX model (every operator and attribute checked now; shapes
/// when it is first run on an input shape).
#[pyfunction]
#[pyo3(signature = (path, threads=None))]
fn _load_onnx(
    py: Python<'_>,
    path: PathBuf,
    threads: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyOnnx> {
    if !path.is_file() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such ONNX file",
            path.display()
        )));
    }
    let threads = match threads.filter(|t| !t.is_none()) {
        Some(t) => Some(convert::threads(Some(t))?),
        None => None,
    };
    let model = py.detach(|| Model::load(&path)).map_err(onnx_err)?;
    Ok(PyOnnx {
        model,
        path: path.display().to_string(),
        threads,
        plans: Mutex::new(HashMap::new()),
    })
}

#[pymethods]
impl PyOnnx {
    /// run(inputs, threads=None)
    ///
    /// Every graph output (a list of float32 arrays, in the graph's order) for ``inputs``:
    /// one array per graph input (a list, or one array for a single-input model), NCHW
    /// float32 as the graph declares them (others converted). Bitwise identical for every
    /// thread count.
    #[pyo3(signature = (inputs, threads=None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<Bound<'py, PyAny>> = match inputs.cast::<PyList>() {
            Ok(l) => l.iter().collect(),
            Err(_) => vec![inputs.clone()],
        };
        let threads = match threads.filter(|t| !t.is_none()) {
            Some(t) => convert::threads(Some(t))?,
            None => self.threads.unwrap_or_else(convert::default_threads),
        };
        let exec = executor(threads)?;
        let arrays = items
            .iter()
            .enumerate()
            .map(|(i, a)| read(a, &format!("input {i}")))
            .collect::<PyResult<Vec<_>>>()?;
        let shapes: Vec<Vec<usize>> = arrays.iter().map(|a| a.shape.clone()).collect();
        let plan = self.plan(py, &shapes)?;
        let data: Vec<&[f32]> = arrays.iter().map(|a| a.data()).collect();
        let outs = py.detach(|| plan.run(&data, &exec)).map_err(|e| match e {
            dsconv_onnx::Error::Dsconv(dsconv::Error::Allocation { .. }) => {
                PyMemoryError::new_err(e.to_string())
            }
            e => onnx_err(e),
        })?;
        let list = PyList::empty(py);
        for o in outs {
            list.append(convert::vec_to_numpy(py, o.data, &o.dims)?)?;
        }
        Ok(list)
    }

    /// predict(batch, threads=None)
    ///
    /// The first output (e.g. a classifier's logits) for one input batch.
    #[pyo3(signature = (batch, threads=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.model.inputs().len() != 1 {
            return Err(PyValueError::new_err(format!(
                "{}: the model has {} inputs; use run([...])",
                self.path,
                self.model.inputs().len()
            )));
        }
        let outs = self.run(py, batch, threads)?;
        outs.get_item(0)
    }

    /// cost(shape)
    ///
    /// The per-layer cost table for one input of ``shape`` (e.g. ``(1, 3, 224, 224)``).
    fn cost<'py>(&self, py: Python<'py>, shape: Vec<usize>) -> PyResult<Bound<'py, PyDict>> {
        let plan = self.plan(py, std::slice::from_ref(&shape))?;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        convert::network_dict(
            py,
            &plan.cost_table(&format!("{} ({})", self.path, dims.join("x"))),
        )
    }

    /// The graph inputs: ``[(name, dims or None)]``, a free dimension as None.
    #[getter]
    fn inputs(&self) -> Vec<(String, Option<Vec<Option<usize>>>)> {
        self.model.inputs()
    }

    /// The graph outputs' names.
    #[getter]
    fn outputs(&self) -> Vec<String> {
        self.model.outputs().to_vec()
    }

    /// The file it was read from.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    fn __repr__(&self) -> String {
        format!("dsconv.OnnxModel({:?})", self.path)
    }
}

/// Adds the class and its loader to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyOnnx>()?;
    m.add_function(wrap_pyfunction!(_load_onnx, m)?)?;
    Ok(())
}
