#!/usr/bin/env python3
"""dsconv against ONNX Runtime on MobileNetV1's layers and on the whole network.

Builds ONNX graphs with onnx.helper (no PyTorch) for the same layers `dsconv bench
--layers mobilenet-v1` times -- depthwise 3x3 (Conv, group = C), pointwise (1x1 Conv),
the separable block (both convolutions in one graph) and the dense 3x3 convolution of the
block's shape, each with bias and Clip(0, 6) -- and for the whole MobileNetV1 (BatchNorm
already folded into the convolutions' bias: stem, 13 blocks, GlobalAveragePool, Gemm).
Weights are random. ONNX Runtime gets NCHW (its native layout; MLAS reorders to NCHWc
inside), dsconv gets NHWC (its own), both through their public APIs.

In each round the script runs `dsconv bench --json` and then ONNX Runtime on the same
layers, so that a change in machine load hits both; each side's per-round medians are
reduced to a median over the rounds. It prints a ratio table (dsconv time / ORT time: < 1
means dsconv is faster) and writes a dated record to bench/records/.

Usage (from the repository root):
    cargo build --release
    python bench/compare/compare.py --threads 2,1 --batch 1 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
OPSET = 17
# MobileNetV1 at alpha = 1: (output channels, stride) of the 13 separable blocks; the
# stem is a 3x3 stride-2 convolution to 32 channels. Same table as
# crates/dsconv/src/models/mobilenet_v1.rs.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
          (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
STEM = 32
CLASSES = 1000
# ORT graph for each dsconv op: separable_unfused has no ORT counterpart of its own (ORT
# runs both convolutions either way), so it is compared with the same two-conv graph.
ORT_GRAPH_OF_OP = {"depthwise": "depthwise", "pointwise": "pointwise",
                   "separable": "separable", "separable_unfused": "separable",
                   "standard": "standard"}


def scale(c: int, alpha: float) -> int:
    return max(int(c * alpha), 1)


def stages(alpha: float, resolution: int):
    """The stem (block 0) and the 13 separable blocks: (block, c_in, c_out, stride,
    in_size, out_size)."""
    out = lambda size, stride: (size + 2 - 3) // stride + 1  # noqa: E731
    size = out(resolution, 2)
    c = scale(STEM, alpha)
    result = [(0, 3, c, 2, resolution, size)]
    for i, (co, s) in enumerate(BLOCKS, start=1):
        co = scale(co, alpha)
        nxt = out(size, s)
        result.append((i, c, co, s, size, nxt))
        c, size = co, nxt
    return result


class GraphBuilder:
    """Accumulates nodes and initializers for an NCHW float graph."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.count = 0
        lo = numpy_helper.from_array(np.array(0.0, np.float32), "clip_min")
        hi = numpy_helper.from_array(np.array(6.0, np.float32), "clip_max")
        self.inits += [lo, hi]

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def conv_relu6(self, x: str, c_in: int, c_out: int, k: int, stride: int, group: int) -> str:
        fan_in = (c_in // group) * k * k
        bound = 1.0 / np.sqrt(fan_in)
        w = self.rng.uniform(-bound, bound, (c_out, c_in // group, k, k)).astype(np.float32)
        b = self.rng.uniform(-0.1, 0.1, (c_out,)).astype(np.float32)
        wn, bn, y, z = self.name("w"), self.name("b"), self.name("conv"), self.name("relu6")
        self.inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, wn, bn], [y], kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, group=group))
        self.nodes.append(helper.make_node("Clip", [y, "clip_min", "clip_max"], [z]))
        return z

    def model(self, x_shape, out_name: str, out_shape) -> bytes:
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
            self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m.SerializeToString()


def layer_graph(kind: str, batch: int, c: int, co: int, s: int, hi: int, ho: int, seed: int):
    """(serialized model, input shape) for one op of one block."""
    g = GraphBuilder(np.random.default_rng(seed))
    if kind == "depthwise":
        shape, out = [batch, c, hi, hi], [batch, c, ho, ho]
        y = g.conv_relu6("x", c, c, 3, s, c)
    elif kind == "pointwise":
        shape, out = [batch, c, ho, ho], [batch, co, ho, ho]
        y = g.conv_relu6("x", c, co, 1, 1, 1)
    elif kind == "separable":
        shape, out = [batch, c, hi, hi], [batch, co, ho, ho]
        y = g.conv_relu6(g.conv_relu6("x", c, c, 3, s, c), c, co, 1, 1, 1)
    elif kind == "standard":
        shape, out = [batch, c, hi, hi], [batch, co, ho, ho]
        y = g.conv_relu6("x", c, co, 3, s, 1)
    else:
        raise ValueError(kind)
    return g.model(shape, y, out), shape


