#!/usr/bin/env bash
# Mutation testing: plants each bug of tests/mutation/patches/ in a scratch copy of the source
# tree, rebuilds what it touches, runs the tests that should notice, and reports whether they
# did (killed) or not (survived). On demand only: every mutation is a rebuild, about an hour on
# 2 cores for the whole list; CI runs the suite itself, not this.
#
#   bash tests/mutation/run.sh [REGEX]    only the patches whose file name matches REGEX (grep -E)
#
# Environment: FMATTN_MUTATION_DIR (scratch folder, default /tmp/fmattn-mutation; its build is
# kept between invocations), FMATTN_DEPS_PREFIX (as for scripts/build.sh).
#
# A patch file is a unified diff after four header lines:
#   Mutation: what the bug is      Area: which part of the code
#   Build: the CMake targets to rebuild (their dependencies follow)
#   Tests: a ctest -R regular expression selecting the tests that should fail
# A mutation that does not build, or no longer applies, is reported as such and counted apart:
# it proves nothing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${FMATTN_MUTATION_DIR:-/tmp/fmattn-mutation}
pattern=${1:-}
src=$work/src build=$work/build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_PROC_BIND=false

# The scratch source: the tracked files as they are now, in a git repository of its own, so
# that each mutation is applied and taken back with git. Only files whose content changed are
# copied (with a new time stamp), so that the kept build rebuilds exactly what changed; files
# the tree no longer has are removed (globs in the CMake files would pick them up).
mkdir -p "$src" "$build"
[[ -d $src/.git ]] || git -C "$src" init -q
git -C "$src" checkout -q -- . 2>/dev/null || true
git -C "$root" ls-files -z | while IFS= read -r -d '' f; do
  cmp -s "$root/$f" "$src/$f" || install -D -m "$(stat -c %a "$root/$f")" "$root/$f" "$src/$f"
done
comm -23 <(git -C "$src" ls-files | sort) <(git -C "$root" ls-files | sort) | while IFS= read -r f; do
  rm -f "$src/$f"
done
git -C "$src" add -A
git -C "$src" -c user.name=mutation -c user.email=mutation@localhost commit -qm baseline --allow-empty

kokkos_line=$(bash "$root/scripts/setup.sh" | tail -n 1)
kokkos_root=${kokkos_line#FMATTN_KOKKOS_ROOT=}
cmake_args=(-S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DFMATTN_ENABLE_BENCH=OFF -DFMATTN_CHECK_HEADERS=OFF
  -DFMATTN_TEST_OTHER_BACKENDS=OFF)
[[ -n $kokkos_root ]] && cmake_args+=(-DKokkos_ROOT="$kokkos_root" -DKokkosKernels_ROOT="$kokkos_root")
cmake "${cmake_args[@]}" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
echo "[mutation] building the unmutated tree in $build"
cmake --build "$build" -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }

field() { sed -n "s/^$1: //p" "$2" | head -n 1; }
results=()
killed=0 survived=0 broken=0
for patch in "$root"/tests/mutation/patches/*.patch; do
  name=$(basename "$patch" .patch)
  [[ -n $pattern ]] && ! grep -qE -- "$pattern" <<<"$name" && continue
  targets=$(field Build "$patch") tests=$(field Tests "$patch")
  start=$SECONDS
  if ! git -C "$src" apply --check "$patch" 2>/dev/null; then
    echo "$name: does not apply to the current sources: regenerate it" >&2
    broken=$((broken + 1))
    continue
  fi
  git -C "$src" apply "$patch"
  log=$work/$name.log
  if ! cmake --build "$build" -j "$(nproc)" --target $targets >"$log" 2>&1; then
    verdict="does not build"
    broken=$((broken + 1))
  # A planted bug may make MPI ranks wait for each other forever (the tests' own timeouts are
  # minutes): the first failure is enough, and running out of time counts as failing.
  elif (cd "$build" && timeout --kill-after=10 240 ctest -R "$tests" -j "$(nproc)" --stop-on-failure >>"$log" 2>&1); then
    verdict=SURVIVED
    survived=$((survived + 1))
  else
    verdict=killed
    killed=$((killed + 1))
  fi
  # Which tests caught it (ctest lists them after "The following tests FAILED").
  caught=$(sed -n '/The following tests FAILED/,$p' "$log" | grep -cE '^[[:space:]]+[0-9]+ - ' || true)
  pkill -f "$build/tests/" 2>/dev/null || true  # ranks left behind by a timeout
  git -C "$src" checkout -q -- .
  line=$(printf '%-28s %-24s %-14s %4s tests %5ss  %s' "$name" "$(field Area "$patch")" "$verdict" "$caught" \
    $((SECONDS - start)) "$(field Mutation "$patch")")
  echo "$line"
  results+=("$line")
done
# Leave the scratch build unmutated for the next invocation.
cmake --build "$build" -j "$(nproc)" >/dev/null 2>&1 || true

echo
echo "mutation                     area                     verdict        caught  time   what"
printf '%s\n' "${results[@]}"
total=$((killed + survived))
if ((total > 0)); then
  echo "mutation score: $killed of $total killed ($((100 * killed / total)) %), $broken not building or not applying"
fi
((survived == 0))
