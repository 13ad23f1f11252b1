#!/usr/bin/env python3
"""Per-node kernel times of ONNX Runtime inside a whole network (its profiler), for
comparing single layers with `dsconv bench --layers` without the NCHW <-> NCHWc reorders a
one-layer ORT graph pays.

    python bench/compare/ort_profile.py [--network mobilenet-v1] [--threads 1] [--runs 300]

Prints, per Conv/Gemm node: median kernel microseconds over the runs after the first 50,
GFLOP/s (2 x MACs from the node's shapes), and the input/output shapes. The same random
graphs as compare.py (its builders are imported). Profiling adds a timestamp pair per node.
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402


def conv_macs(inputs, outputs) -> int:
    """MACs of a Conv node from its input [N, C, H, W], weight [Co, Ci/g, kh, kw] and
    output [N, Co, Ho, Wo] shapes (NCHW, as the profiler reports them)."""
    w = inputs[1]["float"]
    o = outputs[0]["float"]
    return int(np.prod(o)) * int(np.prod(w[1:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="mobilenet-v1", choices=sorted(compare.NETWORK_GRAPHS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    model, shape, _, _ = compare.network_graph(args.network, 1.0, 224, 1, 0)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(args.runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    times, meta = {}, {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times.setdefault(e["name"], []).append(e["dur"])
            meta[e["name"]] = e.get("args", {})
    print(f"# {args.network} 224x224 batch 1, ONNX Runtime {ort.__version__}, "
          f"{args.threads} thread(s), median of runs 51..{args.runs}")
    print(f"{'op':<20} {'us':>7} {'GFLOP/s':>8}  input -> output")
    for name, durs in times.items():
        a = meta[name]
        op = a.get("op_name", "?")
        if op not in ("Conv", "Gemm"):
            continue
        us = statistics.median(durs[50:] or durs)
        ins, outs = a.get("input_type_shape", []), a.get("output_type_shape", [])
        gflops = ""
        if op == "Conv" and len(ins) >= 2:
            gflops = f"{2 * conv_macs(ins, outs) / (us * 1e3):.1f}"
        w = ins[1]["float"] if len(ins) > 1 else []
        if op != "Conv":
            kind = op
        else:
            depthwise = w[1] == 1 and w[0] > 1
            kind = f"{'depthwise' if depthwise else 'conv'} {w[2]}x{w[3]}"
        stride = ins[0]["float"][2] // outs[0]["float"][2] if op == "Conv" and outs else 1
        kind += f" s{stride}" if op == "Conv" else ""
        print(f"{kind:<20} {us:>7.0f} {gflops:>8}  {ins[0]['float'] if ins else ''} -> "
              f"{outs[0]['float'] if outs else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
