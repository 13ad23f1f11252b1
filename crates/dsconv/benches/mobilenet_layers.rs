//! Criterion benchmarks on MobileNetV1's real layer shapes (α = 1, 224×224, batch 1),
//! through the public layer API, NHWC input, random weights, bias and ReLU6 fused. Each
//! benchmark is named after its layer, the same names `dsconv bench --layers` prints:
//!
//! - `dw_k3s{stride}_c{C}_{H}x{W}`: depthwise 3×3 on a C-channel H×W input;
//! - `pw_c{Cin}_c{Cout}_{H}x{W}`: pointwise on an H×W input;
//! - `sep_block{n}` and `sep_unfused_block{n}`: the whole block, fused and as two calls
//!   (blocks 8–11 repeat block 7's depthwise and pointwise shapes: timed once);
//! - `conv_k3s{stride}_c{Cin}_c{Cout}_{H}x{W}`: the dense 3×3 of the same shape (blocks 1,
//!   7 and 13 only: the others take long and say nothing new).
//!
//! Throughput is reported in FLOPs (`2 · MACs` from the cost model). Threads: the
//! `DSCONV_BENCH_THREADS` environment variable (default 1). Run with
//! `cargo bench -p dsconv --bench mobilenet_layers -- dw_` to filter by name.

// criterion_group! expands to an undocumented pub function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsconv::models::mobilenet_v1::stages;
use dsconv::rng::SplitMix64;
use dsconv::{
    Activation, Conv2d, Conv2dParams, DepthwiseConv2d, DepthwiseSeparableConv2d, Executor, Layout,
    Padding, PointwiseConv2d, Tensor,
};
use std::time::Duration;

/// Blocks whose standard-convolution twin is also timed.
const STANDARD_BLOCKS: [usize; 3] = [1, 7, 13];

fn weight(rng: &mut SplitMix64, dims: [usize; 4]) -> Tensor {
    rng.weight_tensor(dims, 1.0).unwrap()
}

fn nhwc(rng: &mut SplitMix64, logical: [usize; 4]) -> Tensor {
    rng.input_tensor(logical, Layout::Nhwc).unwrap()
}

fn mobilenet_layers(crit: &mut Criterion) {
    let threads = std::env::var("DSCONV_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let exec = Executor::new(threads).unwrap();
    let mut rng = SplitMix64::new(0x00D5_C0DE);
    let mut group = crit.benchmark_group("mobilenet_v1");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let mut seen = std::collections::HashSet::new();
    let blocks = stages(1.0, 224).unwrap().into_iter().filter(|s| !s.is_stem);
    for (i, st) in blocks.enumerate() {
        let b = i + 1;
        let (c, co, s, hi, ho) = (
            st.in_channels,
            st.out_channels,
            st.stride,
            st.in_size,
            st.out_size,
        );
        let k3 = Conv2dParams::default()
            .with_stride(s)
            .with_padding(Padding::symmetric(1));
        let dw = DepthwiseConv2d::new(weight(&mut rng, [c, 1, 3, 3]), Some(vec![0.0; c]), k3)
            .unwrap()
            .with_activation(Activation::Relu6);
        let pw = PointwiseConv2d::new(weight(&mut rng, [co, c, 1, 1]), Some(vec![0.0; co]))
            .unwrap()
            .with_activation(Activation::Relu6);
        let sep = DepthwiseSeparableConv2d::new(dw.clone(), pw.clone()).unwrap();
        let x = nhwc(&mut rng, [1, c, hi, hi]);
        let mid = nhwc(&mut rng, [1, c, ho, ho]);
        let input = x.logical_dims();

        // Blocks 8–11 repeat block 7's shapes: their layers are timed once, under one name.
        let dw_name = format!("dw_k3s{s}_c{c}_{hi}x{hi}");
        if seen.insert(dw_name.clone()) {
            group.throughput(Throughput::Elements(dw.cost(input).unwrap().flops()));
            group.bench_function(dw_name, |bench| {
                bench.iter(|| dw.forward_with(&x, &exec).unwrap())
            });
        }
        let pw_name = format!("pw_c{c}_c{co}_{ho}x{ho}");
        if seen.insert(pw_name.clone()) {
            group.throughput(Throughput::Elements(
                pw.cost(mid.logical_dims()).unwrap().flops(),
            ));
            group.bench_function(pw_name, |bench| {
                bench.iter(|| pw.forward_with(&mid, &exec).unwrap())
            });
        }
        group.throughput(Throughput::Elements(sep.cost(input).unwrap().flops()));
        group.bench_function(format!("sep_block{b}"), |bench| {
            bench.iter(|| sep.forward_with(&x, &exec).unwrap())
        });
        group.bench_function(format!("sep_unfused_block{b}"), |bench| {
            bench.iter(|| sep.forward_unfused_with(&x, &exec).unwrap())
        });
        if STANDARD_BLOCKS.contains(&b) {
            let conv = Conv2d::new(weight(&mut rng, [co, c, 3, 3]), Some(vec![0.0; co]), k3)
                .unwrap()
                .with_activation(Activation::Relu6);
            group.throughput(Throughput::Elements(conv.cost(input).unwrap().flops()));
            group.bench_function(format!("conv_k3s{s}_c{c}_c{co}_{hi}x{hi}"), |bench| {
                bench.iter(|| conv.forward_with(&x, &exec).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mobilenet_layers);
criterion_main!(benches);
