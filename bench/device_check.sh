#!/usr/bin/env bash
# The GPU check in one script: on a machine with an NVIDIA (nvcc) or AMD (hipcc) GPU and a Kokkos
# and Kokkos Kernels source tree, build Kokkos for the local GPU, build fmattn with the same
# compiler (no warning allowed in fmattn's own code), run the kernel tests on the GPU, then
# fmattn_bench (FMA causal and bidirectional, exact causal; d = 64 and 128; fp32 and fp64; n up
# to 2^24) with its GEMM ceilings measured by Kokkos Kernels (cuBLAS / rocBLAS underneath).
#
#   FMATTN_KOKKOS_SOURCE=DIR FMATTN_KOKKOS_KERNELS_SOURCE=DIR bash bench/device_check.sh [OUT_DIR]
#
# Writes OUT_DIR (default results/device-<date>): build.log, warnings.txt, tests.log,
# bench-float.csv, bench-double.csv (fmattn_bench's CSV: time, GFLOP/s, % of the GEMM ceiling)
# and summary.txt. Environment:
#   FMATTN_GPU_ARCH         Kokkos' name of the GPU architecture (HOPPER90, AMPERE80, AMD_GFX90A,
#                           ...); default: read off nvidia-smi or rocminfo
#   FMATTN_DEVICE_PREFIX    where Kokkos is installed (default $HOME/.cache/fmattn-device)
#   FMATTN_DEVICE_BUILD_ONLY=1  build and check warnings only (a machine with the toolkit but no GPU)
#   FMATTN_BENCH_NMAX       largest log2 n in fp32 (default 24; fp64 one less)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/results/device-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "[device-check] $*" >&2; }
die() { log "error: $*"; exit 2; }

kokkos_src=${FMATTN_KOKKOS_SOURCE:-}
kk_src=${FMATTN_KOKKOS_KERNELS_SOURCE:-}
[[ -f $kokkos_src/core/src/Kokkos_Core.hpp ]] || die "FMATTN_KOKKOS_SOURCE must be a Kokkos source tree"
[[ -d $kk_src/blas ]] || die "FMATTN_KOKKOS_KERNELS_SOURCE must be a Kokkos Kernels source tree"
build_only=${FMATTN_DEVICE_BUILD_ONLY:-0}
jobs=$(nproc)

