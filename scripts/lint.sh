#!/usr/bin/env bash
# clang-tidy (the checks of .clang-tidy) over fmattn's sources and the kernel headers they
# include; exits non-zero on any finding. Needs a configured build folder (scripts/build.sh),
# whose compile_commands.json it reads, and clang-tidy (Debian: clang-tidy).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FMATTN_BUILD_DIR:-$root/build}
tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
runner=$(command -v run-clang-tidy-14 || command -v run-clang-tidy || true)
if [[ -z $tidy || -z $runner ]]; then
  echo "lint: clang-tidy is not installed (apt-get install clang-tidy)" >&2
  exit 2
fi
[[ -f $build/compile_commands.json ]] || { echo "lint: no $build/compile_commands.json (run scripts/build.sh)" >&2; exit 2; }
cd "$root"
mapfile -t files < <(git ls-files 'src/*.cpp')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$runner" -clang-tidy-binary "$tidy" -p "$build" -j "$(nproc)" -quiet "${files[@]/#/$root/}" >"$log" 2>&1 || true
if grep -qE "(warning|error): " "$log"; then
  grep -E "(warning|error): " "$log" | sed 's/\x1b\[[0-9;]*m//g' | sort -u >&2
  echo "lint: clang-tidy found the problems above" >&2
  exit 1
fi
echo "lint: clang-tidy clean on ${#files[@]} files"
