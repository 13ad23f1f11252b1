//! The built-in networks (`dsconv::models::registry`): `_load` builds one from seeded
//! random weights, a checkpoint file or a mapping of arrays; `Network.predict` runs a
//! batch. The pure-Python `dsconv.load` wraps these and adds `classify` (preprocessing
//! with Pillow as the registry's `Preprocess` says).

use crate::convert::{self, err, executor, read, value_error};
use dsconv::models::mobilenet_v1::Variant;
use dsconv::models::registry::{self, ModelSpec};
use dsconv::models::Network;
use dsconv::preprocess::{Preprocess, Resampling, Resize};
use dsconv::weights::{DType, StateDict, WeightTensor};
use dsconv::Tensor;
use numpy::PyArrayDyn;
use pyo3::exceptions::{PyFileNotFoundError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyString};
use std::path::PathBuf;

/// A built network with its registry entry.
#[pyclass(frozen, name = "Network", module = "dsconv._dsconv")]
pub struct PyNetwork {
    net: Network,
    spec: &'static ModelSpec,
    width: f64,
    resolution: usize,
    threads: Option<usize>,
}

fn preprocess_dict<'py>(py: Python<'py>, p: &Preprocess) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    // resize: the shorter side (int), an exact (height, width), or None (no resize);
    // crop: (height, width) of the centre crop, or None.
    match p.resize {
        Resize::ShorterSide(n) => d.set_item("resize", n)?,
        Resize::Exact { height, width } => d.set_item("resize", (height, width))?,
        Resize::Keep => d.set_item("resize", py.None())?,
    }
    d.set_item("crop", p.crop.map(|[h, w]| (h, w)))?;
    d.set_item(
        "resampling",
        match p.resampling {
            Resampling::Bicubic => "bicubic",
            Resampling::Bilinear => "bilinear",
        },
    )?;
    d.set_item("mean", p.mean.to_vec())?;
    d.set_item("std", p.std.to_vec())?;
    Ok(d)
}

/// A mapping of name → array as a state_dict (float32; integer entries such as
/// BatchNorm's `num_batches_tracked` are converted like the rest and ignored by the
/// loaders).
pub(crate) fn state_dict_from_mapping(m: &Bound<'_, PyMapping>) -> PyResult<StateDict> {
    let mut sd = StateDict::default();
    for item in m.items()?.iter() {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let name: String = k
            .extract()
            .map_err(|_| PyTypeError::new_err("state_dict keys must be strings"))?;
        let a = read(&v, &format!("state_dict['{name}']"))?;
        let dims = a.shape.clone();
        sd.insert(
            name,
            WeightTensor {
                dtype: DType::F32,
                dims,
                data: a.into_vec(),
            },
        );
    }
    Ok(sd)
}

