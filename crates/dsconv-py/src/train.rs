//! Training from Python: `Dataset` (labelled images in memory) and `TrainableModel` (a
//! `dsconv::train::Model` with its optimizer), whose `fit` runs the library's training
//! loop — the one `dsconv train` runs — with the GIL released, taking the GIL back only
//! to check for Ctrl-C and to call the Python callback. The pure-Python `dsconv.train` and
//! `TrainableModel` (python/dsconv/_train.py) wrap these.

use crate::convert::{self, err, executor, read, value_error};
use crate::models::state_dict_from_mapping;
use dsconv::train::{
    self, Arch, Augment, EvalStats, Event, FitConfig, Length, Model, NetOptions, Optimizer,
    OptimizerSpec, Schedule, StateValue,
};
use dsconv::weights::StateDict;
use dsconv::Tensor;
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping};
use std::path::PathBuf;
use std::sync::Mutex;

/// Images `[N, C, H, W]` as float32: uint8 arrays scaled by 1/255 (as `dsconv train`
/// reads uint8 `.npy` files), anything else read as float32.
fn images(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<f32>, [usize; 4])> {
    if let Ok(a) = obj.cast::<PyArrayDyn<u8>>() {
        let ro = a.try_readonly()?;
        let shape = ro.shape().to_vec();
        let dims = <[usize; 4]>::try_from(shape.as_slice()).map_err(|_| {
            value_error(format!(
                "{what}: expected 4 dimensions [N, C, H, W], got shape {}",
                convert::shape_str(&shape)
            ))
        })?;
        let data = ro
            .as_array()
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect();
        return Ok((data, dims));
    }
    let x = read(obj, what)?;
    let dims = x.dims::<4>(what, "[N, C, H, W]")?;
    Ok((x.into_vec(), dims))
}

/// Labels `[N]` of an integer dtype (int64, int32, ...) as i64; floats and bools refused.
fn labels(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    let np = obj.py().import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    if kind != "i" && kind != "u" {
        let dtype = arr.getattr("dtype")?.str()?.to_string();
        return Err(value_error(format!(
            "labels must be int64 or int32, got {dtype}"
        )));
    }
    let arr = np.call_method1("ascontiguousarray", (arr, "int64"))?;
    let a = arr.cast::<PyArrayDyn<i64>>()?.try_readonly()?;
    if a.ndim() != 1 {
        return Err(value_error(format!(
            "labels must be one-dimensional [N], got shape {}",
            convert::shape_str(a.shape())
        )));
    }
    Ok(a.as_slice()?.to_vec())
}

/// Dataset(images, labels, classes=None)
///
/// Labelled images in memory for ``TrainableModel.fit`` / ``dsconv.train``: ``images``
/// ``[N, C, H, W]`` (float32 taken as they are, float64 converted, uint8 scaled by 1/255),
/// ``labels`` ``[N]`` integers (int64, int32) in ``0..classes``; ``classes`` defaults to
/// the largest label + 1. ``Dataset.digits("train")`` / ``("test")`` is the embedded UCI
/// digits' 80/20 split, ``Dataset.from_npy(x_path, y_path)`` a NumPy pair as
/// ``dsconv train`` reads it.
///
/// >>> import numpy as np, dsconv
/// >>> d = dsconv.Dataset(np.zeros((4, 1, 8, 8), np.uint8), np.array([0, 1, 2, 1]))
/// >>> len(d), d.image_shape, d.classes
/// (4, (1, 8, 8), 3)
#[pyclass(frozen, name = "Dataset", module = "dsconv")]
pub struct PyDataset {
    pub(crate) inner: train::Dataset,
}

#[pymethods]
impl PyDataset {
    #[new]
    #[pyo3(signature = (images, labels, classes=None))]
    fn new(
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
        classes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let (x, dims) = self::images(images, "images")?;
        let y = self::labels(labels)?;
        let classes = classes
            .filter(|c| !c.is_none())
            .map(|c| convert::size(c, "classes", 2))
            .transpose()?;
        let inner = py
            .detach(|| train::Dataset::new(x, dims, &y, classes))
            .map_err(err)?;
        Ok(PyDataset { inner })
    }

