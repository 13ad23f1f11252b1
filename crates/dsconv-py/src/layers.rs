//! The layer classes: `Conv2d`, `DepthwiseConv2d`, `PointwiseConv2d`,
//! `DepthwiseSeparableConv2d`. Each packs its weights once at construction (from NumPy
//! arrays or a PyTorch-style state_dict) and runs many times; each is immutable, so one
//! object may be called from many Python threads at once.

use crate::convert::{self, err, executor, read, to_numpy, value_error};
use crate::{bias_vec, conv_params, input_dims_name, run_conv, weight_tensor};
use dsconv::{Conv2d, DepthwiseConv2d, DepthwiseSeparableConv2d, Layout, PointwiseConv2d};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The layout and thread settings every layer object carries.
#[derive(Debug, Clone, Copy)]
struct Settings {
    layout: Layout,
    /// None: `dsconv.get_num_threads()` at call time.
    threads: Option<usize>,
}

impl Settings {
    fn new(layout: &str, threads: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Settings {
            layout: convert::layout(layout)?,
            threads: match threads.filter(|t| !t.is_none()) {
                None => None,
                Some(t) => Some(convert::threads(Some(t))?),
            },
        })
    }

    /// The thread count of one call: its own `threads=`, else the object's, else the default.
    fn threads(&self, call: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        match call.filter(|t| !t.is_none()) {
            Some(t) => convert::threads(Some(t)),
            None => Ok(self.threads.unwrap_or_else(convert::default_threads)),
        }
    }

    /// Logical `[N, C, H, W]` of a shape given in this layout.
    fn logical(&self, shape: &Bound<'_, PyAny>) -> PyResult<[usize; 4]> {
        let v: Vec<Bound<'_, PyAny>> = shape
            .try_iter()
            .map_err(|_| value_error("input_shape must be a sequence of 4 ints"))?
            .collect::<PyResult<_>>()?;
        let v = v
            .iter()
            .map(|o| convert::size(o, "input_shape", 0))
            .collect::<PyResult<Vec<_>>>()?;
        let dims = <[usize; 4]>::try_from(v.as_slice()).map_err(|_| {
            value_error(format!(
                "input_shape must be {}, got {} values",
                input_dims_name(self.layout),
                v.len()
            ))
        })?;
        Ok(self.layout.logical_from_dims(dims))
    }

    fn layout_name(&self) -> &'static str {
        match self.layout {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

/// `state_dict[prefix + name]`, or None when absent (any mapping with `.get` or `[]`).
fn entry<'py>(
    sd: &Bound<'py, PyAny>,
    prefix: &str,
    name: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let key = format!("{prefix}{name}");
    match sd.get_item(&key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(sd.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `state_dict[prefix + name]`, or a `ValueError` saying which key is missing.
fn required<'py>(sd: &Bound<'py, PyAny>, prefix: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    entry(sd, prefix, name)?.ok_or_else(|| {
        value_error(format!(
            "state_dict has no '{prefix}{name}' (a PyTorch module's names are expected)"
        ))
    })
}

/// The weights of a PyTorch `Conv2d`-like module in a state_dict: `weight`, `bias`.
fn conv_entries<'py>(
    sd: &Bound<'py, PyAny>,
    prefix: &str,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    Ok((required(sd, prefix, "weight")?, entry(sd, prefix, "bias")?))
}

/// A layer class's `#[pymethods]` block: the items given plus what every layer class has,
/// `__call__` (= `forward`), `cost(input_shape)` and `layout`. (One block per class:
/// PyO3 reads the methods from the block's tokens, so the shared ones are written into it.)
macro_rules! layer_pymethods {
    ($ty:ty, { $($items:tt)* }) => {
        #[pymethods]
        impl $ty {
            $($items)*

            #[pyo3(signature = (input, threads=None))]
            fn __call__<'py>(
                &self,
                py: Python<'py>,
                input: &Bound<'py, PyAny>,
                threads: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
                self.forward(py, input, threads)
            }

            /// cost(input_shape)
            ///
            /// MACs, FLOPs, parameters, bytes read and written and arithmetic intensity of
            /// this layer on an input of ``input_shape`` (in the layer's layout), as a dict.
            fn cost<'py>(
                &self,
                py: Python<'py>,
                input_shape: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, PyDict>> {
                let c = self
                    .inner
                    .cost(self.settings.logical(input_shape)?)
                    .map_err(err)?;
                convert::cost_dict(py, &c)
            }

            /// "nchw" or "nhwc".
            #[getter]
            fn layout(&self) -> &'static str {
                self.settings.layout_name()
            }
        }
    };
}

