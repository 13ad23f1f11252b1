//! `dsconv run`: a pretrained network on a preprocessed batch in a `.npy` file, logits out.

use super::user_error;
use anyhow::Result;
use dsconv::models::{Network, NAMES};
use dsconv::npy::{read_npy, write_npy};
use dsconv::weights::StateDict;
use dsconv::{Executor, Tensor};
use std::path::PathBuf;

/// Shown after the options.
const AFTER_HELP: &str = "\
The input is already preprocessed (for EfficientNet-Lite0: resize 256, crop 224,
(x/255 - 0.5)/0.5); the output holds raw logits, one row per image. Checkpoints are
PyTorch state_dicts (.pth/.pt, zip or legacy) or .safetensors, in the names of
lukemelas EfficientNet-PyTorch (efficientnet-lite0), torchvision (mobilenet-v2) or the
classic PyTorch MobileNetV1 (mobilenet-v1: model.N.M, fc; ReLU; 224x224 inputs only).

Examples:
  dsconv run --model efficientnet-lite0 --weights efficientnet-lite0-57934424.pth \\
             --input x.npy --output logits.npy
  dsconv run --model mobilenet-v2 --alpha 0.5 --weights mobilenet_v2.pth --threads 2 \\
             --input x.npy --output logits.npy";

/// Arguments of `dsconv run`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// efficientnet-lite0 … efficientnet-lite4, mobilenet-v1, mobilenet-v2.
    #[arg(long)]
    model: String,
    /// Checkpoint: PyTorch .pth/.pt (zip or legacy) or .safetensors.
    #[arg(long)]
    weights: PathBuf,
    /// Width multiplier (the MobileNets only).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Input batch, float32/float64 NCHW [N, 3, H, W], already normalised.
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// Where to write the logits, float32 [N, classes].
    #[arg(long, value_name = "Y.npy")]
    output: PathBuf,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Runs `dsconv run`.
pub fn run(args: Args) -> Result<()> {
    if !NAMES.contains(&args.model.as_str()) {
        return Err(user_error(format!(
            "--model '{}' is not one of {}",
            args.model,
            NAMES.join(", ")
        )));
    }
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
    let x = Tensor::from_nchw(x.data, dims)?;
    let sd = StateDict::load(&args.weights)?;
    let net = Network::from_state_dict(&args.model, &sd, args.alpha)?;
    let exec = Executor::new(args.threads)?;
    let y = net.forward_with(&x, &exec)?;
    let [n, classes, ..] = y.logical_dims();
    write_npy(&args.output, &[n, classes], y.data())?;
    Ok(())
}
