#!/usr/bin/env bash
# live_log.sh FMATTN DECK DIR: with stdout redirected to a file (as in every batch job), each
# phase's line is in the file as soon as the phase ends: the `input` line, then progress lines,
# while the attention phase is still running.
set -euo pipefail
bin=$1 deck=$2 dir=$3
rm -rf "$dir"
mkdir -p "$dir"
log=$dir/run.log
# Exact attention on 2^16 tokens: seconds of attention on 2 cores, negligible input.
"$bin" run "$deck" --set attention.method=exact --set problem.length=65536 --set problem.heads=1 \
  --set validation.sample_queries=0 --set run.progress_seconds=0.2 --set output.file="$dir/out.h5" >"$log" &
pid=$!
deadline=$((SECONDS + 120))
until grep -q '^\[fmattn\] input ' "$log"; do
  ((SECONDS < deadline)) || { echo "live_log.sh: no input line after 120 s" >&2; exit 1; }
  sleep 0.01
done
if grep -q 'GFLOP/s' "$log"; then
  echo "live_log.sh: the input line appeared only together with the attention line:" >&2
  cat "$log" >&2
  exit 1
fi
wait "$pid"
grep -q '% of the query tiles after' "$log" || { echo "live_log.sh: no progress line:" >&2; cat "$log" >&2; exit 1; }
grep -n . "$log" | sed -n '3,6p'
echo "the input line came before the attention phase ended, progress lines during it"
rm -rf "$dir"
