//! `tract_bench MODEL.onnx N C H W [--min-time S] [--max-time S]`: loads an ONNX model with
//! tract (the pure-Rust peer), fixes its first input to `N×C×H×W` f32, optimizes it, runs it
//! on a seeded input until `--min-time` seconds (at least 3 runs, at most `--max-time`
//! seconds) after one warm-up run, and prints `{"median_ms": .., "runs": ..}` as one JSON
//! line. tract runs one inference on one thread (no intra-op threads).
use std::time::Instant;
use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: tract_bench MODEL.onnx N C H W [--min-time S] [--max-time S]");
        std::process::exit(2);
    }
    let dims: Vec<usize> = args[2..6]
        .iter()
        .map(|s| s.parse().map_err(|e| TractError::msg(format!("bad dim {s}: {e}"))))
        .collect::<TractResult<_>>()?;
    let mut min_time = 1.0f64;
    let mut max_time = 5.0f64;
    let mut i = 6;
    while i + 1 < args.len() {
        let v: f64 = args[i + 1].parse()?;
        match args[i].as_str() {
            "--min-time" => min_time = v,
            "--max-time" => max_time = v,
            o => return Err(TractError::msg(format!("unknown option {o}"))),
        }
        i += 2;
    }
    let model = tract_onnx::onnx()
        .model_for_path(&args[1])?
        .with_input_fact(0, f32::fact(&dims).into())?
        .into_optimized()?
        .into_runnable()?;
    // A fixed pseudo-random input in [-1, 1) (the values do not matter for the timing).
    let n: usize = dims.iter().product();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let input: Tensor = tract_ndarray::ArrayD::from_shape_vec(dims.clone(), data)?.into();
    model.run(tvec!(input.clone().into()))?;
    let mut times = Vec::new();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        model.run(tvec!(input.clone().into()))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let total = start.elapsed().as_secs_f64();
        if (times.len() >= 3 && total >= min_time) || total >= max_time {
            break;
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let m = times.len();
    let median = if m % 2 == 1 {
        times[m / 2]
    } else {
        (times[m / 2 - 1] + times[m / 2]) / 2.0
    };
    println!("{{\"median_ms\": {median}, \"runs\": {m}}}");
    Ok(())
}
