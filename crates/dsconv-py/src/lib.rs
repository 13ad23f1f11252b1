//! `dsconv._dsconv`: the compiled half of the Python package `dsconv` (the pure-Python half
//! lives in `python/dsconv/`). PyTorch-shaped functions on NumPy arrays over the `dsconv`
//! crate: `conv2d`, its gradients, layer classes, cost tables and the built-in networks.
//!
//! Every function validates what Python gives it before the library sees it, turns each
//! `dsconv::Error` into the Python exception of its kind (see `convert::err`) and runs
//! the computation with the GIL released (`Python::detach`), so Python threads compute in
//! parallel. float32 C-contiguous inputs are read in place; anything else is converted.

mod convert;
mod layers;
mod models;
mod onnx;
mod train;

use convert::{err, executor, params, read, to_numpy, value_error};
use dsconv::cost::SeparableComparison;
use dsconv::{Conv2d, Layout, Tensor};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// What the input's dims are called in messages, per layout.
pub(crate) fn input_dims_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Nchw => "[N, C, H, W] (layout 'nchw')",
        Layout::Nhwc => "[N, H, W, C] (layout 'nhwc')",
    }
}

/// Runs `conv` on the array `x` in `layout` with the GIL released: NHWC is read in place,
/// NCHW transposed once into NHWC (what the library itself does), the output in `layout`.
pub(crate) fn run_conv<'py>(
    py: Python<'py>,
    conv: &Conv2d,
    x: &Bound<'py, PyAny>,
    layout: Layout,
    threads: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let x = read(x, "input")?;
    let dims = x.dims::<4>("conv2d input", input_dims_name(layout))?;
    let logical = layout.logical_from_dims(dims);
    let exec = executor(threads)?;
    let data = x.data();
    let y = py
        .detach(|| match layout {
            Layout::Nhwc => conv.forward_nhwc_slice(data, logical, &exec),
            Layout::Nchw => {
                let nhwc = convert::nchw_to_nhwc(data, dims)?;
                conv.forward_nhwc_slice(&nhwc, logical, &exec)
                    .map(|y| y.to_layout(Layout::Nchw))
            }
        })
        .map_err(err)?;
    to_numpy(py, y)
}

/// A PyTorch-order weight `[C_out, C_in/groups, kH, kW]` as a tensor (a copy: the layer
/// keeps its own, packed).
pub(crate) fn weight_tensor(w: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    let w = read(w, what)?;
    let dims = w.dims::<4>(what, "[C_out, C_in/groups, kH, kW]")?;
    Tensor::from_nchw(w.into_vec(), dims).map_err(err)
}

/// An optional 1-D bias.
pub(crate) fn bias_vec(b: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Vec<f32>>> {
    match b.filter(|b| !b.is_none()) {
        None => Ok(None),
        Some(b) => {
            let b = read(b, what)?;
            b.dims::<1>(what, "[C_out]")?;
            Ok(Some(b.into_vec()))
        }
    }
}

/// 2-D convolution with the semantics of ``torch.nn.functional.conv2d``, on NumPy arrays.
///
/// Parameters
/// ----------
/// input : array, float32 (float64 and others are converted)
///     ``[N, C_in, H, W]`` for ``layout="nchw"``, ``[N, H, W, C_in]`` for ``"nhwc"``.
///     A C-contiguous float32 array is read in place.
/// weight : array ``[C_out, C_in/groups, kH, kW]`` (PyTorch order in both layouts).
/// bias : array ``[C_out]`` or None.
/// stride, dilation : int or (h, w).
/// padding : int, (ph, pw), (top, bottom, left, right), "same" or "valid".
///     "same" is TF/ONNX SAME_UPPER at any stride and dilation: output ``ceil(in/stride)``,
///     the odd pixel at the bottom/right (PyTorch's ``padding='same'`` at stride 1).
/// groups : int; ``groups == C_in`` is a depthwise convolution (``C_out = m·C_in`` for a
///     depth multiplier m).
/// padding_mode : "zeros", "reflect", "replicate" or "circular" (as ``torch.nn.Conv2d``).
/// layout : "nchw" or "nhwc"; the output has the input's layout.
/// threads : int or None. None: ``dsconv.get_num_threads()``; 0: one per core. Results
///     are bitwise identical for every thread count.
///
/// Returns
/// -------
/// numpy.ndarray, float32, the output in ``layout``.
///
/// Raises
/// ------
/// ValueError for shapes or parameters that do not fit (the message names what was
/// expected and what arrived), TypeError for arguments of the wrong type.
///
/// Examples
/// --------
/// >>> import numpy as np, dsconv
/// >>> x = np.ones((1, 3, 7, 7), np.float32)
/// >>> w = np.full((3, 1, 3, 3), 0.1, np.float32)          # depthwise 3×3
/// >>> dsconv.conv2d(x, w, groups=3, padding="same").shape
/// (1, 3, 7, 7)
/// >>> dsconv.conv2d(x, w, groups=3, stride=2, padding=(0, 1, 0, 1),
/// ...               padding_mode="reflect").shape
/// (1, 3, 4, 4)
#[pyfunction]
#[pyo3(
    text_signature = "(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode='zeros', layout='nchw', threads=None)"
)]
#[pyo3(signature = (input, weight, bias=None, stride=None, padding=None, dilation=None,
                    groups=None, padding_mode="zeros", layout="nchw", threads=None))]
