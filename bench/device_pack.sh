#!/usr/bin/env bash
# Builds fmattn for an NVIDIA GPU on this machine (it needs CUDA's nvcc, not a GPU) and packs what
# a GPU check runs into one folder to carry to a GPU node that has the CUDA driver and toolkit
# but none of MPI, HDF5, yaml-cpp or GoogleTest, and no network: stripped executables, every
# shared library they load that is neither glibc's nor NVIDIA's, Open MPI's plug-ins, a slice of
# a corpus, and the scripts that run the check there (bench/device_run.sh).
#
#   FMATTN_KOKKOS_SOURCE=DIR FMATTN_KOKKOS_KERNELS_SOURCE=DIR bash bench/device_pack.sh [PACK_DIR]
#
# then, on the GPU node: bash PACK_DIR/device_run.sh OUT_DIR. PACK_DIR defaults to pack/device.
# Kokkos (>= 4) and Kokkos Kernels are built from the given source trees into a cached prefix;
# the sources are copied first, and a CUDA >= 13 copy gets the adjustments Kokkos 4.6 needs for
# it (the default architecture of nvcc_wrapper; the newer signatures of cudaGraphAddDependencies,
# cudaMemPrefetchAsync and cudaMemAdvise). Environment:
#   FMATTN_GPU_ARCH        Kokkos' architecture name (default HOPPER90: H100, H200)
#   FMATTN_DEVICE_PREFIX   cache of the sources, builds and Kokkos install
#                          (default $HOME/.cache/fmattn-device)
#   FMATTN_PACK_MAX_MIB    largest pack accepted (default 64)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pack=${1:-$root/pack/device}
log() { echo "[device-pack] $*" >&2; }
die() { log "error: $*"; exit 2; }