/// The `#[pymethods]` of a single-convolution layer class (`$conv`: its `Conv2d`, from
/// `$layer`): the items given, `forward`, `weight`, `bias`, `__repr__`, and
/// `layer_pymethods`' ones.
macro_rules! conv_layer_pymethods {
    ($ty:ty, $class:literal, |$layer:ident| $conv:expr, { $($items:tt)* }) => {
        layer_pymethods!($ty, {
            $($items)*

            /// from_state_dict(state_dict, prefix="", **options)
            ///
            /// The layer from ``state_dict[prefix + "weight"]`` and, when present,
            /// ``state_dict[prefix + "bias"]`` (a PyTorch ``nn.Conv2d``'s names); ``options``
            /// are the constructor's keywords.
            #[staticmethod]
            #[pyo3(signature = (state_dict, prefix="", **options))]
            fn from_state_dict<'py>(
                py: Python<'py>,
                state_dict: &Bound<'py, PyAny>,
                prefix: &str,
                options: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let (w, b) = conv_entries(state_dict, prefix)?;
                py.get_type::<Self>().call((w, b), options)
            }

            /// forward(input, threads=None)
            ///
            /// The layer on ``input`` (in the layer's layout); the same as calling it.
            #[pyo3(signature = (input, threads=None))]
            fn forward<'py>(
                &self,
                py: Python<'py>,
                input: &Bound<'py, PyAny>,
                threads: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
                let $layer = self;
                run_conv(py, $conv, input, self.settings.layout, self.settings.threads(threads)?)
            }

            /// The weight, PyTorch order ``[C_out, C_in/groups, kH, kW]`` (a copy).
            #[getter]
            fn weight<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
                let $layer = self;
                let conv: &Conv2d = $conv;
                convert::vec_to_numpy(py, conv.weight().to_vec(), &conv.weight_dims())
            }

            /// The bias (a copy) or None.
            #[getter]
            fn bias<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<Option<Bound<'py, PyArrayDyn<f32>>>> {
                let $layer = self;
                let conv: &Conv2d = $conv;
                conv.bias()
                    .map(|b| convert::vec_to_numpy(py, b.to_vec(), &[b.len()]))
                    .transpose()
            }

            fn __repr__(&self) -> String {
                let $layer = self;
                repr_conv($class, $conv, &self.settings)
            }
        });
    };
}

fn repr_conv(class: &str, conv: &Conv2d, s: &Settings) -> String {
    let p = conv.params();
    format!(
        "dsconv.{class}(weight {:?}, bias={}, stride={:?}, dilation={:?}, padding={:?}, \
         padding_mode='{}', groups={}, activation={:?}, layout='{}', threads={})",
        conv.weight_dims(),
        conv.bias().is_some(),
        p.stride,
        p.dilation,
        p.padding,
        p.padding_mode.name(),
        p.groups,
        conv.activation(),
        s.layout_name(),
        s.threads.map_or("None".to_string(), |t| t.to_string()),
    )
}

