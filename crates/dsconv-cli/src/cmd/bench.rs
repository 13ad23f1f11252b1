//! `dsconv bench`: times MobileNet layers (`--layers`) or a whole network (`--model`)
//! through dsconv's public layer API and reports each against the limits this machine
//! measures at start-up (FMA peak, DRAM read bandwidth; see `dsconv::machine`).
//!
//! Timing: one warm-up call (plus more until 20 ms have passed), then timed calls until
//! there are at least `--runs` of them and they add up to `--min-time`, or they add up to
//! `--max-time` with at least 3 runs; the median is reported. Short operations therefore
//! get many runs and slow ones few. FLOPs are 2 · MACs of `dsconv::cost`; bytes are the
//! cost model's bytes read + written (each tensor once), so GB/s is what the operation
//! would need from memory at its speed, not a hardware counter.

use super::table::{Align, Table};
use super::user_error;
use anyhow::{Context, Result};
use dsconv::models::mobilenet_v1::{self, MobileNetV1, Stage};
use dsconv::rng::SplitMix64;
use dsconv::{
    Activation, Conv2d, Conv2dParams, Cost, DepthwiseConv2d, DepthwiseSeparableConv2d, Executor,
    Padding, PointwiseConv2d, Tensor,
};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const EXAMPLES: &str = "\
Examples:
  dsconv bench --layers mobilenet-v1 --threads 2
  dsconv bench --layers mobilenet-v1 --ops pointwise,separable --blocks 12,13 --json
  dsconv bench --layers mobilenet-v1 --width 0.5 --resolution 160 --batch 8 --runs 50
  dsconv bench --model mobilenet-v1 --threads 2 --json
  dsconv bench --model efficientnet-lite0 --weights efficientnet-lite0-57934424.pth --threads 2
  dsconv bench --model mobilenet-v2 --width 0.75 --batch 8

Networks: mobilenet-v1 (--layers or --model), mobilenet-v2 and efficientnet-lite0
(--model). --model runs random weights unless --weights loads a PyTorch or safetensors
checkpoint (mobilenet-v1: the classic PyTorch naming, see docs/models-and-weights.md).

Layers (--layers): block 0 is the stem (a standard 3x3 conv: only the standard op), blocks
1..=13 the depthwise separable blocks. Operations (--ops): depthwise, pointwise, separable
(fused, DepthwiseSeparableConv2d), separable_unfused (depthwise then pointwise, the
intermediate tensor written out), standard (dense 3x3 conv of the block's shape). Every
layer runs with forward_into on 64-byte-aligned NHWC tensors allocated once, random
weights, bias and ReLU6 fused.

Timing rule: one warm-up call (more until 20 ms), then timed runs until there are --runs of
them adding up to --min-time, or they add up to --max-time with at least 3; the median is
reported. FLOPs = 2 x MACs; % peak and % bw are against this machine's FMA peak and DRAM
read bandwidth, measured at start-up (see dsconv info).";

/// Seed of the random weights and inputs (any fixed value: results must not depend on it).
const SEED: u64 = 0x00D5_C0DE;

/// Arguments of `dsconv bench`.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Time NETWORK's layers op by op (mobilenet-v1)
    #[arg(
        long,
        value_name = "NETWORK",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub layers: Option<String>,
    /// Time the whole NETWORK, input to logits (see below)
    #[arg(long, value_name = "NETWORK")]
    pub model: Option<String>,
    /// Checkpoint (.pth/.pt, .safetensors) for --model; random weights without
    #[arg(long, value_name = "PATH", requires = "model")]
    pub weights: Option<std::path::PathBuf>,
    /// Width multiplier α (channels scale by α)
    #[arg(long, default_value_t = 1.0, value_name = "ALPHA")]
    pub width: f64,
    /// Input resolution (height = width)
    #[arg(long, default_value_t = 224, value_name = "R")]
    pub resolution: usize,
    /// Images per batch
    #[arg(long, default_value_t = 1, value_name = "B")]
    pub batch: usize,
    /// Threads (0 = one per available core)
    #[arg(long, default_value_t = 0, value_name = "T")]
    pub threads: usize,
    /// Minimum timed runs per measurement (timing rule below)
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub runs: usize,
    /// Keep timing until the runs add up to this many seconds
    #[arg(long, default_value_t = 0.3, value_name = "SECONDS")]
    pub min_time: f64,
    /// Stop after this many seconds of runs, once there are 3
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub max_time: f64,
    /// Only these operations, comma-separated (--layers only)
    #[arg(long, value_delimiter = ',', value_name = "OPS")]
    pub ops: Vec<String>,
    /// Only these blocks, comma-separated (0 = the stem; --layers only)
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub blocks: Vec<usize>,
    /// Print JSON on stdout instead of a table
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr
    #[arg(long)]
    pub quiet: bool,
}