#[allow(clippy::too_many_arguments)]
fn conv2d<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    stride: Option<&Bound<'py, PyAny>>,
    padding: Option<&Bound<'py, PyAny>>,
    dilation: Option<&Bound<'py, PyAny>>,
    groups: Option<&Bound<'py, PyAny>>,
    padding_mode: &str,
    layout: &str,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let p = conv_params(py, stride, padding, dilation, groups, padding_mode)?;
    let layout = convert::layout(layout)?;
    let threads = convert::threads(threads)?;
    let w = weight_tensor(weight, "conv2d weight")?;
    let b = bias_vec(bias, "conv2d bias")?;
    let conv = py.detach(|| Conv2d::new(w, b, p)).map_err(err)?;
    run_conv(py, &conv, input, layout, threads)
}

/// The shared keywords with their defaults (stride 1, padding 0, dilation 1, groups 1).
pub(crate) fn conv_params(
    py: Python<'_>,
    stride: Option<&Bound<'_, PyAny>>,
    padding: Option<&Bound<'_, PyAny>>,
    dilation: Option<&Bound<'_, PyAny>>,
    groups: Option<&Bound<'_, PyAny>>,
    padding_mode: &str,
) -> PyResult<dsconv::Conv2dParams> {
    let one = 1i64.into_pyobject(py)?.into_any();
    let zero = 0i64.into_pyobject(py)?.into_any();
    params(
        stride.unwrap_or(&one),
        padding.unwrap_or(&zero),
        dilation.unwrap_or(&one),
        groups.unwrap_or(&one),
        padding_mode,
    )
}

/// Memory-order dims given as a sequence of 4 ints (`input_size`, `weight_size`).
fn size4(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<[usize; 4]> {
    let v: Vec<Bound<'_, PyAny>> = obj
        .try_iter()
        .map_err(|_| value_error(format!("{what} must be a sequence of 4 ints")))?
        .collect::<PyResult<_>>()?;
    let v = v
        .iter()
        .map(|o| convert::size(o, what, 0))
        .collect::<PyResult<Vec<_>>>()?;
    <[usize; 4]>::try_from(v.as_slice())
        .map_err(|_| value_error(format!("{what} must have 4 values, got {}", v.len())))
}

/// The gradient of ``conv2d`` with respect to its input, like
/// ``torch.nn.grad.conv2d_input``: ``input_size`` is the input's shape (in ``layout``),
/// ``weight`` the ``[C_out, C_in/groups, kH, kW]`` weight, ``grad_output`` the upstream
/// gradient (the forward output's shape, in ``layout``). Every keyword of ``conv2d``
/// applies; with a padding mode other than zeros the gradient that reaches a padded copy
/// is added to the pixel it copied. Bitwise identical for every thread count.
///
/// >>> import numpy as np, dsconv
/// >>> w = np.ones((2, 3, 3, 3), np.float32); dy = np.ones((1, 2, 4, 4), np.float32)
/// >>> dx = dsconv.grad.conv2d_input((1, 3, 4, 4), w, dy, padding=1)
/// >>> float(dx[0, 0, 1, 1])                       # 9 taps × 2 filters
/// 18.0
#[pyfunction]
#[pyo3(
    text_signature = "(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode='zeros', layout='nchw', threads=None)"
)]
#[pyo3(signature = (input_size, weight, grad_output, stride=None, padding=None, dilation=None,
                    groups=None, padding_mode="zeros", layout="nchw", threads=None))]
