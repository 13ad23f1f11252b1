//! `dsconv run`: a pretrained network on a preprocessed batch in a `.npy` file, logits out.
//!
//! Non-finite values do not stop it: the logits are written as computed (the user asked
//! for them raw), and one warning line on stderr each says how many of the input's
//! values, the checkpoint's and the logits are NaN or infinite; the exit code stays 0.

use super::values::{self, NonFinite};
use super::{one_line, user_error};
use anyhow::{Context, Result};
use dsconv::models::registry;
use dsconv::npy::{read_npy, write_npy};
use dsconv::weights::StateDict;
use dsconv::{Executor, Tensor};
use std::path::PathBuf;

/// Shown after the options.
const AFTER_HELP: &str = "\
The input is already preprocessed (for EfficientNet-Lite0: resize 256, crop 224,
(x/255 - 0.5)/0.5; the MobileNets: resize 256, crop 224, ImageNet mean and std); the
output holds raw logits, one row per image. NaN or infinite values in the input, the
checkpoint or the logits are reported on stderr, one warning line each; the logits are
written as computed and the exit code stays 0. Checkpoints are
PyTorch state_dicts (.pth/.pt, zip or legacy) or .safetensors, in the names of
lukemelas EfficientNet-PyTorch (efficientnet-lite0), torchvision (mobilenet-v2) or the
classic PyTorch MobileNetV1 (mobilenet-v1: model.N.M, fc; ReLU; 224x224 inputs only).

An ONNX model (--model FILE.onnx) needs no --weights: every NCHW .npy --input (one per
graph input) goes in as is, and each graph output goes to its --output, or all of them into
one --output directory (NAME.npy each). See docs/onnx.md.

Examples:
  dsconv run --model mobilenet_v3_small.onnx --input x.npy --output logits.npy --threads 2
  dsconv run --model efficientnet-lite0 --weights efficientnet-lite0-57934424.pth \\
             --input x.npy --output logits.npy
  dsconv run --model mobilenet-v2 --alpha 0.5 --weights mobilenet_v2.pth --threads 2 \\
             --input x.npy --output logits.npy";

/// Arguments of `dsconv run`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// efficientnet-lite0…4, mobilenet-v1/-v2 (or an alias), or FILE.onnx
    #[arg(long)]
    model: String,
    /// Checkpoint .pth/.pt or .safetensors (built-in networks only)
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Width multiplier (the MobileNets only; 1 for the others).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// NCHW float32/float64 batch, normalised (ONNX: one per graph input)
    #[arg(long, value_name = "X.npy", required = true)]
    input: Vec<PathBuf>,
    /// The logits, float32 [N, classes] (ONNX: one per output, or a directory)
    #[arg(long, value_name = "Y.npy", required = true)]
    output: Vec<PathBuf>,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Runs `dsconv run`.
pub fn run(args: Args) -> Result<()> {
    if super::onnx::is_onnx(&args.model) {
        if args.weights.is_some() {
            return Err(user_error(
                "--weights: an ONNX model carries its own weights",
            ));
        }
        return super::onnx::run(&args.model, &args.input, &args.output, args.threads);
    }
    let (Some(weights), [input], [output]) = (&args.weights, &args.input[..], &args.output[..])
    else {
        return Err(user_error(format!(
            "{} needs --weights and one --input and one --output",
            args.model
        )));
    };
    let args = BuiltinArgs {
        model: args.model.clone(),
        weights: weights.clone(),
        alpha: args.alpha,
        input: input.clone(),
        output: output.clone(),
        threads: args.threads,
    };
    let spec = registry::lookup(&args.model)?;
    spec.check_width(args.alpha).context("--alpha")?;
    let x = read_npy(&args.input)?;
    let dims: [usize; 4] = x.shape.as_slice().try_into().map_err(|_| {
        user_error(format!(
            "{}: expected a rank-4 NCHW array [N, 3, H, W], got shape {:?}",
            args.input.display(),
            x.shape
        ))
    })?;
    if dims.contains(&0) {
        return Err(user_error(format!(
            "{}: empty array of shape {:?}",
            args.input.display(),
            x.shape
        )));
    }
    let input_non_finite = NonFinite::count(&x.data);
    let x = Tensor::from_nchw(x.data, dims)?;
    let sd = StateDict::load(&args.weights)?;
    // MobileNetV1 is built for its registry resolution (224), the others run any size.
    let net = spec.from_state_dict(&sd, args.alpha, spec.resolution)?;
    let exec = Executor::new(args.threads)?;
    let y = net.forward_with(&x, &exec)?;
    let [n, classes, ..] = y.logical_dims();
    write_npy(&args.output, &[n, classes], y.data())?;
    // Warnings only once the output exists: an error stays the one line on stderr.
    if input_non_finite.total() > 0 {
        warn(&format!(
            "{}: {} of {} input values are not finite ({input_non_finite})",
            args.input.display(),
            input_non_finite.total(),
            x.data().len()
        ));
    }
    if let Some((bad, first)) = values::in_checkpoint(&sd) {
        warn(&format!(
            "{}: {} weights are not finite ({bad}; first in '{first}')",
            args.weights.display(),
            bad.total()
        ));
    }
    let logits = NonFinite::count(y.data());
    if logits.total() > 0 {
        warn(&format!(
            "{}: {} of {} logits are not finite ({logits}): the input or the weights hold \
             NaN/Inf, or a value overflowed f32; written as computed",
            args.output.display(),
            logits.total(),
            y.data().len()
        ));
    }
    Ok(())
}

/// The arguments of a built-in network's run.
struct BuiltinArgs {
    model: String,
    weights: PathBuf,
    alpha: f64,
    input: PathBuf,
    output: PathBuf,
    threads: usize,
}

/// One warning line on stderr.
fn warn(message: &str) {
    eprintln!("dsconv: warning: {}", one_line(message));
}
