#!/usr/bin/env python3
"""PyTorch golden fixtures for dsconv's training (crates/dsconv/tests/train_golden.rs).

Writes crates/dsconv/tests/fixtures/train/:
  bn.npz-like .npy files      BatchNorm2d in train mode: y, dx, dgamma, dbeta and the running
                              stats after two forwards (momentum 0.1, eps 1e-5)
  ce_*.npy                    cross-entropy with label smoothing 0.1: loss and dlogits
  init.safetensors, x.npy, y.npy
                              a small ds-cnn (2x6x6 images, widths 4,6,8, 3 classes) and
                              8 images; PyTorch's default initialisation, seeded
  <opt>.f32.safetensors, <opt>.f64.safetensors
                              the state dict after 4 steps (batches 0-3, 4-7, 0-3, 4-7) of
                              each optimizer, in float32 and float64 from the same init;
                              the Rust test's tolerance per tensor comes from their
                              difference (PyTorch float32's own error)
  <opt>.losses.npy            float64 losses of the 4 steps

With --check CKPT [--dsconv BIN]: loads a checkpoint `dsconv train --data digits` wrote into
the PyTorch model strictly (model.load_state_dict(safetensors.torch.load_file(CKPT))) and
checks that its eval-mode accuracy and mean loss on all 1,797 digits equal `dsconv eval`'s.

Run with /work/venv-torch/bin/python scripts/train_reference.py (PyTorch 2.9.1).
"""
import argparse
import os

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "dsconv", "tests", "fixtures", "train")


def strides(h, w, n):
    """CnnConfig::strides in crates/dsconv/src/train/model.rs."""
    size = min(h, w)
    stem = 2 if size >= 64 else 1
    size = -(-size // stem)
    out = [stem]
    for i in range(1, n):
        s = 2 if i >= 2 and size >= 4 else 1
        size = -(-size // s)
        out.append(s)
    return out


class Net(nn.Module):
    """ds-cnn / std-cnn with dsconv's state_dict names."""

    def __init__(self, arch, cin, h, w, classes, widths=(32, 64, 128, 128), k=3, dropout=0.0):
        super().__init__()
        st = strides(h, w, len(widths))
        feats = [nn.Sequential(nn.Conv2d(cin, widths[0], 3, st[0], 1, bias=False),
                               nn.BatchNorm2d(widths[0]), nn.ReLU())]
        for i in range(1, len(widths)):
            a, b, s = widths[i - 1], widths[i], st[i]
            if arch == "ds-cnn":
                feats.append(nn.Sequential(
                    nn.Conv2d(a, a, k, s, k // 2, groups=a, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
                    nn.Conv2d(a, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()))
            else:
                feats.append(nn.Sequential(
                    nn.Conv2d(a, b, k, s, k // 2, bias=False), nn.BatchNorm2d(b), nn.ReLU()))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


def small_net():
    return Net("ds-cnn", 2, 6, 6, 3, widths=(4, 6, 8))


OPTIMIZERS = {
    "sgd_plain": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adamw": lambda p: torch.optim.AdamW(p),
    "adamw_3e-3": lambda p: torch.optim.AdamW(p, lr=3e-3, weight_decay=0.05),
}


def run_steps(init, x, y, make_opt, dtype, smoothing):
    net = small_net().to(dtype)
    net.load_state_dict(init)
    net.train()
    opt = make_opt(net.parameters())
    losses = []
    xt = torch.from_numpy(x).to(dtype)
    yt = torch.from_numpy(y)
    for step in range(4):
        sl = slice(0, 4) if step % 2 == 0 else slice(4, 8)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(xt[sl]), yt[sl], label_smoothing=smoothing)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    sd = {k: (v.to(torch.float64) if v.is_floating_point() else v).contiguous()
          for k, v in net.state_dict().items()}
    return sd, np.array(losses, dtype=np.float64)


def generate():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(12)
    # BatchNorm2d, train mode.
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 0.5
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.7, 0.3], dtype=torch.float64))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64))
    x32 = x.float().double().requires_grad_()
    y = bn(x32)
    dy = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64).float().double()
    y.backward(dy)
    bn(x32.detach() * 0.5 + 1.0)  # a second forward: running stats blend again
    np.save(os.path.join(OUT, "bn_x.npy"), x32.detach().float().numpy())
    np.save(os.path.join(OUT, "bn_dy.npy"), dy.float().numpy())
    np.save(os.path.join(OUT, "bn_y.npy"), y.detach().numpy())
    np.save(os.path.join(OUT, "bn_dx.npy"), x32.grad.numpy())
    np.save(os.path.join(OUT, "bn_dgamma.npy"), bn.weight.grad.numpy())
    np.save(os.path.join(OUT, "bn_dbeta.npy"), bn.bias.grad.numpy())
    np.save(os.path.join(OUT, "bn_running_mean.npy"), bn.running_mean.numpy())
    np.save(os.path.join(OUT, "bn_running_var.npy"), bn.running_var.numpy())
    # Cross-entropy with label smoothing.
    logits = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 3).float().double().requires_grad_()
    labels = torch.tensor([0, 3, 1, 1, 2])
    loss = nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    loss.backward()
    np.save(os.path.join(OUT, "ce_logits.npy"), logits.detach().float().numpy())
    np.save(os.path.join(OUT, "ce_labels.npy"), labels.numpy())
    np.save(os.path.join(OUT, "ce_loss.npy"), np.array([loss.item()]))
    np.save(os.path.join(OUT, "ce_grad.npy"), logits.grad.numpy())
    # A small ds-cnn and a few optimizer steps.
    torch.manual_seed(3)
    net = small_net()
    init = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(init, os.path.join(OUT, "init.safetensors"), metadata={"format": "pt"})
    x = torch.rand(8, 2, 6, 6, generator=g).numpy()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1]).numpy()
    np.save(os.path.join(OUT, "x.npy"), x)
    np.save(os.path.join(OUT, "y.npy"), y)
    for name, make_opt in OPTIMIZERS.items():
        smoothing = 0.1 if name == "adamw" else 0.0
        sd32, l32 = run_steps(init, x, y, make_opt, torch.float32, smoothing)
        sd64, l64 = run_steps(init, x, y, make_opt, torch.float64, smoothing)
        save_file(sd32, os.path.join(OUT, f"{name}.f32.safetensors"))
        save_file(sd64, os.path.join(OUT, f"{name}.f64.safetensors"))
        np.save(os.path.join(OUT, f"{name}.losses.npy"), l64)
        worst = max((sd32[k] - sd64[k]).abs().max().item() for k in sd64 if sd64[k].is_floating_point())
        print(f"{name}: losses {l64}, float32 vs float64 worst {worst:.2e}")