/// Conv2d(weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
/// padding_mode="zeros", activation=None, layout="nchw", threads=None)
///
/// A 2-D convolution layer (``torch.nn.Conv2d`` semantics) whose weights are packed once.
/// ``weight`` is ``[C_out, C_in/groups, kH, kW]``; the keywords are ``dsconv.conv2d``'s,
/// plus ``activation`` (None, "relu", "relu6", "hardswish" or a ``(min, max)`` clamp)
/// fused after the bias. ``layout`` is the layout of the inputs it is called on;
/// ``threads`` its default thread count (None: ``dsconv.get_num_threads()``).
///
/// ``Conv2d.from_state_dict(sd, prefix="", ...)`` takes the weights from a mapping with a
/// PyTorch ``nn.Conv2d``'s names (``prefix + "weight"``, ``prefix + "bias"``): a
/// ``state_dict()`` converted with ``{k: v.numpy() for k, v in sd.items()}`` or any dict
/// of arrays.
///
/// >>> import numpy as np, dsconv
/// >>> conv = dsconv.Conv2d(np.ones((8, 3, 3, 3), np.float32), stride=2, padding="same",
/// ...                      activation="relu6")
/// >>> conv(np.ones((1, 3, 32, 32), np.float32)).shape
/// (1, 8, 16, 16)
/// >>> conv.cost((1, 3, 32, 32))["macs"]
/// 55296
#[pyclass(frozen, name = "Conv2d", module = "dsconv")]
pub struct PyConv2d {
    inner: Conv2d,
    settings: Settings,
}

#[allow(clippy::too_many_arguments)]
fn build_conv(
    py: Python<'_>,
    weight: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
    stride: Option<&Bound<'_, PyAny>>,
    padding: Option<&Bound<'_, PyAny>>,
    dilation: Option<&Bound<'_, PyAny>>,
    groups: Option<&Bound<'_, PyAny>>,
    padding_mode: &str,
    activation: Option<&Bound<'_, PyAny>>,
) -> PyResult<Conv2d> {
    let p = conv_params(py, stride, padding, dilation, groups, padding_mode)?;
    let act = convert::activation(activation)?;
    let w = weight_tensor(weight, "conv2d weight")?;
    let b = bias_vec(bias, "conv2d bias")?;
    Ok(py
        .detach(|| Conv2d::new(w, b, p))
        .map_err(err)?
        .with_activation(act))
}

conv_layer_pymethods!(PyConv2d, "Conv2d", |layer| &layer.inner, {
    #[new]
    #[pyo3(signature = (weight, bias=None, stride=None, padding=None, dilation=None, groups=None,
                        padding_mode="zeros", activation=None, layout="nchw", threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        weight: &Bound<'_, PyAny>,
        bias: Option<&Bound<'_, PyAny>>,
        stride: Option<&Bound<'_, PyAny>>,
        padding: Option<&Bound<'_, PyAny>>,
        dilation: Option<&Bound<'_, PyAny>>,
        groups: Option<&Bound<'_, PyAny>>,
        padding_mode: &str,
        activation: Option<&Bound<'_, PyAny>>,
        layout: &str,
        threads: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let settings = Settings::new(layout, threads)?;
        let inner = build_conv(
            py,
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            activation,
        )?;
        Ok(PyConv2d { inner, settings })
    }

    /// Input channels.
    #[getter]
    fn in_channels(&self) -> usize {
        self.inner.in_channels()
    }

    /// Output channels.
    #[getter]
    fn out_channels(&self) -> usize {
        self.inner.out_channels()
    }
});

/// DepthwiseConv2d(weight, bias=None, stride=1, padding=0, dilation=1,
/// padding_mode="zeros", multiplier=1, activation=None, layout="nchw", threads=None)
///
/// A depthwise convolution: ``weight`` is ``[C·multiplier, 1, kH, kW]`` and
/// ``groups = C`` (PyTorch ``nn.Conv2d(C, C*m, k, groups=C)``). Other keywords as
/// ``Conv2d``; ``from_state_dict`` likewise.
///
/// >>> import numpy as np, dsconv
/// >>> dw = dsconv.DepthwiseConv2d(np.ones((32, 1, 3, 3), np.float32), padding=1)
/// >>> dw(np.ones((2, 32, 14, 14), np.float32)).shape
/// (2, 32, 14, 14)
#[pyclass(frozen, name = "DepthwiseConv2d", module = "dsconv")]
pub struct PyDepthwiseConv2d {
    inner: DepthwiseConv2d,
    settings: Settings,
}