#[allow(clippy::too_many_arguments)]
fn conv2d_input<'py>(
    py: Python<'py>,
    input_size: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    grad_output: &Bound<'py, PyAny>,
    stride: Option<&Bound<'py, PyAny>>,
    padding: Option<&Bound<'py, PyAny>>,
    dilation: Option<&Bound<'py, PyAny>>,
    groups: Option<&Bound<'py, PyAny>>,
    padding_mode: &str,
    layout: &str,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let p = conv_params(py, stride, padding, dilation, groups, padding_mode)?;
    let layout = convert::layout(layout)?;
    let exec = executor(convert::threads(threads)?)?;
    let input_dims = layout.logical_from_dims(size4(input_size, "input_size")?);
    let w = weight_tensor(weight, "conv2d weight")?;
    let dy = grad_tensor(grad_output, layout)?;
    let dx = py
        .detach(|| dsconv::grad::conv2d_input(input_dims, &w, &dy, &p, layout, &exec))
        .map_err(err)?;
    to_numpy(py, dx)
}

/// `grad_output` as a tensor in `layout`.
fn grad_tensor(g: &Bound<'_, PyAny>, layout: Layout) -> PyResult<Tensor> {
    let g = read(g, "grad_output")?;
    let dims = g.dims::<4>("conv2d grad_output", input_dims_name(layout))?;
    Tensor::new(g.into_vec(), dims, layout).map_err(err)
}

/// The gradient of ``conv2d`` with respect to its weight, like
/// ``torch.nn.grad.conv2d_weight``: ``weight_size`` is ``(C_out, C_in/groups, kH, kW)``;
/// ``input`` and ``grad_output`` are in ``layout``; the result is in PyTorch order.
/// Bitwise identical for every thread count.
///
/// >>> import numpy as np, dsconv
/// >>> x = np.ones((1, 3, 4, 4), np.float32); dy = np.ones((1, 2, 4, 4), np.float32)
/// >>> dw = dsconv.grad.conv2d_weight(x, (2, 3, 3, 3), dy, padding=1)
/// >>> float(dw[0, 0, 1, 1])                       # the centre tap sees 16 pixels
/// 16.0
#[pyfunction]
#[pyo3(
    text_signature = "(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, padding_mode='zeros', layout='nchw', threads=None)"
)]
#[pyo3(signature = (input, weight_size, grad_output, stride=None, padding=None, dilation=None,
                    groups=None, padding_mode="zeros", layout="nchw", threads=None))]
#[allow(clippy::too_many_arguments)]
fn conv2d_weight<'py>(
    py: Python<'py>,
    input: &Bound<'py, PyAny>,
    weight_size: &Bound<'py, PyAny>,
    grad_output: &Bound<'py, PyAny>,
    stride: Option<&Bound<'py, PyAny>>,
    padding: Option<&Bound<'py, PyAny>>,
    dilation: Option<&Bound<'py, PyAny>>,
    groups: Option<&Bound<'py, PyAny>>,
    padding_mode: &str,
    layout: &str,
    threads: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let p = conv_params(py, stride, padding, dilation, groups, padding_mode)?;
    let layout = convert::layout(layout)?;
    let exec = executor(convert::threads(threads)?)?;
    let weight_dims = size4(weight_size, "weight_size")?;
    let x = read(input, "input")?;
    let xd = x.dims::<4>("conv2d input", input_dims_name(layout))?;
    let x = Tensor::new(x.into_vec(), xd, layout).map_err(err)?;
    let dy = grad_tensor(grad_output, layout)?;
    let dw = py
        .detach(|| dsconv::grad::conv2d_weight(&x, weight_dims, &dy, &p, &exec))
        .map_err(err)?;
    to_numpy(py, dw)
}

