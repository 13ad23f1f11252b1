//! `dsconv bench --model NETWORK`: the whole network, input to logits, any network of the
//! registry, random weights or a checkpoint.

use super::timing::{time, Budget, Progress};
use super::{header, Report, Setup, SEED};
use anyhow::Result;
use dsconv::rng::SplitMix64;
use dsconv::{Executor, Layout};
use serde_json::json;

/// Times whole forward passes of `setup.spec` on a random batch.
pub(super) fn bench(
    setup: &Setup,
    exec: &Executor,
    machine: &dsconv::machine::Profile,
    budget: Budget,
    progress: &Progress,
) -> Result<Report> {
    let (args, spec, resolution) = (setup.args, setup.spec, setup.resolution);
    let input = [args.batch(), 3, resolution, resolution];
    let mut rng = SplitMix64::new(SEED ^ 1);
    let x = rng.input_tensor(input, Layout::Nhwc)?;
    // MobileNetV1 is built for `resolution`; the other networks run any size.
    let net = match &args.weights {
        Some(path) => {
            progress.now(&format!("loading {}...", path.display()));
            let sd = dsconv::weights::StateDict::load(path)?;
            spec.from_state_dict(&sd, args.width, resolution)?
        }
        None => spec.random(args.width, resolution, SEED)?,
    };
    let cost = net.cost(input)?;
    progress.now(&format!("timing {} (batch {})...", spec.name, args.batch()));
    let timing = time(budget, || net.forward_with(&x, exec).map(drop))?;
    let seconds = timing.median_ms * 1e-3;
    let gflops = cost.flops() as f64 / seconds / 1e9;
    let pct_peak = 100.0 * gflops / machine.peak_gflops;
    let threads = exec.threads();
    let json = json!({
        "network": spec.name,
        "width": args.width,
        "resolution": resolution,
        "weights": args.weights.as_ref().map(|p| p.display().to_string()),
        "peak_gflops": machine.peak_gflops,
        "bandwidth_gbs": machine.dram_read_gbs,
        "peak_isa": machine.isa,
        "kernel_isa": exec.isa().name(),
        "threads": threads,
        "batch": args.batch(),
        "cpu": dsconv::machine::cpu_model(),
        "version": env!("CARGO_PKG_VERSION"),
        "macs": cost.macs,
        "flops": cost.flops(),
        "median_ms": timing.median_ms,
        "min_ms": timing.min_ms,
        "runs": timing.runs,
        "gflops": gflops,
        "pct_peak": pct_peak,
        "images_per_s": args.batch() as f64 / seconds,
    });
    let mut table = header(setup, threads, machine);
    table.push_str(&format!(
        "whole network: median {:.3} ms, min {:.3} ms over {} runs; {:.1} MMACs, {:.1} GFLOP/s = {:.1}% of peak; {:.1} images/s\n",
        timing.median_ms,
        timing.min_ms,
        timing.runs,
        cost.macs as f64 / 1e6,
        gflops,
        pct_peak,
        args.batch() as f64 / seconds
    ));
    Ok(Report { json, table })
}
