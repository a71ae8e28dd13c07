#!/usr/bin/env bash
# Installs the current build into a prefix under WORK, then configures, builds and runs the
# consumer project (tests/consumer) against it with find_package(fmattn), as a user would; the
# installed fmattn and fmattn-analyze must run too.
#
#   check.sh BUILD_DIR WORK_DIR [cmake -D... arguments for the consumer, e.g. -DKokkos_DIR=...]
set -euo pipefail
build=${1:?usage: check.sh BUILD_DIR WORK_DIR [-D...]}
work=${2:?usage: check.sh BUILD_DIR WORK_DIR [-D...]}
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

step() {  # step NAME COMMAND...: runs COMMAND quietly, shows its log when it fails
  local name=$1
  shift
  if ! "$@" >"$work/$name.log" 2>&1; then
    echo "FAILED: $name: $*" >&2
    cat "$work/$name.log" >&2
    exit 1
  fi
}

rm -rf "$work"
mkdir -p "$work"
step install cmake --install "$build" --prefix "$work/prefix"
[[ -f $work/prefix/lib/cmake/fmattn/fmattnConfig.cmake || -f $work/prefix/lib64/cmake/fmattn/fmattnConfig.cmake ]] ||
  { echo "FAILED: no fmattnConfig.cmake installed under $work/prefix" >&2; exit 1; }
# Everything inside the prefix (an empty install directory variable once put the headers at /).
if outside=$(grep -v "^$work/prefix/" "$build/install_manifest.txt"); then
  echo "FAILED: installed outside the prefix:" >&2
  echo "$outside" >&2
  exit 1
fi
# Public headers under include/fmattn/<layer>/, the kernels' internal ones nowhere.
[[ -f $work/prefix/include/fmattn/core/attention.hpp && -f $work/prefix/include/fmattn/version.hpp ]] ||
  { echo "FAILED: no include/fmattn/core/attention.hpp or include/fmattn/version.hpp under $work/prefix" >&2; exit 1; }
if find "$work/prefix" -name 'attention_tiles.hpp' | grep -q .; then
  echo "FAILED: internal kernel headers were installed" >&2
  exit 1
fi
# The installed command runs (finds its shared libraries) and so does the analysis tool.
step installed_info "$work/prefix/bin/fmattn" info
step installed_analyze "$work/prefix/bin/fmattn-analyze" --help
step configure cmake -S "$here" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" "$@"
step build cmake --build "$work/build" -j 2
"$work/build/fmattn_consumer" --kokkos-disable-warnings