    /// Dataset.digits(split="train")
    ///
    /// The UCI handwritten digits embedded in dsconv (8×8 grey, 10 classes, pixels in
    /// [0, 1]): ``"train"`` (1,438 images), ``"test"`` (359; the same seeded 80/20 split
    /// as ``dsconv train --data digits`` / ``digits-test``) or ``"all"`` (1,797).
    #[staticmethod]
    #[pyo3(signature = (split="train"))]
    fn digits(py: Python<'_>, split: &str) -> PyResult<Self> {
        let inner = match split {
            "train" => py.detach(train::digits_split).map_err(err)?.0,
            "test" => py.detach(train::digits_split).map_err(err)?.1,
            "all" => py.detach(train::digits).map_err(err)?,
            _ => {
                return Err(value_error(format!(
                    "split '{split}' is not 'train', 'test' or 'all'"
                )))
            }
        };
        Ok(PyDataset { inner })
    }

    /// Dataset.from_npy(images_path, labels_path, classes=None)
    ///
    /// A NumPy pair as ``dsconv train --data X.npy,Y.npy`` reads it: images
    /// ``[N, C, H, W]`` float32/float64 (as they are) or uint8 (÷255), labels int64/int32.
    #[staticmethod]
    #[pyo3(signature = (images_path, labels_path, classes=None))]
    fn from_npy(
        py: Python<'_>,
        images_path: PathBuf,
        labels_path: PathBuf,
        classes: Option<usize>,
    ) -> PyResult<Self> {
        let inner = py
            .detach(|| train::Dataset::from_npy(&images_path, &labels_path, classes))
            .map_err(err)?;
        Ok(PyDataset { inner })
    }

    /// split(test_fraction, seed=0): ``(train, test)`` by a seeded permutation, with
    /// ``round(test_fraction·N)`` images in ``test``.
    #[pyo3(signature = (test_fraction, seed=0))]
    fn split(&self, test_fraction: f64, seed: u64) -> PyResult<(PyDataset, PyDataset)> {
        let (a, b) = self.inner.split(test_fraction, seed).map_err(err)?;
        Ok((PyDataset { inner: a }, PyDataset { inner: b }))
    }

    /// The images' ``(C, H, W)``.
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.inner.image_dims();
        (c, h, w)
    }

    /// The class count.
    #[getter]
    fn classes(&self) -> usize {
        self.inner.classes()
    }

    /// The labels, int64 ``[N]``.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDyn<i64>> {
        let v: Vec<i64> = self.inner.labels().iter().map(|&l| l as i64).collect();
        numpy::PyArray1::from_vec(py, v).to_dyn().clone()
    }

    /// The images, float32 ``[N, C, H, W]`` (a copy).
    #[getter]
    fn images<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let n = self.inner.len();
        let order: Vec<usize> = (0..n).collect();
        let (x, _) = self.inner.batch(&order, None, 0).map_err(err)?;
        convert::to_numpy(py, x)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "dsconv.Dataset({} images of {:?}, {} classes)",
            self.inner.len(),
            self.inner.image_dims(),
            self.inner.classes()
        )
    }
}

/// What stops a Python-driven fit: the library's error or the callback's exception.
enum Stop {
    Lib(dsconv::Error),
    Py(PyErr),
}

impl From<dsconv::Error> for Stop {
    fn from(e: dsconv::Error) -> Self {
        Stop::Lib(e)
    }
}

impl From<Stop> for PyErr {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Lib(e) => err(e),
            Stop::Py(e) => e,
        }
    }
}

/// A model and the optimizer of its last `fit`.
struct State {
    model: Model,
    optimizer: Option<Optimizer>,
}

/// The compiled half of ``dsconv.TrainableModel`` (see python/dsconv/_train.py).
#[pyclass(frozen, name = "_Trainable", module = "dsconv._dsconv")]
pub struct PyTrainable {
    state: Mutex<State>,
    arch: Arch,
    threads: Option<usize>,
}

