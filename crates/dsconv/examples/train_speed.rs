//! Where a training step's time goes (not a benchmark suite): a MobileNetV2-1.0-shaped
//! network built from `dsconv::train`'s layers with torchvision's layer shapes (stem 3×3/2
//! conv, BN and ReLU6; the 17 inverted residual blocks: expand 1×1, depthwise 3×3 at
//! stride 1 or 2, project 1×1, each followed by BatchNorm, ReLU6 after expand and
//! depthwise, the residual add where the shapes allow; the 1×1 to 1280, global pooling,
//! dropout 0.2, linear to 1000 classes), one training step (zero grad, forward in train
//! mode, cross-entropy, backward, SGD with momentum and weight decay) timed per phase and,
//! inside forward and backward, per layer type. `train::Model` now builds MobileNetV2
//! itself (`dsconv bench --train --model mobilenet-v2`); this keeps the per-layer view.
//!
//! `cargo run --release -p dsconv --example train_speed [batch] [resolution] [threads] [steps]`
//! (defaults 32 224 2 3). Prints, per step, the phase milliseconds and, for the last step,
//! the forward / backward milliseconds of each layer type and the peak resident set
//! (`VmHWM`).

use dsconv::ops::Activation;
use dsconv::rng::SplitMix64;
use dsconv::train::{
    cross_entropy, Act, BatchNorm2d, ConvLayer, Dropout, GlobalAvgPool, Layer, Linear, Mode,
    Optimizer, Residual, Sequential, Sgd, Slot,
};
use dsconv::{Conv2dParams, Executor, Layout, Padding, Tensor};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Seconds of forward and backward per layer type.
type Times = Arc<Mutex<BTreeMap<&'static str, (f64, f64)>>>;

/// A layer whose forward and backward time is added to `times[name]`.
#[derive(Debug)]
struct Timed<L> {
    name: &'static str,
    inner: L,
    times: Times,
}

impl<L: Layer> Layer for Timed<L> {
    fn forward(&mut self, x: Tensor, mode: Mode, exec: &Executor) -> dsconv::Result<Tensor> {
        let t = Instant::now();
        let y = self.inner.forward(x, mode, exec);
        self.times.lock().unwrap().entry(self.name).or_default().0 += t.elapsed().as_secs_f64();
        y
    }
    fn backward(
        &mut self,
        dy: Tensor,
        need: bool,
        exec: &Executor,
    ) -> dsconv::Result<Option<Tensor>> {
        let t = Instant::now();
        let d = self.inner.backward(dy, need, exec);
        self.times.lock().unwrap().entry(self.name).or_default().1 += t.elapsed().as_secs_f64();
        d
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        self.inner.visit(prefix, f)
    }
    fn output_dims(&self, input: [usize; 4]) -> dsconv::Result<[usize; 4]> {
        self.inner.output_dims(input)
    }
    fn macs(&self, input: [usize; 4]) -> dsconv::Result<u64> {
        self.inner.macs(input)
    }
}

struct Builder {
    rng: SplitMix64,
    times: Times,
}

impl Builder {
    fn timed<L: Layer + 'static>(&self, name: &'static str, inner: L) -> Timed<L> {
        Timed {
            name,
            inner,
            times: self.times.clone(),
        }
    }

    /// conv + BN (+ ReLU6) into `seq`.
    fn conv_bn(
        &mut self,
        seq: &mut Sequential,
        name: &'static str,
        dims: [usize; 4],
        params: Conv2dParams,
        relu6: bool,
    ) -> dsconv::Result<()> {
        let conv = ConvLayer::init(dims, false, params, &mut self.rng)?;
        seq.push(self.timed(name, conv));
        seq.push(self.timed("batchnorm", BatchNorm2d::new(dims[0])));
        if relu6 {
            seq.push(self.timed("relu6", Act::new(Activation::Relu6)));
        }
        Ok(())
    }
}

