//! `dsconv bench --train --model NAME`: training steps of a `dsconv::train::Model` (zero
//! grad, forward in train mode, cross-entropy, backward, optimizer update) on a random
//! batch, timed per phase; images/s, GFLOP/s against the measured FMA peak, peak memory.

use super::timing::{median_and_min, Budget, Progress, MAX_RUNS};
use super::{Args, Report, SEED};
use crate::cmd::user_error;
use anyhow::Result;
use dsconv::rng::SplitMix64;
use dsconv::train::{cross_entropy, AdamW, Arch, CnnConfig, Mode, Model, Optimizer, Sgd};
use dsconv::{Executor, Layout};
use serde_json::json;
use std::time::{Duration, Instant};

/// The phases of one step, in order.
const PHASES: [&str; 5] = ["zero_grad", "forward", "loss", "backward", "optimizer"];

/// Largest batch × input elements a training benchmark accepts (every activation of the
/// network is kept for backward, so this is far below what inference allows).
const MAX_INPUT_ELEMENTS: u128 = 1 << 28;

/// What the model is built for: input channels, default resolution, classes.
fn shape_of(arch: Arch) -> (usize, usize, usize) {
    if arch.is_imagenet() {
        (3, 224, 1000)
    } else {
        (1, 8, 10) // the digits
    }
}

