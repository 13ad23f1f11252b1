//! One depthwise layer (NHWC, batch 1, symmetric K/2 padding, bias, ReLU6) run through
//! `Conv2d::forward_into` again and again for `SECONDS`, for profiling (`perf record`)
//! and quick A/B runs of the kernel: prints the median and best GFLOP/s.
//!
//! `cargo run --release -p dsconv --example dw_probe -- C HW STRIDE K SECONDS [THREADS]`
//! (e.g. `-- 128 28 1 3 2`: 3×3 stride 1, 128 channels, 28×28, two seconds).
use dsconv::rng::SplitMix64;
use dsconv::{Activation, Conv2d, Conv2dParams, Executor, Padding, Tensor};
use std::time::Instant;
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (c, hw, stride, k, secs) = (args[0], args[1], args[2], args[3], args[4]);
    let threads = *args.get(5).unwrap_or(&1);
    let mut rng = SplitMix64::new(1);
    let conv = Conv2d::new(
        Tensor::from_nchw(rng.vec(c * k * k, -1.0, 1.0), [c, 1, k, k]).unwrap(),
        Some(rng.vec(c, -1.0, 1.0)),
        Conv2dParams::default()
            .with_stride(stride)
            .with_padding(Padding::symmetric(k / 2))
            .with_groups(c),
    )
    .unwrap()
    .with_activation(Activation::Relu6);
    let dims = [1, c, hw, hw];
    let x = Tensor::from_nchw(rng.vec(c * hw * hw, -1.0, 1.0), dims)
        .unwrap()
        .to_layout(dsconv::Layout::Nhwc);
    let g = conv.geometry(dims).unwrap();
    let [n, oc, h, w] = g.output_dims();
    let mut out = Tensor::zeros([n, h, w, oc], dsconv::Layout::Nhwc).unwrap();
    let exec = Executor::new(threads).unwrap();
    let flops = 2.0 * conv.cost(dims).unwrap().macs as f64;
    // Optional 7th argument: run the packed kernel directly, writing pixels this many
    // floats apart (≥ C): the effect of the output's pixel stride alone.
    let mut direct = args.get(6).map(|&px| {
        let wv = rng.vec(c * k * k, -1.0, 1.0);
        let dw = dsconv::kernels::PackedDepthwise::new(&wv, [c, 1, k, k], None).unwrap();
        (dw, px, vec![0.0f32; h * w * px])
    });
    let mut best = f64::MAX;
    let mut times = vec![];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs as f64 {
        let t = Instant::now();
        if let Some((dw, px, buf)) = direct.as_mut() {
            let isa = dsconv::kernels::Tier::best();
            dw.run_rows(isa, &g, x.data(), c, 0..h, buf, *px, Activation::Relu6)
                .unwrap();
        } else {
            conv.forward_into(&x, &mut out, &exec).unwrap();
        }
        let e = t.elapsed().as_secs_f64();
        best = best.min(e);
        times.push(e);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let med = times[times.len() / 2];
    println!(
        "C{c}@{hw} s{stride} k{k} T{threads}: median {:.2} us {:.1} GFLOP/s, best {:.1} GFLOP/s",
        med * 1e6,
        flops / med / 1e9,
        flops / best / 1e9
    );
}
