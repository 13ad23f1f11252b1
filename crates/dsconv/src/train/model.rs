//! The trainable networks: the seed's `ds-cnn` and `std-cnn`, and MobileNetV1,
//! MobileNetV2 and EfficientNet-Lite0 ([`super::nets`]). A model is a [`Sequential`] with
//! PyTorch's names, plus what it was built for.

use super::layers::{Act, BatchNorm2d, ConvLayer, Dropout, GlobalAvgPool, Linear, Sequential};
use super::loss::cross_entropy;
use super::nets::{self, NetSpec};
use super::optim::Optimizer;
use super::{Layer, Mode, Slot};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::geometry::{Conv2dParams, Padding};
use crate::models::Network;
use crate::ops::Activation;
use crate::rng::SplitMix64;
use crate::tensor::{Layout, Tensor};
use crate::weights::{DType, Loader, StateDict, WeightTensor};

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Stem 3×3 conv + BN + ReLU, then blocks of depthwise k×k + BN + ReLU + pointwise
    /// 1×1 + BN + ReLU (the seed's separable convolution), global pooling, dropout, linear.
    DsCnn,
    /// The same with every separable block replaced by one standard k×k conv + BN + ReLU.
    StdCnn,
    /// MobileNetV1 (classic PyTorch names `model.N.M`, `fc`), width `width_mult`.
    MobileNetV1,
    /// MobileNetV2 (torchvision names), width `width_mult`.
    MobileNetV2,
    /// EfficientNet-Lite0 (lukemelas names).
    EfficientNetLite0,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 5] = [
        Arch::DsCnn,
        Arch::StdCnn,
        Arch::MobileNetV1,
        Arch::MobileNetV2,
        Arch::EfficientNetLite0,
    ];

    /// `ds-cnn`, `std-cnn`, or the registry's name of an ImageNet network
    /// (`mobilenet-v1`, `mobilenet-v2`, `efficientnet-lite0`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::DsCnn => "ds-cnn",
            Arch::StdCnn => "std-cnn",
            Arch::MobileNetV1 => "mobilenet-v1",
            Arch::MobileNetV2 => "mobilenet-v2",
            Arch::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    /// By name, in any case (`ds-cnn`, `dscnn`, `std-cnn`, `stdcnn`, and the ImageNet
    /// networks' names and aliases in [`crate::models::registry`]).
    pub fn lookup(name: &str) -> Option<Arch> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "ds-cnn" | "dscnn" => Some(Arch::DsCnn),
            "std-cnn" | "stdcnn" => Some(Arch::StdCnn),
            _ => {
                let spec = crate::models::registry::lookup(name).ok()?;
                Arch::ALL.into_iter().find(|a| a.name() == spec.name)
            }
        }
    }

    /// Whether it is one of the ImageNet networks (the inference [`Network`] runs it).
    pub fn is_imagenet(self) -> bool {
        !matches!(self, Arch::DsCnn | Arch::StdCnn)
    }

    /// The prefix of its classifier's `weight` and `bias` (`classifier.1`, `fc`, `_fc`).
    pub fn classifier_name(self) -> &'static str {
        match self {
            Arch::DsCnn | Arch::StdCnn | Arch::MobileNetV2 => "classifier.1",
            Arch::MobileNetV1 => "fc",
            Arch::EfficientNetLite0 => "_fc",
        }
    }

    /// The dropout before the classifier of its reference training recipe: 0.2 for
    /// MobileNetV2 (torchvision) and EfficientNet-Lite0 (lukemelas), 0 for the others.
    pub fn default_dropout(self) -> f32 {
        match self {
            Arch::MobileNetV2 | Arch::EfficientNetLite0 => 0.2,
            _ => 0.0,
        }
    }

    /// A key only its checkpoints have (to tell architectures apart in messages).
    fn signature(self) -> &'static str {
        match self {
            Arch::DsCnn => "features.1.3.weight",
            Arch::StdCnn => "features.1.0.weight",
            Arch::MobileNetV1 => "model.0.0.weight",
            Arch::MobileNetV2 => "features.1.conv.0.0.weight",
            Arch::EfficientNetLite0 => "_conv_stem.weight",
        }
    }

    /// The architecture whose keys a checkpoint has, if any.
    pub fn guess(sd: &StateDict) -> Option<Arch> {
        let has = |k: &str| sd.get(k).is_some();
        if has(Arch::MobileNetV2.signature()) {
            Some(Arch::MobileNetV2)
        } else if has(Arch::DsCnn.signature()) && has("classifier.1.weight") {
            Some(Arch::DsCnn)
        } else if has(Arch::StdCnn.signature())
            && has("features.0.0.weight")
            && has("classifier.1.weight")
        {
            Some(Arch::StdCnn)
        } else if has(Arch::MobileNetV1.signature()) {
            Some(Arch::MobileNetV1)
        } else if has(Arch::EfficientNetLite0.signature()) {
            Some(Arch::EfficientNetLite0)
        } else {
            None
        }
    }
}

