#!/usr/bin/env python3
"""dsconv against ONNX Runtime on MobileNetV1's layers and on the whole network.

Builds ONNX graphs with onnx.helper (no PyTorch) for the same layers `dsconv bench
--layers mobilenet-v1` times -- depthwise 3x3 (Conv, group = C), pointwise (1x1 Conv),
the separable block (both convolutions in one graph) and the dense 3x3 convolution of the
block's shape, each with bias and Clip(0, 6) -- and for the whole MobileNetV1 (BatchNorm
already folded into the convolutions' bias: stem, 13 blocks, GlobalAveragePool, Gemm).
Weights are random. ONNX Runtime gets NCHW (its native layout; MLAS reorders to NCHWc
inside), dsconv gets NHWC (its own), both through their public APIs.

With --torch, PyTorch eager runs the whole networks too, in the same rounds: the same
architectures as torch modules (MobileNetV1 written here, MobileNetV2 from the test
fixtures' generator, EfficientNet-Lite0 from scripts/effnet_reference.py's stage table and
"same" padding; random weights, BatchNorm in eval mode), NCHW float32,
torch.set_num_threads(T), torch.inference_mode();
--torch-channels-last also times the channels_last memory format. Their MACs and
parameters (BatchNorm folded) are checked against the ONNX graphs. torch is imported only
then, so the script runs without it.

In each round the script runs `dsconv bench --json` and then ONNX Runtime on the same
layers, so that a change in machine load hits both; each side's per-round medians are
reduced to a median over the rounds. It prints a ratio table (dsconv time / ORT time: < 1
means dsconv is faster) and writes a dated record to bench/records/.

Usage (from the repository root):
    cargo build --release
    python bench/compare/compare.py --threads 2,1 --batch 1 --rounds 3
    python bench/compare/compare.py --networks mobilenet-v2,efficientnet-lite0 --no-layers \
        --threads 2 --torch --torch-channels-last
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
    """Accumulates nodes and initializers for an NCHW float graph with square feature maps,
    tracking each tensor's side and the multiply-accumulates, so the graph's MACs can be
    checked against dsconv's cost model for the same network."""

    def __init__(self, rng: np.random.Generator, batch: int, resolution: int):
        self.rng = rng
        self.batch = batch
        self.nodes = []
        self.inits = []
        self.count = 0
        self.macs = 0
        self.side = {"x": resolution}
        lo = numpy_helper.from_array(np.array(0.0, np.float32), "clip_min")
        hi = numpy_helper.from_array(np.array(6.0, np.float32), "clip_max")
        self.inits += [lo, hi]

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int, group: int = 1,
             relu6: bool = True) -> str:
        """k x k convolution, padding k // 2, bias, optionally Clip(0, 6)."""
        fan_in = (c_in // group) * k * k
        bound = 1.0 / np.sqrt(fan_in)
        w = self.rng.uniform(-bound, bound, (c_out, c_in // group, k, k)).astype(np.float32)
        b = self.rng.uniform(-0.1, 0.1, (c_out,)).astype(np.float32)
        wn, bn, y = self.name("w"), self.name("b"), self.name("conv")
        self.inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, wn, bn], [y], kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, group=group))
        side = (self.side[x] + 2 * pad - k) // stride + 1
        self.side[y] = side
        self.macs += self.batch * c_out * (c_in // group) * k * k * side * side
        if not relu6:
            return y
        z = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [y, "clip_min", "clip_max"], [z]))
        self.side[z] = side
        return z

    def conv_relu6(self, x: str, c_in: int, c_out: int, k: int, stride: int, group: int) -> str:
        return self.conv(x, c_in, c_out, k, stride, group)

    def add(self, a: str, b: str) -> str:
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        self.side[y] = self.side[a]
        return y

    def classifier(self, x: str, channels: int) -> str:
        """GlobalAveragePool, Flatten, Gemm to CLASSES logits."""
        g = self.name
        pool, flat, wn, bn, logits = g("pool"), g("flat"), g("fc_w"), g("fc_b"), "logits"
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pool]))
        self.nodes.append(helper.make_node("Flatten", [pool], [flat], axis=1))
        bound = 1 / np.sqrt(channels)
        w = self.rng.uniform(-bound, bound, (CLASSES, channels)).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, wn),
                       numpy_helper.from_array(np.zeros(CLASSES, np.float32), bn)]
        self.nodes.append(helper.make_node("Gemm", [flat, wn, bn], [logits], transB=1))
        self.macs += self.batch * channels * CLASSES
        return logits

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
    side = ho if kind == "pointwise" else hi
    g = GraphBuilder(np.random.default_rng(seed), batch, side)
    shape = [batch, c, side, side]
    if kind == "depthwise":
        out = [batch, c, ho, ho]
        y = g.conv("x", c, c, 3, s, c)
    elif kind == "pointwise":
        out = [batch, co, ho, ho]
        y = g.conv("x", c, co, 1, 1)
    elif kind == "separable":
        out = [batch, co, ho, ho]
        y = g.conv(g.conv("x", c, c, 3, s, c), c, co, 1, 1)
    elif kind == "standard":
        out = [batch, co, ho, ho]
        y = g.conv("x", c, co, 3, s)
    else:
        raise ValueError(kind)
    return g.model(shape, y, out), shape


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible (MobileNetV2, EfficientNet-Lite channel rounding)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def inverted_residual(g: GraphBuilder, x: str, c_in: int, c_out: int, k: int, stride: int,
                      expand: int) -> str:
    """1x1 expand (if expand > 1) + ReLU6, k x k depthwise + ReLU6, 1x1 linear projection,
    residual add when the shape is unchanged."""
    hidden = c_in * expand
    y = g.conv(x, c_in, hidden, 1, 1) if expand != 1 else x
    y = g.conv(y, hidden, hidden, k, stride, hidden)
    y = g.conv(y, hidden, c_out, 1, 1, relu6=False)
    return g.add(x, y) if stride == 1 and c_in == c_out else y


