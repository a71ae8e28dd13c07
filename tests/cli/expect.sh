#!/usr/bin/env bash
# Runs a command and checks its exit code and output, for the CLI contract tests (exit 0 ok,
# 2 bad input, 1 other failure; messages naming the file, key and position).
#
#   expect.sh CODE REGEX [--creates PATH] -- COMMAND [ARGS...]
#
# Fails unless COMMAND exits with CODE and its combined stdout+stderr matches the extended
# regex REGEX. The output is matched as one string, so '.' also matches newlines and
# 'Kokkos.*MPI' checks that both appear in that order. With --creates, PATH is removed first and
# must exist, non-empty, afterwards (then it is removed again, so reruns start clean).
set -u

usage() {
  echo "usage: expect.sh CODE REGEX [--creates PATH] -- COMMAND [ARGS...]" >&2
  exit 64
}

[ $# -ge 4 ] || usage
code=$1
regex=$2
shift 2
creates=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case $1 in
    --creates) [ $# -ge 2 ] || usage; creates=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ $# -ge 2 ] && [ "$1" = "--" ] || usage
shift
cmd=$(printf '%q ' "$@")

[ -n "$creates" ] && rm -f -- "$creates"

out=$(mktemp "${TMPDIR:-/tmp}/fmattn-expect.XXXXXX") || exit 1
trap 'rm -f -- "$out"' EXIT
# A hang is a failure too: the contract says never hang on bad input.
timeout 120 "$@" >"$out" 2>&1
rc=$?

fail() {
  echo "FAILED: $*" >&2
  echo "command: $cmd" >&2
  echo "----- output (stdout+stderr) -----" >&2
  cat -- "$out" >&2
  echo "---------------------------------" >&2
  exit 1
}

[ "$rc" -eq "$code" ] || fail "exit code $rc, expected $code"
text=$(<"$out")
[[ $text =~ $regex ]] || fail "output does not match /$regex/"
if [ -n "$creates" ]; then
  [ -s "$creates" ] || fail "'$creates' was not created"
  rm -f -- "$creates"
fi
echo "ok: exit $rc, output matches /$regex/"
exit 0
