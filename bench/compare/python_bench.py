#!/usr/bin/env python3
"""The Python package measured: the overhead of one `dsconv.conv2d` call next to
`torch.nn.functional.conv2d` on the same small inputs, and images/s through the Ray Data
pipeline of examples/ray_classify.py with dsconv and with ONNX Runtime as the model.

    overhead   dsconv in this interpreter, PyTorch in --torch-python (a venv with torch;
               never needed by the tests), alternating, --rounds rounds; per call: the
               median of the rounds' medians of `timeit` batches.
    export     (run with a Python that has torch + torchvision + safetensors) torchvision
               mobilenet_v2, seeded random weights, to DIR/mobilenet_v2.onnx (opset 17,
               dynamic batch) and DIR/mobilenet_v2.safetensors (its state_dict, the
               weights dsconv loads).
    ray        (run with a Python that has dsconv, ray[data], onnxruntime, pillow) the
               same pipeline (read_images → map_batches(actor UDF: preprocess with the
               registry's transform, model, top-5) → materialize) over --images images on a
               local Ray bound to 127.0.0.1, once with dsconv and once with ORT per round,
               alternating; prints images/s and the model's own time per image (median
               over rounds, and the fastest single batch of all rounds: noise on a shared
               machine only adds time).

Usage (from the repository root, after scripts/test.sh made target/pyvenv, or any venv
with dsconv installed; build dsconv in release for timings: `cd crates/dsconv-py &&
maturin develop --release`):

    target/pyvenv/bin/python bench/compare/python_bench.py overhead \\
        --torch-python /work/venv-torch/bin/python
    /work/venv-torch/bin/python bench/compare/python_bench.py export target/bench-mnv2
    target/pyvenv/bin/python bench/compare/python_bench.py ray target/bench-mnv2 \\
        --images 192 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# (name, input shape NCHW, weight shape, keywords)
CASES = [
    ("1x1x1x1 identity 1x1 conv", (1, 1, 1, 1), (1, 1, 1, 1), {}),
    ("1x16x8x8 depthwise 3x3 pad 1", (1, 16, 8, 8), (16, 1, 3, 3), {"groups": 16, "padding": 1}),
    ("1x16x8x8 pointwise 16->32", (1, 16, 8, 8), (32, 16, 1, 1), {}),
]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def per_call(fn, min_time=0.2) -> float:
    """Seconds per call: the median of 5 timeit batches of ~min_time each."""
    t = timeit.Timer(fn)
    n, _ = t.autorange()
    reps = max(1, int(n * min_time / 0.2))
    return statistics.median(t.repeat(5, reps)) / reps


def measure_dsconv():
    import numpy as np

    import dsconv

    out = {}
    rng = np.random.default_rng(0)
    for name, xs, ws, kw in CASES:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        out[name] = {
            "conv2d": per_call(lambda: dsconv.conv2d(x, w, threads=1, **kw)),
            "layer": per_call(lambda layer=dsconv.Conv2d(w, threads=1, **kw): layer(x)),
        }
    return out


def measure_torch():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    out = {}
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for name, xs, ws, kw in CASES:
            x = torch.randn(xs, generator=g)
            w = torch.randn(ws, generator=g)
            out[name] = {"conv2d": per_call(lambda: F.conv2d(x, w, **kw))}
    return out


def cmd_overhead(args):
    import numpy as np  # noqa: F401  (fail early without NumPy)

    import dsconv

    rounds = []
    for r in range(args.rounds):
        d = measure_dsconv()
        t = None
        if args.torch_python:
            res = subprocess.run([args.torch_python, __file__, "torch-worker"],
                                 capture_output=True, text=True, check=True)
            t = json.loads(res.stdout)
        rounds.append({"dsconv": d, "torch": t})
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()}; dsconv {dsconv.__version__}; "
          f"Python {platform.python_version()}; 1 thread; µs per call, median of "
          f"{args.rounds} rounds")
    print("| input | dsconv.conv2d | dsconv.Conv2d layer call | torch F.conv2d |")
    print("|---|---:|---:|---:|")
    for name, *_ in CASES:
        med = lambda xs: statistics.median(xs) * 1e6  # noqa: E731
        dc = med([r["dsconv"][name]["conv2d"] for r in rounds])
        dl = med([r["dsconv"][name]["layer"] for r in rounds])
        tc = (f"{med([r['torch'][name]['conv2d'] for r in rounds]):.2f}"
              if rounds[0]["torch"] else "–")
        print(f"| {name} | {dc:.2f} | {dl:.2f} | {tc} |")


def cmd_export(args):
    import torch
    import torchvision
    from safetensors.torch import save_file

    os.makedirs(args.dir, exist_ok=True)
    torch.manual_seed(0)
    m = torchvision.models.mobilenet_v2(weights=None).eval()
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(sd, os.path.join(args.dir, "mobilenet_v2.safetensors"))
    x = torch.randn(2, 3, 224, 224)
    torch.onnx.export(m, (x,), os.path.join(args.dir, "mobilenet_v2.onnx"),
                      input_names=["input"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    import numpy as np

    with torch.inference_mode():
        np.save(os.path.join(args.dir, "check_logits.npy"), m(x).numpy())
    np.save(os.path.join(args.dir, "check_input.npy"), x.numpy())
    print(f"wrote {args.dir}/mobilenet_v2.onnx and mobilenet_v2.safetensors")


class Udf:
    """One actor: preprocessing as dsconv's registry says, then the model, then top-5.
    `engine` is "dsconv" or "ort"; the model's own time is returned per batch."""

    def __init__(self, engine, model_dir, threads):
        import dsconv

        self.engine = engine
        self.net = dsconv.load("mobilenet-v2",
                               weights=os.path.join(model_dir, "mobilenet_v2.safetensors"),
                               threads=threads)
        if engine == "ort":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(os.path.join(model_dir, "mobilenet_v2.onnx"), so,
                                             providers=["CPUExecutionProvider"])

    def __call__(self, batch):
        import numpy as np

        import dsconv

        x = self.net.preprocess_images(list(batch["image"]))
        t0 = time.perf_counter()
        if self.engine == "dsconv":
            logits = self.net.predict(x)
        else:
            logits = self.sess.run(None, {"input": x})[0]
        dt = time.perf_counter() - t0
        top = dsconv.top_classes(logits, 5)
        return {
            "path": np.asarray(batch["path"]),
            "index": np.asarray([[c["index"] for c in row] for row in top], np.int64),
            "model_s": np.full(len(top), dt / len(top)),
        }


