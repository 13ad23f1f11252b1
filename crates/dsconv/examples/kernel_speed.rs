//! Quick kernel throughput check (not a benchmark suite; `dsconv bench` is that):
//! GFLOP/s (FLOPs = 2·MACs) of the fast paths on MobileNetV1-like layers, NHWC, batch 1,
//! hot caches, median of repeated runs, for 1 and 2 threads at the selected tier.
//!
//! `cargo run --release -p dsconv --example kernel_speed [filter]`
//! (`DSCONV_MAX_ISA=avx2` to measure a lower tier.)

use dsconv::rng::SplitMix64;
use dsconv::{
    Activation, Conv2d, Conv2dParams, DepthwiseConv2d, DepthwiseSeparableConv2d, Executor, Padding,
    PointwiseConv2d, Tensor,
};
use std::time::{Duration, Instant};

fn tensor(rng: &mut SplitMix64, dims: [usize; 4]) -> Tensor {
    Tensor::from_nchw(rng.vec(dims.iter().product(), -1.0, 1.0), dims).unwrap()
}

/// Seconds this thread has run on a CPU (Linux `/proc/thread-self/schedstat`), so a
/// single-threaded rate is not diluted by other processes on a busy machine.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

/// Median wall seconds of `f`, and mean on-CPU seconds of the calling thread per call
/// (schedstat is only updated at scheduler ticks, so it is summed over all repeats), over
/// repeats filling about `budget`.
fn median_time(mut f: impl FnMut(), budget: Duration) -> (f64, f64) {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_micros(1));
    let reps = (budget.as_secs_f64() / once.as_secs_f64()).clamp(5.0, 2000.0) as usize;
    let cpu_start = thread_cpu_seconds();
    let all = Instant::now();
    let mut wall: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let total = all.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds()
        .zip(cpu_start)
        .map_or(total, |(b, a)| b - a);
    wall.sort_by(|a, b| a.total_cmp(b));
    (wall[wall.len() / 2], cpu / reps as f64)
}

