#!/usr/bin/env python3
"""Imported ONNX models: dsconv (`dsconv bench --model FILE.onnx`) against ONNX Runtime on
the same file, alternating in one run, plus the imported MobileNetV2 against dsconv's
built-in one (`dsconv bench --model mobilenet-v2`).

Each round runs dsconv's benchmark (its own timing rule: warm-up, then the median of runs
adding up to --min-time) and then ONNX Runtime (intra-op threads = T, sequential
execution, all graph optimisations, a warm-up then the median of as many runs over the
same time budget) on the same model and input shape, so that a change in machine load
hits both; each side's per-round medians are reduced to a median over the rounds. Each
side's fastest single run over all rounds is reported too ("best"): on a shared machine
noise only ever adds time, so when the medians of two engines move by ±20% from run to
run (another tenant on the host), the best runs still compare the code.

With `--tract BIN` (the standalone binary of bench/compare/tract_bench/, tract-onnx from
crates.io, built with `cargo build --release` in that folder) each round also runs tract,
the pure-Rust peer, on the same file and shape (its own process; tract has no intra-op
threads, so it runs on one thread whatever --threads says).

Usage (from the repository root, after `cargo build --release -p dsconv-cli`):
    python crates/dsconv-onnx/tests/fixtures/torch/gen_torch.py --bench /tmp/benchmodels
    eval "$(scripts/fetch_ppocr_models.sh)"
    python bench/compare/onnx_vs_ort.py --models /tmp/benchmodels --ppocr "$DSCONV_PPOCR_DIR" \
        --threads 2 --batches 1,8 --rounds 3 --out bench/records/2026-12-06-onnx-vs-ort.md
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DSCONV = os.path.join(REPO, "target", "release", "dsconv")


def dsconv_bench(args, extra):
    cmd = [args.dsconv, "bench", "--threads", str(args.threads), "--json", "--quiet",
           "--min-time", str(args.min_time), "--max-time", str(args.max_time), "--runs", "5"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    j = json.loads(out.stdout)
    return j["median_ms"], j["min_ms"]


def tract_bench(args, path, shape):
    cmd = [args.tract, path] + [str(d) for d in shape] + [
        "--min-time", str(args.min_time), "--max-time", str(args.max_time)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]


def ort_bench(sess, x, min_time, max_time):
    name = sess.get_inputs()[0].name
    t0 = time.perf_counter()
    while True:  # warm-up: one call, more until 20 ms
        sess.run(None, {name: x})
        if time.perf_counter() - t0 > 0.02:
            break
    times = []
    start = time.perf_counter()
    while True:
        a = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - a) * 1e3)
        spent = time.perf_counter() - start
        if (len(times) >= 5 and spent >= min_time) or (len(times) >= 3 and spent >= max_time):
            break
    return statistics.median(times), min(times)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", help="folder of gen_torch.py --bench exports")
    p.add_argument("--ppocr", help="folder of the three PP-OCR models")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--max-time", type=float, default=3.0)
    p.add_argument("--dsconv", default=DSCONV)
    p.add_argument("--tract", help="tract_bench binary (bench/compare/tract_bench)")
    p.add_argument("--only", help="comma-separated substrings: run only the models whose label has one")
    p.add_argument("--out")
    args = p.parse_args()
    models = []
    for name in ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"]:
        path = os.path.join(args.models or "", name + ".onnx")
        if args.models and os.path.exists(path):
            models.append((name + " (torchvision, random weights)", path, (3, 224, 224)))
    if args.ppocr:
        models += [
            ("PP-OCRv4 det", os.path.join(args.ppocr, "ch_PP-OCRv4_det_infer.onnx"), (3, 640, 640)),
            ("PP-OCRv4 rec", os.path.join(args.ppocr, "ch_PP-OCRv4_rec_infer.onnx"), (3, 48, 320)),
            ("PP-OCR mobile v2.0 cls", os.path.join(args.ppocr, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), (3, 48, 192)),
        ]
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",")]
        models = [m for m in models if any(k in m[0].lower() for k in keys)]
    rows = []
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batches.split(",")]:
        for label, path, chw in models:
            shape = (batch,) + chw
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            x = rng.uniform(-1, 1, shape).astype(np.float32)
            ds, on, builtin, tr, ds_min, on_min = [], [], [], [], [], []
            for _ in range(args.rounds):
                m, lo = dsconv_bench(args, ["--model", path, "--input-shape", "x".join(map(str, shape))])
                ds.append(m)
                ds_min.append(lo)
                m, lo = ort_bench(sess, x, args.min_time, args.max_time)
                on.append(m)
                on_min.append(lo)
                if args.tract:
                    tr.append(tract_bench(args, path, shape))
                if label.startswith("mobilenet_v2"):
                    builtin.append(dsconv_bench(args, ["--model", "mobilenet-v2", "--batch", str(batch)])[0])
            d, o = statistics.median(ds), statistics.median(on)
            row = {"model": label, "batch": batch, "shape": list(shape), "dsconv_ms": d, "ort_ms": o,
                   "ratio": d / o, "dsconv_rounds": ds, "ort_rounds": on,
                   # the fastest single run of all rounds: noise on a shared machine only adds
                   "dsconv_best_ms": min(ds_min), "ort_best_ms": min(on_min),
                   "best_ratio": min(ds_min) / min(on_min),
                   # Each round's two sides ran back to back: the median of the per-round
                   # ratios pairs them, so a burst of load that hit one round counts once.
                   "paired_ratio": statistics.median(a / b for a, b in zip(ds, on))}
            if tr:
                row["tract_ms"] = statistics.median(tr)
                row["tract_rounds"] = tr
            if builtin:
                row["builtin_ms"] = statistics.median(builtin)
                row["builtin_rounds"] = builtin
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        f"# Imported ONNX models: dsconv vs ONNX Runtime (same file), {time.strftime('%Y-%m-%d')}",
        "",
        f"CPU: {cpu_name()} ({os.cpu_count()} vCPUs, shared and noisy); ONNX Runtime {ort.__version__};"
        f" {args.threads} threads; {args.rounds} rounds alternating dsconv and ORT per model;"
        f" median ms of the per-round medians; \"paired\" is the median of the per-round ratios"
        f" (each round's two sides ran back to back); \"best\" is each side's fastest single run over"
        f" all rounds (noise on a shared machine only ever adds time). Made by `bench/compare/onnx_vs_ort.py`.",
        "",
        "| model | input | dsconv ms | ORT ms | dsconv / ORT | paired ratio | best: dsconv / ORT ms | best ratio | tract ms (1 thread) | built-in dsconv MobileNetV2 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = f"{r['builtin_ms']:.2f}" if "builtin_ms" in r else ""
        t = f"{r['tract_ms']:.2f}" if "tract_ms" in r else ""
        lines.append(f"| {r['model']} | {'x'.join(map(str, r['shape']))} | {r['dsconv_ms']:.2f} | {r['ort_ms']:.2f} | {r['ratio']:.2f} | {r['paired_ratio']:.2f} | {r['dsconv_best_ms']:.2f} / {r['ort_best_ms']:.2f} | {r['best_ratio']:.2f} | {t} | {b} |")
    lines += ["", "Per-round medians (ms):", "", "```"]
    lines += [json.dumps(r) for r in rows]
    lines += ["```", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