def mobilenet_v1_graph(g: GraphBuilder, alpha: float, resolution: int) -> str:
    y = g.conv("x", 3, scale(STEM, alpha), 3, 2)
    for _, c, co, s, _, _ in stages(alpha, resolution)[1:]:
        y = g.conv(g.conv(y, c, c, 3, s, c), c, co, 1, 1)
    return g.classifier(y, scale(1024, alpha))


# MobileNetV2 (torchvision): (t, c, n, s) per stage, stem 32, head 1280.
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2_graph(g: GraphBuilder, alpha: float, resolution: int) -> str:
    c = make_divisible(32 * alpha)
    y = g.conv("x", 3, c, 3, 2)
    for t, co, n, s in MOBILENET_V2:
        co = make_divisible(co * alpha)
        for i in range(n):
            y = inverted_residual(g, y, c, co, 3, s if i == 0 else 1, t)
            c = co
    last = make_divisible(1280 * max(alpha, 1.0))
    y = g.conv(y, c, last, 1, 1)
    return g.classifier(y, last)


# EfficientNet-Lite0: (repeats, kernel, stride, expand, in, out) per stage, stem 32, head
# 1280, ReLU6, no squeeze-excitation.
EFFICIENTNET_LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                      (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                      (1, 3, 1, 6, 192, 320)]


def efficientnet_lite0_graph(g: GraphBuilder, alpha: float, resolution: int) -> str:
    y = g.conv("x", 3, 32, 3, 2)
    for r, k, s, e, c_in, c_out in EFFICIENTNET_LITE0:
        for i in range(r):
            y = inverted_residual(g, y, c_in if i == 0 else c_out, c_out, k,
                                  s if i == 0 else 1, e)
    y = g.conv(y, 320, 1280, 1, 1)
    return g.classifier(y, 1280)


NETWORK_GRAPHS = {"mobilenet-v1": mobilenet_v1_graph, "mobilenet-v2": mobilenet_v2_graph,
                  "efficientnet-lite0": efficientnet_lite0_graph}


def network_graph(name: str, alpha: float, resolution: int, batch: int, seed: int):
    """(serialized model, input shape, MACs, parameters) of a whole network with random
    weights."""
    g = GraphBuilder(np.random.default_rng(seed), batch, resolution)
    logits = NETWORK_GRAPHS[name](g, alpha, resolution)
    shape = [batch, 3, resolution, resolution]
    params = sum(int(np.prod(t.dims)) for t in g.inits if not t.name.startswith("clip_"))
    return g.model(shape, logits, [batch, CLASSES]), shape, g.macs, params