/// Networks `bench` knows (`--layers`: mobilenet-v1 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    MobileNetV1,
    MobileNetV2,
    EfficientNetLite0,
}

impl Network {
    const ALL: [Network; 3] = [
        Network::MobileNetV1,
        Network::MobileNetV2,
        Network::EfficientNetLite0,
    ];

    fn name(self) -> &'static str {
        match self {
            Network::MobileNetV1 => "mobilenet-v1",
            Network::MobileNetV2 => "mobilenet-v2",
            Network::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    fn parse(s: &str) -> Result<Network> {
        Network::ALL
            .into_iter()
            .find(|n| n.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: Vec<&str> = Network::ALL.iter().map(|n| n.name()).collect();
                user_error(format!(
                    "unknown network '{s}' (known: {})",
                    known.join(", ")
                ))
            })
    }
}

/// The operations timed per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Depthwise,
    Pointwise,
    Separable,
    SeparableUnfused,
    Standard,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Depthwise,
        Op::Pointwise,
        Op::Separable,
        Op::SeparableUnfused,
        Op::Standard,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Depthwise => "depthwise",
            Op::Pointwise => "pointwise",
            Op::Separable => "separable",
            Op::SeparableUnfused => "separable_unfused",
            Op::Standard => "standard",
        }
    }

    fn parse(s: &str) -> Result<Op> {
        Op::ALL
            .into_iter()
            .find(|o| o.name() == s.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
                user_error(format!(
                    "unknown operation '{s}' in --ops (known: {})",
                    known.join(", ")
                ))
            })
    }
}

/// Median and minimum of the timed runs.
#[derive(Debug, Clone, Copy)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
    runs: usize,
}

/// How long to time one operation.
#[derive(Debug, Clone, Copy)]
struct Budget {
    runs: usize,
    min_time: Duration,
    max_time: Duration,
}

/// Warm-up: at least one call and until this much time has passed.
const WARM_UP: Duration = Duration::from_millis(20);
/// Largest single activation tensor a benchmark may allocate (several are alive at once).
const MAX_ACTIVATION_BYTES: u128 = 4 << 30;
/// At most this many timed runs, however short the operation (bounds the sample vector).
const MAX_RUNS: usize = 100_000;

