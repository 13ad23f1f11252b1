#!/usr/bin/env bash
# The Python package's test suite (crates/dsconv-py), run by scripts/test.sh after the Rust
# tests: creates a venv (DSCONV_PYVENV, default target/pyvenv) with maturin, pytest, numpy,
# pillow and ray[data] (crates/dsconv-py/requirements-test.txt), builds and installs the
# `dsconv` package into it (`maturin develop --profile pytest`: the test profile's
# optimisation without debug info, see the workspace Cargo.toml), then runs pytest on
# crates/dsconv-py/tests.
#
# The real-network tests read DSCONV_EFFNET_WEIGHTS (scripts/test.sh sets it) and the
# `dsconv` binary cargo test built (or DSCONV_CLI). DSCONV_SKIP_PYTHON=1 skips all this.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DSCONV_SKIP_PYTHON:-0}" = 1 ]; then
    echo "test_python.sh: DSCONV_SKIP_PYTHON=1, Python tests skipped" >&2
    exit 0
fi
start=$(date +%s)
venv="${DSCONV_PYVENV:-target/pyvenv}"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
venv="$(cd "$venv" && pwd)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r crates/dsconv-py/requirements-test.txt
target_dir=$(cargo metadata --format-version 1 --no-deps |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
(cd crates/dsconv-py && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    maturin develop --quiet --profile pytest)
built=$(date +%s)
export DSCONV_CLI="${DSCONV_CLI:-$target_dir/debug/dsconv}"
export RAY_USAGE_STATS_ENABLED=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider crates/dsconv-py/tests
end=$(date +%s)
echo "test_python.sh: venv + build $((built - start)) s, pytest $((end - built)) s" >&2