def import_torch():
    """PyTorch, imported only for --torch (the script runs without it otherwise)."""
    try:
        import torch
    except ImportError as e:
        raise SystemExit(f"compare: --torch needs PyTorch ({e})") from e
    return torch


def torch_network(name: str, alpha: float, seed: int):
    """A PyTorch eager network (nn.Module) with the same architecture as the ONNX graph
    and dsconv's model: BatchNorm in eval mode (not folded: eager PyTorch runs it as its
    own op) and ReLU6. Weights are He-normal with random BatchNorm statistics (PyTorch's
    default init shrinks the activations layer by layer towards denormals, which would
    time something else)."""
    torch = import_torch()
    from torch import nn
    import torch.nn.functional as F

    for d in (REPO / "crates/dsconv/tests/fixtures/weights", REPO / "scripts"):
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
    import gen_mobilenet_v2  # the torchvision-structured MobileNetV2 of the test fixtures
    gen = torch.Generator().manual_seed(seed)

    def he(*shape):
        fan_in = int(np.prod(shape[1:]))
        return torch.randn(*shape, generator=gen) * (2.0 / fan_in) ** 0.5

    def randomise(net):
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.copy_(he(*m.weight.shape))
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5, generator=gen)
                    m.bias.uniform_(-0.2, 0.2, generator=gen)
                    m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                    m.running_var.uniform_(0.5, 1.5, generator=gen)
        return net.eval()

    if name == "mobilenet-v1":
        cba = gen_mobilenet_v2.conv_bn_act  # Conv (no bias) + BatchNorm2d + ReLU6

        class MobileNetV1(nn.Module):
            """Stem, 13 separable blocks (depthwise 3x3 + BN + ReLU6, pointwise + BN +
            ReLU6), global average pool, linear: the graph mobilenet_v1_graph builds."""

            def __init__(self):
                super().__init__()
                layers = [cba(3, scale(STEM, alpha), 3, 2)]
                for _, c, co, s, _, _ in stages(alpha, 224)[1:]:
                    layers += [cba(c, c, 3, s, groups=c), cba(c, co, 1)]
                self.features = nn.Sequential(*layers)
                self.fc = nn.Linear(scale(1024, alpha), CLASSES)

            def forward(self, x):
                return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

        return randomise(MobileNetV1())
    if name == "mobilenet-v2":
        return randomise(gen_mobilenet_v2.MobileNetV2(alpha, CLASSES))
    if name == "efficientnet-lite0":
        # scripts/effnet_reference.py's stage table and TF "same" padding, as an nn.Module
        # the way an eager model is written for speed: the symmetric padding of the
        # stride-1 convolutions inside the conv, an explicit pad (a copy) only where it is
        # asymmetric (stride 2), as in the lukemelas implementation. (The reference's
        # functional forward pads before every convolution, 1x1 included: a copy each.)
        import effnet_reference as ref

        class SameConv(nn.Conv2d):
            def __init__(self, c_in, c_out, k, stride, groups=1):
                super().__init__(c_in, c_out, k, stride, k // 2 if stride == 1 else 0,
                                 groups=groups, bias=False)

            def forward(self, x):
                k, s = self.kernel_size[0], self.stride[0]
                return super().forward(x if s == 1 else ref.same_pad(x, k, s))

        def cba(c_in, c_out, k, stride=1, groups=1, act=True):
            layers = [SameConv(c_in, c_out, k, stride, groups), nn.BatchNorm2d(c_out, ref.EPS)]
            return nn.Sequential(*layers, *([nn.ReLU6(inplace=True)] if act else []))

        class MBConv(nn.Module):
            def __init__(self, c_in, c_out, k, stride, e):
                super().__init__()
                hidden = c_in * e
                self.use_res = stride == 1 and c_in == c_out
                self.conv = nn.Sequential(
                    *([cba(c_in, hidden, 1)] if e != 1 else []),
                    cba(hidden, hidden, k, stride, groups=hidden),
                    cba(hidden, c_out, 1, act=False))

            def forward(self, x):
                return x + self.conv(x) if self.use_res else self.conv(x)

        class EfficientNetLite0(nn.Module):
            def __init__(self):
                super().__init__()
                layers = [cba(3, 32, 3, 2)]
                for repeats, k, s, e, c_in, c_out in ref.STAGES:
                    for r in range(repeats):
                        layers.append(MBConv(c_in if r == 0 else c_out, c_out, k,
                                             s if r == 0 else 1, e))
                layers.append(cba(320, 1280, 1))
                self.features = nn.Sequential(*layers)
                self.fc = nn.Linear(1280, CLASSES)

            def forward(self, x):
                return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

        return randomise(EfficientNetLite0())
    raise ValueError(name)


