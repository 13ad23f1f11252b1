//! Python values to dsconv's types and back: arrays (float32 read in place when
//! C-contiguous), the `conv2d` keyword arguments, errors and cost tables.

use dsconv::cost::{LayerCost, NetworkCost};
use dsconv::{Activation, Conv2dParams, Cost, Executor, Layout, Padding, PaddingMode, Tensor};
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A library error as the Python exception of its kind, with the library's message:
/// files that cannot be read → `OSError`, anything else about the caller's input →
/// `ValueError`, out of memory → `MemoryError`, threads refused → `RuntimeError`.
pub fn err(e: dsconv::Error) -> PyErr {
    let msg = e.to_string();
    match e {
        dsconv::Error::Io { .. } => PyOSError::new_err(msg),
        dsconv::Error::Allocation { .. } => PyMemoryError::new_err(msg),
        e if e.is_bad_input() => PyValueError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// A `ValueError` with `msg`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// An f32 array from Python: the NumPy buffer itself when it is float32 and C-contiguous
/// (read in place, never copied), else a C-order copy.
pub enum Array<'py> {
    /// Borrowed from a C-contiguous float32 array.
    View(PyReadonlyArrayDyn<'py, f32>),
    /// Copied (another dtype, or strided).
    Owned(Vec<f32>),
}

/// An array and its shape.
pub struct Input<'py> {
    array: Array<'py>,
    /// The NumPy shape.
    pub shape: Vec<usize>,
}

impl Input<'_> {
    /// The elements in C order.
    pub fn data(&self) -> &[f32] {
        match &self.array {
            // `read` keeps only C-contiguous arrays as views, so this cannot fail.
            Array::View(a) => a.as_slice().unwrap_or(&[]),
            Array::Owned(v) => v,
        }
    }

    /// The elements as an owned vector (a copy for a view).
    pub fn into_vec(self) -> Vec<f32> {
        match self.array {
            Array::View(a) => a.as_slice().map(<[f32]>::to_vec).unwrap_or_default(),
            Array::Owned(v) => v,
        }
    }

    /// The shape as exactly `N` dimensions, or a `ValueError` naming `what` and `expected`.
    pub fn dims<const N: usize>(&self, what: &str, expected: &str) -> PyResult<[usize; N]> {
        <[usize; N]>::try_from(self.shape.as_slice()).map_err(|_| {
            value_error(format!(
                "{what}: expected {N} dimensions {expected}, got shape {}",
                shape_str(&self.shape)
            ))
        })
    }
}

/// `(a, b, c)` like NumPy prints a shape.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

static NUMPY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Reads `obj` (`what` names it in errors) as float32: a float32 C-contiguous array is
/// borrowed; anything else NumPy converts (`np.asarray(obj, dtype=np.float32)`: float64
/// and integer arrays, lists) is converted or copied into C order.
pub fn read<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Input<'py>> {
    let py = obj.py();
    let converted;
    let arr = match obj.cast::<PyArrayDyn<f32>>() {
        Ok(a) => a,
        Err(_) => {
            let np =
                NUMPY.get_or_try_init(py, || py.import("numpy").map(|m| m.unbind().into_any()))?;
            converted = np
                .bind(py)
                .call_method1("asarray", (obj, "float32"))
                .map_err(|e| {
                    PyTypeError::new_err(format!(
                        "{what}: expected a float32 array or something NumPy converts to \
                         one, got {} ({e})",
                        type_name(obj)
                    ))
                })?;
            converted.cast::<PyArrayDyn<f32>>().map_err(|_| {
                PyTypeError::new_err(format!("{what}: could not be converted to float32"))
            })?
        }
    };
    let ro = arr.try_readonly()?;
    let shape = ro.shape().to_vec();
    let array = if ro.is_c_contiguous() {
        Array::View(ro)
    } else {
        Array::Owned(ro.as_array().iter().copied().collect())
    };
    Ok(Input { array, shape })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A Python int as a size ≥ `min`, or a `ValueError`/`TypeError` naming `what`.
pub fn size(obj: &Bound<'_, PyAny>, what: &str, min: usize) -> PyResult<usize> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not a bool"
        )));
    }
    let v: i64 = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!("{what} must be an int, got {}", type_name(obj)))
    })?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v >= min)
        .ok_or_else(|| value_error(format!("{what} must be at least {min}, got {v}")))
}

/// A sequence of ints (not a string).
fn ints(obj: &Bound<'_, PyAny>, what: &str, min: usize) -> PyResult<Vec<usize>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int or a tuple of ints, not a string"
        )));
    }
    let items: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
    items.iter().map(|o| size(o, what, min)).collect()
}

