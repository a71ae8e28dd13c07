#!/usr/bin/env bash
# interrupt.sh FMATTN DECK FIT_DECK DIR: what SIGTERM (Slurm's time limit, a requeue) does.
# 1. `run` stopped while it writes: exit 143, a message, no temporary and no output file left.
# 2. `fit` stopped between checkpoints: it finishes the step, writes a checkpoint and exits 3;
#    restarting from that checkpoint ends exactly where an uninterrupted fit ends.
set -euo pipefail
bin=$1 deck=$2 fit_deck=$3 dir=$4
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "interrupt.sh: $*" >&2; exit 1; }

# Waits (up to $2 seconds) until command $1 succeeds.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.01
  done
}

# --- 1. run, stopped during the write (a 512 MiB output takes a while to write)
out=$dir/run.h5
"$bin" run "$deck" --set problem.heads=1 --set problem.length=2097152 --set validation.sample_queries=0 \
  --set output.file="$out" >"$dir/run.log" 2>"$dir/run.err" &
pid=$!
wait_for 'compgen -G "$out.tmp-*" >/dev/null' 120 || fail "no temporary file appeared: $(cat "$dir/run.err")"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[[ $status == 143 ]] || fail "run: exit status $status after SIGTERM, expected 143"
grep -q "interrupted by SIGTERM; removed the unfinished $out.tmp-" "$dir/run.err" || fail "run: no message: $(cat "$dir/run.err")"
! compgen -G "$out*" >/dev/null || fail "run: left $(compgen -G "$out*")"
echo "run: SIGTERM during the write left nothing behind"

# --- 2. fit, stopped between checkpoints, then restarted
fit=(--set problem.length=4096 --set problem.heads=2 --set problem.head_dim=16 --set fit.steps=30
  --set fit.sample_queries=64 --set fit.checkpoint_every=1000 --set validation.sample_queries=0)
"$bin" fit "$fit_deck" "${fit[@]}" --set fit.checkpoint_file="$dir/whole.h5" >"$dir/whole.log"
"$bin" fit "$fit_deck" "${fit[@]}" --set fit.checkpoint_file="$dir/part.h5" >"$dir/part.log" 2>"$dir/part.err" &
pid=$!
wait_for 'grep -q "step      3/" "$dir/part.log"' 120 || fail "fit: no step 3: $(cat "$dir/part.err")"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[[ $status == 3 ]] || fail "fit: exit status $status after SIGTERM, expected 3: $(cat "$dir/part.err")"
grep -q "fit stopped by SIGTERM after step" "$dir/part.err" || fail "fit: no message: $(cat "$dir/part.err")"
step=$(h5dump -a step "$dir/part.h5" | sed -n 's/^ *(0): *//p')
((step >= 3 && step < 30)) || fail "fit: the checkpoint holds step '$step'"
"$bin" fit "$fit_deck" "${fit[@]}" --set fit.checkpoint_file="$dir/part.h5" --set fit.restart_from="$dir/part.h5" \
  >"$dir/rest.log"
for object in /downsampling /fit/loss /optimizer/moment1 /optimizer/moment2; do
  h5diff -d 0 "$dir/whole.h5" "$dir/part.h5" "$object" "$object" >/dev/null || fail "fit: $object differs after the restart"
done
echo "fit: stopped after step $step with a checkpoint; the restart ends bit for bit as an uninterrupted fit"
rm -rf "$dir"
