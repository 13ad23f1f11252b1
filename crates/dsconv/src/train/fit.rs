//! The training loop every front end shares (`dsconv train`, the demo, the Python
//! package): epochs of seeded shuffled (and optionally augmented) batches, a learning-rate
//! schedule, validation after every epoch, a callback per step and per epoch, and the
//! history; plus what a front end needs to set one up from options (the optimizer, the
//! schedule, the model for a data set) and to save its result.

use super::checkpoint::{save_checkpoint, save_optimizer};
use super::data::{epoch_order, Augment, Dataset};
use super::model::{Arch, CnnConfig, Model};
use super::optim::{AdamW, LrSchedule, Optimizer, Schedule, Sgd};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::weights::StateDict;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Whole passes over the training data.
    Epochs(u64),
    /// Optimizer steps (batches in order across epochs).
    Steps(u64),
}

/// Optimizer steps per epoch for `n` samples in batches of `b`: a last batch of one
/// sample is skipped (BatchNorm cannot train on one value per channel).
pub fn steps_per_epoch(n: usize, b: usize) -> u64 {
    if b == 0 {
        return 0;
    }
    (n / b + usize::from(n % b > 1)) as u64
}

/// The batches of an epoch in `order`; a last batch of one sample is dropped.
fn batches(order: &[usize], b: usize) -> impl Iterator<Item = &[usize]> {
    order.chunks(b).filter(|c| c.len() > 1 || order.len() == 1)
}

/// How [`fit`] trains.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Images per optimizer step (at least 2: BatchNorm trains on batch statistics).
    pub batch: usize,
    /// Optimizer steps in all.
    pub steps: u64,
    /// A seeded Fisher–Yates shuffle per epoch (else the data's order).
    pub shuffle: bool,
    /// Random crop / flip per image.
    pub augment: Option<Augment>,
    /// Seed of the shuffling and augmentation.
    pub seed: u64,
    /// The learning rate at every step.
    pub schedule: LrSchedule,
    /// Label smoothing of the cross-entropy, in [0, 1].
    pub label_smoothing: f32,
    /// Batch size of the validation passes.
    pub val_batch: usize,
}

impl FitConfig {
    /// `length` over `train_len` images in batches of `batch`, shuffled with seed 0, no
    /// augmentation, a constant rate `base_lr` (set `schedule.schedule` / `warmup` for
    /// another), no label smoothing. Errors: a batch under 2, too few images for one
    /// batch, no steps.
    pub fn new(train_len: usize, batch: usize, length: Length, base_lr: f32) -> Result<Self> {
        if batch < 2 {
            return Err(Error::param(
                "batch",
                format!("must be at least 2 (BatchNorm trains on batch statistics), got {batch}"),
            ));
        }
        let per_epoch = steps_per_epoch(train_len, batch);
        if per_epoch == 0 {
            return Err(Error::param(
                "data",
                format!("{train_len} image(s): too few for a batch of at least 2"),
            ));
        }
        let steps = match length {
            Length::Epochs(e) => e.saturating_mul(per_epoch),
            Length::Steps(s) => s,
        };
        if steps == 0 {
            return Err(Error::param("epochs / steps", "must be at least 1"));
        }
        Ok(FitConfig {
            batch,
            steps,
            shuffle: true,
            augment: None,
            seed: 0,
            schedule: LrSchedule {
                base: base_lr,
                schedule: Schedule::Constant,
                warmup: 0,
                total_steps: steps,
                steps_per_epoch: per_epoch,
            },
            label_smoothing: 0.0,
            val_batch: 256,
        })
    }

    fn validate(&self) -> Result<()> {
        if self.batch < 2 {
            return Err(Error::param("batch", "must be at least 2"));
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::param(
                "label_smoothing",
                format!("must be in [0, 1], got {}", self.label_smoothing),
            ));
        }
        Ok(())
    }
}

