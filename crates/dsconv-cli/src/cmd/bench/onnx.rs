//! `dsconv bench --model FILE.onnx`: an imported model, input to outputs, on a seeded
//! random input; the same JSON fields as the built-in networks.

use super::timing::{time, Budget, Progress};
use super::{Args, Report, SEED};
use crate::cmd::onnx;
use anyhow::Result;
use dsconv::rng::SplitMix64;
use dsconv::Executor;
use serde_json::json;

/// Times whole forward passes of the model in `path`.
pub(super) fn bench(
    args: &Args,
    path: &str,
    exec: &Executor,
    machine: &dsconv::machine::Profile,
    budget: Budget,
    progress: &Progress,
) -> Result<Report> {
    progress.now(&format!("loading and planning {path}..."));
    let model = onnx::load(path)?;
    let batch = args.batch.or(args.input_shape.is_none().then_some(1));
    let shape = onnx::input_shape(&model, args.input_shape.as_deref(), batch)?;
    let plan = onnx::plan(&model, &shape)?;
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64::new(SEED ^ 1);
    let x = rng.vec(n, -1.0, 1.0);
    let cost = plan.cost_table(path).total();
    progress.now(&format!("timing {path} (input {shape:?})..."));
    let timing = time(budget, || {
        plan.run(&[&x], exec).map(drop).map_err(|e| match e {
            dsconv_onnx::Error::Dsconv(e) => e,
            other => dsconv::Error::param("onnx model", other.to_string()),
        })
    })?;
    let seconds = timing.median_ms * 1e-3;
    let gflops = cost.flops() as f64 / seconds / 1e9;
    let pct_peak = 100.0 * gflops / machine.peak_gflops;
    let threads = exec.threads();
    let fusion = plan.fusion();
    let json = json!({
        "network": path,
        "input_shape": shape,
        "peak_gflops": machine.peak_gflops,
        "bandwidth_gbs": machine.dram_read_gbs,
        "peak_isa": machine.isa,
        "kernel_isa": exec.isa().name(),
        "threads": threads,
        "batch": shape[0],
        "cpu": dsconv::machine::cpu_model(),
        "version": env!("CARGO_PKG_VERSION"),
        "macs": cost.macs,
        "flops": cost.flops(),
        "median_ms": timing.median_ms,
        "min_ms": timing.min_ms,
        "runs": timing.runs,
        "gflops": gflops,
        "pct_peak": pct_peak,
        "images_per_s": shape[0] as f64 / seconds,
        "fused": {
            "inverted_residual": fusion.inverted_residual,
            "separable": fusion.separable,
            "convs": fusion.convs,
            "steps": fusion.steps,
        },
    });
    let table = format!(
        "{path} {shape:?}, {threads} thread{}; measured FMA peak {:.1} GFLOP/s ({}), DRAM read {:.1} GB/s\n\
         plan: {} steps, {} fused inverted residual, {} fused separable, {} other convolutions\n\
         whole network: median {:.3} ms, min {:.3} ms over {} runs; {:.1} MMACs, {:.1} GFLOP/s = {:.1}% of peak; {:.1} images/s\n",
        if threads == 1 { "" } else { "s" },
        machine.peak_gflops,
        machine.isa,
        machine.dram_read_gbs,
        fusion.steps,
        fusion.inverted_residual,
        fusion.separable,
        fusion.convs,
        timing.median_ms,
        timing.min_ms,
        timing.runs,
        cost.macs as f64 / 1e6,
        gflops,
        pct_peak,
        shape[0] as f64 / seconds
    );
    Ok(Report { json, table })
}
