//! `dsconv bench`: times MobileNet layers (`--layers`) or a whole network (`--model`)
//! through dsconv's public layer API and reports each against the limits this machine
//! measures at start-up (FMA peak, DRAM read bandwidth; see `dsconv::machine`).
//!
//! Timing: one warm-up call (plus more until 20 ms have passed), then timed calls until
//! there are at least `--runs` of them and they add up to `--min-time`, or they add up to
//! `--max-time` with at least 3 runs; the median is reported. Short operations therefore
//! get many runs and slow ones few. FLOPs are 2 · MACs of `dsconv::cost`; bytes are the
//! cost model's bytes read + written (each tensor once), so GB/s is what the operation
//! would need from memory at its speed, not a hardware counter.

mod layers;
mod model;
mod onnx;
mod timing;
mod train;

use super::user_error;
use anyhow::{Context, Result};
use dsconv::models::mobilenet_v1;
use dsconv::models::registry::{self, Family, ModelSpec};
use dsconv::Executor;
use layers::LayerPlan;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;
pub use timing::median_and_min;
use timing::{Budget, Progress, MAX_RUNS};

const EXAMPLES: &str = "\
Examples:
  dsconv bench --layers mobilenet-v1 --threads 2
  dsconv bench --layers mobilenet-v1 --ops pointwise,separable --blocks 12,13 --json
  dsconv bench --layers mobilenet-v1 --width 0.5 --resolution 160 --batch 8 --runs 50
  dsconv bench --model mobilenet-v1 --threads 2 --json
  dsconv bench --model efficientnet-lite0 --weights efficientnet-lite0-57934424.pth --threads 2
  dsconv bench --model mobilenet-v2 --width 0.75 --batch 8
  dsconv bench --train --model ds-cnn --batch 32 --threads 2
  dsconv bench --train --model mobilenet-v2 --batch 32 --threads 2 --runs 3 --json

Networks: mobilenet-v1 (--layers or --model), mobilenet-v2 and efficientnet-lite0 ...
efficientnet-lite4 (--model; --resolution defaults to the network's: 224, Lite1..4 240,
260, 280, 300). --model runs random weights unless --weights loads a PyTorch or
safetensors checkpoint (mobilenet-v1: the classic PyTorch naming, see
docs/models-and-weights.md).

Layers (--layers): block 0 is the stem (a standard 3x3 conv: only the standard op), blocks
1..=13 the depthwise separable blocks. Operations (--ops): depthwise, pointwise, separable
(fused, DepthwiseSeparableConv2d), separable_unfused (depthwise then pointwise, the
intermediate tensor written out), standard (dense 3x3 conv of the block's shape). Every
layer runs with forward_into on 64-byte-aligned NHWC tensors allocated once, random
weights, bias and ReLU6 fused.

Training (--train --model NAME): steps of a trainable model (ds-cnn, std-cnn: 1x8x8
digits-shaped, 10 classes; mobilenet-v1, mobilenet-v2, efficientnet-lite0: 3x224x224, 1000
classes; --resolution sets the size) on a random batch (--batch, default 32), one warm-up
step, then the timing rule; per phase medians, images/s, GFLOP/s of 3 x forward FLOPs, peak
resident memory.

Timing rule: one warm-up call (more until 20 ms), then timed runs until there are --runs of
them adding up to --min-time, or they add up to --max-time with at least 3; the median is
reported. FLOPs = 2 x MACs; % peak and % bw are against this machine's FMA peak and DRAM
read bandwidth, measured at start-up (see dsconv info).";

/// Seed of the random weights and inputs (any fixed value: results must not depend on it).
const SEED: u64 = 0x00D5_C0DE;

/// Arguments of `dsconv bench`.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Time NETWORK's layers op by op (mobilenet-v1)
    #[arg(
        long,
        value_name = "NETWORK",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub layers: Option<String>,
    /// Time the whole NETWORK, input to logits (see below)
    #[arg(long, value_name = "NETWORK")]
    pub model: Option<String>,
    /// Time training steps of a trainable --model, per phase
    #[arg(long, requires = "model")]
    pub train: bool,
    /// --train optimizer: sgd (momentum 0.9, lr 0.01) or adamw (lr 3e-3)
    #[arg(long, value_name = "NAME", requires = "train")]
    pub optimizer: Option<String>,
    /// Checkpoint (.pth, .safetensors) for --model; random weights without
    #[arg(long, value_name = "PATH", requires = "model")]
    pub weights: Option<std::path::PathBuf>,
    /// Width multiplier α (channels scale by α)
    #[arg(long, default_value_t = 1.0, value_name = "ALPHA")]
    pub width: f64,
    /// Input resolution (height = width) [default: the network's, e.g. 224]
    #[arg(long, value_name = "R")]
    pub resolution: Option<usize>,
    /// Images per batch [default: 1; --train: 32]
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,
    /// ONNX --model input shape, e.g. 1x3x224x224 (--batch sets dim 0)
    #[arg(long, value_name = "NxCxHxW", requires = "model")]
    pub input_shape: Option<String>,
    /// Threads (0 = one per available core)
    #[arg(long, default_value_t = 0, value_name = "T")]
    pub threads: usize,
    /// Minimum timed runs per measurement (timing rule below)
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub runs: usize,
    /// Keep timing until the runs add up to this many seconds
    #[arg(long, default_value_t = 0.3, value_name = "SECONDS")]
    pub min_time: f64,
    /// Stop after this many seconds of runs, once there are 3
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub max_time: f64,
    /// Only these operations, comma-separated (--layers only)
    #[arg(long, value_delimiter = ',', value_name = "OPS")]
    pub ops: Vec<String>,
    /// Only these blocks, comma-separated (0 = the stem; --layers only)
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub blocks: Vec<usize>,
    /// Print JSON on stdout instead of a table
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr
    #[arg(long)]
    pub quiet: bool,
    /// ONNX --model: also time each plan step (median ms, share)
    #[arg(long, requires = "model")]
    pub profile: bool,
}