def make_images(folder, n):
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    photos = [np.asarray(Image.open(os.path.join(REPO, "tests", "data", "images", f))
                         .convert("RGB")) for f in ("chelsea.png", "coffee.png")]
    for i in range(n):
        a = photos[i % 2]
        h, w = a.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        t, l = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        Image.fromarray(np.ascontiguousarray(a[t:t + ch, l:l + cw])).save(
            os.path.join(folder, f"img{i:04d}.png"))


def cmd_ray(args):
    import numpy as np
    import onnxruntime
    import ray

    import dsconv

    # the two engines agree on this network (same weights)
    check_x = np.load(os.path.join(args.dir, "check_input.npy"))
    want = np.load(os.path.join(args.dir, "check_logits.npy"))
    got = dsconv.load("mobilenet-v2",
                      weights=os.path.join(args.dir, "mobilenet_v2.safetensors")).predict(check_x)
    print(f"dsconv vs torch logits: max |diff| {np.abs(got - want).max():.2e}", file=sys.stderr)
    images = os.path.join(args.dir, f"images{args.images}")
    if not os.path.isdir(images):
        make_images(images, args.images)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", configure_logging=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    results = {"dsconv": [], "ort": []}
    try:
        for r in range(args.rounds + 1):          # round 0 warms up both
            for engine in ("dsconv", "ort"):
                t0 = time.perf_counter()
                ds = ray.data.read_images(images, mode="RGB", include_paths=True).map_batches(
                    Udf, fn_constructor_kwargs=dict(engine=engine, model_dir=args.dir,
                                                    threads=args.threads),
                    batch_size=args.batch_size, batch_format="numpy",
                    concurrency=args.actors, num_cpus=args.threads)
                rows = ds.take_all()
                wall = time.perf_counter() - t0
                assert len(rows) == args.images
                model = sum(row["model_s"] for row in rows)
                # every image of a batch carries that batch's time per image
                best = min(row["model_s"] for row in rows)
                if r:
                    results[engine].append((args.images / wall, model / args.images, best))
                print(f"round {r} {engine}: {args.images / wall:.1f} images/s, model "
                      f"{1e3 * model / args.images:.2f} ms/image", file=sys.stderr)
    finally:
        ray.shutdown()
    cores = args.actors * args.threads
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()}; ONNX Runtime "
          f"{onnxruntime.__version__}; ray {ray.__version__}; {args.images} images, batch "
          f"{args.batch_size}, {args.actors} actor(s) × {args.threads} thread(s) "
          f"(local Ray, {args.num_cpus} CPUs); median of {args.rounds} rounds after a warm-up; "
          f"best batch: the fastest batch of all rounds")
    print("| engine | pipeline images/s | per model core | model ms/image | "
          "model images/s per core | best batch ms/image |")
    print("|---|---:|---:|---:|---:|---:|")
    for engine, rs in results.items():
        ips = statistics.median(x[0] for x in rs)
        ms = statistics.median(x[1] for x in rs)
        best = min(x[2] for x in rs)
        print(f"| {engine} | {ips:.1f} | {ips / cores:.1f} | {1e3 * ms:.2f} | "
              f"{1 / ms / args.threads:.1f} | {1e3 * best:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--torch-python", default=None)
    o.add_argument("--rounds", type=int, default=3)
    sub.add_parser("torch-worker")
    e = sub.add_parser("export")
    e.add_argument("dir")
    r = sub.add_parser("ray")
    r.add_argument("dir")
    r.add_argument("--images", type=int, default=192)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--actors", type=int, default=1)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--num-cpus", type=int, default=2)
    args = p.parse_args()
    if args.cmd == "overhead":
        cmd_overhead(args)
    elif args.cmd == "torch-worker":
        print(json.dumps(measure_torch()))
    elif args.cmd == "export":
        cmd_export(args)
    else:
        cmd_ray(args)


if __name__ == "__main__":
    main()