def torch_to_channels_last(net):
    """A copy of the network with its 4-d weights (and so its convolutions) in
    channels_last."""
    import copy
    return copy.deepcopy(net).to(memory_format=import_torch().channels_last)


def torch_folded_params(net) -> int:
    """Parameters once BatchNorm is folded (each convolution gets a bias of C_out), as in
    the ONNX graph: conv weights + C_out per conv + the linear layer."""
    from torch import nn
    total = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            total += m.weight.numel() + m.out_channels
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() + m.out_features
    return total


def torch_macs(net, shape) -> int:
    """Multiply-accumulates of one forward pass, counted by PyTorch's FlopCounterMode
    (convolutions and the linear layer, FLOPs = 2 MACs)."""
    torch = import_torch()
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        y = net(torch.zeros(shape))
    if tuple(y.shape) != (shape[0], CLASSES):
        raise SystemExit(f"compare: torch network gives {tuple(y.shape)} logits")
    return counter.get_total_flops() // 2


def time_torch(net, shape, threads: int, channels_last: bool, budget) -> dict:
    """Same rule as time_ort, PyTorch eager with set_num_threads(T) under inference_mode;
    input NCHW float32, or channels_last (with weights already converted)."""
    torch = import_torch()
    runs, min_time, max_time = budget
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = net(x)
        if not bool(torch.isfinite(y).all()):
            raise SystemExit("compare: torch network gives non-finite logits")
        start = time.perf_counter()
        while time.perf_counter() - start < 0.02:
            net(x)
        samples, total = [], 0.0
        while True:
            t = time.perf_counter()
            net(x)
            d = time.perf_counter() - t
            total += d
            samples.append(d * 1e3)
            n = len(samples)
            if (n >= runs and total >= min_time) or (n >= min(3, runs) and total >= max_time):
                break
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "runs": len(samples)}


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
    def common_args(width: float) -> list[str]:
        return ["--threads", str(threads), "--batch", str(args.batch), "--width", str(width),
                "--resolution", str(args.resolution), "--runs", str(args.runs),
                "--min-time", str(args.min_time), "--max-time", str(args.max_time)]
    common = common_args(args.width)
    layer_args = ["--layers", "mobilenet-v1", "--ops", ",".join(ops),
                  "--blocks", ",".join(str(b[0]) for b in blocks), *common]
    kinds = sorted({ORT_GRAPH_OF_OP[o] for o in ops})
    # The stem (block 0) is a standard convolution: the only op dsconv times for it.
    graphs = {(b[0], k): layer_graph(k, args.batch, *b[1:], seed=1000 * b[0] + i)
              for b in blocks for i, k in enumerate(kinds) if b[0] > 0 or k == "standard"}
    if args.no_layers:
        graphs = {}
    # EfficientNet-Lite has its width in its name: α applies to the MobileNets only.
    width_of = {n: 1.0 if n.startswith("efficientnet") else args.width for n in args.networks}
    model_graphs = {n: network_graph(n, width_of[n], args.resolution, args.batch, seed=7)
                    for n in args.networks}
    # PyTorch eager (--torch): the same networks, NCHW and optionally channels_last.
    torch_layouts = (["nchw", "channels_last"] if args.torch_channels_last else ["nchw"]
                     if args.torch else [])
    torch_nets, torch_checks = {}, {}
    for n in args.networks if torch_layouts else []:
        net = torch_network(n, width_of[n], seed=7)
        torch_checks[n] = {"macs": torch_macs(net, model_graphs[n][1]),
                           "params": torch_folded_params(net)}
        torch_nets[n] = {"nchw": net}
        if "channels_last" in torch_layouts:
            torch_nets[n]["channels_last"] = torch_to_channels_last(net)
    ds_layers, ort_layers, meta = {}, {}, None
    ds_models = {n: [] for n in args.networks}
    ort_models = {n: [] for n in args.networks}
    torch_models = {(n, lay): [] for n in args.networks for lay in torch_layouts}
    for r in range(args.rounds):
        if not args.no_layers:
            log(f"threads {threads}, round {r + 1}/{args.rounds}: dsconv layers "
                f"(load {load()})")
            doc = run_dsconv(args.dsconv, layer_args)
            meta = meta or doc
            for l in doc["layers"]:
                ds_layers.setdefault((l["block"], l["op"]), []).append(l)
            log(f"threads {threads}, round {r + 1}/{args.rounds}: onnxruntime layers")
        for (b, k), (model, shape) in graphs.items():
            sess = make_session(model, threads)
            ort_layers.setdefault((b, k), []).append(time_ort(sess, shape, budget))
            del sess
        for n, (model, shape, _, _) in model_graphs.items():
            log(f"threads {threads}, round {r + 1}/{args.rounds}: whole {n} (load {load()})")
            doc = run_dsconv(args.dsconv, ["--model", n, *common_args(width_of[n])])
            meta = meta or doc
            ds_models[n].append(doc)
            sess = make_session(model, threads)
            ort_models[n].append(time_ort(sess, shape, budget))
            del sess
            for lay in torch_layouts:
                torch_models[(n, lay)].append(time_torch(
                    torch_nets[n][lay], shape, threads, lay == "channels_last", budget))
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
    result["models"] = {}
    for n, runs in ds_models.items():
        ds = median_over_rounds(runs)
        ort_t = median_over_rounds(ort_models[n])
        flops = runs[0]["flops"]
        graph_macs, graph_params = model_graphs[n][2], model_graphs[n][3]
        if abs(graph_macs - runs[0]["macs"]) > 0.005 * runs[0]["macs"]:
            log(f"warning: {n}: the ONNX graph has {graph_macs} MACs, dsconv's cost model "
                f"{runs[0]['macs']}: the two networks differ")
        if n in torch_checks:
            tm, tp = torch_checks[n]["macs"], torch_checks[n]["params"]
            if tm != graph_macs or tp != graph_params:
                log(f"warning: {n}: the torch network has {tm} MACs and {tp} parameters (BN "
                    f"folded), the ONNX graph {graph_macs} and {graph_params}: they differ")
        result["models"][n] = {
            "dsconv_ms": ds["median_ms"], "ort_ms": ort_t["median_ms"],
            "ratio": ds["median_ms"] / ort_t["median_ms"],
            "dsconv_min_ms": ds["min_ms"], "ort_min_ms": ort_t["min_ms"],
            "min_ratio": ds["min_ms"] / ort_t["min_ms"],
            "macs": runs[0]["macs"], "onnx_graph_macs": graph_macs,
            "dsconv_gflops": flops / ds["median_ms"] / 1e6,
            "ort_gflops": flops / ort_t["median_ms"] / 1e6,
            "dsconv_round_medians_ms": ds["round_medians_ms"],
            "ort_round_medians_ms": ort_t["round_medians_ms"],
            "onnx_graph_params": graph_params,
        }
        for lay in torch_layouts:
            m = result["models"][n]
            key = "torch" if lay == "nchw" else "torch_cl"
            t = median_over_rounds(torch_models[(n, lay)])
            m[f"{key}_ms"], m[f"{key}_min_ms"] = t["median_ms"], t["min_ms"]
            m[f"{key}_ratio"] = ds["median_ms"] / t["median_ms"]
            m[f"{key}_min_ratio"] = ds["min_ms"] / t["min_ms"]
            m[f"{key}_gflops"] = flops / t["median_ms"] / 1e6
            m[f"{key}_round_medians_ms"] = t["round_medians_ms"]
            m["torch_macs"], m["torch_params"] = torch_checks[n]["macs"], torch_checks[n]["params"]
    if "mobilenet-v1" in result["models"]:
        result["model"] = result["models"]["mobilenet-v1"]
    return result


