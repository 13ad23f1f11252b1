//! `dsconv bench --model FILE.onnx`: an imported model, input to outputs, on a seeded
//! random input; the same JSON fields as the built-in networks.

use super::timing::{median_and_min, time, Budget, Progress, MAX_RUNS};
use super::{Args, Report, SEED};
use crate::cmd::onnx;
use crate::cmd::table::{Align, Table};
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
    let profile = if args.profile {
        progress.now(&format!("profiling {path} step by step..."));
        Some(profile(&plan, &x, exec, budget)?)
    } else {
        None
    };
    let seconds = timing.median_ms * 1e-3;
    let gflops = cost.flops() as f64 / seconds / 1e9;
    let pct_peak = 100.0 * gflops / machine.peak_gflops;
    let threads = exec.threads();
    let fusion = plan.fusion();
    let mut json = json!({
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
    let mut table = format!(
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
    if let Some((whole_ms, steps)) = profile {
        table.push_str(&profile_table(whole_ms, &steps));
        json["profile_whole_ms"] = json!(whole_ms);
        json["profile"] = serde_json::Value::Array(
            steps
                .iter()
                .map(|s| {
                    json!({"step": s.name, "kind": s.kind, "median_ms": s.median_ms,
                           "share": s.share})
                })
                .collect(),
        );
    }
    Ok(Report { json, table })
}

/// One plan step's share of a forward pass.
struct StepTime {
    name: String,
    kind: String,
    median_ms: f64,
    share: f64,
}

/// Runs the plan as often as `budget` says (at least 3 times) timing every step: the
/// median of those whole runs, and each step's median over the runs and its share of the
/// sum of the medians.
fn profile(
    plan: &dsconv_onnx::Plan,
    x: &[f32],
    exec: &Executor,
    budget: Budget,
) -> Result<(f64, Vec<StepTime>)> {
    let names = plan.describe();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut ms = Vec::new();
    let start = std::time::Instant::now();
    let mut runs = 0usize;
    // One untimed run first (warm caches and workspace).
    plan.run(&[x], exec)?;
    let mut whole = Vec::new();
    loop {
        let t = std::time::Instant::now();
        plan.run_profiled(&[x], exec, &mut ms)?;
        whole.push(t.elapsed().as_secs_f64() * 1e3);
        for (s, &t) in samples.iter_mut().zip(&ms) {
            s.push(t);
        }
        runs += 1;
        let spent = start.elapsed();
        let enough = runs >= budget.runs.max(3) && spent >= budget.min_time;
        if enough || (runs >= 3 && spent >= budget.max_time) || runs >= MAX_RUNS {
            break;
        }
    }
    let medians: Vec<f64> = samples.iter_mut().map(|s| median_and_min(s).0).collect();
    let total: f64 = medians.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let whole_ms = median_and_min(&mut whole).0;
    Ok((
        whole_ms,
        names
            .into_iter()
            .zip(medians)
            .map(|(line, median_ms)| {
                let (name, kind) = line.rsplit_once(": ").unwrap_or((line.as_str(), ""));
                StepTime {
                    name: name.to_string(),
                    kind: kind.to_string(),
                    median_ms,
                    share: median_ms / total,
                }
            })
            .collect(),
    ))
}

/// The profile as text: every step in plan order, then the time per kind of step.
fn profile_table(whole_ms: f64, steps: &[StepTime]) -> String {
    let mut t = Table::new(&[
        ("#", Align::Right),
        ("step", Align::Left),
        ("kind", Align::Left),
        ("median ms", Align::Right),
        ("share", Align::Right),
    ]);
    for (i, s) in steps.iter().enumerate() {
        // Fused steps join every node's name: keep the end, where they differ.
        let chars = s.name.chars().count();
        let name = if chars > 72 {
            format!("…{}", s.name.chars().skip(chars - 71).collect::<String>())
        } else {
            s.name.clone()
        };
        t.row(vec![
            i.to_string(),
            name,
            s.kind.clone(),
            format!("{:.3}", s.median_ms),
            format!("{:.1}%", 100.0 * s.share),
        ]);
    }
    let mut kinds: Vec<(String, usize, f64, f64)> = Vec::new();
    for s in steps {
        match kinds.iter_mut().find(|k| k.0 == s.kind) {
            Some(k) => {
                k.1 += 1;
                k.2 += s.median_ms;
                k.3 += s.share;
            }
            None => kinds.push((s.kind.clone(), 1, s.median_ms, s.share)),
        }
    }
    kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut k = Table::new(&[
        ("kind", Align::Left),
        ("steps", Align::Right),
        ("median ms", Align::Right),
        ("share", Align::Right),
    ]);
    for (kind, n, ms, share) in &kinds {
        k.row(vec![
            kind.clone(),
            n.to_string(),
            format!("{ms:.3}"),
            format!("{:.1}%", 100.0 * share),
        ]);
    }
    let total: f64 = steps.iter().map(|s| s.median_ms).sum();
    format!(
        "\nprofile: the steps' medians add up to {total:.3} ms (whole runs while profiling: \
         median {whole_ms:.3} ms)\n{}\nby kind:\n{}",
        t.render(2),
        k.render(2)
    )
}