/// An int or a pair of ints (`stride`, `dilation`, a kernel size), each ≥ `min`.
pub fn pair(obj: &Bound<'_, PyAny>, what: &str, min: usize) -> PyResult<[usize; 2]> {
    if let Ok(v) = obj.extract::<i64>() {
        let v = size(obj, what, min)
            .map_err(|_| value_error(format!("{what} must be at least {min}, got {v}")))?;
        return Ok([v, v]);
    }
    let v = ints(obj, what, min).map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be an int or a pair of ints, got {}",
            type_name(obj)
        ))
    })?;
    <[usize; 2]>::try_from(v.as_slice()).map_err(|_| {
        value_error(format!(
            "{what} must be an int or a pair of ints, got {} values",
            v.len()
        ))
    })
}

/// `padding`: an int, `(ph, pw)`, `(top, bottom, left, right)`, `"same"` or `"valid"`.
pub fn padding(obj: &Bound<'_, PyAny>) -> PyResult<Padding> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return match s.to_ascii_lowercase().as_str() {
            "same" => Ok(Padding::Same),
            "valid" => Ok(Padding::Valid),
            _ => Err(value_error(format!(
                "padding '{s}' is not 'same', 'valid', an int, (ph, pw) or \
                 (top, bottom, left, right)"
            ))),
        };
    }
    if obj.extract::<i64>().is_ok() {
        return Ok(Padding::symmetric(size(obj, "padding", 0)?));
    }
    let v = ints(obj, "padding", 0).map_err(|e| {
        if e.is_instance_of::<PyValueError>(obj.py()) {
            e
        } else {
            PyTypeError::new_err(format!(
                "padding must be an int, a tuple of 2 or 4 ints, 'same' or 'valid', got {}",
                type_name(obj)
            ))
        }
    })?;
    match *v.as_slice() {
        [ph, pw] => Ok(Padding::per_axis(ph, pw)),
        [top, bottom, left, right] => Ok(Padding::asymmetric(top, bottom, left, right)),
        _ => Err(value_error(format!(
            "padding must have 2 values (ph, pw) or 4 (top, bottom, left, right), got {}",
            v.len()
        ))),
    }
}

/// `layout`: `"nchw"` or `"nhwc"` (any case).
pub fn layout(s: &str) -> PyResult<Layout> {
    match s.to_ascii_lowercase().as_str() {
        "nchw" => Ok(Layout::Nchw),
        "nhwc" => Ok(Layout::Nhwc),
        _ => Err(value_error(format!("layout '{s}' is not 'nchw' or 'nhwc'"))),
    }
}

/// `activation`: None, `"relu"`, `"relu6"`, `"hardswish"` or a `(min, max)` clamp.
pub fn activation(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Activation> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Activation::None);
    };
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return match s.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
            "relu" => Ok(Activation::Relu),
            "relu6" => Ok(Activation::Relu6),
            "hardswish" => Ok(Activation::HardSwish),
            "none" | "identity" => Ok(Activation::None),
            _ => Err(value_error(format!(
                "activation '{s}' is not one of None, 'relu', 'relu6', 'hardswish' or a \
                 (min, max) clamp"
            ))),
        };
    }
    let (min, max): (f32, f32) = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "activation must be None, a name or a (min, max) pair, got {}",
            type_name(obj)
        ))
    })?;
    if min.is_nan() || max.is_nan() || min > max {
        return Err(value_error(format!(
            "clamp activation needs min ≤ max, got ({min}, {max})"
        )));
    }
    Ok(Activation::Clamp { min, max })
}

/// The keyword arguments every convolution shares, as dsconv's parameters.
pub fn params(
    stride: &Bound<'_, PyAny>,
    padding_arg: &Bound<'_, PyAny>,
    dilation: &Bound<'_, PyAny>,
    groups: &Bound<'_, PyAny>,
    padding_mode: &str,
) -> PyResult<Conv2dParams> {
    let mode: PaddingMode = padding_mode.parse().map_err(err)?;
    Ok(Conv2dParams {
        stride: pair(stride, "stride", 1)?,
        dilation: pair(dilation, "dilation", 1)?,
        padding: padding(padding_arg)?,
        padding_mode: mode,
        groups: size(groups, "groups", 1)?,
    })
}