def torch_table(models: dict) -> list[str]:
    """Whole networks, three engines: dsconv, ONNX Runtime, PyTorch eager NCHW (and
    channels_last when timed). Ratios are dsconv time / the other engine's time."""
    cl = any("torch_cl_ms" in m for m in models.values())
    head = ["network", "MMACs", "dsconv ms", "ORT ms", "torch ms"]
    head += ["torch CL ms"] if cl else []
    head += ["dsconv/ORT", "dsconv/torch"] + (["dsconv/torch CL"] if cl else [])
    head += ["min ratio ORT", "min ratio torch"] + (["min ratio torch CL"] if cl else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for n, m in models.items():
        cells = [n, f"{m['macs'] / 1e6:.1f}", f"{m['dsconv_ms']:.3f}", f"{m['ort_ms']:.3f}",
                 f"{m['torch_ms']:.3f}"]
        cells += [f"{m['torch_cl_ms']:.3f}"] if cl else []
        cells += [f"{m['ratio']:.2f}", f"{m['torch_ratio']:.2f}"]
        cells += [f"{m['torch_cl_ratio']:.2f}"] if cl else []
        cells += [f"{m['min_ratio']:.2f}", f"{m['torch_min_ratio']:.2f}"]
        cells += [f"{m['torch_cl_min_ratio']:.2f}"] if cl else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def table(result: dict) -> str:
    t = result["threads"]
    lines = [f"threads {t}: measured FMA peak {result['peak_gflops']:.1f} GFLOP/s, "
             f"DRAM read {result['bandwidth_gbs']:.1f} GB/s; dsconv kernels "
             f"{result.get('kernel_isa') or 'unknown'}",
             ""]
    models = result.get("models", {})
    with_torch = any("torch_ms" in m for m in models.values())
    if with_torch:
        lines += torch_table(models)
        if not result["layers"]:
            return "\n".join(lines)
        lines.append("")
    lines += ["| block | layer | op | MMACs | dsconv ms | ORT ms | dsconv/ORT | dsconv GFLOP/s "
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
    for n, m in ({} if with_torch else models).items():
        lines.append(f"| - | whole network | {n} | {m['macs'] / 1e6:.1f} | "
                     f"{m['dsconv_ms']:.3f} | {m['ort_ms']:.3f} | {m['ratio']:.2f} | "
                     f"{m['dsconv_gflops']:.1f} | {m['ort_gflops']:.1f} | "
                     f"{m['min_ratio']:.2f} |")
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
    p.add_argument("--networks", default="mobilenet-v1",
                   help="whole networks to compare, comma-separated: "
                   + ", ".join(NETWORK_GRAPHS) + " (default mobilenet-v1)")
    p.add_argument("--no-model", action="store_true", help="skip the whole networks")
    p.add_argument("--no-layers", action="store_true",
                   help="skip the MobileNetV1 layers (whole networks only)")
    p.add_argument("--torch", action="store_true",
                   help="also time PyTorch eager (NCHW float32) on the whole networks, "
                   "alternating in the same rounds")
    p.add_argument("--torch-channels-last", action="store_true",
                   help="with --torch (implied), also time PyTorch in channels_last")
    p.add_argument("--no-record", action="store_true", help="do not write bench/records/")
    p.add_argument("--records", type=Path, default=REPO / "bench/records")
    p.add_argument("--note", default="", help="free text added to the record")
    args = p.parse_args()
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in args.ops if o not in ORT_GRAPH_OF_OP]
    if bad:
        p.error(f"unknown ops {bad} (known: {', '.join(ORT_GRAPH_OF_OP)})")
    args.blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    args.networks = [] if args.no_model else [
        n.strip() for n in args.networks.split(",") if n.strip()]
    bad = [n for n in args.networks if n not in NETWORK_GRAPHS]
    if bad:
        p.error(f"unknown networks {bad} (known: {', '.join(NETWORK_GRAPHS)})")
    if args.no_layers and not args.networks:
        p.error("--no-layers with --no-model leaves nothing to compare")
    args.torch = args.torch or args.torch_channels_last
    if args.torch and not args.networks:
        p.error("--torch times whole networks only: drop --no-model")
    torch_version = import_torch().__version__ if args.torch else None
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
        "layers_of": None if args.no_layers else "mobilenet-v1",
        "networks": args.networks,
        "width": args.width, "resolution": args.resolution, "batch": args.batch,
        "rounds": args.rounds, "runs": args.runs, "min_time_s": args.min_time,
        "max_time_s": args.max_time,
        "versions": {"dsconv": dsconv_version(args.dsconv), "dsconv_commit": git_commit(),
                     "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                     "numpy": np.__version__, "python": platform.python_version(),
                     "torch": torch_version},
        "load_average_before": load_before, "load_average_after": load(),
        "layouts": "dsconv NHWC, ONNX Runtime NCHW (MLAS reorders to NCHWc inside)"
                   + (", PyTorch eager NCHW" if args.torch else "")
                   + (" and channels_last" if args.torch_channels_last else ""),
        "note": args.note,
        "results": results,
    }
    text = "\n\n".join(table(r) for r in results)
    print(text)
    if not args.no_record:
        args.records.mkdir(parents=True, exist_ok=True)
        subjects = ([] if args.no_layers else ["mobilenet-v1"]) + args.networks
        subjects = list(dict.fromkeys(subjects))
        base = f"{started:%Y-%m-%d}-{slug(cpu)}-{'_'.join(subjects)}"
        stem, n = base, 2
        while (args.records / f"{stem}.json").exists():
            stem, n = f"{base}-{n}", n + 1
        (args.records / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
        title = ", ".join(subjects)
        engines = "ONNX Runtime" + (" and PyTorch eager" if args.torch else "")
        md = [f"# {title}: dsconv vs {engines}, {record['date_utc']}", "",
              f"- CPU: {cpu}, {record['cores']} cores visible",
              f"- layers: {'none' if args.no_layers else 'MobileNetV1'}; whole networks: "
              f"{', '.join(args.networks) or 'none'}; alpha={args.width} (MobileNets), "
              f"{args.resolution}x{args.resolution}, "
              f"batch {args.batch}; threads {', '.join(map(str, thread_counts))}",
              f"- versions: {record['versions']['dsconv']} "
              f"(commit {record['versions']['dsconv_commit']}), onnxruntime {ort.__version__}, "
              f"onnx {onnx.__version__}, numpy {np.__version__}, python {platform.python_version()}"
              + (f", torch {torch_version}" if args.torch else ""),
              f"- method: {args.rounds} alternating rounds (dsconv, then ORT"
              + (", then PyTorch" if args.torch else "") + ", per round); per "
              f"op and round the median of >= {args.runs} runs and >= {args.min_time} s (capped "
              f"at {args.max_time} s, >= 3 runs); the table shows the median over rounds",
              f"- layouts: {record['layouts']}; ORT with intra_op_num_threads = T, sequential, "
              "all graph optimisations, IOBinding; separable_unfused is compared with the same "
              "two-conv ORT graph as separable",
              *(["- PyTorch eager: torch.set_num_threads(T), torch.inference_mode(), BatchNorm "
                 "in eval mode (not folded), same architecture (MACs counted with "
                 "FlopCounterMode and parameters with BN folded checked against the ONNX graph)"]
                if args.torch else []),
              f"- load average (1/5/15 min) before {load_before}, after {record['load_average_after']}",
              "- caveat: a one-layer ORT graph includes MLAS's NCHW -> NCHWc reorders of its input "
              "and output, which a whole network pays once; dsconv's NHWC layers need none. The "
              "whole-network row is the like-for-like comparison",
              ]
        if args.note:
            md.append(f"- note: {args.note}")
        md += ["", "dsconv/ORT = median dsconv time / median ORT time (< 1: dsconv faster); "
               + ("dsconv/torch the same against PyTorch eager (CL: channels_last); "
                  if args.torch else "")
               + "min ratio = the same for the fastest single runs (least disturbed by load)",
               "", text, ""]
        (args.records / f"{stem}.md").write_text("\n".join(md))
        log(f"wrote {args.records / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