impl Augment {
    /// The augmentation `dsconv train` uses for images of `[C, H, W]`: random crops with
    /// `max(1, min(H, W) / 8)` pixels of zero padding, flips when `flip` (photos, not
    /// digits).
    pub fn for_images([_, h, w]: [usize; 3], flip: bool) -> Self {
        Augment {
            pad: (h.min(w) / 8).max(1),
            flip,
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = Error;

    /// `constant`, `cosine` (to 0) or `step:EPOCHS:GAMMA` (e.g. `step:10:0.1`).
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::param(
                "schedule",
                format!("'{text}': expected constant, cosine or step:EPOCHS:GAMMA"),
            )
        };
        match text {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine { min_lr: 0.0 }),
            _ => {
                let mut parts = text.split(':');
                if parts.next() != Some("step") {
                    return Err(bad());
                }
                let every: u64 = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let gamma: f32 = parts.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                if every == 0 || gamma.is_nan() || gamma <= 0.0 || parts.next().is_some() {
                    return Err(bad());
                }
                Ok(Schedule::Step { every, gamma })
            }
        }
    }
}

/// An optimizer described by options, as `dsconv train`'s flags and the Python package's
/// keyword arguments give them.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSpec {
    /// `"sgd"` or `"adamw"`.
    pub name: String,
    /// Base learning rate (None: SGD 0.1, AdamW 1e-3).
    pub lr: Option<f32>,
    /// SGD momentum.
    pub momentum: f32,
    /// SGD dampening.
    pub dampening: f32,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Weight decay (None: SGD 0, AdamW 1e-2).
    pub weight_decay: Option<f32>,
    /// Decay BatchNorm parameters and biases too (`torch.optim`'s default).
    pub decay_norm_and_bias: bool,
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec {
            name: "adamw".into(),
            lr: None,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: None,
            decay_norm_and_bias: true,
        }
    }
}

impl OptimizerSpec {
    /// The optimizer, its options checked as `torch.optim` checks them.
    pub fn build(&self) -> Result<Optimizer> {
        let opt = match self.name.to_ascii_lowercase().as_str() {
            "sgd" => Optimizer::sgd(Sgd {
                lr: self.lr.unwrap_or(0.1),
                momentum: self.momentum,
                dampening: self.dampening,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay.unwrap_or(0.0),
            }),
            "adamw" => {
                if self.momentum != 0.0 || self.nesterov || self.dampening != 0.0 {
                    return Err(Error::param(
                        "momentum",
                        "momentum, dampening and nesterov are SGD options (AdamW has none)",
                    ));
                }
                let d = AdamW::default();
                Optimizer::adamw(AdamW {
                    lr: self.lr.unwrap_or(d.lr),
                    weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
                    ..d
                })
            }
            other => {
                return Err(Error::param(
                    "optimizer",
                    format!("'{other}': expected sgd or adamw"),
                ))
            }
        }
        .with_decay_norm_and_bias(self.decay_norm_and_bias);
        opt.validate()?;
        Ok(opt)
    }
}

/// The architecture's choices a caller may set; the input size and class count come from
/// the data.
#[derive(Debug, Clone, PartialEq)]
pub struct NetOptions {
    /// The stem's width, then each block's (default 32, 64, 128, 128).
    pub widths: Vec<usize>,
    /// The blocks' kernel size (default 3).
    pub kernel: usize,
    /// Dropout before the classifier (default 0).
    pub dropout: f32,
    /// Width multiplier α of MobileNetV1 / V2 (default 1).
    pub width_mult: f64,
    /// EfficientNet-Lite0's stochastic depth (default 0).
    pub drop_path: f32,
    /// With a checkpoint to start from: keep the class count asked for, giving the network
    /// a freshly initialised classifier when the checkpoint's has another class count
    /// (fine-tuning, [`Model::fine_tune`]). Off (the default), the checkpoint's class
    /// count wins.
    pub fine_tune: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        let c = CnnConfig::new(1, 1, 1, 2);
        NetOptions {
            widths: c.widths,
            kernel: c.kernel,
            dropout: c.dropout,
            width_mult: c.width_mult,
            drop_path: c.drop_path,
            fine_tune: false,
        }
    }
}