# The backend and the architecture of the local GPU.
if command -v nvcc >/dev/null; then
  backend=CUDA
  arch=${FMATTN_GPU_ARCH:-}
  if [[ -z $arch ]]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ') ||
      die "no GPU visible to nvidia-smi: set FMATTN_GPU_ARCH"
    case $cap in
      70) arch=VOLTA70 ;; 75) arch=TURING75 ;; 80) arch=AMPERE80 ;; 86) arch=AMPERE86 ;; 89) arch=ADA89 ;;
      90) arch=HOPPER90 ;; 100) arch=BLACKWELL100 ;; 120) arch=BLACKWELL120 ;;
      *) die "unknown compute capability '$cap': set FMATTN_GPU_ARCH" ;;
    esac
  fi
  # nvcc_wrapper compiles for sm_70 unless told, which newer CUDA versions refuse: name the
  # architecture from the start (Kokkos' configure compiles test programs before its own flags).
  sm=${arch//[!0-9]/}
  compiler=$kokkos_src/bin/nvcc_wrapper
  kokkos_flags=(-DKokkos_ENABLE_CUDA=ON "-DCMAKE_CXX_FLAGS=-arch=sm_$sm")
  kk_flags=(-DKokkosKernels_ENABLE_TPL_CUBLAS=ON -DKokkosKernels_ENABLE_TPL_CUSPARSE=OFF
    -DKokkosKernels_ENABLE_TPL_CUSOLVER=OFF "-DCMAKE_CXX_FLAGS=-arch=sm_$sm")
  fmattn_flags=("-DCMAKE_CXX_FLAGS=-arch=sm_$sm")
elif command -v hipcc >/dev/null; then
  backend=HIP
  arch=${FMATTN_GPU_ARCH:-}
  if [[ -z $arch ]]; then
    gfx=$(rocminfo 2>/dev/null | grep -o -m 1 'gfx[0-9a-f]*') || die "no GPU visible to rocminfo: set FMATTN_GPU_ARCH"
    arch=AMD_${gfx^^}
  fi
  compiler=$(command -v hipcc)
  kokkos_flags=(-DKokkos_ENABLE_HIP=ON)
  kk_flags=(-DKokkosKernels_ENABLE_TPL_ROCBLAS=ON -DKokkosKernels_ENABLE_TPL_ROCSPARSE=OFF
    -DKokkosKernels_ENABLE_TPL_ROCSOLVER=OFF)
  fmattn_flags=()
else
  die "neither nvcc nor hipcc found"
fi
version=$(sed -nE 's/^ *set\(Kokkos_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)\).*/\2/p' "$kokkos_src/CMakeLists.txt" | paste -sd.)
prefix=${FMATTN_DEVICE_PREFIX:-$HOME/.cache/fmattn-device}/kokkos-$version-${backend,,}-${arch,,}
work=$out/build
mkdir -p "$work"
log "Kokkos $version, $backend, $arch -> $prefix"

# Kokkos and Kokkos Kernels, once per prefix.
if [[ ! -f $prefix/.fmattn-stamp ]]; then
  cmake -S "$kokkos_src" -B "$work/kokkos" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_COMPILER="$compiler" -DKokkos_ENABLE_SERIAL=ON -DKokkos_ARCH_"$arch"=ON \
    -DKokkos_ENABLE_TESTS=OFF "${kokkos_flags[@]}" >"$out/kokkos.log" 2>&1 &&
    cmake --build "$work/kokkos" -j "$jobs" >>"$out/kokkos.log" 2>&1 &&
    cmake --install "$work/kokkos" >>"$out/kokkos.log" 2>&1 || { tail -n 30 "$out/kokkos.log" >&2; die "Kokkos build failed"; }
  cmake -S "$kk_src" -B "$work/kokkos-kernels" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_COMPILER="$compiler" -DKokkos_ROOT="$prefix" \
    -DKokkosKernels_ADD_DEFAULT_ETI=OFF -DKokkosKernels_ENABLE_TESTS=OFF "${kk_flags[@]}" >"$out/kokkos-kernels.log" 2>&1 &&
    cmake --build "$work/kokkos-kernels" -j "$jobs" >>"$out/kokkos-kernels.log" 2>&1 &&
    cmake --install "$work/kokkos-kernels" >>"$out/kokkos-kernels.log" 2>&1 ||
    { tail -n 30 "$out/kokkos-kernels.log" >&2; die "Kokkos Kernels build failed"; }
  echo "$version $backend $arch" >"$prefix/.fmattn-stamp"
fi

# fmattn with the same compiler; every warning that points into fmattn's sources is a failure.
log "building fmattn (log: $out/build.log)"
cmake -S "$root" -B "$work/fmattn" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$compiler" \
  -DKokkos_ROOT="$prefix" -DKokkosKernels_ROOT="$prefix" -DFMATTN_CHECK_HEADERS=OFF "${fmattn_flags[@]}" \
  >"$out/build.log" 2>&1 &&
  cmake --build "$work/fmattn" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log" >&2; die "fmattn build failed"; }
grep -E "^($root/)?(src|kernels|bench|tests)/[^:]*[:(][0-9]+.*warning" "$out/build.log" | sort -u >"$out/warnings.txt" || true
warnings=$(wc -l <"$out/warnings.txt")
{
  echo "fmattn $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), Kokkos $version $backend $arch"
  echo "compiler: $("$compiler" --version 2>&1 | grep -m 1 -iE 'release|version')"
  echo "warnings in fmattn's code: $warnings"
} >"$out/summary.txt"
((warnings == 0)) || { cat "$out/warnings.txt" >&2; die "$warnings warnings in fmattn's code"; }
if [[ $build_only == 1 ]]; then
  cat "$out/summary.txt"
  exit 0
fi

# The kernel tests on the GPU (their host copies too), then the benchmark sweep.
log "kernel tests (log: $out/tests.log)"
(cd "$work/fmattn" && ctest --output-on-failure -L unit >"$out/tests.log" 2>&1 &&
  OMPI_MCA_rmaps_base_oversubscribe=1 ctest --output-on-failure -R 'test_(sequence_parallel|mpi)_np' >>"$out/tests.log" 2>&1) ||
  { tail -n 40 "$out/tests.log" >&2; die "kernel tests failed"; }
tail -n 3 "$out/tests.log" >>"$out/summary.txt"
nmax=${FMATTN_BENCH_NMAX:-24}
bench=$work/fmattn/bin/fmattn_bench
for dtype in float double; do
  top=$nmax
  [[ $dtype == double ]] && top=$((nmax - 1))
  log "fmattn_bench $dtype, n up to 2^$top"
  "$bench" --dtype "$dtype" --d 64,128 --n-min 16 --n-max "$top" --exact-max 18 --repeat 3 \
    --cases fma-causal,fma-bidirectional,exact-causal --csv "$out/bench-$dtype.csv" | tee "$out/bench-$dtype.txt"
  grep '^#' "$out/bench-$dtype.txt" >>"$out/summary.txt"
done
cat "$out/summary.txt"