fn mobilenet_v2(times: Times) -> dsconv::Result<Sequential> {
    let mut b = Builder {
        rng: SplitMix64::new(1),
        times,
    };
    let mut features = Sequential::new();
    let mut stem = Sequential::new();
    let s2p1 = Conv2dParams::default()
        .with_stride(2)
        .with_padding(Padding::symmetric(1));
    b.conv_bn(&mut stem, "stem conv 3x3/2", [32, 3, 3, 3], s2p1, true)?;
    features.push(stem);
    let mut cin = 32;
    for &(t, c, n, s) in &[
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = cin * t;
            let mut body = Sequential::new();
            if t != 1 {
                b.conv_bn(
                    &mut body,
                    "pointwise expand",
                    [hidden, cin, 1, 1],
                    Conv2dParams::default(),
                    true,
                )?;
            }
            let dw = Conv2dParams::default()
                .with_stride(stride)
                .with_padding(Padding::symmetric(1))
                .with_groups(hidden);
            let name = if stride == 1 {
                "depthwise 3x3/1"
            } else {
                "depthwise 3x3/2"
            };
            b.conv_bn(&mut body, name, [hidden, 1, 3, 3], dw, true)?;
            b.conv_bn(
                &mut body,
                "pointwise project",
                [c, hidden, 1, 1],
                Conv2dParams::default(),
                false,
            )?;
            if stride == 1 && cin == c {
                features.push(Residual::new(body));
            } else {
                features.push(body);
            }
            cin = c;
        }
    }
    let mut last = Sequential::new();
    b.conv_bn(
        &mut last,
        "pointwise last",
        [1280, cin, 1, 1],
        Conv2dParams::default(),
        true,
    )?;
    features.push(last);
    let mut net = Sequential::new();
    net.push_named("features", features);
    net.push_named("pool", b.timed("pool", GlobalAvgPool::new()));
    let mut classifier = Sequential::new();
    classifier.push(b.timed("dropout", Dropout::new(0.2, 3)?));
    let linear = Linear::init(1280, 1000, &mut b.rng)?;
    classifier.push(b.timed("linear", linear));
    net.push_named("classifier", classifier);
    Ok(net)
}

/// `VmHWM` (peak) or `VmRSS` of this process in MiB, when Linux says.
fn proc_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> dsconv::Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| a != "--json")
        .map(|a| a.parse().expect("numbers: batch resolution threads steps"))
        .collect();
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (batch, res, threads, steps) = (arg(0, 32), arg(1, 224), arg(2, 2), arg(3, 3));
    let exec = Executor::new(threads)?;
    let times: Times = Arc::default();
    let mut net = mobilenet_v2(times.clone())?;
    let macs = net.macs([batch, 3, res, res])?;
    let mut rng = SplitMix64::new(2);
    let x = rng.input_tensor([batch, 3, res, res], Layout::Nhwc)?;
    let rss_before = proc_mib("VmRSS:");
    let mut step_ms = Vec::new();
    let labels: Vec<usize> = (0..batch).map(|i| (i * 37) % 1000).collect();
    let mut opt = Optimizer::sgd(Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 4e-5,
        ..Sgd::default()
    });
    println!(
        "MobileNetV2-1.0 stand-in, batch {batch}, {res}x{res}, {} threads, {:.2} GMACs forward",
        exec.threads(),
        macs as f64 / 1e9
    );
    for step in 0..steps {
        times.lock().unwrap().clear();
        let t0 = Instant::now();
        net.visit("", &mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.grad.iter_mut().for_each(|g| *g = 0.0);
            }
        });
        let t1 = Instant::now();
        let logits = net.forward(x.clone(), Mode::Train, &exec)?;
        let t2 = Instant::now();
        let (loss, grad) = cross_entropy(logits.data(), 1000, &labels, 0.0)?;
        let dy = Tensor::from_nhwc(grad, [batch, 1, 1, 1000])?;
        let t3 = Instant::now();
        net.backward(dy, false, &exec)?;
        let t4 = Instant::now();
        opt.step(&mut net, 0.01)?;
        let t5 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        step_ms.push(ms(t0, t5));
        println!(
            "step {step}: {:.0} ms = zero {:.1} + forward {:.0} + loss {:.1} + backward {:.0} + \
             optimizer {:.1}; loss {loss:.4}; {:.1} GFLOP/s (3x forward FLOPs)",
            ms(t0, t5),
            ms(t0, t1),
            ms(t1, t2),
            ms(t2, t3),
            ms(t3, t4),
            ms(t4, t5),
            6.0 * macs as f64 / (t5 - t0).as_secs_f64() / 1e9
        );
    }
    println!(
        "{:<20} {:>10} {:>10}  (last step; residual adds and containers not listed)",
        "layer type", "fwd ms", "bwd ms"
    );
    for (name, (f, b)) in times.lock().unwrap().iter() {
        println!("{name:<20} {:>10.1} {:>10.1}", f * 1e3, b * 1e3);
    }
    let peak = proc_mib("VmHWM:");
    if let Some(mib) = peak {
        println!("peak RSS {mib:.0} MiB");
    }
    if json {
        // One line for bench/compare/train_compare.py (step 0 is the warm-up).
        let list: Vec<String> = step_ms.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "{{\"ms\": [{}], \"peak_rss_mib\": {}, \"rss_before_mib\": {}}}",
            list.join(", "),
            peak.unwrap_or(f64::NAN),
            rss_before.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