/// An NCHW slice transposed to NHWC (one pass, straight from the caller's buffer); an
/// error, not an abort, when the memory cannot be had. `src` holds `n·c·h·w` elements.
pub fn nchw_to_nhwc(src: &[f32], [n, c, h, w]: [usize; 4]) -> dsconv::Result<Vec<f32>> {
    let plane = h * w;
    let mut out = Vec::new();
    out.try_reserve_exact(src.len())
        .map_err(|_| dsconv::Error::Allocation {
            what: "NHWC copy of the input",
            bytes: src.len().saturating_mul(4),
        })?;
    out.resize(src.len(), 0.0f32);
    for b in 0..n {
        let s = &src[b * c * plane..(b + 1) * c * plane];
        let d = &mut out[b * c * plane..(b + 1) * c * plane];
        for ch in 0..c {
            for p in 0..plane {
                d[p * c + ch] = s[ch * plane + p];
            }
        }
    }
    Ok(out)
}

/// A tensor as a NumPy array of its memory-order shape (the data moves, not copied).
pub fn to_numpy<'py>(py: Python<'py>, t: Tensor) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let dims = t.dims();
    vec_to_numpy(py, t.into_data(), &dims)
}

/// A vector as a NumPy array of shape `dims` (no copy).
pub fn vec_to_numpy<'py>(
    py: Python<'py>,
    data: Vec<f32>,
    dims: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    use numpy::IntoPyArray;
    let a = numpy::ndarray::ArrayD::from_shape_vec(numpy::ndarray::IxDyn(dims), data)
        .map_err(|e| PyRuntimeError::new_err(format!("output shape: {e}")))?;
    Ok(a.into_pyarray(py))
}

/// Default thread count of calls without `threads=` (0: one per core).
static DEFAULT_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the default thread count.
pub fn set_default_threads(n: usize) {
    DEFAULT_THREADS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// The default thread count, resolved (0 → the cores available).
pub fn default_threads() -> usize {
    resolve(DEFAULT_THREADS.load(std::sync::atomic::Ordering::Relaxed))
}

fn resolve(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    }
}

/// `threads=`: None → the default, else an int ≥ 0 (0: one per core).
pub fn threads(obj: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    match obj.filter(|o| !o.is_none()) {
        None => Ok(default_threads()),
        Some(o) => Ok(resolve(size(o, "threads", 0)?)),
    }
}

type Executors = Mutex<HashMap<usize, Arc<Executor>>>;
static EXECUTORS: OnceLock<Executors> = OnceLock::new();

/// The process's executor of `threads` threads, created on first use and kept: every
/// call with that count shares its thread team (a region started while another Python
/// thread's region runs on it runs on the calling thread instead: same results).
pub fn executor(threads: usize) -> PyResult<Arc<Executor>> {
    let map = EXECUTORS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = map.get(&threads) {
        return Ok(e.clone());
    }
    let e = Arc::new(Executor::new(threads).map_err(err)?);
    map.insert(threads, e.clone());
    Ok(e)
}

/// A [`Cost`] as a dict.
pub fn cost_dict<'py>(py: Python<'py>, c: &Cost) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("macs", c.macs)?;
    d.set_item("flops", c.flops())?;
    d.set_item("params", c.params)?;
    d.set_item("bytes_read", c.bytes_read)?;
    d.set_item("bytes_written", c.bytes_written)?;
    d.set_item("bytes", c.bytes())?;
    d.set_item("intensity", c.intensity())?;
    Ok(d)
}

/// A row of a cost table as a dict: name, kind, shapes, then the cost's fields.
pub fn layer_dict<'py>(py: Python<'py>, l: &LayerCost) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &l.name)?;
    d.set_item("kind", l.kind.name())?;
    d.set_item("input", l.input.to_vec())?;
    d.set_item("output", l.output.to_vec())?;
    d.set_item("kernel", l.kernel.to_vec())?;
    d.set_item("stride", l.stride.to_vec())?;
    d.set_item("batchnorm_params", l.batchnorm_params)?;
    for (k, v) in cost_dict(py, &l.cost)?.iter() {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// A network's cost table: `{"name", "layers": [rows], "total": cost, "batchnorm_params"}`.
pub fn network_dict<'py>(py: Python<'py>, t: &NetworkCost) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &t.name)?;
    let rows = PyList::empty(py);
    for l in &t.layers {
        rows.append(layer_dict(py, l)?)?;
    }
    d.set_item("layers", rows)?;
    d.set_item("total", cost_dict(py, &t.total())?)?;
    d.set_item("batchnorm_params", t.batchnorm_params())?;
    Ok(d)
}
