#!/usr/bin/env bash
# Sets up the dependencies (scripts/setup.sh) and configures + builds fmattn into build/ (or
# $FMATTN_BUILD_DIR). Extra arguments go to CMake's configure step. With FMATTN_KOKKOS_SOURCE
# (see setup.sh) it builds against that Kokkos: use a build folder of its own.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FMATTN_BUILD_DIR:-$root/build}

kokkos_line=$(bash "$root/scripts/setup.sh" | tail -n 1)
kokkos_root=${kokkos_line#FMATTN_KOKKOS_ROOT=}
cmake_args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release)
[[ -n $kokkos_root ]] && cmake_args+=(-DKokkos_ROOT="$kokkos_root" -DKokkosKernels_ROOT="$kokkos_root")
# A build folder stays with the Kokkos it was configured with (CMake caches where it found it).
if [[ -f $build/CMakeCache.txt ]]; then
  cached=$(sed -n 's/^Kokkos_DIR:PATH=//p' "$build/CMakeCache.txt")
  if [[ -n $kokkos_root && -n $cached && $cached != "$kokkos_root"/* ]]; then
    echo "error: $build was configured with the Kokkos in $cached, not $kokkos_root;" \
      "set FMATTN_BUILD_DIR to another folder (or remove $build)" >&2
    exit 2
  fi
fi
mkdir -p "$build"
cmake "${cmake_args[@]}" "$@" >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)"
