#!/usr/bin/env bash
# Runs tools/fmattn-analyze and checks its exit code, its output and the PNG files it writes.
#
#   check_analyze.sh CODE REGEX PLOTS_DIR [PNG ...] -- FILE ... [OTHER ARGUMENTS]
#
# PLOTS_DIR is emptied first and passed as --plots (use '-' for no --plots); every PNG named must
# then exist in it, non-empty and starting with the PNG signature. REGEX (extended) must match
# the combined stdout+stderr. Environment: FMATTN_SOURCE_DIR (the checkout).
set -u
[ $# -ge 5 ] || { echo "usage: check_analyze.sh CODE REGEX PLOTS_DIR [PNG ...] -- FILE ..." >&2; exit 64; }
code=$1 regex=$2 plots=$3
shift 3
pngs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do pngs+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "check_analyze.sh: missing --" >&2; exit 64; }
shift
tool=${FMATTN_SOURCE_DIR:?FMATTN_SOURCE_DIR not set}/tools/fmattn-analyze
args=("$@")
if [ "$plots" != "-" ]; then
  rm -rf "$plots"
  args+=(--plots "$plots")
fi

out=$(timeout 120 "$tool" "${args[@]}" 2>&1)
rc=$?
fail() {
  echo "FAILED: $*" >&2
  echo "command: $tool ${args[*]}" >&2
  echo "----- output -----" >&2
  echo "$out" >&2
  echo "------------------" >&2
  exit 1
}
[ "$rc" -eq "$code" ] || fail "exit code $rc, expected $code"
[[ $out =~ $regex ]] || fail "output does not match /$regex/"
for png in "${pngs[@]}"; do
  path=$plots/$png
  [ -s "$path" ] || fail "plot '$path' missing or empty"
  [ "$(head -c 8 "$path" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "'$path' is not a PNG"
done
echo "$out"
echo "ok: exit $rc, output matches, ${#pngs[@]} PNG(s) checked"