def mobilenet_graph(alpha: float, resolution: int, batch: int, seed: int):
    g = GraphBuilder(np.random.default_rng(seed))
    y = g.conv_relu6("x", 3, scale(STEM, alpha), 3, 2, 1)
    for _, c, co, s, _, _ in stages(alpha, resolution)[1:]:
        y = g.conv_relu6(g.conv_relu6(y, c, c, 3, s, c), c, co, 1, 1, 1)
    c_last = scale(1024, alpha)
    g.nodes.append(helper.make_node("GlobalAveragePool", [y], ["pool"]))
    g.nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    w = g.rng.uniform(-1 / np.sqrt(c_last), 1 / np.sqrt(c_last), (CLASSES, c_last))
    g.inits += [numpy_helper.from_array(w.astype(np.float32), "fc_w"),
                numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fc_b")]
    g.nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1))
    shape = [batch, 3, resolution, resolution]
    return g.model(shape, "logits", [batch, CLASSES]), shape


def make_session(model: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def time_ort(sess: ort.InferenceSession, shape, budget) -> dict:
    """Same rule as dsconv bench: warm-up (>= 1 call, 20 ms), then runs until >= runs and
    min_time, or max_time with >= 3 runs; median. Input and output bound once (IOBinding),
    so Python does not copy tensors per call."""
    runs, min_time, max_time = budget
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    binding = sess.io_binding()
    binding.bind_cpu_input(sess.get_inputs()[0].name, x)
    binding.bind_output(sess.get_outputs()[0].name, "cpu")
    start = time.perf_counter()
    sess.run_with_iobinding(binding)
    while time.perf_counter() - start < 0.02:
        sess.run_with_iobinding(binding)
    samples, total = [], 0.0
    while True:
        t = time.perf_counter()
        sess.run_with_iobinding(binding)
        d = time.perf_counter() - t
        total += d
        samples.append(d * 1e3)
        n = len(samples)
        if (n >= runs and total >= min_time) or (n >= min(3, runs) and total >= max_time):
            break
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "runs": len(samples)}