/// _load(name, weights=None, width=1.0, seed=0, resolution=None, threads=None)
///
/// Network ``name`` (any name or alias of ``dsconv.models()``): seeded random weights when
/// ``weights`` is None, else a checkpoint path (PyTorch ``.pth``/``.pt`` or
/// ``.safetensors``) or a mapping of names to arrays (a ``state_dict``).
#[pyfunction]
#[pyo3(signature = (name, weights=None, width=1.0, seed=0, resolution=None, threads=None))]
fn _load(
    py: Python<'_>,
    name: &str,
    weights: Option<&Bound<'_, PyAny>>,
    width: f64,
    seed: u64,
    resolution: Option<&Bound<'_, PyAny>>,
    threads: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyNetwork> {
    let spec = registry::lookup(name).map_err(err)?;
    spec.check_width(width).map_err(err)?;
    let resolution = match resolution.filter(|r| !r.is_none()) {
        Some(r) => convert::size(r, "resolution", 1)?,
        None => spec.resolution,
    };
    let threads = match threads.filter(|t| !t.is_none()) {
        Some(t) => Some(convert::threads(Some(t))?),
        None => None,
    };
    let net = match weights.filter(|w| !w.is_none()) {
        None => py.detach(|| spec.random(width, resolution, seed)),
        Some(w) => {
            let sd = if let Ok(m) = w.cast::<PyMapping>() {
                state_dict_from_mapping(m)?
            } else {
                let path: PathBuf = w.extract().map_err(|_| {
                    PyTypeError::new_err(
                        "weights must be None, a path (str or os.PathLike) or a mapping of \
                         names to arrays",
                    )
                })?;
                if !path.is_file() {
                    return Err(PyFileNotFoundError::new_err(format!(
                        "{}: no such checkpoint file",
                        path.display()
                    )));
                }
                py.detach(|| StateDict::load(&path)).map_err(err)?
            };
            py.detach(|| spec.from_state_dict(&sd, width, resolution))
        }
    }
    .map_err(err)?;
    Ok(PyNetwork {
        net,
        spec,
        width,
        resolution,
        threads,
    })
}

#[pymethods]
impl PyNetwork {
    /// predict(batch, threads=None)
    ///
    /// Logits ``[N, classes]`` (float32) for a preprocessed NCHW batch ``[N, 3, H, W]``
    /// (float32; others converted). Bitwise identical for every thread count and to the
    /// Rust library's and ``dsconv run``'s logits on the same input.
    #[pyo3(signature = (batch, threads=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let threads = match threads.filter(|t| !t.is_none()) {
            Some(t) => convert::threads(Some(t))?,
            None => self.threads.unwrap_or_else(convert::default_threads),
        };
        let exec = executor(threads)?;
        let x = read(batch, "batch")?;
        let dims = x.dims::<4>("network input", "[N, 3, H, W] (NCHW)")?;
        let data = x.data();
        let net = &self.net;
        let logits = py
            .detach(|| {
                // One pass from the caller's buffer into NHWC (not a copy, then a transpose).
                let [n, c, h, w] = dims;
                let t = Tensor::from_nhwc(convert::nchw_to_nhwc(data, dims)?, [n, h, w, c])?;
                net.forward_with(&t, &exec)
            })
            .map_err(err)?;
        let [n, classes, ..] = logits.logical_dims();
        convert::vec_to_numpy(
            py,
            logits.to_layout(dsconv::Layout::Nchw).into_data(),
            &[n, classes],
        )
    }

    /// cost(batch=1, resolution=None)
    ///
    /// The per-layer cost table (PyTorch module names) for ``batch`` images of
    /// ``resolution``² (default: the network's): ``{"name", "layers": [rows], "total",
    /// "batchnorm_params"}``.
    #[pyo3(signature = (batch=1, resolution=None))]
    fn cost<'py>(
        &self,
        py: Python<'py>,
        batch: usize,
        resolution: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = resolution.unwrap_or(self.resolution);
        let t = self.net.cost_table([batch, 3, r, r]).map_err(err)?;
        convert::network_dict(py, &t)
    }

    /// The canonical name, e.g. ``"mobilenet-v2"``.
    #[getter]
    fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The width multiplier α.
    #[getter]
    fn width(&self) -> f64 {
        self.width
    }

    /// The input resolution (height = width) of its ImageNet weights / what MobileNetV1 was
    /// built for.
    #[getter]
    fn resolution(&self) -> usize {
        self.resolution
    }

    /// The preprocessing its ImageNet weights expect, as a dict (resize, crop,
    /// resampling, mean, std), or None where the registry has none.
    #[getter]
    fn preprocess<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.spec
            .preprocess
            .as_ref()
            .map(|p| preprocess_dict(py, p))
            .transpose()
    }

    /// The object's default thread count (None: ``dsconv.get_num_threads()``).
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.threads
    }

    fn __repr__(&self) -> String {
        format!(
            "dsconv.Network('{}', width={}, resolution={})",
            self.spec.name, self.width, self.resolution
        )
    }
}

/// models()
///
/// The canonical names of the built-in networks (``dsconv.load`` also takes their aliases,
/// in any letter case).
#[pyfunction]
fn models() -> Vec<&'static str> {
    registry::MODELS.iter().map(|m| m.name).collect()
}

/// model_info(name)
///
/// What the registry knows of network ``name``: ``name``, ``aliases``, ``resolution``,
/// ``width_multiplier`` (whether α applies), ``preprocess`` (dict or None) and
/// ``checkpoint_names`` (whose parameter names its checkpoints use).
#[pyfunction]
fn model_info<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let spec = registry::lookup(name).map_err(err)?;
    let d = PyDict::new(py);
    d.set_item("name", spec.name)?;
    d.set_item("aliases", PyList::new(py, spec.aliases)?)?;
    d.set_item("resolution", spec.resolution)?;
    d.set_item("width_multiplier", spec.width_multiplier)?;
    match &spec.preprocess {
        Some(p) => d.set_item("preprocess", preprocess_dict(py, p)?)?,
        None => d.set_item("preprocess", py.None())?,
    }
    d.set_item("checkpoint_names", PyString::new(py, spec.checkpoint_names))?;
    Ok(d)
}

