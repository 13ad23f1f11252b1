//! `dsconv train`: train `ds-cnn` / `std-cnn` or MobileNetV1 / V2 / EfficientNet-Lite0 on
//! the embedded digits, a NumPy pair or an image folder (or fine-tune from any checkpoint
//! the loaders read); save a `.safetensors` checkpoint PyTorch loads, and the optimizer state
//! beside it.

use super::data::{self, Source, DATA_HELP};
use super::user_error;
use anyhow::{Context, Result};
use dsconv::train::{
    fit, optimizer_path, save_training, steps_per_epoch, Arch, Augment, Dataset, Event, FitConfig,
    Length, Model, NetOptions, Optimizer, OptimizerSpec, Schedule,
};
use dsconv::weights::StateDict;
use dsconv::Executor;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const ABOUT: &str = "\
Examples:
  dsconv train --model ds-cnn --data digits --val digits-test --epochs 10 --out ds.safetensors
  dsconv train --model std-cnn --data x.npy,y.npy --optimizer sgd --lr 0.05 --momentum 0.9 \\
               --nesterov --weight-decay 5e-4 --schedule cosine --warmup 100 --out std.safetensors
  dsconv train --model ds-cnn --data photos/ --init ds.safetensors --resume --epochs 5 \\
               --out ds2.safetensors
  dsconv train --model mobilenet-v2 --init mobilenet_v2-b0353104.pth --classes 10 \\
               --data photos/ --optimizer sgd --lr 0.01 --momentum 0.9 --out mnv2.safetensors

Models: ds-cnn (stem 3x3 conv + BN + ReLU, then depthwise kxk + BN + ReLU + pointwise 1x1 +
BN + ReLU blocks, widths 32 -> 64 -> 128 -> 128, global pooling, dropout, linear) and
std-cnn (each separable block one standard kxk conv + BN + ReLU). They adapt to the data's
channels, image size and class count. The checkpoint has PyTorch's state_dict names
(features.1.3.weight, features.1.1.running_var, classifier.1.weight, ...); the optimizer
state goes beside it as NAME.optim.safetensors (--resume reads it back with --init).
Both are written atomically, only once training finished: a failed run leaves nothing.
Results are bitwise identical for any --threads.

