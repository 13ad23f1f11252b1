#!/usr/bin/env python3
"""Training speed: dsconv vs PyTorch eager on the digits recipe, alternating in one run.

For each model (ds-cnn, std-cnn) and thread count (1, 2): ms per training step (forward +
backward + AdamW update, batch 32, 8x8 digits, widths 32-64-128-128) of
  - dsconv: `dsconv train --model M --data digits --steps S --no-shuffle --threads T --json`
    (the `seconds` it reports cover the training loop only), and
  - PyTorch eager: the same network (scripts/train_reference.py's Net), the same batches,
    AdamW lr 3e-3, torch.set_num_threads(T),
alternating dsconv and PyTorch `--rounds` times; prints medians and the fastest round.

  /work/venv-torch/bin/python bench/compare/train_compare.py --dsconv target/release/dsconv

`--mobilenet-v2`: MobileNetV2-1.0 at batch 32, 224x224, 2 threads instead (the issue 12
target): PyTorch eager's torchvision `mobilenet_v2()` train step (SGD momentum 0.9, lr 0.01,
weight decay 4e-5), NCHW and channels_last, against dsconv's step — `dsconv bench --train
--model mobilenet-v2 --json` when `dsconv::train::Model` knows it, else (`--standin EXE`)
the MobileNetV2-shaped network of `crates/dsconv/examples/train_speed.rs` built from
`dsconv::train`'s layers. Every engine runs in its own process (a few steps, the median
of the timed ones) so each one's peak resident memory (VmHWM; ru_maxrss for PyTorch) is
its own; the engines alternate `--rounds` times.

  /work/venv-torch/bin/python bench/compare/train_compare.py --mobilenet-v2 \
      --standin target/release/examples/train_speed --steps 3 --rounds 2
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from train_reference import Net  # noqa: E402


def digits():
    path = os.path.join(ROOT, "crates", "dsconv", "data", "digits", "digits.csv.gz")
    rows = np.loadtxt(gzip.open(path, "rt"), delimiter=",")
    x = (rows[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return torch.from_numpy(x), torch.from_numpy(rows[:, 64].astype(np.int64))


def torch_ms(model, threads, steps, x, y):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Net(model, 1, 8, 8, 10)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    n = x.shape[0]

    def step(i):
        lo = (i * 32) % (n - 32)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[lo:lo + 32]), y[lo:lo + 32]).backward()
        opt.step()

    for i in range(5):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t) * 1e3 / steps


def dsconv_ms(binary, model, threads, steps):
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [binary, "train", "--model", model, "--data", "digits", "--steps", str(steps),
             "--no-shuffle", "--lr", "3e-3", "--threads", str(threads), "--json",
             "--out", os.path.join(d, "m.safetensors")],
            check=True, capture_output=True, text=True).stdout
    return json.loads(out)["seconds"] * 1e3 / steps


def rss_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return None


def torch_mnv2_worker(layout, threads, batch, res, steps):
    """One process: PyTorch eager MobileNetV2 train steps; prints one JSON line."""
    import torchvision
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    before = rss_mib("VmRSS:")
    net = torchvision.models.mobilenet_v2()
    net.train()
    x = torch.rand(batch, 3, res, res)
    y = torch.arange(batch) * 37 % 1000
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    times = []
    for i in range(steps + 1):  # the first step warms up
        t = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if i > 0:
            times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"ms": times, "peak_rss_mib": rss_mib("VmHWM:"), "rss_before_mib": before}))


def sub_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    try:
        return json.loads(out)  # dsconv bench --json: one document
    except json.JSONDecodeError:
        return json.loads(out.strip().splitlines()[-1])  # the others: a last JSON line


def mobilenet_v2(a):
    threads, batch, res = 2, 32, 224
    engines = [("PyTorch NCHW", [sys.executable, __file__, "--torch-worker", "nchw"]),
               ("PyTorch channels_last", [sys.executable, __file__, "--torch-worker", "channels_last"])]
    common = [str(threads), str(batch), str(res), str(a.steps)]
    engines = [(n, c + common) for n, c in engines]
    if a.standin:
        engines.insert(0, ("dsconv (stand-in)", [a.standin, str(batch), str(res), str(threads),
                                                 str(a.steps + 1), "--json"]))
    else:
        engines.insert(0, ("dsconv", [a.dsconv, "bench", "--train", "--model", "mobilenet-v2",
                                      "--batch", str(batch), "--resolution", str(res),
                                      "--threads", str(threads), "--runs", str(a.steps),
                                      "--min-time", "0", "--max-time", "0", "--quiet", "--json"]))
    print(f"torch {torch.__version__}; MobileNetV2-1.0 batch {batch} {res}x{res}, {threads} threads; "
          f"{a.steps} timed steps per engine per round, {a.rounds} rounds alternating")
    results = {n: {"ms": [], "peak": []} for n, _ in engines}
    for r in range(a.rounds):
        for name, cmd in engines:
            d = sub_json(cmd)
            ms = d["ms"] if "ms" in d else [d["median_ms"]]
            ms = ms[1:] if "ms" in d and name.startswith("dsconv") else ms  # stand-in: drop warm-up
            results[name]["ms"].extend(ms)
            results[name]["peak"].append(d["peak_rss_mib"])
            print(f"round {r}: {name}: {statistics.median(ms):.0f} ms/step, peak RSS "
                  f"{d['peak_rss_mib']:.0f} MiB", flush=True)
    print("| engine | ms/step (median, min) | peak RSS MiB |")
    print("|---|---:|---:|")
    for name, _ in engines:
        v = results[name]
        print(f"| {name} | {statistics.median(v['ms']):.0f} ({min(v['ms']):.0f}) | {max(v['peak']):.0f} |")
    ds = statistics.median(results[engines[0][0]]["ms"])
    best = min(statistics.median(results[n]["ms"]) for n, _ in engines[1:])
    print(f"PyTorch's faster layout / dsconv: {best / ds:.2f}x")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-worker":
        layout, threads, batch, res, steps = sys.argv[2], *map(int, sys.argv[3:7])
        return torch_mnv2_worker(layout, threads, batch, res, steps)
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsconv", default=os.path.join(ROOT, "target", "release", "dsconv"))
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mobilenet-v2", action="store_true")
    ap.add_argument("--standin", help="train_speed example binary (MobileNetV2 stand-in)")
    a = ap.parse_args()
    if a.mobilenet_v2:
        return mobilenet_v2(a)
    x, y = digits()
    print(f"torch {torch.__version__}; {a.steps} steps per timing, {a.rounds} rounds alternating")
    print("| model | threads | dsconv ms/step (median, min) | PyTorch eager ms/step (median, min) | dsconv / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for model in ["ds-cnn", "std-cnn"]:
        for threads in [1, 2]:
            ds, pt = [], []
            for _ in range(a.rounds):
                ds.append(dsconv_ms(a.dsconv, model, threads, a.steps))
                pt.append(torch_ms(model, threads, a.steps, x, y))
            md, mp = statistics.median(ds), statistics.median(pt)
            print(f"| {model} | {threads} | {md:.2f} ({min(ds):.2f}) | {mp:.2f} ({min(pt):.2f}) | {md / mp:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