#[allow(clippy::too_many_arguments)]
fn build_depthwise(
    py: Python<'_>,
    weight: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
    stride: Option<&Bound<'_, PyAny>>,
    padding: Option<&Bound<'_, PyAny>>,
    dilation: Option<&Bound<'_, PyAny>>,
    padding_mode: &str,
    multiplier: Option<&Bound<'_, PyAny>>,
    activation: Option<&Bound<'_, PyAny>>,
) -> PyResult<DepthwiseConv2d> {
    let p = conv_params(py, stride, padding, dilation, None, padding_mode)?;
    let m = match multiplier.filter(|m| !m.is_none()) {
        Some(m) => convert::size(m, "multiplier", 1)?,
        None => 1,
    };
    let act = convert::activation(activation)?;
    let w = weight_tensor(weight, "depthwise weight")?;
    let b = bias_vec(bias, "depthwise bias")?;
    Ok(py
        .detach(|| DepthwiseConv2d::with_multiplier(w, m, b, p))
        .map_err(err)?
        .with_activation(act))
}

conv_layer_pymethods!(
    PyDepthwiseConv2d,
    "DepthwiseConv2d",
    |layer| layer.inner.as_conv2d(),
    {
        #[new]
        #[pyo3(signature = (weight, bias=None, stride=None, padding=None, dilation=None,
                        padding_mode="zeros", multiplier=None, activation=None, layout="nchw",
                        threads=None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            py: Python<'_>,
            weight: &Bound<'_, PyAny>,
            bias: Option<&Bound<'_, PyAny>>,
            stride: Option<&Bound<'_, PyAny>>,
            padding: Option<&Bound<'_, PyAny>>,
            dilation: Option<&Bound<'_, PyAny>>,
            padding_mode: &str,
            multiplier: Option<&Bound<'_, PyAny>>,
            activation: Option<&Bound<'_, PyAny>>,
            layout: &str,
            threads: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<Self> {
            let settings = Settings::new(layout, threads)?;
            let inner = build_depthwise(
                py,
                weight,
                bias,
                stride,
                padding,
                dilation,
                padding_mode,
                multiplier,
                activation,
            )?;
            Ok(PyDepthwiseConv2d { inner, settings })
        }

        /// Input channels C.
        #[getter]
        fn channels(&self) -> usize {
            self.inner.channels()
        }

        /// The depth multiplier.
        #[getter]
        fn multiplier(&self) -> usize {
            self.inner.multiplier()
        }
    }
);

/// PointwiseConv2d(weight, bias=None, activation=None, layout="nchw", threads=None)
///
/// A 1×1 convolution (``weight`` ``[C_out, C_in, 1, 1]``): a matrix product per pixel,
/// run on the packed GEMM kernel. ``from_state_dict`` as ``Conv2d``'s.
///
/// >>> import numpy as np, dsconv
/// >>> pw = dsconv.PointwiseConv2d(np.ones((64, 32, 1, 1), np.float32), layout="nhwc")
/// >>> pw(np.ones((1, 14, 14, 32), np.float32)).shape
/// (1, 14, 14, 64)
#[pyclass(frozen, name = "PointwiseConv2d", module = "dsconv")]
pub struct PyPointwiseConv2d {
    inner: PointwiseConv2d,
    settings: Settings,
}

fn build_pointwise(
    py: Python<'_>,
    weight: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
    activation: Option<&Bound<'_, PyAny>>,
) -> PyResult<PointwiseConv2d> {
    let act = convert::activation(activation)?;
    let w = weight_tensor(weight, "pointwise weight")?;
    let b = bias_vec(bias, "pointwise bias")?;
    Ok(py
        .detach(|| PointwiseConv2d::new(w, b))
        .map_err(err)?
        .with_activation(act))
}

