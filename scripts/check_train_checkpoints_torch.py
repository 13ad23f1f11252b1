"""Checkpoints written by `dsconv train` load in PyTorch, strictly, and give dsconv's
evaluation loss: for mobilenet-v1 (α 0.5), mobilenet-v2 (α 0.5) and efficientnet-lite0.

For each network: `dsconv train --steps 2` on a small seeded NumPy data set (8 images
3×64×64, 3 classes), then `model.load_state_dict(safetensors.torch.load_file(path))`
(strict: every key, shape and dtype, num_batches_tracked as int64) into the PyTorch module
(torchvision's mobilenet_v2; the classic MobileNetV1 and lukemelas' EfficientNet-Lite0 as
defined in scripts/train_nets_reference.py), and the eval-mode mean cross-entropy on the
data against `dsconv eval --json` (within 1e-4 relative, or 10× PyTorch float32's own
error where that is larger: after two steps EfficientNet-Lite0's running statistics,
momentum 0.01, are still near their initial values, and its evaluation-mode activations
grow large). Offline; not in CI (no PyTorch
there). Exit status 0 when every check passes.

    python scripts/check_train_checkpoints_torch.py [--dsconv target/release/dsconv]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_nets_reference import build  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsconv", default=os.path.join(ROOT, "target", "release", "dsconv"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        x = rng.uniform(-1.5, 1.5, (8, 3, 64, 64)).astype(np.float32)
        y = np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int64)
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "y.npy"), y)
        data = f"{d}/x.npy,{d}/y.npy"
        for arch, alpha in (("mobilenet-v1", 0.5), ("mobilenet-v2", 0.5),
                            ("efficientnet-lite0", 1.0)):
            ckpt = os.path.join(d, arch + ".safetensors")
            width = [] if arch == "efficientnet-lite0" else ["--alpha", str(alpha)]
            subprocess.run([args.dsconv, "train", "--model", arch, *width, "--data", data,
                            "--steps", "2", "--batch", "4", "--optimizer", "sgd", "--lr", "0.05",
                            "--momentum", "0.9", "--out", ckpt, "--json"],
                           check=True, stdout=subprocess.DEVNULL)
            ev = json.loads(subprocess.run(
                [args.dsconv, "eval", "--model", arch, *width, "--weights", ckpt, "--data", data,
                 "--json"], check=True, capture_output=True, text=True).stdout)
            model = build(arch, 3, alpha)
            sd = load_file(ckpt)
            model.load_state_dict(sd)  # strict
            tracked = [k for k in sd if k.endswith("num_batches_tracked")]
            assert tracked and all(sd[k].dtype == torch.int64 and int(sd[k]) == 2 for k in tracked)
            losses = {}
            for dtype in (torch.float64, torch.float32):
                m = model.to(dtype).eval()
                with torch.no_grad():
                    logits = m(torch.from_numpy(x).to(dtype))
                    losses[dtype] = float(F.cross_entropy(logits.double(), torch.from_numpy(y)))
            loss = losses[torch.float64]
            own = abs(losses[torch.float32] - loss) / abs(loss)
            rel = abs(loss - ev["loss"]) / abs(loss)
            tol = max(1e-4, 10 * own)
            ok = rel < tol
            failures += not ok
            print(f"{arch}: {len(sd)} tensors loaded strictly; eval loss PyTorch f64 {loss:.6f}, "
                  f"dsconv {ev['loss']:.6f}: relative difference {rel:.1e} (PyTorch f32's own "
                  f"{own:.1e}, tolerance {tol:.1e}) {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
