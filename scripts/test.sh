#!/usr/bin/env bash
# The whole test suite: set up, build, then every ctest test (unit, MPI at 1–4 ranks, CLI).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FMATTN_BUILD_DIR:-$root/build}
bash "$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