def check(ckpt, binary):
    """Loads a dsconv-trained digits checkpoint into PyTorch strictly and compares eval-mode
    accuracy and mean loss on all 1,797 digits with `dsconv eval` on the same images."""
    import gzip
    import json
    import subprocess
    import tempfile
    from safetensors import safe_open

    with safe_open(ckpt, "pt") as f:
        arch = f.metadata().get("dsconv.model", "ds-cnn")
    sd = load_file(ckpt)
    widths = [sd["features.0.0.weight"].shape[0]]
    i = 1
    key = "3" if arch == "ds-cnn" else "0"
    while f"features.{i}.{key}.weight" in sd:
        widths.append(sd[f"features.{i}.{key}.weight"].shape[0])
        i += 1
    net = Net(arch, 1, 8, 8, sd["classifier.1.weight"].shape[0], widths=tuple(widths),
              k=sd["features.1.0.weight"].shape[2])
    net.load_state_dict(sd)  # strict: every name, shape and buffer must match
    net.eval()
    path = os.path.join(os.path.dirname(__file__), "..", "crates", "dsconv", "data", "digits", "digits.csv.gz")
    rows = np.loadtxt(gzip.open(path, "rt"), delimiter=",")
    x = (rows[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = rows[:, 64].astype(np.int64)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).double()
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
    acc = float((logits.argmax(1).numpy() == y).mean())
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "y.npy"), y)
        out = subprocess.run([binary, "eval", "--model", arch, "--weights", ckpt, "--json", "--data",
                              f"{d}/x.npy,{d}/y.npy"], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    print(f"{ckpt} ({arch}): PyTorch load_state_dict strict OK; accuracy PyTorch {acc:.6f} "
          f"dsconv {r['accuracy']:.6f}; mean loss PyTorch {loss:.8f} dsconv {r['loss']:.8f}")
    assert acc == r["accuracy"] and abs(loss - r["loss"]) < 1e-5 * max(1.0, loss)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", help="a dsconv-trained digits checkpoint to load into PyTorch")
    ap.add_argument("--dsconv", default="target/release/dsconv", help="the dsconv binary (--check)")
    a = ap.parse_args()
    if a.check:
        check(a.check, a.dsconv)
    else:
        generate()
