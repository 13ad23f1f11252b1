//! `dsconv classify`: top-K classes of photos with a pretrained network of the registry,
//! preprocessed as its weights expect unless the preprocessing flags (`--resize`, `--crop`,
//! `--resample`, `--mean`, `--std`; [`PreprocessArgs`]) say otherwise. Class names are
//! ImageNet's or a `--labels` file's. Logits that are not finite are an error (exit 2)
//! naming the image: NaN cannot be ranked.

use super::parse;
use super::values::{self, NonFinite};
use crate::cmd::user_error;
use anyhow::{Context, Result};
use dsconv::models::registry::{self, Family, MODELS};
use dsconv::preprocess::{preprocess_batch, Preprocess, Resampling, Rgb8};
use dsconv::weights::StateDict;
use dsconv::Executor;
use std::path::{Path, PathBuf};

/// The 1000 ImageNet-1k class names in index order (torchvision's list).
const LABELS: &str = include_str!("../imagenet_classes.txt");

/// ImageNet-1k classes: what the checkpoint's classifier must have without `--labels`.
const CLASSES: usize = 1000;

/// Shown after the options.
const AFTER_HELP: &str = "\
Preprocessing (as torchvision on a PIL image: Resize, CenterCrop, ToTensor, Normalize),
from the model's registry entry unless a flag overrides it:
  efficientnet-lite0: --resize 256 --crop 224 --resample bicubic --mean 0.5 --std 0.5
  mobilenet-v1, mobilenet-v2 (torchvision): --resize 256 --crop 224 --resample bilinear
    --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
Pillow's filters are reproduced byte for byte. A model without built-in preprocessing (an
ONNX classifier) takes it from the flags alone: give --resize, --crop, --mean and --std
(--resample defaults to bilinear, torchvision's default). Probabilities are the softmax of
the logits. Logits that are NaN or infinite are an error naming the image (exit 2).

Examples:
  # torchvision's ImageNet MobileNetV2 (scripts/fetch_mobilenetv2_weights.sh fetches it)
  dsconv classify --model mobilenet-v2 --weights mobilenet_v2-b0353104.pth chelsea.png
  # EfficientNet-Lite0 (scripts/fetch_effnet_weights.sh), top 1 as JSON
  dsconv classify --weights efficientnet-lite0-57934424.pth --top 1 --json photo.jpg
  # another crop, and a fine-tuned checkpoint with its own class names
  dsconv classify --model mobilenet-v2 --resize 320 --crop 288 --weights w.pth photo.jpg
  dsconv classify --model mobilenet-v2 --weights flowers.pth --labels flowers.txt a.jpg";

/// The preprocessing flags: each overrides one number of the model's own pipeline; a
/// model without one (an ONNX classifier) needs `--resize`, `--crop`, `--mean` and
/// `--std`. [`PreprocessArgs::resolve`] turns them into a [`Preprocess`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PreprocessArgs {
    /// Resize: N (shorter side to N, aspect kept), HxW (exactly) or none.
    #[arg(long, value_name = "N|HxW|none")]
    resize: Option<String>,
    /// Centre crop: N (square), HxW or none; the network's input size.
    #[arg(long, value_name = "N|HxW|none")]
    crop: Option<String>,
    /// Resize filter: bilinear (torchvision's default) or bicubic (Pillow's).
    #[arg(long, value_name = "FILTER")]
    resample: Option<String>,
    /// Subtracted after scaling to [0, 1]: R,G,B or one value for all.
    #[arg(long, value_name = "R,G,B", allow_hyphen_values = true)]
    mean: Option<String>,
    /// Then divided per channel: R,G,B or one value for all (non-zero).
    #[arg(long, value_name = "R,G,B", allow_hyphen_values = true)]
    std: Option<String>,
}