/// What a `ds-cnn` / `std-cnn` is built for.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Classes.
    pub classes: usize,
    /// The stem's width, then each block's output width (default 32, 64, 128, 128).
    pub widths: Vec<usize>,
    /// The blocks' kernel size (default 3; padding k/2).
    pub kernel: usize,
    /// Dropout before the classifier (default 0).
    pub dropout: f32,
    /// Seed of the dropout masks.
    pub dropout_seed: u64,
    /// Width multiplier α of MobileNetV1 / V2 (default 1; the others ignore it).
    pub width_mult: f64,
    /// EfficientNet-Lite0's stochastic depth (`drop_connect_rate`; block `i` of 16 drops
    /// its residual branch with probability `drop_path · i / 16`; default 0).
    pub drop_path: f32,
}

impl CnnConfig {
    /// The default widths and kernel for `in_channels`×`height`×`width` images of
    /// `classes` classes.
    pub fn new(in_channels: usize, height: usize, width: usize, classes: usize) -> Self {
        CnnConfig {
            in_channels,
            height,
            width,
            classes,
            widths: vec![32, 64, 128, 128],
            kernel: 3,
            dropout: 0.0,
            dropout_seed: 0,
            width_mult: 1.0,
            drop_path: 0.0,
        }
    }

    /// The strides: the stem's (2 when the image is at least 64 pixels on its short
    /// side, else 1), then each block's (the first block 1, later ones 2 while the
    /// feature map is at least 4 pixels on its short side).
    pub fn strides(&self) -> Vec<usize> {
        let mut size = self.height.min(self.width);
        let stem = if size >= 64 { 2 } else { 1 };
        size = size.div_ceil(stem);
        let mut out = vec![stem];
        for i in 1..self.widths.len() {
            let s = if i >= 2 && size >= 4 { 2 } else { 1 };
            size = size.div_ceil(s);
            out.push(s);
        }
        out
    }

