//! `dsconv bench --layers mobilenet-v1`: each operation of each selected block timed on
//! its own (depthwise, pointwise, fused and unfused separable, the standard 3×3 convolution
//! of the block's shape), random weights from the library's one initialiser.

use super::timing::{time, Budget, Progress, Timing};
use super::{header, Report, Setup, SEED};
use crate::cmd::table::{Align, Table};
use crate::cmd::user_error;
use anyhow::{Context, Result};
use dsconv::models::mobilenet_v1::{self, Stage};
use dsconv::rng::SplitMix64;
use dsconv::{
    Activation, Conv2d, Conv2dParams, Cost, DepthwiseConv2d, DepthwiseSeparableConv2d, Executor,
    Layout, Padding, PointwiseConv2d, Tensor,
};
use serde_json::{json, Value};

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
        rng.weight_tensor([co, c, 3, 3], 1.0)?,
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
        rng.weight_tensor([c, 1, 3, 3], 1.0)?,
        Some(rng.vec(c, -0.1, 0.1)),
        k3,
    )?
    .with_activation(Activation::Relu6);
    let pointwise = PointwiseConv2d::new(
        rng.weight_tensor([co, c, 1, 1], 1.0)?,
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

/// The blocks and operations `--layers` times.
pub(super) struct LayerPlan {
    /// The network's convolutional stages: the stem (block 0, a standard convolution:
    /// only the `standard` op applies) and the separable blocks 1, 2, ...
    stages: Vec<Stage>,
    ops: Vec<Op>,
    /// Block numbers, in order.
    blocks: Vec<usize>,
}

impl LayerPlan {
    pub(super) fn new(setup: &Setup) -> Result<LayerPlan> {
        let args = setup.args;
        let stages: Vec<Stage> = mobilenet_v1::stages(args.width, setup.resolution)?;
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

/// Times the plan's operations; the report lists one row per operation.
pub(super) fn bench(
    setup: &Setup,
    plan: &LayerPlan,
    exec: &Executor,
    machine: &dsconv::machine::Profile,
    budget: Budget,
    progress: &Progress,
) -> Result<Report> {
    let args = setup.args;
    let LayerPlan {
        stages,
        ops,
        blocks: selected,
    } = plan;
    let mut rng = SplitMix64::new(SEED);
    let mut rows = Vec::new();
    let batch = args.batch();
    for (done, &b) in selected.iter().enumerate() {
        let st = &stages[b];
        if st.is_stem {
            if ops.contains(&Op::Standard) {
                let (c, co, s, hi) = (st.in_channels, st.out_channels, st.stride, st.in_size);
                let name = format!("conv_k3s{s}_c{c}_c{co}_{hi}x{hi}");
                progress.now(&format!("[{}/{}] stem {name}", done + 1, selected.len()));
                let conv = standard_conv(st, &mut rng)?;
                let x = rng.input_tensor([batch, c, hi, hi], Layout::Nhwc)?;
                let ho = st.out_size;
                let mut out = Tensor::zeros([batch, ho, ho, co], Layout::Nhwc)?;
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
        let x = rng.input_tensor([batch, c, hi, hi], Layout::Nhwc)?;
        let mid = rng.input_tensor([batch, c, ho, ho], Layout::Nhwc)?;
        let block_input = [batch, c, hi, hi];
        // Outputs allocated once (64-byte aligned, as a network's workspace tensors), so
        // the timings are the layers', not the allocator's or the page faults'.
        let nhwc = Layout::Nhwc;
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
        "network": setup.spec.name,
        "width": args.width,
        "resolution": setup.resolution,
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
    let table = layers_table(setup, threads, machine, &rows);
    Ok(Report { json, table })
}

fn layers_table(
    setup: &Setup,
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
    let mut t = header(setup, threads, machine);
    t.push_str(&table.render(0));
    t.push_str("sum of medians:");
    for (op, ms) in sums {
        t.push_str(&format!("  {} {:.3} ms", op.name(), ms));
    }
    t.push('\n');
    t
}