def run_dsconv(binary: Path, args: list[str]) -> dict:
    cmd = [str(binary), "bench", *args, "--json", "--quiet"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def cpu_name() -> str:
    name, family, model = "unknown cpu", None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and name == "unknown cpu":
                name = value
            elif key == "cpu family" and family is None:
                family = value
            elif key == "model" and model is None:
                model = value
    except OSError:
        name = platform.processor() or name
    if family is not None:
        name += f" (family {family}, model {model})"
    return name


def slug(s: str) -> str:
    s = re.sub(r"\(family (\d+), model (\d+)\)", r"f\1m\2", s)
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median_over_rounds(values: list[dict]) -> dict:
    """Median over rounds of the per-round medians, and the fastest single run of all
    rounds (the least disturbed by other processes on a shared machine)."""
    return {"median_ms": statistics.median(v["median_ms"] for v in values),
            "min_ms": min(v["min_ms"] for v in values),
            "round_medians_ms": [round(v["median_ms"], 5) for v in values]}


def compare_threads(args, threads: int, log) -> dict:
    """All rounds for one thread count; returns the per-op and whole-model comparison."""
    blocks = stages(args.width, args.resolution)
    if args.blocks:
        blocks = [b for b in blocks if b[0] in args.blocks]
    ops = args.ops
    budget = (args.runs, args.min_time, args.max_time)
    common = ["--threads", str(threads), "--batch", str(args.batch), "--width", str(args.width),
              "--resolution", str(args.resolution), "--runs", str(args.runs),
              "--min-time", str(args.min_time), "--max-time", str(args.max_time)]
    layer_args = ["--layers", "mobilenet-v1", "--ops", ",".join(ops),
                  "--blocks", ",".join(str(b[0]) for b in blocks), *common]
    kinds = sorted({ORT_GRAPH_OF_OP[o] for o in ops})
    # The stem (block 0) is a standard convolution: the only op dsconv times for it.
    graphs = {(b[0], k): layer_graph(k, args.batch, *b[1:], seed=1000 * b[0] + i)
              for b in blocks for i, k in enumerate(kinds) if b[0] > 0 or k == "standard"}
    model_graph = mobilenet_graph(args.width, args.resolution, args.batch, seed=7)
    ds_layers, ort_layers, ds_model, ort_model, meta = {}, {}, [], [], None
    for r in range(args.rounds):
        log(f"threads {threads}, round {r + 1}/{args.rounds}: dsconv layers (load {load()})")
        doc = run_dsconv(args.dsconv, layer_args)
        meta = meta or doc
        for l in doc["layers"]:
            ds_layers.setdefault((l["block"], l["op"]), []).append(l)
        log(f"threads {threads}, round {r + 1}/{args.rounds}: onnxruntime layers")
        for (b, k), (model, shape) in graphs.items():
            sess = make_session(model, threads)
            ort_layers.setdefault((b, k), []).append(time_ort(sess, shape, budget))
            del sess
        if not args.no_model:
            log(f"threads {threads}, round {r + 1}/{args.rounds}: whole network")
            ds_model.append(run_dsconv(args.dsconv, ["--model", "mobilenet-v1", *common]))
            sess = make_session(model_graph[0], threads)
            ort_model.append(time_ort(sess, model_graph[1], budget))
            del sess
    rows = []
    for (b, op), runs in sorted(ds_layers.items(), key=lambda kv: (kv[0][0], ops.index(kv[0][1]))):
        first = runs[0]
        ds = median_over_rounds(runs)
        ort_t = median_over_rounds(ort_layers[(b, ORT_GRAPH_OF_OP[op])])
        flops = 2 * first["macs"]
        rows.append({
            "block": b, "name": first["name"], "op": op, "macs": first["macs"],
            "dsconv_ms": ds["median_ms"], "ort_ms": ort_t["median_ms"],
            "ratio": ds["median_ms"] / ort_t["median_ms"],
            "dsconv_min_ms": ds["min_ms"], "ort_min_ms": ort_t["min_ms"],
            "min_ratio": ds["min_ms"] / ort_t["min_ms"],
            "dsconv_gflops": flops / ds["median_ms"] / 1e6,
            "ort_gflops": flops / ort_t["median_ms"] / 1e6,
            "dsconv_round_medians_ms": ds["round_medians_ms"],
            "ort_round_medians_ms": ort_t["round_medians_ms"],
        })
    result = {"threads": threads, "peak_gflops": meta["peak_gflops"],
              "bandwidth_gbs": meta["bandwidth_gbs"], "kernel_isa": meta.get("kernel_isa"),
              "layers": rows}
    if ds_model:
        ds = median_over_rounds(ds_model)
        ort_t = median_over_rounds(ort_model)
        flops = ds_model[0]["flops"]
        result["model"] = {
            "dsconv_ms": ds["median_ms"], "ort_ms": ort_t["median_ms"],
            "ratio": ds["median_ms"] / ort_t["median_ms"],
            "dsconv_min_ms": ds["min_ms"], "ort_min_ms": ort_t["min_ms"],
            "min_ratio": ds["min_ms"] / ort_t["min_ms"],
            "macs": ds_model[0]["macs"],
            "dsconv_gflops": flops / ds["median_ms"] / 1e6,
            "ort_gflops": flops / ort_t["median_ms"] / 1e6,
            "dsconv_round_medians_ms": ds["round_medians_ms"],
            "ort_round_medians_ms": ort_t["round_medians_ms"],
        }
    return result


def table(result: dict) -> str:
    t = result["threads"]
    lines = [f"threads {t}: measured FMA peak {result['peak_gflops']:.1f} GFLOP/s, "
             f"DRAM read {result['bandwidth_gbs']:.1f} GB/s; dsconv kernels "
             f"{result.get('kernel_isa') or 'unknown'}",
             "",
             "| block | layer | op | MMACs | dsconv ms | ORT ms | dsconv/ORT | dsconv GFLOP/s "
             "| ORT GFLOP/s | min ratio |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    sums: dict[str, list[float]] = {}
    for r in result["layers"]:
        lines.append(f"| {r['block']} | {r['name']} | {r['op']} | {r['macs'] / 1e6:.1f} | "
                     f"{r['dsconv_ms']:.4f} | {r['ort_ms']:.4f} | {r['ratio']:.2f} | "
                     f"{r['dsconv_gflops']:.1f} | {r['ort_gflops']:.1f} | {r['min_ratio']:.2f} |")
        s = sums.setdefault(r["op"], [0.0, 0.0])
        s[0] += r["dsconv_ms"]
        s[1] += r["ort_ms"]
    for op, (d, o) in sums.items():
        lines.append(f"| all | sum | {op} | | {d:.3f} | {o:.3f} | {d / o:.2f} | | | |")
    if "model" in result:
        m = result["model"]
        lines.append(f"| - | whole network | model | {m['macs'] / 1e6:.1f} | {m['dsconv_ms']:.3f} | "
                     f"{m['ort_ms']:.3f} | {m['ratio']:.2f} | {m['dsconv_gflops']:.1f} | "
                     f"{m['ort_gflops']:.1f} | {m['min_ratio']:.2f} |")
    return "\n".join(lines)


def dsconv_version(binary: Path) -> str:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsconv", type=Path, default=REPO / "target/release/dsconv",
                   help="dsconv binary (default: target/release/dsconv)")
    p.add_argument("--threads", default="2,1", help="comma-separated thread counts (default 2,1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--runs", type=int, default=10, help="minimum timed runs per op and round")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per op and round")
    p.add_argument("--max-time", type=float, default=1.0, help="cap per op and round, seconds")
    p.add_argument("--ops", default="depthwise,pointwise,separable,separable_unfused,standard")
    p.add_argument("--blocks", default="",
                   help="comma-separated blocks, 0 = the stem (default all)")
    p.add_argument("--no-model", action="store_true", help="skip the whole network")
    p.add_argument("--no-record", action="store_true", help="do not write bench/records/")
    p.add_argument("--records", type=Path, default=REPO / "bench/records")
    p.add_argument("--note", default="", help="free text added to the record")
    args = p.parse_args()
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in args.ops if o not in ORT_GRAPH_OF_OP]
    if bad:
        p.error(f"unknown ops {bad} (known: {', '.join(ORT_GRAPH_OF_OP)})")
    args.blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    if not args.dsconv.exists():
        p.error(f"{args.dsconv} not found: run `cargo build --release` first")
    log = lambda msg: print(f"compare: {msg}", file=sys.stderr, flush=True)  # noqa: E731

    started = dt.datetime.now(dt.timezone.utc)
    load_before = load()
    results = [compare_threads(args, t, log) for t in thread_counts]
    cpu = cpu_name()
    record = {
        "date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "network": "mobilenet-v1",
        "width": args.width, "resolution": args.resolution, "batch": args.batch,
        "rounds": args.rounds, "runs": args.runs, "min_time_s": args.min_time,
        "max_time_s": args.max_time,
        "versions": {"dsconv": dsconv_version(args.dsconv), "dsconv_commit": git_commit(),
                     "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "load_average_before": load_before, "load_average_after": load(),
        "layouts": "dsconv NHWC, ONNX Runtime NCHW (MLAS reorders to NCHWc inside)",
        "note": args.note,
        "results": results,
    }
    text = "\n\n".join(table(r) for r in results)
    print(text)
    if not args.no_record:
        args.records.mkdir(parents=True, exist_ok=True)
        base = f"{started:%Y-%m-%d}-{slug(cpu)}-mobilenet-v1"
        stem, n = base, 2
        while (args.records / f"{stem}.json").exists():
            stem, n = f"{base}-{n}", n + 1
        (args.records / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
        md = [f"# MobileNetV1: dsconv vs ONNX Runtime, {record['date_utc']}", "",
              f"- CPU: {cpu}, {record['cores']} cores visible",
              f"- network: MobileNetV1 alpha={args.width}, {args.resolution}x{args.resolution}, "
              f"batch {args.batch}; threads {', '.join(map(str, thread_counts))}",
              f"- versions: {record['versions']['dsconv']} "
              f"(commit {record['versions']['dsconv_commit']}), onnxruntime {ort.__version__}, "
              f"onnx {onnx.__version__}, numpy {np.__version__}, python {platform.python_version()}",
              f"- method: {args.rounds} alternating rounds (dsconv, then ORT, per round); per "
              f"op and round the median of >= {args.runs} runs and >= {args.min_time} s (capped "
              f"at {args.max_time} s, >= 3 runs); the table shows the median over rounds",
              f"- layouts: {record['layouts']}; ORT with intra_op_num_threads = T, sequential, "
              "all graph optimisations, IOBinding; separable_unfused is compared with the same "
              "two-conv ORT graph as separable",
              f"- load average (1/5/15 min) before {load_before}, after {record['load_average_after']}",
              "- caveat: a one-layer ORT graph includes MLAS's NCHW -> NCHWc reorders of its input "
              "and output, which a whole network pays once; dsconv's NHWC layers need none. The "
              "whole-network row is the like-for-like comparison",
              ]
        if args.note:
            md.append(f"- note: {args.note}")
        md += ["", "dsconv/ORT = median dsconv time / median ORT time (< 1: dsconv faster); "
               "min ratio = the same for the fastest single runs (least disturbed by load)",
               "", text, ""]
        (args.records / f"{stem}.md").write_text("\n".join(md))
        log(f"wrote {args.records / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