/// A model of `arch` for images of `image_dims` (`[C, H, W]`) and `classes` classes: from
/// `init`'s tensors (its widths, kernel and class count win over `options`', unless
/// `options.fine_tune` keeps `classes`) or new, initialised from `seed` (dropout masks
/// from `seed ^ 0x5EED`), as `dsconv train` builds it. The second value says whether a
/// fine-tune gave the network a fresh classifier.
pub fn build_model(
    arch: Arch,
    [c, h, w]: [usize; 3],
    classes: usize,
    options: &NetOptions,
    init: Option<&StateDict>,
    seed: u64,
) -> Result<(Model, bool)> {
    let mut config = CnnConfig::new(c, h, w, classes);
    config.widths = options.widths.clone();
    config.kernel = options.kernel;
    config.dropout = options.dropout;
    config.dropout_seed = seed ^ 0x5EED;
    config.width_mult = options.width_mult;
    config.drop_path = options.drop_path;
    match init {
        Some(sd) if options.fine_tune => Model::fine_tune(arch, &config, sd, seed),
        Some(sd) => Model::from_state_dict(arch, &config, sd).map(|m| (m, false)),
        None => Model::new(arch, config, seed).map(|m| (m, false)),
    }
}

/// Where the optimizer state of a checkpoint goes: `ds.safetensors` →
/// `ds.optim.safetensors`.
pub fn optimizer_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("optim.safetensors")
}

/// Saves a training run's result: the checkpoint at `path` (with `metadata`, the model's
/// configuration and `steps`) and the optimizer state at [`optimizer_path`], each written
/// atomically. Returns the optimizer state's path.
pub fn save_training(
    path: &Path,
    model: &mut Model,
    optimizer: &Optimizer,
    steps: u64,
) -> Result<PathBuf> {
    let meta = [
        ("dsconv.config", format!("{:?}", model.config())),
        ("dsconv.steps", steps.to_string()),
    ];
    save_checkpoint(path, model, &meta)?;
    let opt_path = optimizer_path(path);
    save_optimizer(&opt_path, optimizer)?;
    Ok(opt_path)
}

/// One optimizer step's numbers, as [`fit`] hands them to its callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Steps done in this run, this one included (1-based).
    pub step: u64,
    /// Steps of this run in all.
    pub steps: u64,
    /// The epoch (1-based).
    pub epoch: u64,
    /// Steps done in this epoch, this one included.
    pub epoch_step: u64,
    /// Steps this epoch will have.
    pub epoch_steps: u64,
    /// This batch's mean loss (before the update).
    pub loss: f64,
    /// The epoch's mean loss so far.
    pub mean_loss: f64,
    /// The epoch's training accuracy so far.
    pub accuracy: f64,
    /// The learning rate of this step.
    pub lr: f32,
    /// Training images per second in this epoch so far.
    pub images_per_s: f64,
}

/// One epoch's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// The epoch (1-based).
    pub epoch: u64,
    /// Steps done in this run at its end.
    pub steps: u64,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy (of the batches as trained, before each update).
    pub accuracy: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// Seconds of training (validation excluded).
    pub seconds: f64,
    /// The learning rate of its last step.
    pub lr: f32,
    /// Validation accuracy, when there is validation data.
    pub val_accuracy: Option<f64>,
    /// Validation mean loss (no smoothing).
    pub val_loss: Option<f64>,
}