enum Layer {
    Conv(Box<Conv2d>),
    Separable(Box<DepthwiseSeparableConv2d>, bool),
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let mut rng = SplitMix64::new(42);
    let budget = Duration::from_millis(400);
    let pw = |rng: &mut SplitMix64, cin: usize, cout: usize| {
        Conv2d::new(
            tensor(rng, [cout, cin, 1, 1]),
            Some(rng.vec(cout, -1.0, 1.0)),
            Conv2dParams::default(),
        )
        .unwrap()
        .with_activation(Activation::Relu6)
    };
    let dw = |rng: &mut SplitMix64, c: usize, stride: usize| {
        Conv2d::new(
            tensor(rng, [c, 1, 3, 3]),
            Some(rng.vec(c, -1.0, 1.0)),
            Conv2dParams::default()
                .with_stride(stride)
                .with_padding(Padding::symmetric(1))
                .with_groups(c),
        )
        .unwrap()
        .with_activation(Activation::Relu6)
    };
    let dense = |rng: &mut SplitMix64, cin: usize, cout: usize, stride: usize| {
        Conv2d::new(
            tensor(rng, [cout, cin, 3, 3]),
            Some(rng.vec(cout, -1.0, 1.0)),
            Conv2dParams::default()
                .with_stride(stride)
                .with_padding(Padding::symmetric(1)),
        )
        .unwrap()
        .with_activation(Activation::Relu6)
    };
    let sep = |rng: &mut SplitMix64, c: usize, cout: usize, stride: usize, fused: bool| {
        let d = DepthwiseConv2d::new(
            tensor(rng, [c, 1, 3, 3]),
            Some(rng.vec(c, -1.0, 1.0)),
            Conv2dParams::default()
                .with_stride(stride)
                .with_padding(Padding::symmetric(1)),
        )
        .unwrap()
        .with_activation(Activation::Relu6);
        let p = PointwiseConv2d::new(tensor(rng, [cout, c, 1, 1]), Some(rng.vec(cout, -1.0, 1.0)))
            .unwrap()
            .with_activation(Activation::Relu6);
        Layer::Separable(
            Box::new(DepthwiseSeparableConv2d::new(d, p).unwrap()),
            fused,
        )
    };
    let layers: Vec<(String, Layer, [usize; 4])> = vec![
        (
            "pw 1024->1024 @14".into(),
            Layer::Conv(Box::new(pw(&mut rng, 1024, 1024))),
            [1, 1024, 14, 14],
        ),
        (
            "pw 512->512 @14".into(),
            Layer::Conv(Box::new(pw(&mut rng, 512, 512))),
            [1, 512, 14, 14],
        ),
        (
            "pw 256->256 @28".into(),
            Layer::Conv(Box::new(pw(&mut rng, 256, 256))),
            [1, 256, 28, 28],
        ),
        (
            "pw 128->128 @56".into(),
            Layer::Conv(Box::new(pw(&mut rng, 128, 128))),
            [1, 128, 56, 56],
        ),
        (
            "pw 32->64 @112".into(),
            Layer::Conv(Box::new(pw(&mut rng, 32, 64))),
            [1, 32, 112, 112],
        ),
        (
            "pw 512->1024 @7".into(),
            Layer::Conv(Box::new(pw(&mut rng, 512, 1024))),
            [1, 512, 7, 7],
        ),
        (
            "dw3 s1 C128 @56".into(),
            Layer::Conv(Box::new(dw(&mut rng, 128, 1))),
            [1, 128, 56, 56],
        ),
        (
            "dw3 s2 C128 @56".into(),
            Layer::Conv(Box::new(dw(&mut rng, 128, 2))),
            [1, 128, 56, 56],
        ),
        (
            "dw3 s1 C32 @112".into(),
            Layer::Conv(Box::new(dw(&mut rng, 32, 1))),
            [1, 32, 112, 112],
        ),
        (
            "dw3 s1 C128 @28 (L2-hot)".into(),
            Layer::Conv(Box::new(dw(&mut rng, 128, 1))),
            [1, 128, 28, 28],
        ),
        (
            "dw3 s1 C64 @28 (L2-hot)".into(),
            Layer::Conv(Box::new(dw(&mut rng, 64, 1))),
            [1, 64, 28, 28],
        ),
        (
            "dw3 s2 C128 @28 (L2-hot)".into(),
            Layer::Conv(Box::new(dw(&mut rng, 128, 2))),
            [1, 128, 28, 28],
        ),
        (
            "dw3 s1 C512 @14".into(),
            Layer::Conv(Box::new(dw(&mut rng, 512, 1))),
            [1, 512, 14, 14],
        ),
        (
            "dense3 3->32 s2 @224".into(),
            Layer::Conv(Box::new(dense(&mut rng, 3, 32, 2))),
            [1, 3, 224, 224],
        ),
        (
            "dense3 128->128 @56".into(),
            Layer::Conv(Box::new(dense(&mut rng, 128, 128, 1))),
            [1, 128, 56, 56],
        ),
        (
            "sep fused 128->128 @56".into(),
            sep(&mut rng, 128, 128, 1, true),
            [1, 128, 56, 56],
        ),
        (
            "sep unfused 128->128 @56".into(),
            sep(&mut rng, 128, 128, 1, false),
            [1, 128, 56, 56],
        ),
        (
            "sep fused 512->512 @14".into(),
            sep(&mut rng, 512, 512, 1, true),
            [1, 512, 14, 14],
        ),
        (
            "sep unfused 512->512 @14".into(),
            sep(&mut rng, 512, 512, 1, false),
            [1, 512, 14, 14],
        ),
    ];
    let execs = [Executor::new(1).unwrap(), Executor::new(2).unwrap()];
    let isa = execs[0].tier();
    let peak = dsconv::kernels::peak::fma_peak_gflops(isa, 20);
    println!(
        "tier: {}, measured single-thread FMA peak {peak:.1} GFLOP/s",
        isa.name()
    );
    println!(
        "{:<28} {:>8} {:>10} {:>10} {:>10} {:>7}",
        "layer", "MFLOP", "1T wall", "1T on-CPU", "2T wall", "1T %pk"
    );
    for (name, layer, dims) in &layers {
        if !name.contains(&filter) {
            continue;
        }
        let x = tensor(&mut rng, *dims).to_layout(dsconv::Layout::Nhwc);
        let (macs, out_dims) = match layer {
            Layer::Conv(c) => {
                let g = c.geometry(*dims).unwrap();
                (c.cost(*dims).unwrap().macs, g.output_dims())
            }
            Layer::Separable(s, _) => {
                let g = s.depthwise().as_conv2d().geometry(*dims).unwrap();
                let [n, _, h, w] = g.output_dims();
                (
                    s.cost(*dims).unwrap().macs,
                    [n, s.pointwise().out_channels(), h, w],
                )
            }
        };
        let [n, c, h, w] = out_dims;
        let mut out = Tensor::zeros([n, h, w, c], dsconv::Layout::Nhwc).unwrap();
        let flops = 2.0 * macs as f64;
        let mut rates = Vec::new();
        for exec in &execs {
            let (secs, cpu) = match layer {
                Layer::Conv(conv) => {
                    median_time(|| conv.forward_into(&x, &mut out, exec).unwrap(), budget)
                }
                Layer::Separable(s, true) => {
                    median_time(|| s.forward_into(&x, &mut out, exec).unwrap(), budget)
                }
                Layer::Separable(s, false) => median_time(
                    || {
                        let _ = s.forward_unfused_with(&x, exec).unwrap();
                    },
                    budget,
                ),
            };
            rates.push(flops / secs / 1e9);
            if exec.threads() == 1 {
                rates.push(flops / cpu / 1e9);
            }
        }
        println!(
            "{:<28} {:>8.1} {:>10.1} {:>10.1} {:>10.1} {:>6.0}%",
            name,
            flops / 1e6,
            rates[0],
            rates[1],
            rates[2],
            100.0 * rates[1] / peak
        );
    }
    for (name, net) in [
        (
            "MobileNetV1-224 separable",
            dsconv::models::mobilenet_v1::MobileNetV1::random(1.0, 224, 7).unwrap(),
        ),
        (
            "MobileNetV1-224 standard",
            dsconv::models::mobilenet_v1::MobileNetV1::random_standard(1.0, 224, 7).unwrap(),
        ),
    ] {
        if !name.contains(&filter) {
            continue;
        }
        let flops = 2.0 * net.cost(1).unwrap().total().macs as f64;
        let x = tensor(&mut rng, [1, 3, 224, 224]).to_layout(dsconv::Layout::Nhwc);
        let mut rates = Vec::new();
        let mut millis = Vec::new();
        for exec in &execs {
            let (secs, cpu) = median_time(
                || {
                    let _ = net.forward_with(&x, exec).unwrap();
                },
                Duration::from_secs(2),
            );
            rates.push(flops / secs / 1e9);
            millis.push(secs * 1e3);
            if exec.threads() == 1 {
                rates.push(flops / cpu / 1e9);
            }
        }
        println!(
            "{:<28} {:>8.1} {:>10.1} {:>10.1} {:>10.1} {:>6.0}%   ({:.2} ms 1T, {:.2} ms 2T)",
            name,
            flops / 1e6,
            rates[0],
            rates[1],
            rates[2],
            100.0 * rates[1] / peak,
            millis[0],
            millis[1]
        );
    }
}
