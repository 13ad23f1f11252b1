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
    path = os.path.join(ROOT, "crates", "dsconv-cli", "data", "digits", "digits.csv.gz")
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsconv", default=os.path.join(ROOT, "target", "release", "dsconv"))
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
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