/// `VmHWM` / `VmRSS` of this process in bytes, when Linux says.
fn proc_status(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident set (`VmHWM`) to the current one; false where it cannot.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Checks the arguments `--train` takes and refuses the others.
fn validate(args: &Args, batch: usize, optimizer: &str) -> Result<()> {
    if args.layers.is_some() {
        return Err(user_error(
            "--train times a whole model: give --model, not --layers",
        ));
    }
    if args.weights.is_some()
        || args.input_shape.is_some()
        || args.width != 1.0
        || !args.ops.is_empty()
        || !args.blocks.is_empty()
    {
        return Err(user_error(
            "--train takes --model, --batch, --resolution, --threads, --optimizer and the \
             timing options only",
        ));
    }
    if !matches!(optimizer, "sgd" | "adamw") {
        return Err(user_error(format!(
            "--optimizer {optimizer} is not sgd or adamw"
        )));
    }
    if !(2..=4096).contains(&batch) {
        return Err(user_error(format!(
            "--batch {} is not in 2..=4096 (BatchNorm trains on 2 or more images)",
            batch
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
    Ok(())
}

/// Runs `dsconv bench --train --model NAME`.
pub(super) fn run(args: &Args, name: &str) -> Result<Report> {
    let optimizer_name = args.optimizer.as_deref().unwrap_or("sgd");
    let batch = args.batch.unwrap_or(32);
    validate(args, batch, optimizer_name)?;
    let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
    let arch = Arch::lookup(name).ok_or_else(|| {
        user_error(format!(
            "unknown trainable model '{name}' (--train knows {})",
            names.join(", ")
        ))
    })?;
    let (channels, default_res, classes) = shape_of(arch);
    let res = args.resolution.unwrap_or(default_res);
    if res == 0 || res > 4096 {
        return Err(user_error(format!("--resolution {res} is not in 1..=4096")));
    }
    let elements = batch as u128 * channels as u128 * res as u128 * res as u128;
    if elements > MAX_INPUT_ELEMENTS {
        return Err(user_error(format!(
            "--batch {} at --resolution {res} is too large to train (at most {} input values)",
            batch, MAX_INPUT_ELEMENTS
        )));
    }
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
    // The peak resident set from here on: the model, its activations, the optimizer.
    let rss_reset = reset_peak_rss();
    let rss_before = proc_status("VmRSS:");
    let mut config = CnnConfig::new(channels, res, res, classes);
    config.dropout = arch.default_dropout();
    let mut model = Model::new(arch, config, SEED)?;
    let mut opt = match optimizer_name {
        "adamw" => Optimizer::adamw(AdamW {
            lr: 3e-3,
            ..AdamW::default()
        }),
        _ => Optimizer::sgd(Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 4e-5,
            ..Sgd::default()
        }),
    };
    let lr = opt.base_lr();
    let input = [batch, channels, res, res];
    let mut rng = SplitMix64::new(SEED ^ 1);
    let x = rng.input_tensor(input, Layout::Nhwc)?;
    let labels: Vec<usize> = (0..batch).map(|i| (i * 37) % classes).collect();
    let macs = model.macs_per_image()? as f64 * batch as f64;
    // Forward, and backward's input and weight gradients: three times the forward's FLOPs.
    let step_flops = 3.0 * 2.0 * macs;
    progress.now(&format!("training {} (batch {})...", arch.name(), batch));

    let mut step = |times: &mut [f64; 5]| -> Result<()> {
        let t0 = Instant::now();
        model.zero_grad();
        let t1 = Instant::now();
        let logits = model.forward(&x, Mode::Train, &exec)?;
        let t2 = Instant::now();
        let (loss, grad) = cross_entropy(&logits, classes, &labels, 0.0)?;
        if !loss.is_finite() {
            return Err(user_error(format!("the loss is {loss}: training diverged")));
        }
        let t3 = Instant::now();
        model.backward(&grad, &exec)?;
        let t4 = Instant::now();
        opt.step(model.net(), lr)?;
        let t5 = Instant::now();
        for (t, (a, b)) in times
            .iter_mut()
            .zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)])
        {
            *t = (b - a).as_secs_f64() * 1e3;
        }
        Ok(())
    };
    // Warm-up: one step (buffers, optimizer state, caches).
    step(&mut [0.0; 5])?;
    let mut samples: Vec<[f64; 5]> = Vec::new();
    let mut total = Duration::ZERO;
    loop {
        let mut t = [0.0; 5];
        step(&mut t)?;
        total += Duration::from_secs_f64(t.iter().sum::<f64>() * 1e-3);
        samples.push(t);
        let n = samples.len();
        let enough = n >= budget.runs && total >= budget.min_time;
        let too_long = n >= 3.min(budget.runs) && total >= budget.max_time;
        progress.now(&format!("step {n}: {:.1} ms", t.iter().sum::<f64>()));
        if enough || too_long || n >= MAX_RUNS {
            break;
        }
    }
    progress.finish();
    let peak = if rss_reset {
        proc_status("VmHWM:")
    } else {
        None
    };
    let mut steps: Vec<f64> = samples.iter().map(|t| t.iter().sum()).collect();
    let (median_ms, min_ms) = median_and_min(&mut steps);
    let phase_ms: Vec<f64> = (0..PHASES.len())
        .map(|i| {
            let mut v: Vec<f64> = samples.iter().map(|t| t[i]).collect();
            median_and_min(&mut v).0
        })
        .collect();
    let seconds = median_ms * 1e-3;
    let gflops = step_flops / seconds / 1e9;
    let pct_peak = 100.0 * gflops / machine.peak_gflops;
    let images_per_s = batch as f64 / seconds;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut phases = serde_json::Map::new();
    for (name, ms) in PHASES.iter().zip(&phase_ms) {
        phases.insert(format!("{name}_ms"), json!(ms));
    }
    let json = json!({
        "mode": "train",
        "model": arch.name(),
        "resolution": res,
        "in_channels": channels,
        "classes": classes,
        "batch": batch,
        "threads": threads,
        "optimizer": optimizer_name,
        "peak_gflops": machine.peak_gflops,
        "peak_isa": machine.isa,
        "kernel_isa": exec.isa().name(),
        "cpu": dsconv::machine::cpu_model(),
        "version": env!("CARGO_PKG_VERSION"),
        "macs_forward": macs,
        "flops_step": step_flops,
        "median_ms": median_ms,
        "min_ms": min_ms,
        "runs": samples.len(),
        "phases_median_ms": phases,
        "images_per_s": images_per_s,
        "gflops": gflops,
        "pct_peak": pct_peak,
        "peak_rss_mib": peak.map(mib),
        "rss_before_model_mib": rss_before.map(mib),
    });
    let mut table = format!(
        "train {} {res}x{res}x{channels}, {classes} classes, batch {}, {threads} thread{}, {}; \
         measured FMA peak {:.1} GFLOP/s ({})\n",
        arch.name(),
        batch,
        if threads == 1 { "" } else { "s" },
        optimizer_name,
        machine.peak_gflops,
        machine.isa
    );
    table.push_str(&format!(
        "training step: median {median_ms:.3} ms, min {min_ms:.3} ms over {} runs; \
         {images_per_s:.1} images/s; {gflops:.1} GFLOP/s = {pct_peak:.1}% of peak \
         (3 x forward FLOPs)\n",
        samples.len()
    ));
    let parts: Vec<String> = PHASES
        .iter()
        .zip(&phase_ms)
        .map(|(n, ms)| format!("{n} {ms:.3}"))
        .collect();
    table.push_str(&format!("phases (median ms): {}\n", parts.join(", ")));
    match (peak, rss_before) {
        (Some(p), Some(b)) => table.push_str(&format!(
            "peak resident memory {:.1} MiB ({:.1} MiB before the model was built)\n",
            mib(p),
            mib(b)
        )),
        _ => table.push_str("peak resident memory: not available on this system\n"),
    }
    Ok(Report { json, table })
}
