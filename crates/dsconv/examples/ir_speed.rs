//! Inverted residual blocks fused vs unfused, and whole MobileNetV2 / EfficientNet-Lite0
//! forward passes, timed by CPU time as well as wall time (the dev machine is shared, so
//! wall medians drift with other jobs; on-CPU time per call does much less).
//!
//! `cargo run --release -p dsconv --example ir_speed [blocks|models] [threads]`
//!
//! `blocks`: every block of both networks at 224 (`threads` > 1: median wall times): the fused block
//! (`InvertedResidual::forward_into`, buffers from a workspace) against
//! `forward_unfused_with` (three materialised stages and a separate skip add), on-CPU µs
//! per call of the calling thread (`IR_BAND_KIB=N` sets the fused band budget, see
//! `InvertedResidual::with_band_bytes`). `models`: whole forward passes, median wall ms and
//! process CPU ms per call, with `threads` threads (default 1).

use dsconv::blocks::InvertedResidual;
use dsconv::models::efficientnet_lite::EfficientNetLite;
use dsconv::models::mobilenet_v2::MobileNetV2;
use dsconv::rng::SplitMix64;
use dsconv::workspace::Workspace;
use dsconv::{Executor, Layout, Tensor};
use std::time::{Duration, Instant};

/// On-CPU seconds of the calling thread (`/proc/thread-self/schedstat`, ns).
fn thread_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

/// On-CPU seconds of the whole process, all threads (`/proc/self/stat` utime + stime,
/// clock ticks of 10 ms: summed over many calls).
fn process_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// No CPU clock (several threads: wall times are reported).
fn wall_marker() -> Option<f64> {
    None
}

/// (median wall s, CPU s per call by `cpu`) over repeats filling `budget`.
fn time(mut f: impl FnMut(), budget: Duration, cpu: fn() -> Option<f64>) -> (f64, f64) {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-6);
    let reps = (budget.as_secs_f64() / once).clamp(5.0, 5000.0) as usize;
    let c0 = cpu();
    let mut wall: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let c = cpu().zip(c0).map_or(f64::NAN, |(b, a)| b - a);
    wall.sort_by(|a, b| a.total_cmp(b));
    (wall[reps / 2], c / reps as f64)
}

fn blocks(name: &str, blocks: &[InvertedResidual], threads: usize) {
    let exec = Executor::new(threads).unwrap();
    let ws = Workspace::default();
    let mut rng = SplitMix64::new(7);
    let mut dims = [1, 32, 112, 112];
    let (mut fused_total, mut unfused_total) = (0.0, 0.0);
    let unit = if threads == 1 {
        "on-CPU"
    } else {
        "median wall"
    };
    println!("{name}: block, input, fused µs, unfused µs ({unit}, {threads} threads)");
    let band_kib: Option<usize> = std::env::var("IR_BAND_KIB")
        .ok()
        .and_then(|v| v.parse().ok());
    for (i, b) in blocks.iter().enumerate() {
        let b = &match band_kib {
            Some(kib) => b.clone().with_band_bytes(kib * 1024),
            None => b.clone(),
        };
        let x = Tensor::from_nchw(rng.vec(dims.iter().product(), -1.0, 1.0), dims)
            .unwrap()
            .to_layout(Layout::Nhwc);
        let out_dims = b.output_dims(dims).unwrap();
        let [n, c, h, w] = out_dims;
        let mut out = Tensor::from_nhwc(vec![0.0; n * c * h * w], [n, h, w, c]).unwrap();
        let budget = Duration::from_millis(150);
        let cpu = if threads == 1 {
            thread_cpu
        } else {
            wall_marker
        };
        let (fused_wall, fused) = time(
            || b.forward_into(&x, &mut out, &exec, &ws).unwrap(),
            budget,
            cpu,
        );
        let (unfused_wall, unfused) = time(
            || drop(b.forward_unfused_with(&x, &exec).unwrap()),
            budget,
            cpu,
        );
        // With several threads, report median wall times instead.
        let (fused, unfused) = if threads == 1 {
            (fused, unfused)
        } else {
            (fused_wall, unfused_wall)
        };
        fused_total += fused;
        unfused_total += unfused;
        println!(
            "  {i:2} {:>4}x{:<3} C{:<4} {:8.1} {:8.1}",
            dims[2],
            dims[3],
            dims[1],
            fused * 1e6,
            unfused * 1e6
        );
        dims = out_dims;
    }
    println!(
        "  all blocks: fused {:.3} ms, unfused {:.3} ms",
        fused_total * 1e3,
        unfused_total * 1e3
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "models".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let v2 = MobileNetV2::random(1.0, 1).unwrap();
    let lite0 = EfficientNetLite::lite0_random(1).unwrap();
    if what == "blocks" {
        blocks("mobilenet-v2", v2.blocks(), threads);
        blocks("efficientnet-lite0", lite0.blocks(), threads);
        return;
    }
    let exec = Executor::new(threads).unwrap();
    let mut rng = SplitMix64::new(3);
    let x = Tensor::from_nchw(rng.vec(3 * 224 * 224, -1.0, 1.0), [1, 3, 224, 224]).unwrap();
    let budget = Duration::from_secs(2);
    let (w, c) = time(
        || drop(v2.forward_with(&x, &exec).unwrap()),
        budget,
        process_cpu,
    );
    println!(
        "mobilenet-v2 {threads}T: median {:.3} ms wall, {:.3} ms CPU per pass",
        w * 1e3,
        c * 1e3
    );
    let (w, c) = time(
        || drop(lite0.forward_with(&x, &exec).unwrap()),
        budget,
        process_cpu,
    );
    println!(
        "efficientnet-lite0 {threads}T: median {:.3} ms wall, {:.3} ms CPU per pass",
        w * 1e3,
        c * 1e3
    );
}