/// Times `f` (see the module doc for the rule) and returns its median and minimum.
fn time<F: FnMut() -> dsconv::Result<()>>(budget: Budget, mut f: F) -> Result<Timing> {
    let start = Instant::now();
    f()?;
    while start.elapsed() < WARM_UP {
        f()?;
    }
    let mut samples = Vec::with_capacity(budget.runs.max(16));
    let mut total = Duration::ZERO;
    loop {
        let t = Instant::now();
        f()?;
        let dt = t.elapsed();
        total += dt;
        samples.push(dt.as_secs_f64() * 1e3);
        let n = samples.len();
        let enough = n >= budget.runs.max(1) && total >= budget.min_time;
        let too_long = n >= 3.min(budget.runs.max(1)) && total >= budget.max_time;
        if enough || too_long || n >= MAX_RUNS {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median_ms = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    };
    Ok(Timing {
        median_ms,
        min_ms: samples[0],
        runs: n,
    })
}

/// Progress on stderr: one line rewritten in place on a terminal, one short line per
/// block otherwise; nothing with `--quiet`. Never on stdout, so JSON stays clean.
struct Progress {
    enabled: bool,
    terminal: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows what is being timed now (terminal only: elsewhere it would be noise).
    fn now(&self, what: &str) {
        if self.enabled && self.terminal {
            eprint!("\r\x1b[K{what}");
            let _ = std::io::stderr().flush();
        }
    }

    /// Reports a finished step.
    fn done(&self, what: &str) {
        if !self.enabled {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[K{what}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{what}");
        }
    }

    /// Clears the in-place line before the results are printed.
    fn finish(&self) {
        if self.enabled && self.terminal {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// Runs `dsconv bench`.
pub fn run(args: Args) -> Result<()> {
    // Every argument is checked before the machine is measured, so mistakes fail at once.
    validate(&args)?;
    let target = match (&args.layers, &args.model) {
        (Some(net), _) => match Network::parse(net)? {
            Network::MobileNetV1 => Target::Layers(Network::MobileNetV1, LayerPlan::new(&args)?),
            other => {
                return Err(user_error(format!(
                    "--layers knows mobilenet-v1 only; time {} whole with --model",
                    other.name()
                )))
            }
        },
        (_, Some(net)) => Target::Model(Network::parse(net)?),
        (None, None) => return Err(user_error("give --layers NETWORK or --model NETWORK")),
    };
    let exec = Executor::new(args.threads)?;
    let threads = exec.threads();
    let progress = Progress::new(args.quiet);
    progress.now("measuring the machine (FMA peak, memory bandwidth)...");
    let machine = dsconv::machine::profile(threads);
    let budget = Budget {
        runs: args.runs,
        min_time: Duration::from_secs_f64(args.min_time),
        max_time: Duration::from_secs_f64(args.max_time),
    };
    let report = match target {
        Target::Layers(network, plan) => {
            bench_layers(&args, network, &plan, &exec, &machine, budget, &progress)?
        }
        Target::Model(network) => bench_model(&args, network, &exec, &machine, budget, &progress)?,
    };
    progress.finish();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.json)?;
        writeln!(out)?;
    } else {
        out.write_all(report.table.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// What a benchmark produced: the JSON document and the table for people.
struct Report {
    json: Value,
    table: String,
}

fn validate(args: &Args) -> Result<()> {
    mobilenet_v1::validate(args.width, args.resolution)?;
    if args.batch == 0 || args.batch > 4096 {
        return Err(user_error(format!(
            "--batch {} is not in 1..=4096",
            args.batch
        )));
    }
    if args.runs == 0 || args.runs > MAX_RUNS {
        return Err(user_error(format!(
            "--runs {} is not in 1..={MAX_RUNS}",
            args.runs
        )));
    }
    for (name, v) in [("--min-time", args.min_time), ("--max-time", args.max_time)] {
        if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
            return Err(user_error(format!(
                "{name} {v} is not a number of seconds in [0, 3600]"
            )));
        }
    }
    if args.model.is_some() && (!args.ops.is_empty() || !args.blocks.is_empty()) {
        return Err(user_error("--ops and --blocks apply to --layers only"));
    }
    // The largest activation tensor, so an absurd --batch × --resolution is refused with a
    // message instead of an allocation failure.
    let largest = mobilenet_v1::stages(args.width, args.resolution)?
        .iter()
        .map(|s| {
            let input = s.in_size as u128 * s.in_size as u128 * s.in_channels.max(3) as u128;
            let output = s.out_size as u128 * s.out_size as u128 * s.out_channels as u128;
            input.max(output)
        })
        .max()
        .unwrap_or(0);
    let bytes = largest * args.batch as u128 * 4;
    if bytes > MAX_ACTIVATION_BYTES {
        return Err(user_error(format!(
            "--batch {} at --resolution {} needs activations of {:.1} GiB, more than the {} GiB allowed",
            args.batch,
            args.resolution,
            bytes as f64 / (1u64 << 30) as f64,
            MAX_ACTIVATION_BYTES >> 30
        )));
    }
    Ok(())
}

/// Uniform random weights in `±1/√fan_in` (keeps activations O(1) through ReLU6).
fn random_weight(rng: &mut SplitMix64, dims: [usize; 4]) -> Result<Tensor> {
    let fan_in = dims[1] * dims[2] * dims[3];
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let n = dims.iter().product();
    Ok(Tensor::from_nchw(rng.vec(n, -bound, bound), dims)?)
}

/// The layers of one MobileNetV1 block with random weights, bias and ReLU6.
struct BlockLayers {
    depthwise: DepthwiseConv2d,
    pointwise: PointwiseConv2d,
    separable: DepthwiseSeparableConv2d,
    standard: Option<Conv2d>,
}

/// The 3×3 convolution, padding 1, of `stage`'s stride and channels (the stem itself, or
/// the dense convolution a separable block replaces).
fn standard_conv(stage: &Stage, rng: &mut SplitMix64) -> Result<Conv2d> {
    let (c, co) = (stage.in_channels, stage.out_channels);
    let k3 = Conv2dParams::default()
        .with_stride(stage.stride)
        .with_padding(Padding::symmetric(1));
    Ok(Conv2d::new(
        random_weight(rng, [co, c, 3, 3])?,
        Some(rng.vec(co, -0.1, 0.1)),
        k3,
    )?
    .with_activation(Activation::Relu6))
}

fn block_layers(stage: &Stage, with_standard: bool, rng: &mut SplitMix64) -> Result<BlockLayers> {
    let (c, co, s) = (stage.in_channels, stage.out_channels, stage.stride);
    let k3 = Conv2dParams::default()
        .with_stride(s)
        .with_padding(Padding::symmetric(1));
    let depthwise = DepthwiseConv2d::new(
        random_weight(rng, [c, 1, 3, 3])?,
        Some(rng.vec(c, -0.1, 0.1)),
        k3,
    )?
    .with_activation(Activation::Relu6);
    let pointwise = PointwiseConv2d::new(
        random_weight(rng, [co, c, 1, 1])?,
        Some(rng.vec(co, -0.1, 0.1)),
    )?
    .with_activation(Activation::Relu6);
    let separable = DepthwiseSeparableConv2d::new(depthwise.clone(), pointwise.clone())?;
    let standard = if with_standard {
        Some(standard_conv(stage, rng)?)
    } else {
        None
    };
    Ok(BlockLayers {
        depthwise,
        pointwise,
        separable,
        standard,
    })
}

/// A random NHWC activation tensor with logical dims `[n, c, h, w]`.
fn random_nhwc(rng: &mut SplitMix64, [n, c, h, w]: [usize; 4]) -> Result<Tensor> {
    let len = [n, c, h, w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context("input size overflows")?;
    // 64-byte aligned, as a network's activations are (`Tensor::filled`).
    let mut t = Tensor::filled([n, h, w, c], dsconv::Layout::Nhwc, 0.0)?;
    t.data_mut().copy_from_slice(&rng.vec(len, -1.0, 1.0));
    Ok(t)
}

/// What `run` was asked to measure.
enum Target {
    Layers(Network, LayerPlan),
    Model(Network),
}

/// The blocks and operations `--layers` times.
struct LayerPlan {
    /// The network's convolutional stages: the stem (block 0, a standard convolution:
    /// only the `standard` op applies) and the separable blocks 1, 2, ...
    stages: Vec<Stage>,
    ops: Vec<Op>,
    /// Block numbers, in order.
    blocks: Vec<usize>,
}

impl LayerPlan {
    fn new(args: &Args) -> Result<LayerPlan> {
        let stages: Vec<Stage> = mobilenet_v1::stages(args.width, args.resolution)?;
        let ops: Vec<Op> = if args.ops.is_empty() {
            Op::ALL.to_vec()
        } else {
            args.ops
                .iter()
                .map(|s| Op::parse(s))
                .collect::<Result<_>>()?
        };
        if let Some(bad) = args.blocks.iter().find(|&&b| b >= stages.len()) {
            return Err(user_error(format!(
                "--blocks {bad} is not in 0..={} (0 is the stem)",
                stages.len() - 1
            )));
        }
        let blocks = (0..stages.len())
            .filter(|b| args.blocks.is_empty() || args.blocks.contains(b))
            .collect();
        Ok(LayerPlan {
            stages,
            ops,
            blocks,
        })
    }
}

/// One measured operation.
struct Row {
    block: usize,
    name: String,
    op: Op,
    /// Input `[N, H, W]` of the operation, channels in and out, stride.
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    stride: usize,
    cost: Cost,
    timing: Timing,
}

impl Row {
    fn gflops(&self) -> f64 {
        self.cost.flops() as f64 / (self.timing.median_ms * 1e-3) / 1e9
    }
    fn gbs(&self) -> f64 {
        self.cost.bytes() as f64 / (self.timing.median_ms * 1e-3) / 1e9
    }
}

fn bench_layers(
    args: &Args,
    network: Network,
    plan: &LayerPlan,
    exec: &Executor,
    machine: &dsconv::machine::Profile,
    budget: Budget,
    progress: &Progress,
) -> Result<Report> {
    debug_assert_eq!(network, Network::MobileNetV1, "checked in run()");
    let LayerPlan {
        stages,
        ops,
        blocks: selected,
    } = plan;
    let mut rng = SplitMix64::new(SEED);
    let mut rows = Vec::new();
    let batch = args.batch;
    for (done, &b) in selected.iter().enumerate() {
        let st = &stages[b];
        if st.is_stem {
            if ops.contains(&Op::Standard) {
                let (c, co, s, hi) = (st.in_channels, st.out_channels, st.stride, st.in_size);
                let name = format!("conv_k3s{s}_c{c}_c{co}_{hi}x{hi}");
                progress.now(&format!("[{}/{}] stem {name}", done + 1, selected.len()));
                let conv = standard_conv(st, &mut rng)?;
                let x = random_nhwc(&mut rng, [batch, c, hi, hi])?;
                let ho = st.out_size;
                let mut out = Tensor::zeros([batch, ho, ho, co], dsconv::Layout::Nhwc)?;
                let timing = time(budget, || conv.forward_into(&x, &mut out, exec))?;
                rows.push(Row {
                    block: b,
                    name,
                    op: Op::Standard,
                    n: batch,
                    h: hi,
                    w: hi,
                    cin: c,
                    cout: co,
                    stride: s,
                    cost: conv.cost(x.logical_dims())?,
                    timing,
                });
                progress.done(&format!(
                    "bench: stem ({}/{}) done",
                    done + 1,
                    selected.len()
                ));
            }
            continue;
        }
        let layers = block_layers(st, ops.contains(&Op::Standard), &mut rng)?;
        let (c, co, s, hi, ho) = (
            st.in_channels,
            st.out_channels,
            st.stride,
            st.in_size,
            st.out_size,
        );
        let x = random_nhwc(&mut rng, [batch, c, hi, hi])?;
        let mid = random_nhwc(&mut rng, [batch, c, ho, ho])?;
        let block_input = [batch, c, hi, hi];
        // Outputs allocated once (64-byte aligned, as a network's workspace tensors), so
        // the timings are the layers', not the allocator's or the page faults'.
        let nhwc = dsconv::Layout::Nhwc;
        let mut dw_out = Tensor::zeros([batch, ho, ho, c], nhwc)?;
        let mut out = Tensor::zeros([batch, ho, ho, co], nhwc)?;
        for &op in ops {
            let (name, input_hw, cin, cout, stride) = match op {
                Op::Depthwise => (format!("dw_k3s{s}_c{c}_{hi}x{hi}"), hi, c, c, s),
                Op::Pointwise => (format!("pw_c{c}_c{co}_{ho}x{ho}"), ho, c, co, 1),
                Op::Separable | Op::SeparableUnfused => (format!("sep_block{b}"), hi, c, co, s),
                Op::Standard => (format!("conv_k3s{s}_c{c}_c{co}_{hi}x{hi}"), hi, c, co, s),
            };
            progress.now(&format!(
                "[{}/{}] block {b} {} {name}",
                done + 1,
                selected.len(),
                op.name()
            ));
            let (cost, timing) = match op {
                Op::Depthwise => (
                    layers.depthwise.cost(block_input)?,
                    time(budget, || {
                        layers.depthwise.forward_into(&x, &mut dw_out, exec)
                    })?,
                ),
                Op::Pointwise => (
                    layers.pointwise.cost(mid.logical_dims())?,
                    time(budget, || {
                        layers.pointwise.forward_into(&mid, &mut out, exec)
                    })?,
                ),
                Op::Separable => (
                    layers.separable.cost(block_input)?,
                    time(budget, || layers.separable.forward_into(&x, &mut out, exec))?,
                ),
                Op::SeparableUnfused => (
                    layers.separable.cost(block_input)?,
                    // Depthwise into a whole intermediate tensor, then pointwise.
                    time(budget, || {
                        layers.depthwise.forward_into(&x, &mut dw_out, exec)?;
                        layers.pointwise.forward_into(&dw_out, &mut out, exec)
                    })?,
                ),
                Op::Standard => {
                    let conv = layers
                        .standard
                        .as_ref()
                        .context("standard layer not built")?;
                    (
                        conv.cost(block_input)?,
                        time(budget, || conv.forward_into(&x, &mut out, exec))?,
                    )
                }
            };
            rows.push(Row {
                block: b,
                name,
                op,
                n: batch,
                h: input_hw,
                w: input_hw,
                cin,
                cout,
                stride,
                cost,
                timing,
            });
        }
        progress.done(&format!(
            "bench: block {b} ({}/{}) {c}->{co} s{s} {hi}x{hi} done",
            done + 1,
            selected.len()
        ));
    }
    let threads = exec.threads();
    let json_rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "block": r.block,
                "op": r.op.name(),
                "N": r.n, "H": r.h, "W": r.w,
                "Cin": r.cin, "Cout": r.cout, "stride": r.stride,
                "macs": r.cost.macs,
                "flops": r.cost.flops(),
                "bytes": r.cost.bytes(),
                "median_ms": r.timing.median_ms,
                "min_ms": r.timing.min_ms,
                "runs": r.timing.runs,
                "gflops": r.gflops(),
                "gbs": r.gbs(),
                "pct_peak": 100.0 * r.gflops() / machine.peak_gflops,
                "pct_bandwidth": 100.0 * r.gbs() / machine.dram_read_gbs,
            })
        })
        .collect();
    let json = json!({
        "network": network.name(),
        "width": args.width,
        "resolution": args.resolution,
        "peak_gflops": machine.peak_gflops,
        "bandwidth_gbs": machine.dram_read_gbs,
        "l2_bandwidth_gbs": machine.l2_read_gbs,
        "peak_isa": machine.isa,
        "kernel_isa": exec.isa().name(),
        "threads": threads,
        "batch": batch,
        "cpu": dsconv::machine::cpu_model(),
        "version": env!("CARGO_PKG_VERSION"),
        "layers": json_rows,
    });
    let table = layers_table(args, network, threads, machine, &rows);
    Ok(Report { json, table })
}

fn header(
    args: &Args,
    network: Network,
    threads: usize,
    machine: &dsconv::machine::Profile,
) -> String {
    format!(
        "{} α={} {}x{}, batch {}, {} thread{}; measured FMA peak {:.1} GFLOP/s ({}), DRAM read {:.1} GB/s\n",
        network.name(),
        args.width,
        args.resolution,
        args.resolution,
        args.batch,
        threads,
        if threads == 1 { "" } else { "s" },
        machine.peak_gflops,
        machine.isa,
        machine.dram_read_gbs
    )
}

fn layers_table(
    args: &Args,
    network: Network,
    threads: usize,
    machine: &dsconv::machine::Profile,
    rows: &[Row],
) -> String {
    let mut table = Table::new(&[
        ("block", Align::Right),
        ("layer", Align::Left),
        ("op", Align::Left),
        ("MMACs", Align::Right),
        ("median ms", Align::Right),
        ("GFLOP/s", Align::Right),
        ("% peak", Align::Right),
        ("GB/s", Align::Right),
        ("% bw", Align::Right),
        ("runs", Align::Right),
    ]);
    let mut sums: Vec<(Op, f64)> = Vec::new();
    for r in rows {
        table.row(vec![
            r.block.to_string(),
            r.name.clone(),
            r.op.name().to_string(),
            format!("{:.1}", r.cost.macs as f64 / 1e6),
            format!("{:.4}", r.timing.median_ms),
            format!("{:.1}", r.gflops()),
            format!("{:.1}", 100.0 * r.gflops() / machine.peak_gflops),
            format!("{:.1}", r.gbs()),
            format!("{:.1}", 100.0 * r.gbs() / machine.dram_read_gbs),
            r.timing.runs.to_string(),
        ]);
        match sums.iter_mut().find(|(op, _)| *op == r.op) {
            Some((_, ms)) => *ms += r.timing.median_ms,
            None => sums.push((r.op, r.timing.median_ms)),
        }
    }
    let mut t = header(args, network, threads, machine);
    t.push_str(&table.render(0));
    t.push_str("sum of medians:");
    for (op, ms) in sums {
        t.push_str(&format!("  {} {:.3} ms", op.name(), ms));
    }
    t.push('\n');
    t
}

fn bench_model(
    args: &Args,
    network: Network,
    exec: &Executor,
    machine: &dsconv::machine::Profile,
    budget: Budget,
    progress: &Progress,
) -> Result<Report> {
    let input = [args.batch, 3, args.resolution, args.resolution];
    let mut rng = SplitMix64::new(SEED ^ 1);
    let x = random_nhwc(&mut rng, input)?;
    let timing;
    let cost;
    if network == Network::MobileNetV1 {
        let net = match &args.weights {
            Some(path) => {
                progress.now(&format!("loading {}...", path.display()));
                let sd = dsconv::weights::StateDict::load(path)?;
                MobileNetV1::from_state_dict(&sd, args.width, args.resolution)?
            }
            None => MobileNetV1::random(args.width, args.resolution, SEED)?,
        };
        cost = net.cost(args.batch)?.total();
        progress.now(&format!(
            "timing {} (batch {})...",
            network.name(),
            args.batch
        ));
        timing = time(budget, || net.forward_with(&x, exec).map(drop))?;
    } else {
        if network == Network::EfficientNetLite0 && args.width != 1.0 {
            return Err(user_error(
                "efficientnet-lite0 has a fixed width; drop --width",
            ));
        }
        let net = match &args.weights {
            Some(path) => {
                progress.now(&format!("loading {}...", path.display()));
                let sd = dsconv::weights::StateDict::load(path)?;
                dsconv::models::Network::from_state_dict(network.name(), &sd, args.width)?
            }
            None => dsconv::models::Network::random(network.name(), args.width, SEED)?,
        };
        cost = net.cost(input)?;
        progress.now(&format!(
            "timing {} (batch {})...",
            network.name(),
            args.batch
        ));
        timing = time(budget, || net.forward_with(&x, exec).map(drop))?;
    }
    let seconds = timing.median_ms * 1e-3;
    let gflops = cost.flops() as f64 / seconds / 1e9;
    let pct_peak = 100.0 * gflops / machine.peak_gflops;
    let threads = exec.threads();
    let json = json!({
        "network": network.name(),
        "width": args.width,
        "resolution": args.resolution,
        "weights": args.weights.as_ref().map(|p| p.display().to_string()),
        "peak_gflops": machine.peak_gflops,
        "bandwidth_gbs": machine.dram_read_gbs,
        "peak_isa": machine.isa,
        "kernel_isa": exec.isa().name(),
        "threads": threads,
        "batch": args.batch,
        "cpu": dsconv::machine::cpu_model(),
        "version": env!("CARGO_PKG_VERSION"),
        "macs": cost.macs,
        "flops": cost.flops(),
        "median_ms": timing.median_ms,
        "min_ms": timing.min_ms,
        "runs": timing.runs,
        "gflops": gflops,
        "pct_peak": pct_peak,
        "images_per_s": args.batch as f64 / seconds,
    });
    let mut table = header(args, network, threads, machine);
    table.push_str(&format!(
        "whole network: median {:.3} ms, min {:.3} ms over {} runs; {:.1} MMACs, {:.1} GFLOP/s = {:.1}% of peak; {:.1} images/s\n",
        timing.median_ms,
        timing.min_ms,
        timing.runs,
        cost.macs as f64 / 1e6,
        gflops,
        pct_peak,
        args.batch as f64 / seconds
    ));
    Ok(Report { json, table })
}
