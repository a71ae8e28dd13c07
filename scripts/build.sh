#!/usr/bin/env bash
# Sets up the dependencies (scripts/setup.sh) and configures + builds fmattn into build/ (or
# $FMATTN_BUILD_DIR). Extra arguments go to CMake's configure step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FMATTN_BUILD_DIR:-$root/build}

kokkos_line=$(bash "$root/scripts/setup.sh" | tail -n 1)
kokkos_root=${kokkos_line#FMATTN_KOKKOS_ROOT=}
cmake_args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release)
[[ -n $kokkos_root ]] && cmake_args+=(-DKokkos_ROOT="$kokkos_root")
mkdir -p "$build"
cmake "${cmake_args[@]}" "$@" >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)"
