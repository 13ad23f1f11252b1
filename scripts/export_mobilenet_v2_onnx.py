"""A MobileNetV2 (torchvision structure and names, He-normal random weights, randomised
BatchNorm statistics) written twice with the same weights, for speed comparisons:
an ONNX file for ONNX Runtime and a PyTorch state_dict for dsconv. Also checks that ONNX
Runtime and PyTorch agree. No torchvision needed (the module is rebuilt in
crates/dsconv/tests/fixtures/weights/gen_mobilenet_v2.py).

    python scripts/export_mobilenet_v2_onnx.py [--alpha 1.0] [--out-dir target/mobilenet_v2]
    dsconv run --model mobilenet-v2 --alpha 1.0 --weights target/mobilenet_v2/mobilenet_v2_a1.0.pth ...
"""

import argparse
import os
import sys

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "crates", "dsconv", "tests", "fixtures", "weights"))
import gen_mobilenet_v2 as g  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "target", "mobilenet_v2"))
    args = ap.parse_args()
    torch.manual_seed(0)
    net = g.MobileNetV2(args.alpha, 1000)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"mobilenet_v2_a{args.alpha}")
    torch.save(net.state_dict(), stem + ".pth")
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(net, (x,), stem + ".onnx", input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    import onnxruntime as ort

    got = ort.InferenceSession(stem + ".onnx", providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = net.double()(x.double()).numpy()
    print(f"wrote {stem}.pth and {stem}.onnx; ONNX Runtime vs PyTorch float64: "
          f"max abs diff {np.abs(got - want).max():.3e} (max |logit| {np.abs(want).max():.2f})")


if __name__ == "__main__":
    main()
