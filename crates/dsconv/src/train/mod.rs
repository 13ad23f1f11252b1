//! Training: trainable layers with parameters and gradients, a sequential container with
//! PyTorch's `state_dict` names, cross-entropy, `torch.optim`'s SGD and AdamW with
//! learning-rate schedules, the `ds-cnn` / `std-cnn` models, data sets and `.safetensors`
//! checkpoints that PyTorch loads.
//!
//! Activations are NHWC [`Tensor`]s from the first layer to the last. A layer's
//! [`forward`](Layer::forward) in [`Mode::Train`] keeps what its
//! [`backward`](Layer::backward) needs (a convolution its input, a BatchNorm the
//! normalised values and `1/σ`, an activation its input, dropout its mask) and nothing in
//! [`Mode::Eval`]; `backward` adds the parameters' gradients into [`Param::grad`] and
//! returns the input's gradient. Convolutions use the public [`crate::grad`] functions.
//!
//! ```
//! use dsconv::train::{Arch, CnnConfig, Mode, Model, Optimizer, Sgd};
//! use dsconv::{Executor, Tensor};
//! let exec = Executor::single();
//! let mut model = Model::new(Arch::DsCnn, CnnConfig::new(1, 8, 8, 10), 0)?;
//! let x = Tensor::from_nchw(vec![0.5; 4 * 64], [4, 1, 8, 8])?;
//! let mut opt = Optimizer::sgd(Sgd { lr: 0.1, momentum: 0.9, ..Sgd::default() });
//! let stats = model.train_step(&x, &[0, 1, 2, 3], &mut opt, 0.1, 0.0, &exec)?;
//! assert!(stats.loss.is_finite());
//! assert_eq!(model.logits(&x, &exec)?.len(), 4 * 10);
//! # Ok::<(), dsconv::Error>(())
//! ```
//!
//! # Determinism
//! Everything here is bitwise identical for every thread count: the convolutions' forward
//! and gradients are (see [`crate::grad`]), and the other layers run on the calling thread
//! with fixed summation orders (per-channel sums over the pixels in order, in f64).

mod checkpoint;
mod data;
#[cfg(feature = "digits")]
mod digits;
mod fit;
mod layers;
mod loss;
mod model;
mod nets;
mod optim;
mod par;
mod pool;

pub use checkpoint::{load_optimizer, save_checkpoint, save_optimizer, write_atomic};
pub use data::{epoch_order, Augment, Dataset};
#[cfg(feature = "digits")]
pub use digits::{digits, digits_split, DIGITS_SPLIT_SEED};
pub use fit::{
    build_model, fit, optimizer_path, save_training, steps_per_epoch, EpochReport, Event,
    FitConfig, History, Length, NetOptions, OptimizerSpec, StepReport,
};
pub use layers::{
    Act, BatchNorm2d, ConvLayer, Dropout, GlobalAvgPool, Linear, Residual, Sequential,
};
pub use loss::{cross_entropy, CrossEntropy};
pub use model::{Arch, CnnConfig, EvalStats, Model, StateValue, StepStats};
pub use nets::{BnAct, DropPath};
pub use optim::{AdamW, LrSchedule, Optimizer, Schedule, Sgd};
pub use pool::{pooled_bytes, release_buffers};

use crate::error::Result;
use crate::exec::Executor;
use crate::tensor::Tensor;

/// Training or inference behaviour of BatchNorm and dropout (PyTorch's `train()` /
/// `eval()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated, dropout active, activations kept for
    /// `backward`.
    Train,
    /// Running statistics, no dropout, nothing kept.
    Eval,
}

/// What a tensor of a layer is, for weight-decay exemptions and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution or linear weight.
    Weight,
    /// A convolution or linear bias.
    Bias,
    /// A BatchNorm scale (`weight`) or shift (`bias`).
    Norm,
    /// A buffer, not trained: BatchNorm's `running_mean` / `running_var`.
    Buffer,
}

/// One tensor of a layer: its value, its accumulated gradient (empty for a buffer) and its
/// PyTorch dims.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// PyTorch dims, e.g. `[C_out, C_in/groups, kH, kW]`.
    pub dims: Vec<usize>,
    /// Elements in PyTorch (row-major) order.
    pub value: Vec<f32>,
    /// `∂L/∂value`, summed by `backward` until zeroed; empty for a buffer.
    pub grad: Vec<f32>,
    /// What it is.
    pub kind: ParamKind,
}

impl Param {
    /// A trainable tensor (gradient zeroed).
    pub fn new(dims: Vec<usize>, value: Vec<f32>, kind: ParamKind) -> Self {
        let grad = if kind == ParamKind::Buffer {
            Vec::new()
        } else {
            vec![0.0; value.len()]
        };
        Param {
            dims,
            value,
            grad,
            kind,
        }
    }

    /// Whether an optimizer updates it.
    pub fn trainable(&self) -> bool {
        self.kind != ParamKind::Buffer
    }

    /// Adds `g` into the gradient.
    pub(crate) fn accumulate(&mut self, g: &[f32]) {
        for (a, b) in self.grad.iter_mut().zip(g) {
            *a += b;
        }
    }
}

/// A named piece of a layer's state, as [`Layer::visit`] hands it out.
#[derive(Debug)]
pub enum Slot<'a> {
    /// A parameter or buffer of f32.
    Param(&'a mut Param),
    /// An int64 counter (`num_batches_tracked`).
    Count(&'a mut i64),
}

/// A trainable layer over NHWC activations.
pub trait Layer: Send + std::fmt::Debug {
    /// The output for `x` (NHWC); in [`Mode::Train`] keeps what `backward` needs.
    fn forward(&mut self, x: Tensor, mode: Mode, exec: &Executor) -> Result<Tensor>;
    /// Given `∂L/∂y` of the last training forward, adds the parameters' gradients and
    /// returns `∂L/∂x` when `need_input_grad` (NHWC). Frees what the forward kept.
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
        exec: &Executor,
    ) -> Result<Option<Tensor>>;
    /// Calls `f` with the full PyTorch name (`prefix` + `.` + local name) of every
    /// parameter, buffer and counter, in `state_dict` order.
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>));
    /// Logical output dims `[N, C, H, W]` for logical input dims.
    fn output_dims(&self, input: [usize; 4]) -> Result<[usize; 4]>;
    /// Multiply-accumulates of one forward pass over an input of logical dims `input`.
    fn macs(&self, input: [usize; 4]) -> Result<u64>;
}

/// `prefix.name`, or `name` at the top.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