Also mobilenet-v1, mobilenet-v2 (width --alpha) and efficientnet-lite0 with the names the
inference loaders read (model.N.M/fc, torchvision's features.N/classifier.1, lukemelas'
_conv_stem/_blocks.N/_fc): a checkpoint runs in dsconv classify/run and loads in PyTorch.
Without --init they get torchvision's initialisation. --init takes any checkpoint of the
model (.pth or .safetensors; e.g. torchvision's ImageNet MobileNetV2); with --classes N
different from its class count, only the classifier starts afresh (fine-tuning). Folder
images are normalised with the network's ImageNet mean and std.";

/// Arguments of `dsconv train`.
#[derive(clap::Args)]
#[command(after_help = ABOUT)]
pub struct Args {
    /// ds-cnn, std-cnn, mobilenet-v1, mobilenet-v2 or efficientnet-lite0.
    #[arg(long)]
    pub model: String,
    #[arg(long, help = format!("Training data: {DATA_HELP}"))]
    pub data: String,
    /// Validation data, evaluated after every epoch (same forms as --data).
    #[arg(long)]
    pub val: Option<String>,
    /// Start from this checkpoint (widths, kernel and class count come from it).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Classes (default: the data's or --init's; another count: a fresh classifier)
    #[arg(long)]
    pub classes: Option<usize>,
    /// Width multiplier of mobilenet-v1 / mobilenet-v2.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// With --init: also restore the optimizer state saved beside it.
    #[arg(long, requires = "init")]
    pub resume: bool,
    /// Epochs (default 10).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<u64>,
    /// Optimizer steps instead of epochs (batches in order across epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// sgd or adamw.
    #[arg(long, default_value = "adamw")]
    pub optimizer: String,
    /// Learning rate (default: adamw 1e-3, sgd 0.1).
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f32,
    /// SGD dampening.
    #[arg(long, default_value_t = 0.0)]
    pub dampening: f32,
    /// SGD Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (default: adamw 1e-2, sgd 0).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// No weight decay on BatchNorm and bias parameters.
    #[arg(long)]
    pub no_decay_norm_bias: bool,
    /// constant, cosine, or step:EPOCHS:GAMMA (e.g. step:10:0.1).
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Linear learning-rate warm-up over this many steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Dropout before the classifier (default: 0.2 for mobilenet-v2, efficientnet-lite0)
    #[arg(long)]
    pub dropout: Option<f32>,
    /// efficientnet-lite0's stochastic depth (drop_connect_rate; lukemelas: 0.2)
    #[arg(long, default_value_t = 0.0)]
    pub drop_path: f32,
    /// Block widths after the stem's, comma-separated, stem first.
    #[arg(long, default_value = "32,64,128,128")]
    pub widths: String,
    /// Kernel size of the depthwise (ds-cnn) or standard (std-cnn) convolutions
    #[arg(long, default_value_t = 3)]
    pub kernel: usize,
    /// Keep the data's order (no shuffling).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Augment NumPy / digits data too (random crop with padding; flip for folders).
    #[arg(long, conflicts_with = "no_augment")]
    pub augment: bool,
    /// No augmentation (image folders are augmented by default).
    #[arg(long)]
    pub no_augment: bool,
    /// Seed of the initialisation, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads (0: all cores). Results are the same for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The checkpoint to write (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Print a JSON summary on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// `ds-cnn` / `std-cnn`, or a user error listing them.
pub fn arch(name: &str) -> Result<Arch> {
    Arch::lookup(name).ok_or_else(|| {
        user_error(format!(
            "--model {name}: unknown; trainable models: {}",
            Arch::ALL.map(Arch::name).join(", ")
        ))
    })
}

/// What [`build_model`] builds besides the data's shape.
pub struct ModelArgs {
    /// Width multiplier (MobileNets).
    pub width: f64,
    /// `ds-cnn` / `std-cnn` widths.
    pub widths: Vec<usize>,
    /// `ds-cnn` / `std-cnn` kernel.
    pub kernel: usize,
    /// Dropout before the classifier.
    pub dropout: f32,
    /// EfficientNet-Lite0's stochastic depth.
    pub drop_path: f32,
    /// Class count asked for (a fresh classifier when `init` has another).
    pub classes: Option<usize>,
    /// Seed of the initialisation and dropout.
    pub seed: u64,
}

/// A model for `data` of `arch`: from `init` (its widths, kernel and classes, or
/// `m.classes` with a fresh classifier), or new. The second value says whether the
/// classifier was reinitialised over a checkpoint of another class count.
pub fn build_model(
    arch: Arch,
    data: &Dataset,
    init: Option<&Path>,
    m: ModelArgs,
) -> Result<(Model, bool)> {
    if m.classes.is_some_and(|k| k < 2) {
        return Err(user_error("--classes must be at least 2"));
    }
    let options = NetOptions {
        widths: m.widths,
        kernel: m.kernel,
        dropout: m.dropout,
        width_mult: m.width,
        drop_path: m.drop_path,
        fine_tune: m.classes.is_some(),
    };
    let classes = m.classes.unwrap_or(data.classes());
    let dims = data.image_dims();
    match init {
        Some(path) => {
            let sd = StateDict::load(path)?;
            let built =
                dsconv::train::build_model(arch, dims, classes, &options, Some(&sd), m.seed);
            Ok(built.with_context(|| format!("{}", path.display()))?)
        }
        None => Ok(dsconv::train::build_model(
            arch, dims, classes, &options, None, m.seed,
        )?),
    }
}

/// ImageNet networks see folder images as their ImageNet weights expect: the registry's
/// mean and std over the [0, 1] pixels.
pub fn normalise_folder(arch: Arch, source: Source, data: Dataset) -> Result<Dataset> {
    if !arch.is_imagenet() || source != Source::Folder || data.image_dims()[0] != 3 {
        return Ok(data);
    }
    let Some(pre) = dsconv::models::registry::lookup(arch.name())?.preprocess else {
        return Ok(data);
    };
    let all: Vec<usize> = (0..data.len()).collect();
    let (x, labels) = data.batch(&all, None, 0)?;
    let [n, c, h, w] = x.logical_dims();
    let mut images = x.to_layout(dsconv::Layout::Nchw).into_data();
    for (i, v) in images.iter_mut().enumerate() {
        let ch = (i / (h * w)) % c;
        *v = (*v - pre.mean[ch]) / pre.std[ch];
    }
    let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Ok(Dataset::new(
        images,
        [n, c, h, w],
        &labels,
        Some(data.classes()),
    )?)
}

/// Renders a one-line progress bar on stderr (terminals only).
pub struct Bar {
    on: bool,
}

impl Bar {
    pub fn stderr() -> Self {
        Bar {
            on: std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&self, done: u64, total: u64, epoch: u64, loss: f64, acc: f64, rate: f64) {
        if !self.on {
            return;
        }
        let width = 30;
        let filled = (done as usize * width / total.max(1) as usize).min(width);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r  epoch {epoch:>3} [{}{}] {done}/{total}  loss {loss:.4}  acc {:.2}%  {rate:.0} img/s\x1b[K",
            "#".repeat(filled),
            "-".repeat(width - filled),
            acc * 100.0
        );
        let _ = err.flush();
    }

    pub fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

fn parse_schedule(text: &str) -> Result<Schedule> {
    text.parse().map_err(|_| {
        user_error(format!(
            "--schedule {text}: expected constant, cosine or step:EPOCHS:GAMMA"
        ))
    })
}

fn parse_widths(text: &str) -> Result<Vec<usize>> {
    let widths: Vec<usize> = text
        .split(',')
        .map(|w| w.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| user_error(format!("--widths {text}: expected numbers like 32,64,128")))?;
    if widths.len() < 2 || widths.contains(&0) {
        return Err(user_error(format!(
            "--widths {text}: need a stem width and at least one block width, all positive"
        )));
    }
    Ok(widths)
}

/// The optimizer the arguments describe.
pub fn optimizer(args: &Args) -> Result<Optimizer> {
    match args.optimizer.as_str() {
        "sgd" => {}
        "adamw" => {
            if args.momentum != 0.0 || args.nesterov || args.dampening != 0.0 {
                return Err(user_error(
                    "--momentum, --dampening and --nesterov are SGD options (use --optimizer sgd)",
                ));
            }
        }
        other => {
            return Err(user_error(format!(
                "--optimizer {other}: expected sgd or adamw"
            )))
        }
    }
    Ok(OptimizerSpec {
        name: args.optimizer.clone(),
        lr: args.lr,
        momentum: args.momentum,
        dampening: args.dampening,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        decay_norm_and_bias: !args.no_decay_norm_bias,
    }
    .build()?)
}

/// Runs `dsconv train`.
pub fn run(args: Args) -> Result<()> {
    let arch = arch(&args.model)?;
    if args.batch < 2 {
        return Err(user_error(
            "--batch must be at least 2 (BatchNorm trains on batch statistics)",
        ));
    }
    if !(0.0..=1.0).contains(&args.label_smoothing) {
        return Err(user_error("--label-smoothing must be in [0, 1]"));
    }
    let widths = parse_widths(&args.widths)?;
    let schedule = parse_schedule(&args.schedule)?;
    let mut opt = optimizer(&args)?;
    let exec = Executor::new(args.threads)?;
    let (train, source) = data::load(&args.data, None).context("--data")?;
    let dropout = args.dropout.unwrap_or(arch.default_dropout());
    if !(0.0..1.0).contains(&dropout) {
        return Err(user_error("--dropout must be in [0, 1)"));
    }
    if !(0.0..1.0).contains(&args.drop_path) {
        return Err(user_error("--drop-path must be in [0, 1)"));
    }
    let (mut model, fresh) = build_model(
        arch,
        &train,
        args.init.as_deref(),
        ModelArgs {
            width: args.alpha,
            widths,
            kernel: args.kernel,
            dropout,
            drop_path: args.drop_path,
            classes: args.classes,
            seed: args.seed,
        },
    )?;
    let classes = model.config().classes;
    let train = train.with_classes(classes).context("--data")?;
    let train = normalise_folder(arch, source, train)?;
    let val = match &args.val {
        Some(spec) => {
            let (v, vsource) = data::load(spec, Some(classes)).context("--val")?;
            Some(normalise_folder(arch, vsource, v)?)
        }
        None => None,
    };
    if let Some(v) = &val {
        if v.image_dims() != train.image_dims() {
            return Err(user_error(format!(
                "--val images are {:?}, the training images {:?}",
                v.image_dims(),
                train.image_dims()
            )));
        }
    }
    if args.resume {
        let init = args.init.as_deref().unwrap_or(Path::new(""));
        let path = optimizer_path(init);
        dsconv::train::load_optimizer(&path, &mut opt, &mut model)
            .with_context(|| format!("--resume: {}", path.display()))?;
    }
    let per_epoch = steps_per_epoch(train.len(), args.batch);
    if per_epoch == 0 {
        return Err(user_error(format!(
            "--data has {} image(s): too few for a batch of at least 2",
            train.len()
        )));
    }
    let steps = match (args.steps, args.epochs) {
        (Some(s), _) => s,
        (None, e) => e.unwrap_or(10) * per_epoch,
    };
    if steps == 0 {
        return Err(user_error("--epochs / --steps must be at least 1"));
    }
    let augment_on = match source {
        _ if args.no_augment => false,
        Source::Folder => true,
        Source::Npy | Source::Digits => args.augment,
    };
    let mut plan = FitConfig::new(train.len(), args.batch, Length::Steps(steps), opt.base_lr())?;
    plan.shuffle = !args.no_shuffle;
    plan.augment =
        augment_on.then(|| Augment::for_images(train.image_dims(), source == Source::Folder));
    plan.seed = args.seed;
    plan.schedule.schedule = schedule;
    plan.schedule.warmup = args.warmup;
    plan.label_smoothing = args.label_smoothing;
    let params = model.parameter_count();
    let macs = model.macs_per_image()?;
    let say = |line: String| -> Result<()> {
        if args.json {
            eprintln!("{line}");
            Ok(())
        } else {
            outln!("{line}")
        }
    };
    say(format!(
        "{}: {} parameters, {} MACs per image; {} training images {:?}, {} classes; {} steps \
         ({} per epoch, batch {}), {} lr {}, {} thread(s)",
        arch.name(),
        params,
        macs,
        train.len(),
        train.image_dims(),
        classes,
        steps,
        per_epoch,
        args.batch,
        opt.name(),
        opt.base_lr(),
        exec.threads()
    ))?;
    if fresh {
        say(format!(
            "fine-tuning: every tensor from {} except the classifier ({}), initialised \
             afresh for {classes} classes",
            args.init.as_deref().unwrap_or(Path::new("")).display(),
            arch.classifier_name()
        ))?;
    }
    let bar = Bar::stderr();
    let start = Instant::now();
    let history = fit(
        &mut model,
        &mut opt,
        &train,
        val.as_ref(),
        &plan,
        &exec,
        |event| -> Result<()> {
            let r = match event {
                Event::Step(s) => {
                    bar.update(
                        s.epoch_step,
                        s.epoch_steps,
                        s.epoch,
                        s.mean_loss,
                        s.accuracy,
                        s.images_per_s,
                    );
                    return Ok(());
                }
                Event::Epoch(r) => r,
            };
            bar.clear();
            let val = match (r.val_accuracy, r.val_loss) {
                (Some(a), Some(l)) => format!("  val loss {l:.4}  val acc {:.2}%", a * 100.0),
                _ => String::new(),
            };
            say(format!(
                "epoch {:>3}  loss {:.4}  acc {:.2}%{val}  {:.0} img/s",
                r.epoch,
                r.loss,
                r.accuracy * 100.0,
                r.images_per_s
            ))
        },
    );
    bar.clear();
    let reports = history?.epochs;
    let seconds = start.elapsed().as_secs_f64();
    let opt_path = save_training(&args.out, &mut model, &opt, steps)?;
    let last = reports.last();
    if args.json {
        let epochs: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "epoch": r.epoch, "loss": r.loss, "accuracy": r.accuracy,
                    "images_per_s": r.images_per_s,
                    "val_accuracy": r.val_accuracy, "val_loss": r.val_loss,
                })
            })
            .collect();
        let summary = serde_json::json!({
            "model": arch.name(),
            "parameters": params,
            "macs_per_image": macs,
            "steps": steps,
            "seconds": seconds,
            "threads": exec.threads(),
            "final_loss": last.map(|r| r.loss),
            "final_accuracy": last.map(|r| r.accuracy),
            "val_accuracy": last.and_then(|r| r.val_accuracy),
            "epochs": epochs,
            "checkpoint": args.out.display().to_string(),
            "optimizer_state": opt_path.display().to_string(),
        });
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        outln!(
            "trained {} steps in {:.1} s{}; wrote {} and {}",
            steps,
            seconds,
            last.and_then(|r| r.val_accuracy)
                .map(|a| format!(", validation accuracy {:.2}%", a * 100.0))
                .unwrap_or_default(),
            args.out.display(),
            opt_path.display()
        )?;
    }
    Ok(())
}
