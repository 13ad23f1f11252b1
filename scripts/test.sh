#!/usr/bin/env bash
# The whole dsconv test suite, as CI runs it: unit, property, golden, kernel (every SIMD
# tier this CPU has), doc and CLI tests, in the test profile (overflow checks on).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace "$@"