impl PreprocessArgs {
    /// The pipeline: `default` (the model's own) with every flag given replacing its
    /// number; without a default, `--resize`, `--crop`, `--mean` and `--std` are required
    /// (one error naming all that are missing). `model` names the model in that error.
    pub fn resolve(&self, default: Option<Preprocess>, model: &str) -> Result<Preprocess> {
        let resize = self
            .resize
            .as_deref()
            .map(|t| parse::resize("--resize", t))
            .transpose()?;
        let crop = self
            .crop
            .as_deref()
            .map(|t| parse::crop("--crop", t))
            .transpose()?;
        let resampling = self
            .resample
            .as_deref()
            .map(|t| parse::resampling("--resample", t))
            .transpose()?;
        let mean = self
            .mean
            .as_deref()
            .map(|t| parse::rgb("--mean", t, false))
            .transpose()?;
        let std = self
            .std
            .as_deref()
            .map(|t| parse::rgb("--std", t, true))
            .transpose()?;
        let spec = match default {
            Some(d) => Preprocess {
                resize: resize.unwrap_or(d.resize),
                crop: crop.unwrap_or(d.crop),
                resampling: resampling.unwrap_or(d.resampling),
                mean: mean.unwrap_or(d.mean),
                std: std.unwrap_or(d.std),
            },
            None => match (resize, crop, mean, std) {
                (Some(resize), Some(crop), Some(mean), Some(std)) => Preprocess {
                    resize,
                    crop,
                    resampling: resampling.unwrap_or(Resampling::Bilinear),
                    mean,
                    std,
                },
                _ => {
                    let missing: Vec<&str> = [
                        ("--resize", self.resize.is_none()),
                        ("--crop", self.crop.is_none()),
                        ("--mean", self.mean.is_none()),
                        ("--std", self.std.is_none()),
                    ]
                    .iter()
                    .filter(|(_, m)| *m)
                    .map(|(f, _)| *f)
                    .collect();
                    return Err(user_error(format!(
                        "{model} has no built-in preprocessing: give --resize, --crop, --mean \
                         and --std (missing: {})",
                        missing.join(", ")
                    )));
                }
            },
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// Arguments of `dsconv classify`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Network (see Preprocessing below)
    #[arg(long, default_value = "efficientnet-lite0")]
    model: String,
    /// Width multiplier (the MobileNets only; 1 for the others).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Checkpoint .pth/.pt or .safetensors (none for a .onnx model)
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Class names, one per line in index order (default: ImageNet's 1000).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Classes to print per image [default: 5, or all when fewer]
    #[arg(long)]
    top: Option<usize>,
    /// Print JSON: [{image, top: [{index, label, probability}, ...]}, ...]
    #[arg(long)]
    json: bool,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    preprocess: PreprocessArgs,
    /// PNG or JPEG photos.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// Decodes a PNG or JPEG photo to 8-bit RGB (alpha dropped, grey replicated, as PIL's
/// `convert("RGB")`); a one-line error naming the file otherwise.
pub fn decode(path: &Path) -> Result<Rgb8> {
    let img = image::open(path)
        .map_err(|e| user_error(format!("{}: cannot decode image: {e}", path.display())))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Rgb8::new(w, h, img.into_raw())
        .map_err(|e| user_error(format!("{}: empty image ({e})", path.display())))
}

/// The class names: ImageNet's, or the lines of `--labels` (a trailing empty line
/// ignored; none may be empty).
fn labels(path: Option<&Path>) -> Result<Vec<String>> {
    let Some(path) = path else {
        return Ok(LABELS.lines().map(str::to_string).collect());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_error(format!("--labels {}: {e}", path.display())))?;
    let names: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
        return Err(user_error(format!(
            "--labels {}: line {} is empty; give one class name per line",
            path.display(),
            i + 1
        )));
    }
    if names.is_empty() {
        return Err(user_error(format!(
            "--labels {}: no class names",
            path.display()
        )));
    }
    Ok(names)
}

/// Softmax in f64 (max-shifted).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// The logits `[images × classes]` of a built-in network, and its checkpoint.
fn builtin_logits(args: &Args, classes: usize) -> Result<(Vec<f32>, StateDict)> {
    let spec = registry::lookup(&args.model)?;
    let p = &args.preprocess;
    let any_flag = [&p.resize, &p.crop, &p.resample, &p.mean, &p.std]
        .iter()
        .any(|f| f.is_some());
    if spec.preprocess.is_none() && !any_flag {
        let with: Vec<&str> = MODELS
            .iter()
            .filter(|m| m.preprocess.is_some())
            .map(|m| m.name)
            .collect();
        return Err(user_error(format!(
            "--model {}: no published preprocessing for its ImageNet weights; classify knows \
             {} (or give --resize, --crop, --mean and --std)",
            spec.name,
            with.join(", ")
        )));
    }
    let pipeline = args.preprocess.resolve(spec.preprocess, spec.name)?;
    spec.check_width(args.alpha).context("--alpha")?;
    let images = args
        .images
        .iter()
        .map(|p| decode(p))
        .collect::<Result<Vec<_>>>()?;
    let x = preprocess_batch(&images, &pipeline).context("preprocessing")?;
    let [_, _, height, width] = x.dims();
    // MobileNetV1's layers are built for one square size: the preprocessed one.
    let resolution = match spec.family {
        Family::MobileNetV1 if height != width => {
            return Err(user_error(format!(
                "--model {}: the input must be square; the preprocessing gives {width}×{height}",
                spec.name
            )))
        }
        _ => height,
    };
    // Images first (cheap, and the likelier mistake), then the weights.
    let Some(weights) = &args.weights else {
        return Err(user_error(format!(
            "--model {}: give --weights CHECKPOINT",
            spec.name
        )));
    };
    let sd = StateDict::load(weights)?;
    let net = spec.from_state_dict(&sd, args.alpha, resolution)?;
    let exec = Executor::new(args.threads)?;
    let logits = net.forward_with(&x, &exec)?;
    let got = logits.logical_dims()[1];
    if got != classes {
        let names = match &args.labels {
            Some(p) => format!("--labels {} names {classes}", p.display()),
            None => format!("classify names the {CLASSES} ImageNet ones (give --labels FILE)"),
        };
        return Err(user_error(format!(
            "{}: the classifier has {got} classes; {names}",
            weights.display()
        )));
    }
    Ok((logits.data().to_vec(), sd))
}

/// The logits `[images × classes]` of a `.onnx` classifier (first output; preprocessing
/// from the flags alone).
fn onnx_logits(args: &Args, classes: usize) -> Result<Vec<f32>> {
    if let Some(w) = &args.weights {
        return Err(user_error(format!(
            "--weights {}: a .onnx model holds its weights; leave --weights out",
            w.display()
        )));
    }
    let pipeline = args.preprocess.resolve(None, &args.model)?;
    let model = super::onnx::load(&args.model)?;
    let images = args
        .images
        .iter()
        .map(|p| decode(p))
        .collect::<Result<Vec<_>>>()?;
    let x = preprocess_batch(&images, &pipeline).context("preprocessing")?;
    let plan = super::onnx::plan(&model, &x.dims())?;
    let exec = Executor::new(args.threads)?;
    let ys = plan.run(&[x.data()], &exec)?;
    let y = ys
        .into_iter()
        .next()
        .ok_or_else(|| user_error(format!("{}: the model has no output", args.model)))?;
    let n = images.len();
    let per_image = y.data.len().checked_div(n).unwrap_or(0);
    if y.dims.first() != Some(&n) || per_image != classes {
        let names = match &args.labels {
            Some(p) => format!("--labels {} names {classes}", p.display()),
            None => format!("classify names the {CLASSES} ImageNet ones (give --labels FILE)"),
        };
        return Err(user_error(format!(
            "{}: the first output has shape {:?}, not [{n}, classes]; {names}",
            args.model, y.dims
        )));
    }
    Ok(y.data)
}

/// Runs `dsconv classify`.
pub fn run(args: Args) -> Result<()> {
    let labels = labels(args.labels.as_deref())?;
    let classes = labels.len();
    let top = args.top.unwrap_or(classes.min(5));
    if top == 0 || top > classes {
        return Err(user_error(format!("--top must be in 1..={classes}")));
    }
    let (logits, sd) = if super::onnx::is_onnx(&args.model) {
        (onnx_logits(&args, classes)?, None)
    } else {
        let (logits, sd) = builtin_logits(&args, classes)?;
        (logits, Some(sd))
    };
    // Every image checked before anything is printed: no partial output.
    for (path, row) in args.images.iter().zip(logits.chunks_exact(classes)) {
        let bad = NonFinite::count(row);
        if bad.total() > 0 {
            let source = match sd.as_ref().and_then(values::in_checkpoint) {
                Some((w, first)) => {
                    format!(
                        "the weights hold {} NaN/Inf (first in '{first}')",
                        w.total()
                    )
                }
                None => "the input or the weights hold NaN/Inf".to_string(),
            };
            return Err(user_error(format!(
                "logits for {} are not finite ({bad}): {source}",
                path.display()
            )));
        }
    }
    let mut results = Vec::new();
    for (path, row) in args.images.iter().zip(logits.chunks_exact(classes)) {
        let p = softmax(row);
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let top: Vec<(usize, f64)> = order[..top].iter().map(|&i| (i, p[i])).collect();
        results.push((path.display().to_string(), top));
    }
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if args.json {
        let json: Vec<serde_json::Value> = results
            .iter()
            .map(|(image, top)| {
                serde_json::json!({
                    "image": image,
                    "top": top.iter().map(|&(i, p)| serde_json::json!({
                        "index": i, "label": labels[i], "probability": p
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?).context("writing output")?;
    } else {
        for (image, top) in &results {
            writeln!(out, "{image}")?;
            for (rank, &(i, p)) in top.iter().enumerate() {
                writeln!(
                    out,
                    "  {:>2}. {:>6.2}%  {:>3}  {}",
                    rank + 1,
                    100.0 * p,
                    i,
                    labels[i]
                )?;
            }
        }
    }
    Ok(())
}