/// model_cost(name, width=1.0, resolution=None, batch=1, as_standard=False)
///
/// The per-layer cost table of network ``name`` (what ``dsconv cost --model`` prints):
/// ``{"name", "layers": [{"name", "kind", "input", "output", "kernel", "stride", "macs",
/// "flops", "params", ...}], "total": {...}, "batchnorm_params"}``. ``as_standard``
/// (MobileNetV1 only) replaces every separable block by a standard 3×3 convolution, the
/// paper's baseline.
///
/// >>> import dsconv
/// >>> t = dsconv.model_cost("mobilenet-v1")
/// >>> t["total"]["macs"], t["total"]["params"]
/// (568740352, 4210088)
#[pyfunction]
#[pyo3(signature = (name, width=1.0, resolution=None, batch=1, as_standard=false))]
fn model_cost<'py>(
    py: Python<'py>,
    name: &str,
    width: f64,
    resolution: Option<usize>,
    batch: usize,
    as_standard: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = registry::lookup(name).map_err(err)?;
    spec.check_width(width).map_err(err)?;
    if batch == 0 {
        return Err(value_error("batch must be at least 1"));
    }
    let variant = if as_standard {
        Variant::Standard
    } else {
        Variant::Separable
    };
    let r = resolution.unwrap_or(spec.resolution);
    let t = py
        .detach(|| spec.cost_table(width, r, batch, variant))
        .map_err(err)?;
    convert::network_dict(py, &t)
}

/// imagenet_classes()
///
/// The 1,000 ImageNet-1k class names in class-index order (0 = tench … 999 = toilet
/// tissue): torchvision's list, the one ``dsconv classify`` prints.
#[pyfunction]
fn imagenet_classes() -> Vec<&'static str> {
    include_str!("../../dsconv-cli/src/imagenet_classes.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
}

/// _preprocess(image, resize, crop, resampling, mean, std)
///
/// One decoded RGB image (uint8 ``[H, W, 3]``) as a network input ``[3, H', W']``
/// (float32): ``dsconv::preprocess`` (torchvision's ``Resize`` with Pillow's filters
/// ported byte for byte, ``CenterCrop``, ``ToTensor``, ``Normalize``), what ``dsconv
/// classify`` runs. ``resize``: the shorter side (int), ``(height, width)`` or None;
/// ``crop``: ``(height, width)`` or None.
#[pyfunction]
fn _preprocess<'py>(
    py: Python<'py>,
    image: numpy::PyReadonlyArrayDyn<'py, u8>,
    resize: Option<&Bound<'py, PyAny>>,
    crop: Option<(usize, usize)>,
    resampling: &str,
    mean: [f32; 3],
    std: [f32; 3],
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    use numpy::PyUntypedArrayMethods;
    let shape = image.shape().to_vec();
    let [h, w, 3] = shape[..] else {
        return Err(value_error(format!(
            "image: expected uint8 [H, W, 3] (RGB), got shape {}",
            convert::shape_str(&shape)
        )));
    };
    let resize = match resize.filter(|r| !r.is_none()) {
        None => Resize::Keep,
        Some(r) => match r.extract::<(usize, usize)>() {
            Ok((height, width)) => Resize::Exact { height, width },
            Err(_) => Resize::ShorterSide(convert::size(r, "resize", 1)?),
        },
    };
    let spec = Preprocess {
        resize,
        crop: crop.map(|(h, w)| [h, w]),
        resampling: resampling.parse().map_err(err)?,
        mean,
        std,
    };
    let data = match image.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => image.as_array().iter().copied().collect(),
    };
    let x = py
        .detach(|| {
            let img = dsconv::preprocess::Rgb8::new(w, h, data)?;
            dsconv::preprocess::preprocess(&img, &spec)
        })
        .map_err(err)?;
    let [_, c, oh, ow] = x.logical_dims();
    convert::vec_to_numpy(py, x.into_data(), &[c, oh, ow])
}

/// Adds the functions and the class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNetwork>()?;
    m.add_function(wrap_pyfunction!(_load, m)?)?;
    m.add_function(wrap_pyfunction!(models, m)?)?;
    m.add_function(wrap_pyfunction!(model_info, m)?)?;
    m.add_function(wrap_pyfunction!(model_cost, m)?)?;
    m.add_function(wrap_pyfunction!(imagenet_classes, m)?)?;
    m.add_function(wrap_pyfunction!(_preprocess, m)?)?;
    Ok(())
}
