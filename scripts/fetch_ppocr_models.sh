#!/usr/bin/env bash
# Fetches the three PP-OCR ONNX models of the PyPI package rapidocr-onnxruntime 1.4.4
# (Apache-2.0, a 15 MB wheel) without installing anything: downloads the wheel with pip,
# extracts ch_PP-OCRv4_det_infer.onnx, ch_PP-OCRv4_rec_infer.onnx and
# ch_ppocr_mobile_v2.0_cls_infer.onnx into DIR (default target/ppocr) and prints the line
# to export for the tests:
#     export DSCONV_PPOCR_DIR=.../target/ppocr
# Usage: scripts/fetch_ppocr_models.sh [DIR]
set -euo pipefail
dir="${1:-target/ppocr}"
models="ch_PP-OCRv4_det_infer.onnx ch_PP-OCRv4_rec_infer.onnx ch_ppocr_mobile_v2.0_cls_infer.onnx"
missing=0
for m in $models; do [ -f "$dir/$m" ] || missing=1; done
if [ "$missing" = 1 ]; then
    mkdir -p "$dir"
    python3 -m pip download --no-deps --only-binary=:all: --dest "$dir" \
        rapidocr-onnxruntime==1.4.4 >&2
    python3 - "$dir" $models <<'PY'
import glob, os, sys, zipfile
d, names = sys.argv[1], sys.argv[2:]
wheel = sorted(glob.glob(d + "/rapidocr_onnxruntime-1.4.4-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    for n in names:
        data = z.read("rapidocr_onnxruntime/models/" + n)
        tmp = os.path.join(d, n + ".part")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(d, n))
PY
fi
echo "export DSCONV_PPOCR_DIR=$(cd "$dir" && pwd)"
