//! `dsconv`: depthwise separable convolution from the command line.
//!
//! Each subcommand lives in `cmd/`, one file per command. Errors are data in the library;
//! here they become one line on stderr and an exit code: 2 for bad input (files, shapes,
//! arguments), 1 for internal failures, 0 when a downstream pipe closes early.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Shown after the command list of `dsconv --help`.
const EXAMPLES: &str = "\
Examples:
  dsconv demo                                              # the seed's example, MobileNetV1
  dsconv cost --input 7x7x3 --out-channels 128 --kernel 3  # 86,400 vs 10,275 MACs
  dsconv cost --model mobilenet-v1 --as-standard           # the paper's 4,866 M / 29.3 M
  dsconv conv2d --input x.npy --weight w.npy --padding same --output y.npy
  dsconv bench --layers mobilenet-v1 --threads 2           # each layer vs the FMA peak
  dsconv info                                              # CPU features, measured peak
  dsconv classify --weights efficientnet-lite0.pth cat.png    # ImageNet top-5
  dsconv train --model ds-cnn --data digits --epochs 10 --out ds.safetensors
  dsconv eval --model ds-cnn --weights ds.safetensors --data digits-test

'dsconv COMMAND --help' explains a command, with more examples. Bad input prints one line
starting with 'dsconv: error:' and exits with status 2 (internal failures: 1).";

/// Depthwise separable convolution: exact like PyTorch, fast on the CPU.
#[derive(Parser)]
#[command(
    name = "dsconv",
    version,
    about = "Depthwise separable convolution: exact like PyTorch, fast on the CPU",
    long_about = None,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Variants are boxed: argument structs differ a lot in size and live once per run.
#[derive(Subcommand)]
enum Command {
    /// Walk through the seed's example and MobileNetV1, standard vs depthwise separable.
    Demo(Box<cmd::demo::Args>),
    /// Count multiply-accumulates, parameters and bytes of a layer or a model.
    Cost(Box<cmd::cost::Args>),
    /// Run one convolution on .npy files.
    Conv2d(Box<cmd::conv2d::Args>),
    /// Time MobileNet layers or a whole network against the measured machine limits.
    Bench(Box<cmd::bench::Args>),
    /// Show the CPU, its SIMD features and its measured FMA peak and memory bandwidth.
    Info(Box<cmd::info::Args>),
    /// Classify photos with a pretrained network (ImageNet top-K).
    Classify(Box<cmd::classify::Args>),
    /// Run a pretrained network on a preprocessed .npy batch; logits to .npy.
    Run(Box<cmd::run::Args>),
    /// Train ds-cnn / std-cnn on the digits, NumPy data or an image folder.
    Train(Box<cmd::train::Args>),
    /// Accuracy, mean loss and per-class accuracy of a trained checkpoint.
    Eval(Box<cmd::eval::Args>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return cmd::report_usage(err),
    };
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(*args),
        Command::Cost(args) => cmd::cost::run(*args),
        Command::Conv2d(args) => cmd::conv2d::run(*args),
        Command::Bench(args) => cmd::bench::run(*args),
        Command::Info(args) => cmd::info::run(*args),
        Command::Classify(args) => cmd::classify::run(*args),
        Command::Run(args) => cmd::run::run(*args),
        Command::Train(args) => cmd::train::run(*args),
        Command::Eval(args) => cmd::eval::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cmd::report(&err),
    }
}