/// What [`fit`]'s callback sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// After every optimizer step.
    Step(&'a StepReport),
    /// After every epoch and its validation.
    Epoch(&'a EpochReport),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Every epoch, in order (the last one may be partial under [`Length::Steps`]).
    pub epochs: Vec<EpochReport>,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Wall time, validation included.
    pub seconds: f64,
}

fn check_data(model: &Model, data: &Dataset, what: &'static str) -> Result<()> {
    let want = model.input_dims(1);
    if data.image_dims()[..] != want[1..] {
        return Err(Error::shape(
            what,
            format!("images of {:?} (what the model is built for)", &want[1..]),
            format!("{:?}", data.image_dims()),
        ));
    }
    let classes = model.config().classes;
    if let Some((i, &l)) = data
        .labels()
        .iter()
        .enumerate()
        .find(|(_, &l)| l >= classes)
    {
        return Err(Error::param(
            "labels",
            format!("label {l} of image {i} is out of range for {classes} classes"),
        ));
    }
    Ok(())
}

/// Trains `model` on `train` for `config.steps` optimizer steps, evaluating `val` after
/// every epoch. `callback` sees every step and every epoch; an error it returns stops
/// training at once and is returned (the model keeps the steps taken). A non-finite loss
/// stops training with an error naming the optimizer step. Nothing is written: save the
/// result with [`save_training`] once this returned `Ok`.
///
/// Deterministic: the same model, data, configuration and seed give the same parameters,
/// bit for bit, for any thread count.
///
/// ```
/// use dsconv::train::{fit, Arch, CnnConfig, Dataset, Event, FitConfig, Length, Model,
///                     OptimizerSpec};
/// use dsconv::Executor;
/// // Two classes: dark and bright 4×4 images.
/// let images: Vec<f32> = (0..16).flat_map(|i| vec![(i % 2) as f32; 16]).collect();
/// let labels: Vec<i64> = (0..16).map(|i| i % 2).collect();
/// let data = Dataset::new(images, [16, 1, 4, 4], &labels, None)?;
/// let mut config = CnnConfig::new(1, 4, 4, 2);
/// config.widths = vec![4, 8];
/// let mut model = Model::new(Arch::DsCnn, config, 0)?;
/// let mut opt = OptimizerSpec::default().build()?;
/// let plan = FitConfig::new(data.len(), 8, Length::Epochs(3), opt.base_lr())?;
/// let mut steps = 0;
/// let history = fit(&mut model, &mut opt, &data, Some(&data), &plan, &Executor::single(),
///     |event| -> dsconv::Result<()> {
///         if let Event::Step(_) = event { steps += 1; }
///         Ok(())
///     })?;
/// assert_eq!((steps, history.steps, history.epochs.len()), (6, 6, 3));
/// assert!(history.epochs[2].val_accuracy.is_some());
/// # Ok::<(), dsconv::Error>(())
/// ```
pub fn fit<E: From<Error>>(
    model: &mut Model,
    optimizer: &mut Optimizer,
    train: &Dataset,
    val: Option<&Dataset>,
    config: &FitConfig,
    exec: &Executor,
    mut callback: impl FnMut(Event<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<History, E> {
    config.validate()?;
    check_data(model, train, "training data")?;
    if let Some(v) = val {
        check_data(model, v, "validation data")?;
    }
    let run_start = Instant::now();
    let per_epoch = steps_per_epoch(train.len(), config.batch).max(1);
    let mut step = 0u64;
    let mut epoch = 0u64;
    let mut history = History::default();
    while step < config.steps {
        let order = epoch_order(train.len(), config.shuffle, config.seed, epoch);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let start = Instant::now();
        let mut in_epoch = 0;
        let mut lr = config.schedule.base;
        for idx in batches(&order, config.batch) {
            if step >= config.steps {
                break;
            }
            let aug_seed = config.seed ^ (step + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let (x, labels) = train.batch(idx, config.augment.as_ref(), aug_seed)?;
            lr = config.schedule.lr_at(step);
            let stats =
                model.train_step(&x, &labels, optimizer, lr, config.label_smoothing, exec)?;
            loss_sum += stats.loss * labels.len() as f64;
            correct += stats.correct;
            seen += labels.len();
            step += 1;
            in_epoch += 1;
            let report = StepReport {
                step,
                steps: config.steps,
                epoch: epoch + 1,
                epoch_step: in_epoch,
                epoch_steps: per_epoch.min(config.steps - step + in_epoch),
                loss: stats.loss,
                mean_loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                lr,
                images_per_s: seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
            };
            callback(Event::Step(&report))?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let v = match val {
            Some(v) => Some(model.evaluate(v, config.val_batch.max(1), exec)?),
            None => None,
        };
        let report = EpochReport {
            epoch: epoch + 1,
            steps: step,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            images_per_s: seen as f64 / elapsed.max(1e-9),
            seconds: elapsed,
            lr,
            val_accuracy: v.as_ref().map(|s| s.accuracy),
            val_loss: v.as_ref().map(|s| s.loss),
        };
        callback(Event::Epoch(&report))?;
        history.epochs.push(report);
        epoch += 1;
    }
    history.steps = step;
    history.seconds = run_start.elapsed().as_secs_f64();
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let images: Vec<f32> = (0..n)
            .flat_map(|i| (0..16).map(move |p| ((i % 2) as f32) * 0.8 + (p % 3) as f32 * 0.05))
            .collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
        Dataset::new(images, [n, 1, 4, 4], &labels, None).unwrap()
    }

    fn small(seed: u64) -> Model {
        let options = NetOptions {
            widths: vec![4, 8],
            ..NetOptions::default()
        };
        build_model(Arch::DsCnn, [1, 4, 4], 2, &options, None, seed)
            .unwrap()
            .0
    }

    #[test]
    fn steps_per_epoch_skips_a_last_batch_of_one() {
        assert_eq!(steps_per_epoch(10, 4), 3);
        assert_eq!(steps_per_epoch(9, 4), 2);
        assert_eq!(steps_per_epoch(1, 4), 0);
        assert_eq!(steps_per_epoch(5, 0), 0);
    }

    #[test]
    fn config_checks_its_options() {
        assert!(FitConfig::new(10, 1, Length::Epochs(1), 0.1).is_err());
        assert!(FitConfig::new(1, 4, Length::Epochs(1), 0.1).is_err());
        assert!(FitConfig::new(10, 4, Length::Steps(0), 0.1).is_err());
        let c = FitConfig::new(10, 4, Length::Epochs(2), 0.1).unwrap();
        assert_eq!((c.steps, c.schedule.steps_per_epoch), (6, 3));
    }

    #[test]
    fn schedules_and_optimizers_parse() {
        assert_eq!("constant".parse::<Schedule>().unwrap(), Schedule::Constant);
        assert_eq!(
            "step:3:0.5".parse::<Schedule>().unwrap(),
            Schedule::Step {
                every: 3,
                gamma: 0.5
            }
        );
        for bad in [
            "",
            "step",
            "step:0:0.5",
            "step:1:-1",
            "step:1:0.5:2",
            "linear",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
        let sgd = OptimizerSpec {
            name: "SGD".into(),
            momentum: 0.9,
            ..OptimizerSpec::default()
        };
        assert_eq!(sgd.build().unwrap().base_lr(), 0.1);
        let adamw_momentum = OptimizerSpec {
            momentum: 0.9,
            ..OptimizerSpec::default()
        };
        assert!(adamw_momentum.build().is_err());
        let other = OptimizerSpec {
            name: "lbfgs".into(),
            ..OptimizerSpec::default()
        };
        assert!(other.build().unwrap_err().to_string().contains("lbfgs"));
    }

    #[test]
    fn fit_reports_every_step_and_epoch_and_is_deterministic() {
        let data = toy(10);
        let run = |threads: usize| {
            let mut model = small(3);
            let mut opt = OptimizerSpec::default().build().unwrap();
            let mut config = FitConfig::new(data.len(), 4, Length::Steps(7), 3e-3).unwrap();
            config.augment = Some(Augment::for_images([1, 4, 4], false));
            let mut events = Vec::new();
            let exec = Executor::new(threads).unwrap();
            let h = fit(
                &mut model,
                &mut opt,
                &data,
                Some(&data),
                &config,
                &exec,
                |e| {
                    events.push(match e {
                        Event::Step(s) => (s.step, s.epoch, s.epoch_step, s.epoch_steps, false),
                        Event::Epoch(r) => (r.steps, r.epoch, 0, 0, true),
                    });
                    Ok::<_, Error>(())
                },
            )
            .unwrap();
            (h.epochs.len(), h.steps, events, model.state_dict())
        };
        let (epochs, steps, events, sd) = run(1);
        assert_eq!((epochs, steps), (3, 7));
        // 10 images at batch 4: 3 steps per epoch (the last batch has 2), 7 steps in all.
        assert_eq!(
            events,
            [
                (1, 1, 1, 3, false),
                (2, 1, 2, 3, false),
                (3, 1, 3, 3, false),
                (3, 1, 0, 0, true),
                (4, 2, 1, 3, false),
                (5, 2, 2, 3, false),
                (6, 2, 3, 3, false),
                (6, 2, 0, 0, true),
                (7, 3, 1, 1, false),
                (7, 3, 0, 0, true),
            ]
        );
        assert_eq!(run(2).3, sd);
    }

    #[test]
    fn a_callback_error_stops_training_at_once() {
        let data = toy(8);
        let mut model = small(0);
        let mut opt = OptimizerSpec::default().build().unwrap();
        let config = FitConfig::new(data.len(), 2, Length::Epochs(5), 1e-3).unwrap();
        let mut seen = 0;
        let r = fit(
            &mut model,
            &mut opt,
            &data,
            None,
            &config,
            &Executor::single(),
            |e| {
                if let Event::Step(s) = e {
                    seen = s.step;
                    if s.step == 3 {
                        return Err(Stop::Callback);
                    }
                }
                Ok(())
            },
        );
        assert!(matches!(r, Err(Stop::Callback)));
        assert_eq!((seen, opt.steps()), (3, 3));
    }

    /// A caller's own error type (the Python package's is `PyErr`).
    #[derive(Debug)]
    enum Stop {
        Callback,
        #[allow(dead_code)]
        Library(Error),
    }

    impl From<Error> for Stop {
        fn from(e: Error) -> Self {
            Stop::Library(e)
        }
    }

    #[test]
    fn bad_data_and_divergence_are_errors() {
        let data = toy(8);
        let mut model = small(0);
        let mut opt = OptimizerSpec::default().build().unwrap();
        let config = FitConfig::new(data.len(), 4, Length::Steps(2), 1e-3).unwrap();
        let exec = Executor::single();
        let none = |_: Event<'_>| Ok::<_, Error>(());
        let other = Dataset::new(vec![0.0; 2 * 25], [2, 1, 5, 5], &[0, 1], None).unwrap();
        let e = fit(&mut model, &mut opt, &other, None, &config, &exec, none).unwrap_err();
        assert!(e.to_string().contains("[1, 5, 5]"), "{e}");
        let three = Dataset::new(vec![0.0; 2 * 16], [2, 1, 4, 4], &[0, 2], None).unwrap();
        let e = fit(
            &mut model,
            &mut opt,
            &data,
            Some(&three),
            &config,
            &exec,
            none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let mut sgd = OptimizerSpec {
            name: "sgd".into(),
            lr: Some(1e30),
            ..OptimizerSpec::default()
        }
        .build()
        .unwrap();
        let mut config = FitConfig::new(data.len(), 4, Length::Steps(20), 1e30).unwrap();
        config.shuffle = false;
        let e = fit(&mut model, &mut sgd, &data, None, &config, &exec, none).unwrap_err();
        assert!(e.to_string().contains("optimizer step"), "{e}");
    }
}