    fn validate(&self, arch: Arch) -> Result<()> {
        let positive = |p: &'static str, v: usize| {
            if v == 0 {
                Err(Error::param(p, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("in_channels", self.in_channels)?;
        positive("height", self.height)?;
        positive("width", self.width)?;
        positive("kernel", self.kernel)?;
        if self.classes < 2 {
            return Err(Error::param(
                "classes",
                format!("need at least 2, got {}", self.classes),
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(Error::param(
                "drop_path",
                format!("must be in [0, 1), got {}", self.drop_path),
            ));
        }
        if arch.is_imagenet() {
            return Ok(());
        }
        if self.widths.len() < 2 || self.widths.contains(&0) {
            return Err(Error::param(
                "widths",
                "need a stem width and at least one block width, all positive",
            ));
        }
        if self.kernel.is_multiple_of(2) {
            return Err(Error::param(
                "kernel",
                "must be odd (padding k/2 keeps the size)",
            ));
        }
        Ok(())
    }
}

/// Loss and accuracy of one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss of the batch (before the update).
    pub loss: f64,
    /// Correctly classified images of the batch (before the update).
    pub correct: usize,
}

/// Loss and accuracy over a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalStats {
    /// Mean cross-entropy (no smoothing).
    pub loss: f64,
    /// Correct / total.
    pub accuracy: f64,
    /// Images.
    pub total: usize,
    /// Per class: (correct, total).
    pub per_class: Vec<(usize, usize)>,
}

/// A trainable classifier: the layers with PyTorch's `state_dict` names
/// (`features.0.0.weight`, `features.1.1.running_var`, `classifier.1.weight`, ...).
///
/// For the ImageNet networks an evaluation-mode forward runs the inference
/// [`Network`] (BatchNorm folded, fused kernels) built from the current state and kept
/// until a training forward, [`net`](Self::net) or a load changes it
/// ([`set_fused_eval`](Self::set_fused_eval) turns this off).
#[derive(Debug)]
pub struct Model {
    arch: Arch,
    config: CnnConfig,
    net: Sequential,
    fused_eval: bool,
    fused: Option<Network>,
}

fn conv_bn_relu(
    seq: &mut Sequential,
    dims: [usize; 4],
    params: Conv2dParams,
    rng: &mut SplitMix64,
) -> Result<()> {
    seq.push(ConvLayer::init(dims, false, params, rng)?);
    seq.push(BatchNorm2d::new(dims[0]));
    seq.push(Act::new(Activation::Relu));
    Ok(())
}

impl Model {
    /// A new model with PyTorch's default initialisation (convolutions and the linear
    /// layer uniform `±1/√fan_in`, BatchNorm 1 and 0), drawn from `seed`.
    ///
    /// The ImageNet networks have torchvision's initialisation instead (see
    /// `docs/training.md`); their `widths` and `kernel` are ignored.
    pub fn new(arch: Arch, config: CnnConfig, seed: u64) -> Result<Self> {
        config.validate(arch)?;
        if arch.is_imagenet() {
            let spec = NetSpec {
                in_channels: config.in_channels,
                classes: config.classes,
                width_mult: config.width_mult,
                dropout: config.dropout,
                drop_path: config.drop_path,
                seed,
            };
            let net = match arch {
                Arch::MobileNetV1 => nets::mobilenet_v1(&spec)?,
                Arch::MobileNetV2 => nets::mobilenet_v2(&spec)?,
                _ => nets::efficientnet_lite0(&spec)?,
            };
            let model = Model::wrap(arch, config, net);
            model.net.output_dims(model.input_dims(1))?;
            return Ok(model);
        }
        let mut rng = SplitMix64::new(seed);
        let strides = config.strides();
        let (k, pad) = (config.kernel, config.kernel / 2);
        let mut features = Sequential::new();
        let mut stem = Sequential::new();
        let w0 = config.widths[0];
        conv_bn_relu(
            &mut stem,
            [w0, config.in_channels, 3, 3],
            Conv2dParams::default()
                .with_stride(strides[0])
                .with_padding(Padding::symmetric(1)),
            &mut rng,
        )?;
        features.push(stem);
        for (i, pair) in config.widths.windows(2).enumerate() {
            let (cin, cout) = (pair[0], pair[1]);
            let stride = strides[i + 1];
            let spatial = Conv2dParams::default()
                .with_stride(stride)
                .with_padding(Padding::symmetric(pad));
            let mut block = Sequential::new();
            match arch {
                Arch::DsCnn => {
                    conv_bn_relu(
                        &mut block,
                        [cin, 1, k, k],
                        spatial.with_groups(cin),
                        &mut rng,
                    )?;
                    conv_bn_relu(
                        &mut block,
                        [cout, cin, 1, 1],
                        Conv2dParams::default(),
                        &mut rng,
                    )?;
                }
                _ => conv_bn_relu(&mut block, [cout, cin, k, k], spatial, &mut rng)?,
            }
            features.push(block);
        }
        let last = *config.widths.last().unwrap_or(&w0);
        let mut classifier = Sequential::new();
        classifier.push(Dropout::new(config.dropout, config.dropout_seed)?);
        classifier.push(Linear::init(last, config.classes, &mut rng)?);
        let mut net = Sequential::new();
        net.push_named("features", features);
        net.push_named("pool", GlobalAvgPool::new());
        net.push_named("classifier", classifier);
        let model = Model::wrap(arch, config, net);
        model.net.output_dims(model.input_dims(1))?;
        Ok(model)
    }

    fn wrap(arch: Arch, config: CnnConfig, net: Sequential) -> Self {
        Model {
            arch,
            config,
            net,
            fused_eval: true,
            fused: None,
        }
    }

    /// Whether evaluation-mode forwards of the ImageNet networks run the inference
    /// [`Network`] (default `true`); `false` runs the training layers in evaluation mode.
    pub fn set_fused_eval(&mut self, on: bool) {
        self.fused_eval = on;
        self.fused = None;
    }

    /// The inference network of this model's current state, where one exists for it:
    /// an ImageNet network on 3-channel images (MobileNetV1 on square images of 32 to
    /// 4096 pixels, the size its layers are built for).
    pub fn to_network(&mut self) -> Result<Option<Network>> {
        let c = self.config.clone();
        let v1_ok = c.height == c.width && (32..=4096).contains(&c.height);
        if !self.arch.is_imagenet()
            || c.in_channels != 3
            || (self.arch == Arch::MobileNetV1 && !v1_ok)
        {
            return Ok(None);
        }
        let sd = self.to_state_dict();
        let spec = crate::models::registry::lookup(self.arch.name())?;
        Ok(Some(spec.from_state_dict(&sd, c.width_mult, c.height)?))
    }

    /// The state as a [`StateDict`] (what [`save_checkpoint`](super::save_checkpoint)
    /// writes, in memory).
    pub fn to_state_dict(&mut self) -> StateDict {
        let mut sd = StateDict::default();
        for (name, dims, value) in self.state_dict() {
            let (dtype, data) = match value {
                StateValue::F32(v) => (DType::F32, v),
                StateValue::I64(c) => (DType::I64, vec![c as f32]),
            };
            sd.insert(name, WeightTensor { dtype, dims, data });
        }
        sd
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// What it was built for.
    pub fn config(&self) -> &CnnConfig {
        &self.config
    }

    /// The layers (to visit or drive by hand).
    pub fn net(&mut self) -> &mut Sequential {
        self.fused = None;
        &mut self.net
    }

    /// Logical input dims for a batch of `n`.
    pub fn input_dims(&self, n: usize) -> [usize; 4] {
        [
            n,
            self.config.in_channels,
            self.config.height,
            self.config.width,
        ]
    }

    /// Trainable parameters (what PyTorch's `sum(p.numel() for p in m.parameters())`
    /// counts).
    pub fn parameter_count(&mut self) -> usize {
        let mut n = 0;
        self.net.visit("", &mut |_, slot| {
            if let Slot::Param(p) = slot {
                if p.trainable() {
                    n += p.value.len();
                }
            }
        });
        n
    }

    /// Multiply-accumulates of the forward pass of one image.
    pub fn macs_per_image(&self) -> Result<u64> {
        self.net.macs(self.input_dims(1))
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let d = x.logical_dims();
        if d[0] == 0 || d[1..] != self.input_dims(1)[1..] {
            return Err(Error::shape(
                "model input",
                format!("a batch of {:?} images", &self.input_dims(1)[1..]),
                format!("{d:?}"),
            ));
        }
        Ok(())
    }

    /// Forward pass: logits `[N, classes]`, row-major.
    pub fn forward(&mut self, x: &Tensor, mode: Mode, exec: &Executor) -> Result<Vec<f32>> {
        self.check_input(x)?;
        if mode == Mode::Train {
            self.fused = None;
        } else if self.fused_eval && self.arch.is_imagenet() {
            if self.fused.is_none() {
                self.fused = self.to_network()?;
            }
            if let Some(net) = &self.fused {
                return Ok(net.forward_with(x, exec)?.into_data());
            }
        }
        // The first layer keeps (and in the end recycles) its input: a pooled copy.
        let x = match x.layout() {
            Layout::Nhwc => super::pool::copy(x)?,
            Layout::Nchw => x.to_layout(Layout::Nhwc),
        };
        let y = self.net.forward(x, mode, exec)?;
        Ok(y.into_data())
    }

    /// Evaluation-mode logits.
    pub fn logits(&mut self, x: &Tensor, exec: &Executor) -> Result<Vec<f32>> {
        self.forward(x, Mode::Eval, exec)
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        self.net.visit("", &mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.grad.iter_mut().for_each(|g| *g = 0.0);
            }
        });
    }

    /// Backward from `∂L/∂logits` (`[N, classes]`), accumulating parameter gradients.
    pub fn backward(&mut self, grad_logits: &[f32], exec: &Executor) -> Result<()> {
        let n = grad_logits.len() / self.config.classes;
        let dy = Tensor::from_nhwc(grad_logits.to_vec(), [n, 1, 1, self.config.classes])?;
        self.net.backward(dy, false, exec)?;
        Ok(())
    }

    /// One training step: zero the gradients, forward in train mode, cross-entropy with
    /// `label_smoothing`, backward, `optimizer.step(lr)`. A non-finite loss is an error
    /// (and the parameters are left as they were).
    pub fn train_step(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        optimizer: &mut Optimizer,
        lr: f32,
        label_smoothing: f32,
        exec: &Executor,
    ) -> Result<StepStats> {
        self.zero_grad();
        if x.logical_dims()[0] != labels.len() {
            return Err(Error::shape(
                "labels",
                format!("{} (one per image)", x.logical_dims()[0]),
                format!("{}", labels.len()),
            ));
        }
        let logits = self.forward(x, Mode::Train, exec)?;
        let k = self.config.classes;
        let (loss, grad) = cross_entropy(&logits, k, labels, label_smoothing)?;
        if !loss.is_finite() {
            return Err(Error::param(
                "loss",
                format!(
                    "the loss is {loss} at optimizer step {} (diverged: lower the learning rate)",
                    optimizer.steps() + 1
                ),
            ));
        }
        let correct = count_correct(&logits, k, labels);
        self.backward(&grad, exec)?;
        optimizer.step(&mut self.net, lr)?;
        Ok(StepStats { loss, correct })
    }

    /// Evaluation-mode loss and accuracy over `images` (NCHW, `[N, C, H, W]`) in batches.
    pub fn evaluate(
        &mut self,
        data: &super::Dataset,
        batch: usize,
        exec: &Executor,
    ) -> Result<EvalStats> {
        let k = self.config.classes;
        let mut per_class = vec![(0usize, 0usize); k];
        let mut loss_sum = 0f64;
        let order: Vec<usize> = (0..data.len()).collect();
        for chunk in order.chunks(batch.max(1)) {
            let (x, labels) = data.batch(chunk, None, 0)?;
            let logits = self.forward(&x, Mode::Eval, exec)?;
            let (loss, _) = cross_entropy(&logits, k, &labels, 0.0)?;
            loss_sum += loss * labels.len() as f64;
            for (row, &y) in logits.chunks_exact(k).zip(&labels) {
                per_class[y].1 += 1;
                if argmax(row) == y {
                    per_class[y].0 += 1;
                }
            }
        }
        let total = data.len();
        let correct: usize = per_class.iter().map(|c| c.0).sum();
        Ok(EvalStats {
            loss: loss_sum / total.max(1) as f64,
            accuracy: correct as f64 / total.max(1) as f64,
            total,
            per_class,
        })
    }

    /// The state dict: every parameter, buffer and counter by PyTorch name.
    pub fn state_dict(&mut self) -> Vec<(String, Vec<usize>, StateValue)> {
        let mut out = Vec::new();
        self.net.visit("", &mut |name, slot| match slot {
            Slot::Param(p) => out.push((
                name.to_string(),
                p.dims.clone(),
                StateValue::F32(p.value.clone()),
            )),
            Slot::Count(c) => out.push((name.to_string(), Vec::new(), StateValue::I64(*c))),
        });
        out
    }

    /// Loads a checkpoint's tensors into this model: every missing, unexpected or wrongly
    /// shaped key is reported at once ([`Error::StateDict`]) and nothing changes then.
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        self.load_state_dict_except(sd, None)
    }

    /// [`load_state_dict`](Self::load_state_dict) leaving the tensors under `skip`
    /// (`prefix.`) as they are; the checkpoint's own tensors there are not reported.
    fn load_state_dict_except(&mut self, sd: &StateDict, skip: Option<&str>) -> Result<()> {
        let skip = skip.map(|p| format!("{p}."));
        let skipped = |name: &str| skip.as_deref().is_some_and(|p| name.starts_with(p));
        let mut loader = Loader::new(sd);
        for name in sd.names().filter(|n| skipped(n)) {
            if let Some(t) = sd.get(name) {
                loader.take(name, &t.dims);
            }
        }
        let mut values = Vec::new();
        self.net.visit("", &mut |name, slot| match slot {
            Slot::Param(_) if skipped(name) => values.push((name.to_string(), None)),
            Slot::Param(p) => values.push((name.to_string(), Some(loader.take(name, &p.dims)))),
            Slot::Count(_) => values.push((name.to_string(), None)),
        });
        loader.finish()?;
        self.fused = None;
        let mut it = values.into_iter();
        self.net.visit("", &mut |name, slot| {
            let Some((n, v)) = it.next() else { return };
            debug_assert_eq!(n, name);
            match (slot, v) {
                (Slot::Param(p), Some(v)) => p.value = v,
                (Slot::Count(c), None) => {
                    if let Some(t) = sd.get(name) {
                        *c = t.data.first().map_or(0, |&v| v as i64);
                    }
                }
                _ => {}
            }
        });
        Ok(())
    }

    /// A model whose architecture, widths, kernel and classes come from a checkpoint's
    /// shapes (`in_channels`, `height`, `width`, dropout and the width multiplier from
    /// `base`), its weights loaded.
    pub fn from_state_dict(arch: Arch, base: &CnnConfig, sd: &StateDict) -> Result<Self> {
        let config = Self::config_of(arch, base, sd)?;
        let mut model = Model::new(arch, config, 0)?;
        model.load_state_dict(sd)?;
        Ok(model)
    }

    /// Fine-tuning: like [`from_state_dict`](Self::from_state_dict) but with
    /// `base.classes` classes. When the checkpoint's classifier has another class count,
    /// the classifier alone is freshly initialised (seeded by `seed`, as
    /// [`new`](Self::new) would) and everything else loaded; the second value says
    /// whether that happened.
    pub fn fine_tune(
        arch: Arch,
        base: &CnnConfig,
        sd: &StateDict,
        seed: u64,
    ) -> Result<(Self, bool)> {
        let mut config = Self::config_of(arch, base, sd)?;
        let fresh = config.classes != base.classes;
        config.classes = base.classes;
        let mut model = Model::new(arch, config, seed)?;
        model.load_state_dict_except(sd, fresh.then_some(arch.classifier_name()))?;
        Ok((model, fresh))
    }

    /// `base` with what a checkpoint of `arch` fixes: the class count, and for the
    /// seed's networks the widths and kernel. A checkpoint of another architecture is an
    /// [`Error::Checkpoint`] naming the one it looks like.
    fn config_of(arch: Arch, base: &CnnConfig, sd: &StateDict) -> Result<CnnConfig> {
        let dims = |name: &str| sd.get(name).map(|t| t.dims.clone());
        let looks = || match Arch::guess(sd) {
            Some(a) if a != arch => format!(" (it looks like a {} checkpoint)", a.name()),
            Some(_) => String::new(),
            None => format!(
                " (its first keys: {})",
                sd.names().take(3).collect::<Vec<_>>().join(", ")
            ),
        };
        let missing = |what: &str| {
            Error::Checkpoint(format!(
                "no '{what}': not a {} checkpoint{}",
                arch.name(),
                looks()
            ))
        };
        let mut config = base.clone();
        if arch.is_imagenet() {
            if sd.get(arch.signature()).is_none() {
                return Err(missing(arch.signature()));
            }
            let fc = format!("{}.weight", arch.classifier_name());
            let classes = dims(&fc).ok_or_else(|| missing(&fc))?;
            config.classes = classes.first().copied().unwrap_or(0);
            // A wrong width multiplier shows first in the stem's channels.
            let alpha = config.width_mult;
            let stem = match arch {
                Arch::MobileNetV1 => Some((
                    "model.0.0.weight",
                    crate::models::mobilenet_v1::scale_channels(32, alpha),
                )),
                Arch::MobileNetV2 => Some((
                    "features.0.0.weight",
                    crate::models::mobilenet_v2::make_divisible(32.0 * alpha, 8),
                )),
                _ => None,
            };
            if let Some((name, want)) = stem {
                let found = dims(name).and_then(|d| d.first().copied());
                if found.is_some_and(|f| f != want) {
                    return Err(Error::Checkpoint(format!(
                        "'{name}' has {} output channels where a {} of width {alpha} has \
                         {want}: give the checkpoint's width multiplier",
                        found.unwrap_or(0),
                        arch.name(),
                    )));
                }
            }
            return Ok(config);
        }
        let stem = dims("features.0.0.weight").ok_or_else(|| missing("features.0.0.weight"))?;
        let mut widths = vec![stem[0]];
        let out_key = match arch {
            Arch::DsCnn => "3",
            _ => "0",
        };
        let mut kernel = 3;
        let mut i = 1;
        while let Some(d) = dims(&format!("features.{i}.{out_key}.weight")) {
            widths.push(d[0]);
            if let Some(k) = dims(&format!("features.{i}.0.weight")) {
                kernel = k.get(2).copied().unwrap_or(3);
            }
            i += 1;
        }
        if widths.len() < 2 {
            return Err(missing(&format!("features.1.{out_key}.weight")));
        }
        let classes = dims("classifier.1.weight").ok_or_else(|| missing("classifier.1.weight"))?;
        config.widths = widths;
        config.kernel = kernel;
        config.classes = classes[0];
        Ok(config)
    }
}

impl Drop for Model {
    /// Frees the activation buffers the training layers keep for reuse between steps
    /// (see [`super::release_buffers`]).
    fn drop(&mut self) {
        super::release_buffers();
    }
}

/// A value of the state dict.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// f32 tensor data.
    F32(Vec<f32>),
    /// An int64 scalar (`num_batches_tracked`).
    I64(i64),
}

/// Index of the largest logit (the first of equals; NaN never wins).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = j;
        }
    }
    best
}

fn count_correct(logits: &[f32], k: usize, labels: &[usize]) -> usize {
    logits
        .chunks_exact(k)
        .zip(labels)
        .filter(|(row, &y)| argmax(row) == y)
        .count()
}
