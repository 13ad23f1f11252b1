#!/usr/bin/env python3
"""Each MobileNetV2-1.0 depthwise layer's backward (input gradient + weight gradient) at
224×224 input resolution: dsconv against PyTorch eager on the same shapes, alternating in
one run (per round: PyTorch NCHW, PyTorch channels_last, dsconv, layer by layer).

    cargo build --release -p dsconv --example grad_speed
    /work/venv-torch/bin/python bench/compare/dw_backward.py [--batch 32 8] [--threads 1 2]
        [--rounds 3] [--reps 5] [--layers 384@14/1 ...] [--bin target/release/examples/grad_speed]

PyTorch runs `torch.ops.aten.convolution_backward` (what autograd calls for `nn.Conv2d`)
with output_mask [input, weight] under `torch.no_grad()`, after `torch.set_num_threads`;
dsconv runs `grad_speed --dw` (`conv2d_input_nhwc_into` + `conv2d_weight_nhwc_into`,
NHWC, buffers reused). Each cell is the median over rounds of each round's median of
`--reps` runs after a warm-up. "GB/s" is dsconv's compulsory traffic (read dy twice, x
once, write dx: 4·(2·|dy| + 2·|x|) bytes) over its time: depthwise backward is
memory-bound, compare it with the bandwidth `dsconv info` measures.
"""

import argparse
import os
import statistics
import subprocess
import time

import torch

# (C, H = W of the layer's input, stride, how many such layers MobileNetV2-1.0 has)
LAYERS = [
    (32, 112, 1, 1), (96, 112, 2, 1), (144, 56, 1, 1), (144, 56, 2, 1), (192, 28, 1, 2),
    (192, 28, 2, 1), (384, 14, 1, 4), (576, 14, 1, 2), (576, 14, 2, 1), (960, 7, 1, 3),
]


# ds-cnn on the digits (`train::NetConfig::strides`): dw 32@8 s1, 64@8 s2, 128@4 s2.
DSCNN_LAYERS = [(32, 8, 1, 1), (64, 8, 2, 1), (128, 4, 2, 1)]


def torch_ms(c, h, s, batch, reps, channels_last):
    g = torch.Generator().manual_seed(7)
    oh = (h + 2 - 3) // s + 1
    x = torch.rand((batch, c, h, h), generator=g) * 2 - 1
    w = torch.rand((c, 1, 3, 3), generator=g) - 0.5
    dy = torch.rand((batch, c, oh, oh), generator=g) * 2 - 1
    if channels_last:
        x, w, dy = (t.contiguous(memory_format=torch.channels_last) for t in (x, w, dy))

    def step():
        return torch.ops.aten.convolution_backward(
            dy, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], c, [True, True, False])

    with torch.no_grad():
        step()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def dsconv_ms(binary, c, h, s, batch, threads, reps):
    out = subprocess.run([binary, "--dw", str(c), str(h), str(s), str(batch), str(threads),
                          str(reps)], check=True, capture_output=True, text=True).stdout
    words = out.split()
    return float(words[words.index("backward") + 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--net", choices=["mobilenet-v2", "ds-cnn"], default="mobilenet-v2",
                    help="whose depthwise layers: MobileNetV2-1.0 at 224², or ds-cnn on the "
                         "8×8 digits (widths 32-64-128-128)")
    ap.add_argument("--layers", nargs="+", default=None,
                    help="only these layers, as C@H/S (e.g. 384@14/1)")
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "examples", "grad_speed"))
    args = ap.parse_args()
    print(f"torch {torch.__version__}; dsconv {args.bin}; rounds {args.rounds}, "
          f"reps {args.reps}")
    print("| batch | threads | layer | × | PyTorch NCHW ms | PyTorch CL ms | dsconv ms | "
          "speed-up vs faster | dsconv GB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in args.batch:
        for threads in args.threads:
            torch.set_num_threads(threads)
            totals = [0.0, 0.0, 0.0]
            for (c, h, s, count) in (LAYERS if args.net == "mobilenet-v2" else DSCNN_LAYERS):
                if args.layers and f"{c}@{h}/{s}" not in args.layers:
                    continue
                runs = [[], [], []]
                for _ in range(args.rounds):
                    runs[0].append(torch_ms(c, h, s, batch, args.reps, False))
                    runs[1].append(torch_ms(c, h, s, batch, args.reps, True))
                    runs[2].append(dsconv_ms(args.bin, c, h, s, batch, threads, args.reps))
                nchw, cl, ds = (statistics.median(r) for r in runs)
                for i, v in enumerate((nchw, cl, ds)):
                    totals[i] += count * v
                oh = (h + 2 - 3) // s + 1
                traffic = 4 * (2 * batch * c * oh * oh + 2 * batch * c * h * h)
                print(f"| {batch} | {threads} | dw {c}@{h} s{s} | {count} | {nchw:.2f} | "
                      f"{cl:.2f} | {ds:.2f} | {min(nchw, cl) / ds:.2f}× | "
                      f"{traffic / ds / 1e6:.1f} |", flush=True)
            if args.layers:
                continue
            n = 17 if args.net == "mobilenet-v2" else 3
            print(f"| {batch} | {threads} | all {n} layers | | {totals[0]:.1f} | "
                  f"{totals[1]:.1f} | {totals[2]:.1f} | "
                  f"{min(totals[0], totals[1]) / totals[2]:.2f}× | |", flush=True)


if __name__ == "__main__":
    main()
