//! `dsconv eval`: accuracy, mean loss and per-class accuracy of a trained checkpoint.

use super::data::{self, DATA_HELP};
use super::train::{arch, build_model, normalise_folder, ModelArgs};
use anyhow::{Context, Result};
use dsconv::Executor;
use std::path::PathBuf;

const ABOUT: &str = "\
Examples:
  dsconv eval --model ds-cnn --weights ds.safetensors --data digits-test
  dsconv eval --model mobilenet-v2 --weights mnv2.safetensors --data photos-val/

The class count (and the widths of ds-cnn / std-cnn) come from the checkpoint. Folder
images are normalised with the ImageNet networks' mean and std, as in dsconv train.";

/// Arguments of `dsconv eval`.
#[derive(clap::Args)]
#[command(after_help = ABOUT)]
pub struct Args {
    /// ds-cnn, std-cnn, mobilenet-v1, mobilenet-v2 or efficientnet-lite0.
    #[arg(long)]
    model: String,
    /// Width multiplier of mobilenet-v1 / mobilenet-v2.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Checkpoint (`dsconv train --out`, or a PyTorch state_dict file)
    #[arg(long)]
    weights: PathBuf,
    #[arg(long, help = format!("Data: {DATA_HELP}"))]
    data: String,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `dsconv eval`.
pub fn run(args: Args) -> Result<()> {
    let arch = arch(&args.model)?;
    let exec = Executor::new(args.threads)?;
    let (data, source) = data::load(&args.data, None).context("--data")?;
    let model_args = ModelArgs {
        width: args.alpha,
        widths: vec![1, 1],
        kernel: 3,
        dropout: 0.0,
        drop_path: 0.0,
        classes: None,
        seed: 0,
    };
    let (mut model, _) = build_model(arch, &data, Some(&args.weights), model_args)?;
    let data = data
        .with_classes(model.config().classes)
        .context("--data")?;
    let data = normalise_folder(arch, source, data)?;
    let stats = model.evaluate(&data, args.batch.max(1), &exec)?;
    let per_class: Vec<Option<f64>> = stats
        .per_class
        .iter()
        .map(|&(c, t)| (t > 0).then(|| c as f64 / t as f64))
        .collect();
    if args.json {
        let v = serde_json::json!({
            "model": arch.name(),
            "images": stats.total,
            "accuracy": stats.accuracy,
            "loss": stats.loss,
            "per_class_accuracy": per_class,
            "per_class_count": stats.per_class.iter().map(|c| c.1).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    outln!(
        "{} on {} images: accuracy {:.2}% ({} correct), mean loss {:.4}",
        arch.name(),
        stats.total,
        stats.accuracy * 100.0,
        stats.per_class.iter().map(|c| c.0).sum::<usize>(),
        stats.loss
    )?;
    for (k, (&(c, t), acc)) in stats.per_class.iter().zip(&per_class).enumerate() {
        let acc = acc.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
        outln!("  class {k:>3}: {acc:>8}  ({c}/{t})")?;
    }
    Ok(())
}
