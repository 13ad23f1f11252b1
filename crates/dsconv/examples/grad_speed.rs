//! Backward-pass throughput (not a benchmark suite): the input and weight gradients of
//! MobileNetV2-1.0's depthwise layers and two of its pointwise layers at 224×224, NHWC,
//! batch `B` (default 8), the forward beside them for scale, on 1 and 2 threads: median
//! milliseconds and GFLOP/s (FLOPs = 2·MACs, the same count for each gradient as for the
//! forward).
//!
//! `cargo run --release -p dsconv --example grad_speed [batch]`
//!
//! One depthwise 3×3 layer (padding 1), for `bench/compare/dw_backward.py`, which
//! alternates it with PyTorch: `grad_speed --dw C H STRIDE BATCH THREADS REPS` prints the
//! median milliseconds of the input gradient, the weight gradient and both back to back
//! (the backward step: `conv2d_input_nhwc_into` + `conv2d_weight_nhwc_into` into reused
//! buffers), as `dsconv_ms input W weight W backward W`.

use dsconv::rng::SplitMix64;
use dsconv::{grad, Conv2d, Conv2dParams, Executor, Layout, Padding, Tensor};
use std::time::Instant;

/// Median seconds of `f` over `reps` runs after one warm-up.
fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// `--dw C H STRIDE BATCH THREADS REPS`: one depthwise layer's backward, medians in ms.
fn one_depthwise(args: &[usize]) -> dsconv::Result<()> {
    let &[c, h, s, batch, threads, reps] = args else {
        panic!("--dw C H STRIDE BATCH THREADS REPS");
    };
    let mut rng = SplitMix64::new(7);
    let params = Conv2dParams::default()
        .with_stride(s)
        .with_padding(Padding::symmetric(1))
        .with_groups(c);
    let wdims = [c, 1, 3, 3];
    let weight = rng.vec(9 * c, -0.5, 0.5);
    let g = dsconv::ConvGeometry::new([batch, c, h, h], wdims, &params)?;
    let x = rng.vec(batch * c * h * h, -1.0, 1.0);
    let dy = rng.vec(g.output_dims().iter().product(), -1.0, 1.0);
    let mut dx = vec![0.0f32; x.len()];
    let mut dw = vec![0.0f32; weight.len()];
    let exec = Executor::new(threads)?;
    let t_in = median(reps, || {
        grad::conv2d_input_nhwc_into(&g, &weight, &dy, &mut dx, &exec).unwrap();
    });
    let t_w = median(reps, || {
        grad::conv2d_weight_nhwc_into(&g, &x, &dy, &mut dw, &exec).unwrap();
    });
    let t_both = median(reps, || {
        grad::conv2d_input_nhwc_into(&g, &weight, &dy, &mut dx, &exec).unwrap();
        grad::conv2d_weight_nhwc_into(&g, &x, &dy, &mut dw, &exec).unwrap();
    });
    println!(
        "dsconv_ms input {:.4} weight {:.4} backward {:.4}",
        t_in * 1e3,
        t_w * 1e3,
        t_both * 1e3
    );
    Ok(())
}

fn main() -> dsconv::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--dw") {
        let nums: Vec<usize> = argv[2..]
            .iter()
            .map(|a| a.parse().expect("--dw takes six positive integers"))
            .collect();
        return one_depthwise(&nums);
    }
    let batch: usize = std::env::args()
        .nth(1)
        .map_or(8, |s| s.parse().expect("batch: a positive integer"));
    let mut rng = SplitMix64::new(7);
    // (name, C_in, C_out, H = W of the input, kernel, stride, groups)
    let dw = |c: usize, h: usize, s: usize| (c, c, h, 3, s, c);
    let layers = [
        ("dw 32@112 s1", dw(32, 112, 1)),
        ("dw 96@112 s2", dw(96, 112, 2)),
        ("dw 144@56 s1", dw(144, 56, 1)),
        ("dw 144@56 s2", dw(144, 56, 2)),
        ("dw 192@28 s1", dw(192, 28, 1)),
        ("dw 384@14 s1", dw(384, 14, 1)),
        ("dw 576@14 s2", dw(576, 14, 2)),
        ("dw 960@7 s1", dw(960, 7, 1)),
        ("pw 24→144@56", (24, 144, 56, 1, 1, 1)),
        ("pw 144→24@56", (144, 24, 56, 1, 1, 1)),
    ];
    let execs = [Executor::single(), Executor::new(2)?];
    println!(
        "batch {batch}, {} threads max, tier {:?}; ms (GFLOP/s)",
        execs[1].threads(),
        execs[0].isa()
    );
    println!(
        "{:<14} {:>7} | {:>22} {:>22} {:>22}",
        "layer", "MFLOP", "forward 1t / 2t", "input grad 1t / 2t", "weight grad 1t / 2t"
    );
    for (name, (cin, cout, h, k, s, groups)) in layers {
        let params = Conv2dParams::default()
            .with_stride(s)
            .with_padding(Padding::symmetric(k / 2))
            .with_groups(groups);
        let wdims = [cout, cin / groups, k, k];
        let weight = Tensor::from_nchw(rng.vec(wdims.iter().product(), -0.5, 0.5), wdims)?;
        let layer = Conv2d::new(weight.clone(), None, params)?;
        let input = [batch, cin, h, h];
        let g = layer.geometry(input)?;
        let x = Tensor::new(
            rng.vec(input.iter().product(), -1.0, 1.0),
            Layout::Nhwc.dims_from_logical(input),
            Layout::Nhwc,
        )?;
        let out = g.output_dims();
        let dy = Tensor::new(
            rng.vec(out.iter().product(), -1.0, 1.0),
            Layout::Nhwc.dims_from_logical(out),
            Layout::Nhwc,
        )?;
        let flops = 2.0 * layer.cost(input)?.macs as f64;
        let reps = if flops > 2e9 { 3 } else { 7 };
        let cell = |t: [f64; 2]| {
            format!(
                "{:>6.2} ({:>3.0}) / {:>6.2} ({:>3.0})",
                t[0] * 1e3,
                flops / t[0] / 1e9,
                t[1] * 1e3,
                flops / t[1] / 1e9
            )
        };
        let time = |f: &dyn Fn(&Executor)| -> [f64; 2] {
            [median(reps, || f(&execs[0])), median(reps, || f(&execs[1]))]
        };
        let fwd = time(&|e| {
            layer.forward_with(&x, e).unwrap();
        });
        let dx = time(&|e| {
            grad::conv2d_input(input, &weight, &dy, &params, Layout::Nhwc, e).unwrap();
        });
        let dw = time(&|e| {
            grad::conv2d_weight(&x, wdims, &dy, &params, e).unwrap();
        });
        println!(
            "{name:<14} {:>7.0} | {} {} {}",
            flops / 1e6,
            cell(fwd),
            cell(dx),
            cell(dw)
        );
    }
    Ok(())
}