/// A checkpoint path or a mapping of arrays as a state dict.
fn state_dict_arg(py: Python<'_>, w: &Bound<'_, PyAny>) -> PyResult<StateDict> {
    if let Ok(m) = w.cast::<PyMapping>() {
        return state_dict_from_mapping(m);
    }
    let path: PathBuf = w.extract().map_err(|_| {
        PyTypeError::new_err(
            "weights must be a path (str or os.PathLike) or a mapping of names to arrays",
        )
    })?;
    if !path.is_file() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such checkpoint file",
            path.display()
        )));
    }
    py.detach(|| StateDict::load(&path)).map_err(err)
}

fn eval_dict<'py>(py: Python<'py>, s: &EvalStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("loss", s.loss)?;
    d.set_item("accuracy", s.accuracy)?;
    d.set_item("images", s.total)?;
    d.set_item("correct", s.per_class.iter().map(|c| c.0).sum::<usize>())?;
    let per_class: Vec<Option<f64>> = s
        .per_class
        .iter()
        .map(|&(c, t)| (t > 0).then(|| c as f64 / t as f64))
        .collect();
    d.set_item("per_class_accuracy", per_class)?;
    d.set_item(
        "per_class_count",
        s.per_class.iter().map(|c| c.1).collect::<Vec<_>>(),
    )?;
    Ok(d)
}

fn event_dict<'py>(py: Python<'py>, e: &Event<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match e {
        Event::Step(s) => {
            d.set_item("event", "step")?;
            d.set_item("step", s.step)?;
            d.set_item("steps", s.steps)?;
            d.set_item("epoch", s.epoch)?;
            d.set_item("epoch_step", s.epoch_step)?;
            d.set_item("epoch_steps", s.epoch_steps)?;
            d.set_item("loss", s.loss)?;
            d.set_item("mean_loss", s.mean_loss)?;
            d.set_item("accuracy", s.accuracy)?;
            d.set_item("lr", s.lr)?;
            d.set_item("images_per_s", s.images_per_s)?;
        }
        Event::Epoch(r) => {
            d.set_item("event", "epoch")?;
            d.set_item("epoch", r.epoch)?;
            d.set_item("steps", r.steps)?;
            d.set_item("loss", r.loss)?;
            d.set_item("accuracy", r.accuracy)?;
            d.set_item("val_loss", r.val_loss)?;
            d.set_item("val_accuracy", r.val_accuracy)?;
            d.set_item("images_per_s", r.images_per_s)?;
            d.set_item("seconds", r.seconds)?;
            d.set_item("lr", r.lr)?;
        }
    }
    Ok(d)
}

impl PyTrainable {
    fn threads(&self, call: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        match call.filter(|t| !t.is_none()) {
            Some(t) => convert::threads(Some(t)),
            None => Ok(self.threads.unwrap_or_else(convert::default_threads)),
        }
    }

    /// Runs `f` on the state with the GIL released (so a thread waiting for the lock
    /// never holds the GIL a training callback needs).
    fn with_state<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut State) -> Result<T, Stop> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s)
        })
        .map_err(PyErr::from)
    }
}