conv_layer_pymethods!(
    PyPointwiseConv2d,
    "PointwiseConv2d",
    |layer| layer.inner.as_conv2d(),
    {
        #[new]
        #[pyo3(signature = (weight, bias=None, activation=None, layout="nchw", threads=None))]
        fn new(
            py: Python<'_>,
            weight: &Bound<'_, PyAny>,
            bias: Option<&Bound<'_, PyAny>>,
            activation: Option<&Bound<'_, PyAny>>,
            layout: &str,
            threads: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<Self> {
            let settings = Settings::new(layout, threads)?;
            let inner = build_pointwise(py, weight, bias, activation)?;
            Ok(PyPointwiseConv2d { inner, settings })
        }

        /// Input channels.
        #[getter]
        fn in_channels(&self) -> usize {
            self.inner.in_channels()
        }

        /// Output channels.
        #[getter]
        fn out_channels(&self) -> usize {
            self.inner.out_channels()
        }
    }
);

/// DepthwiseSeparableConv2d(depthwise_weight, pointwise_weight, depthwise_bias=None,
/// pointwise_bias=None, stride=1, padding=0, dilation=1, padding_mode="zeros",
/// multiplier=1, depthwise_activation=None, pointwise_activation=None, layout="nchw",
/// threads=None)
///
/// The MobileNet block: a depthwise ``kH×kW`` convolution then a pointwise ``1×1`` one,
/// fused (the depthwise output is consumed in cache-sized row bands, never materialised)
/// when both stages have fast kernels. The geometry keywords apply to the depthwise stage.
///
/// ``DepthwiseSeparableConv2d.from_state_dict(sd, prefix="", ...)`` reads
/// ``prefix + "depthwise.weight"``/``"depthwise.bias"`` and
/// ``prefix + "pointwise.weight"``/``"pointwise.bias"``;
/// ``DepthwiseSeparableConv2d.from_layers(dw, pw)`` composes two layer objects.
///
/// >>> import numpy as np, dsconv
/// >>> block = dsconv.DepthwiseSeparableConv2d(np.full((3, 1, 3, 3), 0.1, np.float32),
/// ...                                         np.full((128, 3, 1, 1), 0.01, np.float32))
/// >>> block(np.ones((1, 3, 7, 7), np.float32)).shape
/// (1, 128, 5, 5)
/// >>> block.cost((1, 3, 7, 7))["macs"]                # 675 + 9,600
/// 10275
#[pyclass(frozen, name = "DepthwiseSeparableConv2d", module = "dsconv")]
pub struct PySeparable {
    inner: DepthwiseSeparableConv2d,
    settings: Settings,
}

layer_pymethods!(PySeparable, {
    #[new]
    #[pyo3(signature = (depthwise_weight, pointwise_weight, depthwise_bias=None,
                        pointwise_bias=None, stride=None, padding=None, dilation=None,
                        padding_mode="zeros", multiplier=None, depthwise_activation=None,
                        pointwise_activation=None, layout="nchw", threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        depthwise_weight: &Bound<'_, PyAny>,
        pointwise_weight: &Bound<'_, PyAny>,
        depthwise_bias: Option<&Bound<'_, PyAny>>,
        pointwise_bias: Option<&Bound<'_, PyAny>>,
        stride: Option<&Bound<'_, PyAny>>,
        padding: Option<&Bound<'_, PyAny>>,
        dilation: Option<&Bound<'_, PyAny>>,
        padding_mode: &str,
        multiplier: Option<&Bound<'_, PyAny>>,
        depthwise_activation: Option<&Bound<'_, PyAny>>,
        pointwise_activation: Option<&Bound<'_, PyAny>>,
        layout: &str,
        threads: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let settings = Settings::new(layout, threads)?;
        let dw = build_depthwise(
            py,
            depthwise_weight,
            depthwise_bias,
            stride,
            padding,
            dilation,
            padding_mode,
            multiplier,
            depthwise_activation,
        )?;
        let pw = build_pointwise(py, pointwise_weight, pointwise_bias, pointwise_activation)?;
        let inner = DepthwiseSeparableConv2d::new(dw, pw).map_err(err)?;
        Ok(PySeparable { inner, settings })
    }

    /// DepthwiseSeparableConv2d.from_state_dict(state_dict, prefix="", **options): from
    /// ``depthwise.weight``/``.bias`` and ``pointwise.weight``/``.bias`` under ``prefix``;
    /// ``options`` are the constructor's keywords.
    #[staticmethod]
    #[pyo3(signature = (state_dict, prefix="", **options))]
    fn from_state_dict<'py>(
        py: Python<'py>,
        state_dict: &Bound<'py, PyAny>,
        prefix: &str,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (dw, dwb) = conv_entries(state_dict, &format!("{prefix}depthwise."))?;
        let (pw, pwb) = conv_entries(state_dict, &format!("{prefix}pointwise."))?;
        let kwargs = match options {
            Some(o) => o.copy()?,
            None => PyDict::new(py),
        };
        kwargs.set_item("depthwise_bias", dwb)?;
        kwargs.set_item("pointwise_bias", pwb)?;
        py.get_type::<Self>().call((dw, pw), Some(&kwargs))
    }

    /// DepthwiseSeparableConv2d.from_layers(depthwise, pointwise, layout=None,
    /// threads=None): composes two layer objects (their weights are copied); the layout
    /// and threads default to the depthwise layer's.
    #[staticmethod]
    #[pyo3(signature = (depthwise, pointwise, layout=None, threads=None))]
    fn from_layers(
        depthwise: &Bound<'_, PyDepthwiseConv2d>,
        pointwise: &Bound<'_, PyPointwiseConv2d>,
        layout: Option<&str>,
        threads: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let dw = depthwise.get();
        let pw = pointwise.get();
        let mut settings = dw.settings;
        if let Some(l) = layout {
            settings.layout = convert::layout(l)?;
        }
        if let Some(t) = threads.filter(|t| !t.is_none()) {
            settings.threads = Some(convert::threads(Some(t))?);
        }
        let inner =
            DepthwiseSeparableConv2d::new(dw.inner.clone(), pw.inner.clone()).map_err(err)?;
        Ok(PySeparable { inner, settings })
    }

    /// forward(input, threads=None): the block on ``input``; the same as calling it.
    #[pyo3(signature = (input, threads=None))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        input: &Bound<'py, PyAny>,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let layout = self.settings.layout;
        let exec = executor(self.settings.threads(threads)?)?;
        let x = read(input, "input")?;
        let dims = x.dims::<4>("separable input", input_dims_name(layout))?;
        let data = x.data();
        let inner = &self.inner;
        let y = py
            .detach(|| {
                let nhwc = match layout {
                    Layout::Nhwc => data.to_vec(),
                    Layout::Nchw => convert::nchw_to_nhwc(data, dims)?,
                };
                let logical = layout.logical_from_dims(dims);
                let t = dsconv::Tensor::from_nhwc(nhwc, Layout::Nhwc.dims_from_logical(logical))?;
                let y = inner.forward_with(&t, &exec)?;
                Ok::<_, dsconv::Error>(match layout {
                    Layout::Nhwc => y,
                    Layout::Nchw => y.to_layout(Layout::Nchw),
                })
            })
            .map_err(err)?;
        to_numpy(py, y)
    }

    /// The depthwise stage, as a ``DepthwiseConv2d``.
    #[getter]
    fn depthwise(&self) -> PyDepthwiseConv2d {
        PyDepthwiseConv2d {
            inner: self.inner.depthwise().clone(),
            settings: self.settings,
        }
    }

    /// The pointwise stage, as a ``PointwiseConv2d``.
    #[getter]
    fn pointwise(&self) -> PyPointwiseConv2d {
        PyPointwiseConv2d {
            inner: self.inner.pointwise().clone(),
            settings: self.settings,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "dsconv.DepthwiseSeparableConv2d(depthwise={}, pointwise={})",
            repr_conv(
                "DepthwiseConv2d",
                self.inner.depthwise().as_conv2d(),
                &self.settings
            ),
            repr_conv(
                "PointwiseConv2d",
                self.inner.pointwise().as_conv2d(),
                &self.settings
            )
        )
    }
});

/// Adds the classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyConv2d>()?;
    m.add_class::<PyDepthwiseConv2d>()?;
    m.add_class::<PyPointwiseConv2d>()?;
    m.add_class::<PySeparable>()?;
    Ok(())
}
