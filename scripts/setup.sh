#!/usr/bin/env bash
# Idempotent dependency set-up for a Debian 12 machine (run as root).
#
# 1. Debian packages: compilers, MPI, parallel HDF5, yaml-cpp, GoogleTest, clang-tidy, OpenBLAS, Python
#    analysis modules, and Debian's Serial-only Kokkos as a fallback.
# 2. Kokkos (OpenMP + Serial) and Kokkos Kernels built from Debian's `trilinos` source package
#    into a cached prefix; skipped when the prefix's stamp matches.
#
# Prints the Kokkos prefix to use on its last line as `FMATTN_KOKKOS_ROOT=<dir>` (empty when the
# Serial fallback is used). Environment:
#   FMATTN_DEPS_PREFIX      where to install the source-built Kokkos (default /opt/fmattn-deps)
#   FMATTN_SKIP_APT=1       do not touch Debian packages (already installed)
#   FMATTN_KOKKOS_SOURCE    a Kokkos source tree (a release or a git checkout, e.g. 4.6.01) to
#                           build instead of Debian's 3.4, into a prefix of its own named by its
#                           version and backends
#   FMATTN_KOKKOS_KERNELS_SOURCE  with FMATTN_KOKKOS_SOURCE: the matching Kokkos Kernels source
#                           tree (the same release), built into the same prefix; fmattn needs
#                           one (without it, set KokkosKernels_ROOT to an installed one)
#   FMATTN_KOKKOS_BACKENDS  with FMATTN_KOKKOS_SOURCE: "openmp serial" (default) or "serial"
set -euo pipefail

prefix_root=${FMATTN_DEPS_PREFIX:-/opt/fmattn-deps}
kokkos_prefix=$prefix_root/kokkos-openmp
stamp_value="kokkos-3.4.01+kernels openmp serial c++17 shared v2"

log() { echo "[setup] $*" >&2; }

packages=(
  build-essential cmake pkg-config git dpkg-dev
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libyaml-cpp-dev
  libgtest-dev clang-tidy
  libopenblas-dev
  python3-numpy python3-h5py python3-matplotlib python3-yaml
  libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev
  fortunes
)

if [[ ${FMATTN_SKIP_APT:-0} != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "Debian packages already installed"
  fi
fi

# --- a Kokkos source tree of the user's, built as it is (default options but the backends).
if [[ -n ${FMATTN_KOKKOS_SOURCE:-} ]]; then
  src=$(cd "$FMATTN_KOKKOS_SOURCE" 2>/dev/null && pwd) || { log "error: FMATTN_KOKKOS_SOURCE=$FMATTN_KOKKOS_SOURCE is not a folder"; exit 2; }
  [[ -f $src/CMakeLists.txt && -f $src/core/src/Kokkos_Core.hpp ]] ||
    { log "error: $src is not a Kokkos source tree (no core/src/Kokkos_Core.hpp)"; exit 2; }
  version=$(sed -nE 's/^ *set\(Kokkos_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)\).*/\2/p' "$src/CMakeLists.txt" | paste -sd.)
  [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { log "error: no Kokkos version found in $src/CMakeLists.txt"; exit 2; }
  backends=${FMATTN_KOKKOS_BACKENDS:-openmp serial}
  case $backends in
    "openmp serial" | "serial openmp") backends="openmp serial" flags=(-DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON) ;;
    serial) flags=(-DKokkos_ENABLE_OPENMP=OFF -DKokkos_ENABLE_SERIAL=ON) ;;
    *) log "error: FMATTN_KOKKOS_BACKENDS must be \"openmp serial\" or \"serial\", not \"$backends\""; exit 2 ;;
  esac
  kokkos_prefix=$prefix_root/kokkos-$version-${backends// /-}
  # A git checkout is rebuilt when its commit changes; a release tree when its path does.
  revision=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo "$src")
  kk_src=""
  if [[ -n ${FMATTN_KOKKOS_KERNELS_SOURCE:-} ]]; then
    kk_src=$(cd "$FMATTN_KOKKOS_KERNELS_SOURCE" 2>/dev/null && pwd) ||
      { log "error: FMATTN_KOKKOS_KERNELS_SOURCE=$FMATTN_KOKKOS_KERNELS_SOURCE is not a folder"; exit 2; }
    [[ -f $kk_src/CMakeLists.txt && -d $kk_src/blas ]] ||
      { log "error: $kk_src is not a Kokkos Kernels source tree (no blas/)"; exit 2; }
    revision+=" kernels $(git -C "$kk_src" rev-parse HEAD 2>/dev/null || echo "$kk_src")"
  fi
  stamp_value="kokkos-source $version $revision $backends c++17 shared v2"
fi

if [[ -f $kokkos_prefix/.fmattn-stamp && $(cat "$kokkos_prefix/.fmattn-stamp") == "$stamp_value" ]]; then
  log "Kokkos already built in $kokkos_prefix"
  echo "FMATTN_KOKKOS_ROOT=$kokkos_prefix"
  exit 0
fi