#[pymethods]
impl PyTrainable {
    /// _Trainable(name, input_shape, classes, widths=None, kernel=3, dropout=0.0, seed=0,
    /// weights=None, threads=None, width_mult=1.0, drop_path=0.0, fine_tune=False)
    #[new]
    #[pyo3(signature = (name, input_shape, classes, widths=None, kernel=3, dropout=0.0,
                        seed=0, weights=None, threads=None, width_mult=1.0, drop_path=0.0,
                        fine_tune=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        input_shape: (usize, usize, usize),
        classes: usize,
        widths: Option<Vec<usize>>,
        kernel: usize,
        dropout: f32,
        seed: u64,
        weights: Option<&Bound<'_, PyAny>>,
        threads: Option<&Bound<'_, PyAny>>,
        width_mult: f64,
        drop_path: f32,
        fine_tune: bool,
    ) -> PyResult<Self> {
        let arch = arch(name)?;
        let mut options = NetOptions {
            kernel,
            dropout,
            width_mult,
            drop_path,
            fine_tune,
            ..NetOptions::default()
        };
        if let Some(w) = widths {
            options.widths = w;
        }
        let init = weights
            .filter(|w| !w.is_none())
            .map(|w| state_dict_arg(py, w))
            .transpose()?;
        let threads = match threads.filter(|t| !t.is_none()) {
            Some(t) => Some(convert::threads(Some(t))?),
            None => None,
        };
        let (c, h, w) = input_shape;
        let model = py
            .detach(|| train::build_model(arch, [c, h, w], classes, &options, init.as_ref(), seed))
            .map_err(err)?
            .0;
        Ok(PyTrainable {
            state: Mutex::new(State {
                model,
                optimizer: None,
            }),
            arch,
            threads,
        })
    }

    /// fit(...): see ``dsconv.TrainableModel.fit``. Returns ``(epochs, steps, seconds)``
    /// with ``epochs`` a list of dicts.
    #[pyo3(signature = (data, val=None, epochs=None, steps=None, batch=32, optimizer="adamw",
                        lr=None, momentum=0.0, dampening=0.0, nesterov=false,
                        weight_decay=None, decay_norm_bias=true, schedule="constant",
                        warmup=0, label_smoothing=0.0, shuffle=true, augment=false, flip=false, seed=0,
                        threads=None, callback=None, out=None, resume=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyDataset>,
        val: Option<&Bound<'py, PyDataset>>,
        epochs: Option<u64>,
        steps: Option<u64>,
        batch: usize,
        optimizer: &str,
        lr: Option<f32>,
        momentum: f32,
        dampening: f32,
        nesterov: bool,
        weight_decay: Option<f32>,
        decay_norm_bias: bool,
        schedule: &str,
        warmup: u64,
        label_smoothing: f32,
        shuffle: bool,
        augment: bool,
        flip: bool,
        seed: u64,
        threads: Option<&Bound<'py, PyAny>>,
        callback: Option<Py<PyAny>>,
        out: Option<PathBuf>,
        resume: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, u64, f64)> {
        let length = match (epochs, steps) {
            (Some(_), Some(_)) => return Err(value_error("give epochs or steps, not both")),
            (None, Some(s)) => Length::Steps(s),
            (e, None) => Length::Epochs(e.unwrap_or(10)),
        };
        let spec = OptimizerSpec {
            name: optimizer.to_string(),
            lr,
            momentum,
            dampening,
            nesterov,
            weight_decay,
            decay_norm_and_bias: decay_norm_bias,
        };
        let mut opt = spec.build().map_err(err)?;
        let schedule: Schedule = schedule.parse().map_err(err)?;
        let train_data = &data.get().inner;
        let val_data = val.map(|v| &v.get().inner);
        let mut config =
            FitConfig::new(train_data.len(), batch, length, opt.base_lr()).map_err(err)?;
        config.shuffle = shuffle;
        config.augment = augment.then(|| Augment::for_images(train_data.image_dims(), flip));
        config.seed = seed;
        config.schedule.schedule = schedule;
        config.schedule.warmup = warmup;
        config.label_smoothing = label_smoothing;
        let exec = executor(self.threads(threads)?)?;
        let epochs = PyList::empty(py);
        let epochs_ref = epochs.clone().unbind();
        let callback = callback.filter(|c| !c.is_none(py));
        // resume: True continues this object's optimizer state; a checkpoint path loads the
        // optimizer state saved beside it.
        let resume: Option<Option<PathBuf>> = match resume.filter(|r| !r.is_none()) {
            None => None,
            Some(r) if r.is_instance_of::<pyo3::types::PyBool>() => {
                r.extract::<bool>()?.then_some(None)
            }
            Some(r) => Some(Some(r.extract().map_err(|_| {
                PyTypeError::new_err("resume must be a bool or an optimizer-state path")
            })?)),
        };
        let (history, _) = self.with_state(py, |state| {
            match &resume {
                None => {}
                Some(Some(ckpt)) => {
                    let path = train::optimizer_path(ckpt);
                    train::load_optimizer(&path, &mut opt, &mut state.model)?
                }
                // The last fit's state into this fit's optimizer (its options apply), as
                // `dsconv train --resume` does with the state file.
                Some(None) => match &state.optimizer {
                    Some(o) if o.name() == opt.name() => {
                        opt.load_state_tensors(state.model.net(), &o.state_tensors())?;
                    }
                    Some(o) => {
                        return Err(Stop::Lib(dsconv::Error::param(
                            "resume",
                            format!("the last fit used {}, not {}", o.name(), opt.name()),
                        )))
                    }
                    None => {
                        return Err(Stop::Lib(dsconv::Error::param(
                            "resume",
                            "this model has no optimizer state yet (fit it first)",
                        )))
                    }
                },
            }
            let history = train::fit(
                &mut state.model,
                &mut opt,
                train_data,
                val_data,
                &config,
                &exec,
                |event| -> Result<(), Stop> {
                    Python::attach(|py| {
                        py.check_signals()?;
                        if let Event::Epoch(_) = event {
                            epochs_ref.bind(py).append(event_dict(py, &event)?)?;
                        }
                        if let Some(cb) = &callback {
                            cb.call1(py, (event_dict(py, &event)?,))?;
                        }
                        Ok(())
                    })
                    .map_err(Stop::Py)
                },
            )?;
            let opt_path = match &out {
                Some(path) => Some(train::save_training(
                    path,
                    &mut state.model,
                    &opt,
                    history.steps,
                )?),
                None => None,
            };
            state.optimizer = Some(opt);
            Ok((history, opt_path))
        })?;
        Ok((epochs, history.steps, history.seconds))
    }

    /// predict(images, batch=256, threads=None): eval-mode logits ``[N, classes]``.
    #[pyo3(signature = (images, batch=256, threads=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        batch: usize,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let (x, dims) = self::images(images, "images")?;
        let exec = executor(self.threads(threads)?)?;
        let batch = batch.max(1);
        let (logits, classes) = self.with_state(py, |s| {
            let classes = s.model.config().classes;
            let [n, c, h, w] = dims;
            let size = c * h * w;
            let mut out = Vec::with_capacity(n * classes);
            for start in (0..n).step_by(batch) {
                let m = batch.min(n - start);
                let t =
                    Tensor::from_nchw(x[start * size..(start + m) * size].to_vec(), [m, c, h, w])?;
                out.extend(s.model.logits(&t, &exec)?);
            }
            Ok((out, classes))
        })?;
        convert::vec_to_numpy(py, logits, &[dims[0], classes])
    }

    /// evaluate(data, batch=256, threads=None): ``{"loss", "accuracy", "images",
    /// "correct", "per_class_accuracy", "per_class_count"}``.
    #[pyo3(signature = (data, batch=256, threads=None))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyDataset>,
        batch: usize,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let exec = executor(self.threads(threads)?)?;
        let d = &data.get().inner;
        let stats = self.with_state(py, |s| {
            let want = s.model.input_dims(1);
            if d.image_dims()[..] != want[1..] {
                return Err(Stop::Lib(dsconv::Error::shape(
                    "data",
                    format!("images of {:?} (what the model is built for)", &want[1..]),
                    format!("{:?}", d.image_dims()),
                )));
            }
            let d = d.clone().with_classes(s.model.config().classes)?;
            Ok(s.model.evaluate(&d, batch.max(1), &exec)?)
        })?;
        eval_dict(py, &stats)
    }

    /// state_dict(): every parameter, buffer and counter by PyTorch name, as NumPy arrays
    /// (float32; ``num_batches_tracked`` int64 scalars).
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let sd = self.with_state(py, |s| Ok(s.model.state_dict()))?;
        let d = PyDict::new(py);
        for (name, dims, value) in sd {
            match value {
                StateValue::F32(v) => d.set_item(name, convert::vec_to_numpy(py, v, &dims)?)?,
                StateValue::I64(c) => {
                    let np = py.import("numpy")?;
                    d.set_item(name, np.call_method1("array", (c, "int64"))?)?
                }
            }
        }
        Ok(d)
    }

    /// load_state_dict(state_dict): weights from a mapping of arrays or a checkpoint
    /// path; every missing, unexpected or mis-shaped key reported at once.
    fn load_state_dict(&self, py: Python<'_>, state_dict: &Bound<'_, PyAny>) -> PyResult<()> {
        let sd = state_dict_arg(py, state_dict)?;
        self.with_state(py, |s| Ok(s.model.load_state_dict(&sd)?))
    }

    /// save(path, optimizer=False): the checkpoint (``.safetensors``, PyTorch's names),
    /// written atomically; with ``optimizer`` also the last fit's optimizer state beside
    /// it (``NAME.optim.safetensors``). Returns the paths written.
    #[pyo3(signature = (path, optimizer=false))]
    fn save(&self, py: Python<'_>, path: PathBuf, optimizer: bool) -> PyResult<Vec<PathBuf>> {
        self.with_state(py, |s| {
            if !optimizer {
                let meta = [("dsconv.config", format!("{:?}", s.model.config()))];
                train::save_checkpoint(&path, &mut s.model, &meta)?;
                return Ok(vec![path.clone()]);
            }
            let Some(opt) = &s.optimizer else {
                return Err(Stop::Lib(dsconv::Error::param(
                    "optimizer",
                    "no optimizer state to save: the model has not been fitted",
                )));
            };
            let steps = opt.steps();
            let o = train::save_training(&path, &mut s.model, opt, steps)?;
            Ok(vec![path.clone(), o])
        })
    }

    /// The architecture's name.
    #[getter]
    fn name(&self) -> &'static str {
        self.arch.name()
    }

    /// ``{"in_channels", "height", "width", "classes", "widths", "kernel", "dropout",
    /// "parameters", "macs_per_image", "optimizer_steps"}``.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (config, params, macs, steps) = self.with_state(py, |s| {
            Ok((
                s.model.config().clone(),
                s.model.parameter_count(),
                s.model.macs_per_image()?,
                s.optimizer.as_ref().map_or(0, Optimizer::steps),
            ))
        })?;
        let d = PyDict::new(py);
        d.set_item("in_channels", config.in_channels)?;
        d.set_item("height", config.height)?;
        d.set_item("width", config.width)?;
        d.set_item("classes", config.classes)?;
        d.set_item("widths", config.widths)?;
        d.set_item("kernel", config.kernel)?;
        d.set_item("dropout", config.dropout)?;
        d.set_item("parameters", params)?;
        d.set_item("macs_per_image", macs)?;
        d.set_item("optimizer_steps", steps)?;
        Ok(d)
    }
}

/// trainable_models()
///
/// The names ``dsconv.train`` / ``TrainableModel`` build (``dsconv train --model``).
#[pyfunction]
fn trainable_models() -> Vec<&'static str> {
    Arch::ALL.iter().map(|a| a.name()).collect()
}

/// trainable_model(name)
///
/// The canonical name of trainable model ``name`` (aliases and any letter case work), or
/// ``ValueError`` listing them.
#[pyfunction]
fn trainable_model(name: &str) -> PyResult<&'static str> {
    arch(name).map(Arch::name)
}

fn arch(name: &str) -> PyResult<Arch> {
    Arch::lookup(name).ok_or_else(|| {
        value_error(format!(
            "model '{name}': unknown; trainable models: {}",
            Arch::ALL.map(Arch::name).join(", ")
        ))
    })
}

/// Adds the classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDataset>()?;
    m.add_class::<PyTrainable>()?;
    m.add_function(wrap_pyfunction!(trainable_models, m)?)?;
    m.add_function(wrap_pyfunction!(trainable_model, m)?)?;
    Ok(())
}