/// The gradient of ``conv2d`` with respect to its bias: ``grad_output`` summed over
/// batch, height and width (in float64, rounded once), shape ``[C_out]``.
#[pyfunction]
#[pyo3(text_signature = "(grad_output, layout='nchw')")]
#[pyo3(signature = (grad_output, layout="nchw"))]
fn conv2d_bias<'py>(
    py: Python<'py>,
    grad_output: &Bound<'py, PyAny>,
    layout: &str,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let layout = convert::layout(layout)?;
    let dy = grad_tensor(grad_output, layout)?;
    let db = py.detach(|| dsconv::grad::conv2d_bias(&dy)).map_err(err)?;
    let n = db.len();
    convert::vec_to_numpy(py, db, &[n])
}

/// What a standard convolution costs next to its depthwise separable factorisation
/// (depthwise ``kH×kW`` then pointwise ``1×1``), for an input of ``input_shape``
/// (``(N, C, H, W)``, or ``(N, H, W, C)`` with ``layout="nhwc"``) and ``out_channels``
/// filters. Returns a dict: ``standard``, ``depthwise``, ``pointwise`` (each a layer row:
/// name, kind, input, output, kernel, stride, macs, flops, params, bytes_read,
/// bytes_written, bytes, intensity), ``separable`` (the sum of the two stages), ``ratio``
/// (separable / standard MACs) and ``formula_ratio`` (``1/C_out + 1/(kH·kW)``).
///
/// >>> import dsconv
/// >>> c = dsconv.cost((1, 3, 7, 7), 128, 3)          # the seed's example
/// >>> c["standard"]["macs"], c["separable"]["macs"]
/// (86400, 10275)
#[pyfunction]
#[pyo3(
    text_signature = "(input_shape, out_channels, kernel_size=3, stride=1, padding=0, dilation=1, bias=False, layout='nchw')"
)]
#[pyo3(signature = (input_shape, out_channels, kernel_size=None, stride=None, padding=None,
                    dilation=None, bias=false, layout="nchw"))]
#[allow(clippy::too_many_arguments)]
fn cost<'py>(
    py: Python<'py>,
    input_shape: &Bound<'py, PyAny>,
    out_channels: &Bound<'py, PyAny>,
    kernel_size: Option<&Bound<'py, PyAny>>,
    stride: Option<&Bound<'py, PyAny>>,
    padding: Option<&Bound<'py, PyAny>>,
    dilation: Option<&Bound<'py, PyAny>>,
    bias: bool,
    layout: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let p = conv_params(py, stride, padding, dilation, None, "zeros")?;
    let layout = convert::layout(layout)?;
    let input = layout.logical_from_dims(size4(input_shape, "input_shape")?);
    let out_channels = convert::size(out_channels, "out_channels", 1)?;
    let kernel = match kernel_size {
        Some(k) => convert::pair(k, "kernel_size", 1)?,
        None => [3, 3],
    };
    let c = SeparableComparison::new(input, out_channels, kernel, &p, bias).map_err(err)?;
    let d = PyDict::new(py);
    d.set_item("standard", convert::layer_dict(py, &c.standard)?)?;
    d.set_item("depthwise", convert::layer_dict(py, &c.depthwise)?)?;
    d.set_item("pointwise", convert::layer_dict(py, &c.pointwise)?)?;
    d.set_item("separable", convert::cost_dict(py, &c.separable())?)?;
    d.set_item("ratio", c.ratio())?;
    d.set_item("formula_ratio", c.formula_ratio())?;
    Ok(d)
}

/// Sets the thread count of calls made without ``threads=`` (0: one per core, the
/// initial setting).
#[pyfunction]
#[pyo3(text_signature = "(n)")]
fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    let n = convert::size(n, "threads", 0)?;
    if n > dsconv::exec::MAX_THREADS {
        return Err(value_error(format!(
            "threads: {n} is more than {}",
            dsconv::exec::MAX_THREADS
        )));
    }
    convert::set_default_threads(n);
    Ok(())
}

/// The thread count of calls made without ``threads=`` (resolved: never 0).
#[pyfunction]
#[pyo3(text_signature = "()")]
fn get_num_threads() -> usize {
    convert::default_threads()
}

/// The extension module.
#[pymodule]
fn _dsconv(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(conv2d, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_input, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_weight, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_bias, m)?)?;
    m.add_function(wrap_pyfunction!(cost, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    layers::register(m)?;
    models::register(m)?;
    onnx::register(m)?;
    train::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
