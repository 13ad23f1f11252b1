#!/usr/bin/env python3
"""Cross-checks `dsconv conv2d` against PyTorch on random convolutions.

Not run by CI (it needs PyTorch). For each random case -- batch, channels, groups
(standard, depthwise with multiplier, grouped), rectangular kernels, per-axis stride and
dilation, every padding form (P, PH,PW, T,B,L,R, same, valid) and mode (zeros, reflect,
replicate, circular), both layouts, with and without bias -- it writes .npy files, runs
the binary, and compares the output with

    torch.nn.functional.conv2d(F.pad(x, (L, R, T, B), mode), w, b, stride, 0, dilation, groups)

in float32 and in float64. Cases whose geometry is impossible (kernel larger than the
padded input, reflect padding >= input, circular padding > input) must instead fail with
exit status 2, one 'dsconv: error:' line and no output file.

    cargo build -p dsconv-cli
    python scripts/crosscheck_conv2d.py [--cases 300] [--seed 0] [--bin target/debug/dsconv]

Exits 1 if any error exceeds 1e-5 * max|reference| or any contract is broken.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE = 1e-5  # relative to max|reference|, as in the Rust tests
MODES = ["zeros", "reflect", "replicate", "circular"]


def same_upper(size, kernel, stride, dilation):
    """TF/ONNX SAME_UPPER padding of one axis: (before, after)."""
    out = -(-size // stride)
    extent = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def random_case(rng):
    n = rng.choice([1, 1, 2])
    kind = rng.choice(["standard", "depthwise", "grouped", "pointwise"])
    if kind == "depthwise":
        c_in = rng.randint(1, 24)
        groups = c_in
        c_out = c_in * rng.choice([1, 1, 2, 3])
    elif kind == "grouped":
        groups = rng.choice([2, 3, 4])
        c_in = groups * rng.randint(1, 4)
        c_out = groups * rng.randint(1, 4)
    else:
        groups = 1
        c_in = rng.randint(1, 20)
        c_out = rng.randint(1, 20)
    if kind == "pointwise":
        kh = kw = 1
    else:
        kh, kw = rng.choice([1, 2, 3, 3, 3, 5]), rng.choice([1, 2, 3, 3, 3, 5])
    h, w = rng.randint(1, 14), rng.randint(1, 14)
    stride = (rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3]))
    dilation = (rng.choice([1, 1, 2]), rng.choice([1, 1, 2]))
    form = rng.choice(["P", "PH,PW", "T,B,L,R", "same", "valid"])
    if form == "P":
        p = rng.randint(0, 3)
        pads, flag = (p, p, p, p), str(p)
    elif form == "PH,PW":
        ph, pw = rng.randint(0, 3), rng.randint(0, 3)
        pads, flag = (ph, ph, pw, pw), f"{ph},{pw}"
    elif form == "T,B,L,R":
        pads = tuple(rng.randint(0, 3) for _ in range(4))
        flag = ",".join(map(str, pads))
    elif form == "same":
        pads = same_upper(h, kh, stride[0], dilation[0]) + same_upper(w, kw, stride[1], dilation[1])
        flag = "same"
    else:
        pads, flag = (0, 0, 0, 0), "valid"
    return dict(
        n=n, c_in=c_in, c_out=c_out, groups=groups, h=h, w=w, kh=kh, kw=kw,
        stride=stride, dilation=dilation, pads=pads, padding_flag=flag,
        mode=rng.choice(MODES), layout=rng.choice(["nchw", "nhwc"]), bias=rng.random() < 0.6,
    )


def geometry_ok(c):
    top, bottom, left, right = c["pads"]
    for size, before, after, k, d in [
        (c["h"], top, bottom, c["kh"], c["dilation"][0]),
        (c["w"], left, right, c["kw"], c["dilation"][1]),
    ]:
        if size + before + after < (k - 1) * d + 1:
            return False
        if c["mode"] == "reflect" and max(before, after) >= size:
            return False
        if c["mode"] == "circular" and max(before, after) > size:
            return False
    return True


def torch_conv(x, w, b, c, dtype):
    top, bottom, left, right = c["pads"]
    xt = torch.from_numpy(x).to(dtype)
    mode = "constant" if c["mode"] == "zeros" else c["mode"]
    if any(c["pads"]):
        xt = F.pad(xt, (left, right, top, bottom), mode=mode)
    bt = None if b is None else torch.from_numpy(b).to(dtype)
    y = F.conv2d(xt, torch.from_numpy(w).to(dtype), bt, c["stride"], 0, c["dilation"], c["groups"])
    return y.numpy()


def run_case(binary, c, rng_np, tmp):
    x = rng_np.uniform(-1, 1, (c["n"], c["c_in"], c["h"], c["w"])).astype(np.float32)
    w = rng_np.uniform(-1, 1, (c["c_out"], c["c_in"] // c["groups"], c["kh"], c["kw"])).astype(np.float32)
    b = rng_np.uniform(-1, 1, (c["c_out"],)).astype(np.float32) if c["bias"] else None
    xp, wp, bp, yp = (os.path.join(tmp, f) for f in ("x.npy", "w.npy", "b.npy", "y.npy"))
    np.save(xp, x.transpose(0, 2, 3, 1).copy() if c["layout"] == "nhwc" else x)
    np.save(wp, w)
    cmd = [
        binary, "conv2d", "--input", xp, "--weight", wp, "--output", yp,
        "--stride", "{},{}".format(*c["stride"]), "--dilation", "{},{}".format(*c["dilation"]),
        "--padding", c["padding_flag"], "--padding-mode", c["mode"],
        "--groups", str(c["groups"]), "--layout", c["layout"],
    ]
    if b is not None:
        np.save(bp, b)
        cmd += ["--bias", bp]
    if os.path.exists(yp):
        os.remove(yp)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not geometry_ok(c):
        lines = proc.stderr.splitlines()
        ok = (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("dsconv: error:")
              and not os.path.exists(yp))
        return ("rejected", ok, proc.stderr.strip())
    if proc.returncode != 0:
        return ("failed", False, proc.stderr.strip())
    y = np.load(yp)
    if c["layout"] == "nhwc":
        y = y.transpose(0, 3, 1, 2)
    ref64 = torch_conv(x, w, b, c, torch.float64)
    ref32 = torch_conv(x, w, b, c, torch.float32)
    if y.shape != ref64.shape:
        return ("failed", False, f"shape {y.shape} != torch {ref64.shape}")
    scale = max(float(np.abs(ref64).max()), 1e-30)
    err64 = float(np.abs(y.astype(np.float64) - ref64).max()) / scale
    err32 = float(np.abs(y - ref32).max()) / scale
    torch32 = float(np.abs(ref32.astype(np.float64) - ref64).max()) / scale
    return ("compared", err64 <= TOLERANCE, (err64, err32, torch32))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "debug", "dsconv"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rng_np = np.random.default_rng(args.seed)
    torch.set_num_threads(1)
    counts = {"compared": 0, "rejected": 0, "failed": 0}
    worst = (0.0, 0.0, 0.0, None)
    max_err32 = max_torch32 = 0.0
    bad = []
    per_mode = {m: 0 for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            c = random_case(rng)
            kind, ok, detail = run_case(args.bin, c, rng_np, tmp)
            counts[kind] += 1
            if not ok:
                bad.append((i, c, detail))
            if kind == "compared":
                per_mode[c["mode"]] += 1
                max_err32 = max(max_err32, detail[1])
                max_torch32 = max(max_torch32, detail[2])
                if detail[0] >= worst[0]:
                    worst = (*detail, c)
    print(f"dsconv conv2d vs torch {torch.__version__} (numpy {np.__version__}), seed {args.seed}")
    print(f"  {counts['compared']} cases compared ({', '.join(f'{m} {k}' for m, k in per_mode.items())}), "
          f"{counts['rejected']} impossible geometries rejected, {counts['failed']} unexpected failures")
    print(f"  max |dsconv - torch f64| / max|ref| = {worst[0]:.3g}")
    print(f"  max |dsconv - torch f32| / max|ref| = {max_err32:.3g}")
    print(f"  max |torch f32 - torch f64| / max|ref| = {max_torch32:.3g} (PyTorch's own f32 error)")
    if worst[3] is not None:
        print(f"  worst case: {worst[3]}")
    for i, c, detail in bad[:10]:
        print(f"  BAD case {i}: {c}\n    {detail}")
    if bad:
        print(f"FAIL: {len(bad)} bad cases")
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
