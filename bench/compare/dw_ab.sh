#!/usr/bin/env bash
# A/B of two builds of the depthwise kernels on single layers, alternating in one run:
#   bench/compare/dw_ab.sh OLD_DW_PROBE NEW_DW_PROBE [RUNS]
# where each argument is a copy of target/release/examples/dw_probe built from the commit to
# compare (`cargo build --release -p dsconv --example dw_probe`). Prints, per layer
# (C HW STRIDE K), the median GFLOP/s of each 1-second run, old then new, on one thread.
set -euo pipefail
old=$1 new=$2 runs=${3:-3}
layers=(
    "128 28 1 3" "64 28 1 3" "32 56 1 3" "128 14 1 3" "256 14 1 3" "512 14 1 3"
    "1024 7 1 3" "128 7 1 3" "960 7 1 3" "256 28 1 3" "128 28 2 3" "128 56 2 3"
    "256 28 2 3" "64 112 2 3" "240 28 1 5" "480 14 1 5" "1152 7 1 5" "672 7 1 5"
    "144 56 2 5" "672 14 2 5"
)
rate() { "$@" | sed -E 's/.* us ([0-9.]+) GFLOP.*/\1/'; }
for layer in "${layers[@]}"; do
    o="" n=""
    for _ in $(seq "$runs"); do
        # shellcheck disable=SC2086
        o="$o $(rate "$old" $layer 1)"
        # shellcheck disable=SC2086
        n="$n $(rate "$new" $layer 1)"
    done
    echo "$layer | old:$o | new:$n"
done