kokkos_src=${FMATTN_KOKKOS_SOURCE:-}
kk_src=${FMATTN_KOKKOS_KERNELS_SOURCE:-}
[[ -f $kokkos_src/core/src/Kokkos_Core.hpp ]] || die "FMATTN_KOKKOS_SOURCE must be a Kokkos source tree"
[[ -d $kk_src/blas ]] || die "FMATTN_KOKKOS_KERNELS_SOURCE must be a Kokkos Kernels source tree"
command -v nvcc >/dev/null || die "nvcc not found (put CUDA's bin/ on PATH)"
arch=${FMATTN_GPU_ARCH:-HOPPER90}
sm=${arch//[!0-9]/}
[[ -n $sm ]] || die "FMATTN_GPU_ARCH=$arch names no NVIDIA architecture"
cuda_major=$(nvcc --version | sed -nE 's/.*release ([0-9]+)\..*/\1/p')
version=$(sed -nE 's/^ *set\(Kokkos_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)\).*/\2/p' "$kokkos_src/CMakeLists.txt" | paste -sd.)
[[ ${version%%.*} -ge 4 ]] || die "Kokkos $version cannot be built with nvcc $cuda_major: use Kokkos >= 4"
# The study model's corpus: the Linux sources if made (scripts/make-corpus.sh linux), else the
# fortunes.
corpus=linux
[[ -f $root/data/linux-train.bin ]] || corpus=fortunes
[[ -f $root/data/$corpus-train.bin ]] || die "no corpus in data/: run bash scripts/make-corpus.sh fortunes"
cache=${FMATTN_DEVICE_PREFIX:-$HOME/.cache/fmattn-device}
prefix=$cache/kokkos-$version-cuda$cuda_major-${arch,,}-shared
work=$cache/build-$version-cuda$cuda_major-${arch,,}-shared
jobs=$(nproc)
mkdir -p "$work"
log "Kokkos $version, CUDA $cuda_major, $arch -> $prefix"

# A scratch copy of Kokkos with what CUDA 13 changed; each edit is checked, so that a Kokkos whose
# code moved fails here rather than in the compiler.
patch_kokkos() {
  local src=$1
  sed -i -E "s/^default_arch=\"sm_[0-9]+\"/default_arch=\"sm_$sm\"/" "$src/bin/nvcc_wrapper"
  grep -q "^default_arch=\"sm_$sm\"" "$src/bin/nvcc_wrapper" || die "nvcc_wrapper: no default_arch line to set"
  ((cuda_major >= 13)) || return 0
  local inst=$src/core/src/Cuda/Kokkos_Cuda_Instance.hpp
  perl -0pi -e 's/cudaGraphAddDependencies\(graph, from, to, numDependencies\)/cudaGraphAddDependencies(graph, from, to, nullptr, numDependencies)/;
    s/cudaMemPrefetchAsync\(devPtr, count, dstDevice,\s*get_input_stream\(stream\)\)/cudaMemPrefetchAsync(devPtr, count, cudaMemLocation{cudaMemLocationTypeDevice, dstDevice}, 0, get_input_stream(stream))/;
    s/cudaMemAdvise\(devPtr, count, advice, device\)/cudaMemAdvise(devPtr, count, advice, cudaMemLocation{cudaMemLocationTypeDevice, device})/' "$inst"
  grep -q "cudaGraphAddDependencies(graph, from, to, nullptr, numDependencies)" "$inst" &&
    grep -q "cudaMemLocation{cudaMemLocationTypeDevice, dstDevice}" "$inst" &&
    grep -q "cudaMemLocation{cudaMemLocationTypeDevice, device})" "$inst" ||
    die "$inst: the CUDA 13 adjustments did not apply (is this Kokkos 4.6?)"
}

if [[ ! -f $prefix/.fmattn-stamp ]]; then
  rm -rf "$work/kokkos-src" "$work/kokkos" "$work/kokkos-kernels"
  cp -a "$kokkos_src" "$work/kokkos-src"
  patch_kokkos "$work/kokkos-src"
  compiler=$work/kokkos-src/bin/nvcc_wrapper
  log "building Kokkos (log: $work/kokkos.log)"
  cmake -S "$work/kokkos-src" -B "$work/kokkos" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_COMPILER="$compiler" -DKokkos_ENABLE_CUDA=ON -DKokkos_ENABLE_SERIAL=ON \
    -DKokkos_ARCH_"$arch"=ON -DKokkos_ENABLE_TESTS=OFF -DBUILD_SHARED_LIBS=ON >"$work/kokkos.log" 2>&1 &&
    cmake --build "$work/kokkos" -j "$jobs" >>"$work/kokkos.log" 2>&1 &&
    cmake --install "$work/kokkos" >>"$work/kokkos.log" 2>&1 || { tail -n 30 "$work/kokkos.log" >&2; die "Kokkos build failed"; }
  log "building Kokkos Kernels (log: $work/kokkos-kernels.log)"
  cmake -S "$kk_src" -B "$work/kokkos-kernels" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_COMPILER="$prefix/bin/nvcc_wrapper" -DKokkos_ROOT="$prefix" \
    -DKokkosKernels_ADD_DEFAULT_ETI=OFF -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_TPL_CUBLAS=ON \
    -DKokkosKernels_ENABLE_TPL_CUSPARSE=OFF -DKokkosKernels_ENABLE_TPL_CUSOLVER=OFF -DBUILD_SHARED_LIBS=ON \
    >"$work/kokkos-kernels.log" 2>&1 &&
    cmake --build "$work/kokkos-kernels" -j "$jobs" >>"$work/kokkos-kernels.log" 2>&1 &&
    cmake --install "$work/kokkos-kernels" >>"$work/kokkos-kernels.log" 2>&1 ||
    { tail -n 30 "$work/kokkos-kernels.log" >&2; die "Kokkos Kernels build failed"; }
  echo "$version CUDA $cuda_major $arch" >"$prefix/.fmattn-stamp"
fi

# fmattn with Kokkos' compiler, host code for any AVX2 CPU (the GPU node's CPU is not known
# here); every warning that points into fmattn's sources is a failure. Shared libraries
# throughout: the library's device code (most of an executable's size) is then packed once,
# not once per test executable (82 MiB in all when linked statically).
targets=(fmattn_cli fmattn_bench test_attention test_backward test_linear test_dense_gemm test_synthetic
  test_model test_decoder test_sequence_parallel)
log "building fmattn (log: $work/fmattn.log)"
cmake -S "$root" -B "$work/fmattn" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$prefix/bin/nvcc_wrapper" \
  -DKokkos_ROOT="$prefix" -DKokkosKernels_ROOT="$prefix" -DFMATTN_HOST_ARCH=x86-64-v3 \
  -DFMATTN_CHECK_HEADERS=OFF -DFMATTN_TEST_OTHER_BACKENDS=OFF -DBUILD_SHARED_LIBS=ON >"$work/fmattn.log" 2>&1 &&
  cmake --build "$work/fmattn" -j "$jobs" --target "${targets[@]}" >>"$work/fmattn.log" 2>&1 ||
  { tail -n 40 "$work/fmattn.log" >&2; die "fmattn build failed"; }
warnings=$(grep -E "^($root/)?(src|kernels|bench|tests)/[^:]*[:(][0-9]+.*warning" "$work/fmattn.log" | sort -u || true)
[[ -z $warnings ]] || { echo "$warnings" >&2; die "warnings in fmattn's code"; }

exes=("$work/fmattn/bin/fmattn" "$work/fmattn/bin/fmattn_bench")
for t in "${targets[@]}"; do
  [[ $t == test_* ]] && exes+=("$work/fmattn/tests/$t")
done
bash "$root/bench/pack_collect.sh" --check "$root/data/$corpus" "$pack" "${exes[@]}"
# The host side starts from the pack: each program through run.sh (fmattn and the tests start MPI
# as a singleton), with the CUDA toolkit's stub driver where this machine has no GPU driver; all
# that it loads comes from the pack, glibc or the CUDA toolkit (LD_DEBUG=files).
stub=
if ! ldconfig -p | grep -q 'libcuda\.so\.1'; then
  stub=$work/cuda-stub
  mkdir -p "$stub"
  ln -sf "$(dirname "$(command -v nvcc)")/../lib64/stubs/libcuda.so" "$stub/libcuda.so.1"
fi
cuda_dir=$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)
for exe in "$pack"/bin/*; do
  name=$(basename "$exe")
  case $name in
    fmattn) args=(--version) ;;
    fmattn_bench) args=(--help) ;;
    *) args=(--gtest_list_tests) ;;
  esac
  LD_DEBUG=files LD_LIBRARY_PATH=$stub bash "$pack/run.sh" "$name" "${args[@]}" >"$work/start-$name.log" \
    2>"$work/loader-$name.log" || { tail -n 5 "$work/start-$name.log" >&2; die "$name does not start from the pack"; }
  outside=$(bash "$root/bench/pack_outside.sh" "$pack" "$work/loader-$name.log" "^($cuda_dir|${stub:-/nonexistent})/")
  [[ -z $outside ]] || die "$name loaded from outside the pack: $outside"
done
log "every packed program starts ($(ls "$pack/bin" | wc -l)), loading only the pack, glibc and CUDA"
{
  echo "fmattn $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "Kokkos $version CUDA $arch, nvcc $(nvcc --version | sed -nE 's/.*release ([0-9.]+).*/\1/p'), host code x86-64-v3"
  echo "corpus slice: $corpus; packed $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$pack/BUILD"
size_kib=$(du -sk "$pack" | cut -f1)
max_mib=${FMATTN_PACK_MAX_MIB:-64}
log "pack $pack: $((size_kib / 1024)) MiB ($(find "$pack" -type f | wc -l) files)"
((size_kib <= max_mib * 1024)) || die "the pack is larger than $max_mib MiB"