if [[ -n ${FMATTN_KOKKOS_SOURCE:-} ]]; then
  work=$(mktemp -d /tmp/fmattn-setup.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  rm -rf "$kokkos_prefix"
  log "building Kokkos $version ($backends) from $src"
  cmake -S "$src" -B "$work/build-kokkos" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$kokkos_prefix" \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DKokkos_ENABLE_TESTS=OFF "${flags[@]}" >"$work/configure.log" 2>&1 ||
    { cat "$work/configure.log" >&2; exit 1; }
  cmake --build "$work/build-kokkos" -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
  cmake --install "$work/build-kokkos" >/dev/null
  if [[ -n $kk_src ]]; then
    log "building Kokkos Kernels from $kk_src (BLAS from OpenBLAS, no default ETI)"
    cmake -S "$kk_src" -B "$work/build-kk" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$kokkos_prefix" \
      -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DKokkos_ROOT="$kokkos_prefix" \
      -DKokkosKernels_ADD_DEFAULT_ETI=OFF -DKokkosKernels_ENABLE_TPL_BLAS=ON -DKokkosKernels_ENABLE_TESTS=OFF \
      >"$work/configure-kk.log" 2>&1 || { cat "$work/configure-kk.log" >&2; exit 1; }
    cmake --build "$work/build-kk" -j "$(nproc)" >"$work/build-kk.log" 2>&1 || { tail -n 40 "$work/build-kk.log" >&2; exit 1; }
    cmake --install "$work/build-kk" >/dev/null
  else
    log "no FMATTN_KOKKOS_KERNELS_SOURCE: fmattn needs a Kokkos Kernels for this Kokkos (KokkosKernels_ROOT)"
  fi
  echo "$stamp_value" >"$kokkos_prefix/.fmattn-stamp"
  log "Kokkos $version installed in $kokkos_prefix"
  echo "FMATTN_KOKKOS_ROOT=$kokkos_prefix"
  exit 0
fi

# --- fetch Debian's trilinos source through apt, with a private deb-src list derived from the
# machine's own configured mirror (never hard-coded here).
work=$(mktemp -d /tmp/fmattn-setup.XXXXXX)
trap 'rm -rf "$work"' EXIT

fallback() {
  log "WARNING: $1"
  log "WARNING: falling back to Debian's Serial-only Kokkos (no OpenMP threads)."
  echo "FMATTN_KOKKOS_ROOT="
  exit 0
}

# The first configured Debian archive (not the security one), from deb822 or one-line sources.
mirror_uris=$(
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^[[:space:]]*URIs:/ {for (i=2;i<=NF;i++) print $i}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '/^[[:space:]]*deb[[:space:]]/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
  } | grep -E '/debian/?$' | head -n 1 || true
)
[[ -n $mirror_uris ]] || fallback "no Debian mirror found in the apt configuration"

mkdir -p "$work/sources.d" "$work/lists/partial" "$work/src"
cat >"$work/sources.d/fmattn-src.sources" <<SRC
Types: deb-src
URIs: $mirror_uris
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-oDir::Etc::SourceList=/dev/null -oDir::Etc::SourceParts="$work/sources.d"
  -oDir::State::Lists="$work/lists")
log "fetching the trilinos source package index"
apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || fallback "apt-get update for deb-src failed"
log "downloading the trilinos source package (~166 MB)"
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only -qq trilinos >/dev/null 2>&1) ||
  fallback "apt-get source trilinos failed"
orig=$(ls "$work"/src/trilinos_*.orig.tar.* 2>/dev/null | head -n 1)
[[ -n $orig ]] || fallback "no orig tarball in the trilinos source package"

log "extracting packages/kokkos and packages/kokkos-kernels"
top=$( (tar -tf "$orig" 2>/dev/null || true) | head -n 1 | cut -d/ -f1)
tar -xf "$orig" -C "$work" "$top/packages/kokkos" "$top/packages/kokkos-kernels"
srcdir=$work/$top/packages

jobs=$(nproc)
rm -rf "$kokkos_prefix"
log "building Kokkos (OpenMP + Serial)"
cmake -S "$srcdir/kokkos" -B "$work/build-kokkos" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$kokkos_prefix" -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON \
  -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_TESTS=OFF >/dev/null
cmake --build "$work/build-kokkos" -j "$jobs" >/dev/null
cmake --install "$work/build-kokkos" >/dev/null

log "building Kokkos Kernels (no default ETI)"
cmake -S "$srcdir/kokkos-kernels" -B "$work/build-kk" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$kokkos_prefix" -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON \
  -DKokkos_ROOT="$kokkos_prefix" -DKokkosKernels_ADD_DEFAULT_ETI=OFF \
  -DKokkosKernels_ENABLE_TPL_BLAS=ON -DKokkosKernels_ENABLE_TESTS=OFF >/dev/null
cmake --build "$work/build-kk" -j "$jobs" >/dev/null
cmake --install "$work/build-kk" >/dev/null

echo "$stamp_value" >"$kokkos_prefix/.fmattn-stamp"
log "Kokkos installed in $kokkos_prefix"
echo "FMATTN_KOKKOS_ROOT=$kokkos_prefix"