impl Args {
    /// `--batch`, 1 when not given.
    fn batch(&self) -> usize {
        self.batch.unwrap_or(1)
    }
}

/// Largest single activation tensor a benchmark may allocate (several are alive at once).
const MAX_ACTIVATION_BYTES: u128 = 4 << 30;

/// The arguments with the network looked up in the registry and the resolution resolved.
struct Setup<'a> {
    args: &'a Args,
    spec: &'static ModelSpec,
    /// `--resolution`, or the network's own.
    resolution: usize,
}

/// Runs `dsconv bench`.
pub fn run(args: Args) -> Result<()> {
    // Every argument is checked before the machine is measured, so mistakes fail at once.
    let (name, layers) = match (&args.layers, &args.model) {
        (Some(name), _) => (name, true),
        (_, Some(name)) => (name, false),
        (None, None) => return Err(user_error("give --layers NETWORK or --model NETWORK")),
    };
    if args.train {
        let report = train::run(&args, name)?;
        return print(&args, &report);
    }
    if !layers && crate::cmd::onnx::is_onnx(name) {
        return run_onnx(&args, name);
    }
    if args.input_shape.is_some() || args.profile {
        return Err(user_error(
            "--input-shape and --profile apply to an ONNX --model (FILE.onnx)",
        ));
    }
    let spec = registry::lookup(name)?;
    let setup = Setup {
        args: &args,
        spec,
        resolution: args.resolution.unwrap_or(spec.resolution),
    };
    validate(&setup)?;
    let plan = if layers {
        if spec.family != Family::MobileNetV1 {
            return Err(user_error(format!(
                "--layers knows mobilenet-v1 only; time {} whole with --model",
                spec.name
            )));
        }
        Some(LayerPlan::new(&setup)?)
    } else {
        spec.check_width(args.width).context("--width")?;
        None
    };
    let exec = Executor::new(args.threads)?;
    let threads = exec.threads();
    let progress = Progress::new(args.quiet);
    progress.now("measuring the machine (FMA peak, memory bandwidth)...");
    let machine = dsconv::machine::profile(threads);
    let budget = Budget {
        runs: args.runs,
        min_time: Duration::from_secs_f64(args.min_time),
        max_time: Duration::from_secs_f64(args.max_time),
    };
    let report = match plan {
        Some(plan) => layers::bench(&setup, &plan, &exec, &machine, budget, &progress)?,
        None => model::bench(&setup, &exec, &machine, budget, &progress)?,
    };
    progress.finish();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.json)?;
        writeln!(out)?;
    } else {
        out.write_all(report.table.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// `dsconv bench --model FILE.onnx`.
fn run_onnx(args: &Args, path: &str) -> Result<()> {
    if args.weights.is_some() || args.resolution.is_some() || args.width != 1.0 {
        return Err(user_error(
            "--weights, --resolution and --width apply to built-in networks; an ONNX model \
             takes --input-shape",
        ));
    }
    if args.batch() == 0 || args.batch() > 4096 || args.runs == 0 || args.runs > MAX_RUNS {
        return Err(user_error(format!(
            "--batch must be in 1..=4096 and --runs in 1..={MAX_RUNS}"
        )));
    }
    for (name, v) in [("--min-time", args.min_time), ("--max-time", args.max_time)] {
        if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
            return Err(user_error(format!(
                "{name} {v} is not a number of seconds in [0, 3600]"
            )));
        }
    }
    let exec = Executor::new(args.threads)?;
    let progress = Progress::new(args.quiet);
    progress.now("measuring the machine (FMA peak, memory bandwidth)...");
    let machine = dsconv::machine::profile(exec.threads());
    let budget = Budget {
        runs: args.runs,
        min_time: Duration::from_secs_f64(args.min_time),
        max_time: Duration::from_secs_f64(args.max_time),
    };
    let report = onnx::bench(args, path, &exec, &machine, budget, &progress)?;
    progress.finish();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.json)?;
        writeln!(out)?;
    } else {
        out.write_all(report.table.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Prints `report` as JSON (`--json`) or as its table.
fn print(args: &Args, report: &Report) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.json)?;
        writeln!(out)?;
    } else {
        out.write_all(report.table.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// What a benchmark produced: the JSON document and the table for people.
struct Report {
    json: Value,
    table: String,
}

fn validate(setup: &Setup) -> Result<()> {
    let (args, resolution) = (setup.args, setup.resolution);
    mobilenet_v1::validate(args.width, resolution)?;
    if args.batch() == 0 || args.batch() > 4096 {
        return Err(user_error(format!(
            "--batch {} is not in 1..=4096",
            args.batch()
        )));
    }
    if args.runs == 0 || args.runs > MAX_RUNS {
        return Err(user_error(format!(
            "--runs {} is not in 1..={MAX_RUNS}",
            args.runs
        )));
    }
    for (name, v) in [("--min-time", args.min_time), ("--max-time", args.max_time)] {
        if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
            return Err(user_error(format!(
                "{name} {v} is not a number of seconds in [0, 3600]"
            )));
        }
    }
    if args.model.is_some() && (!args.ops.is_empty() || !args.blocks.is_empty()) {
        return Err(user_error("--ops and --blocks apply to --layers only"));
    }
    // The largest activation tensor, so an absurd --batch × --resolution is refused with a
    // message instead of an allocation failure.
    let largest = mobilenet_v1::stages(args.width, resolution)?
        .iter()
        .map(|s| {
            let input = s.in_size as u128 * s.in_size as u128 * s.in_channels.max(3) as u128;
            let output = s.out_size as u128 * s.out_size as u128 * s.out_channels as u128;
            input.max(output)
        })
        .max()
        .unwrap_or(0);
    let bytes = largest * args.batch() as u128 * 4;
    if bytes > MAX_ACTIVATION_BYTES {
        return Err(user_error(format!(
            "--batch {} at --resolution {} needs activations of {:.1} GiB, more than the {} GiB allowed",
            args.batch(),
            resolution,
            bytes as f64 / (1u64 << 30) as f64,
            MAX_ACTIVATION_BYTES >> 30
        )));
    }
    Ok(())
}

/// The first line of a table: what ran, and the machine it ran against.
fn header(setup: &Setup, threads: usize, machine: &dsconv::machine::Profile) -> String {
    let (args, r) = (setup.args, setup.resolution);
    format!(
        "{} α={} {}x{}, batch {}, {} thread{}; measured FMA peak {:.1} GFLOP/s ({}), DRAM read {:.1} GB/s\n",
        setup.spec.name,
        args.width,
        r,
        r,
        args.batch(),
        threads,
        if threads == 1 { "" } else { "s" },
        machine.peak_gflops,
        machine.isa,
        machine.dram_read_gbs
    )
}
