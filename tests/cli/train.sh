#!/usr/bin/env bash
# train.sh FMATTN DECK CORPUS_DIR DIR: fmattn train and eval as a user and a job script run them.
# 1. 1, 2 and 4 threads train to the same bits, under every OpenBLAS kernel set the CPU can run
#    (OPENBLAS_CORETYPE: with BLAS in the model, Haswell and Zen gave other bits at 1 and 2 threads).
# 2. SIGTERM between steps (Slurm's time limit, a requeue): the step finishes, a checkpoint is
#    written, exit 3; restarting from it ends bit for bit where an uninterrupted run ends.
# 3. eval reports the validation loss that training logged, and writes per-window losses.
# 4. Missing corpus or checkpoint: exit 2 naming the key and the file.
set -euo pipefail
bin=$1 deck=$2 corpus=$3 dir=$4
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "train.sh: $*" >&2; exit 1; }

wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.01
  done
}
same() {  # same FILE_A FILE_B: parameters, moments and loss history identical
  for object in /params /optimizer /train/loss /train/val_loss; do
    h5diff -d 0 "$1" "$2" "$object" "$object" >/dev/null || fail "$object differs between $1 and $2"
  done
}

common=(--set data.train="$corpus/fortunes-train.bin" --set data.val="$corpus/fortunes-val.bin"
  --set model.context=256 --set model.width=64 --set attention.block_size=16
  --set train.steps=30 --set train.eval_every=10 --set train.eval_windows=4 --set train.checkpoint_every=1000)

# --- 1. thread counts and BLAS kernel sets
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
kernel_sets=(default SandyBridge)
[[ " $flags " == *" avx2 "* && " $flags " == *" fma "* ]] && kernel_sets+=(Haswell Zen)
[[ " $flags " == *" avx512f "* && " $flags " == *" avx512vl "* ]] && kernel_sets+=(SkylakeX)
for set in "${kernel_sets[@]}"; do
  for t in 1 2 4; do
    name=$set-t$t
    kernels=()  # default: what OpenBLAS picks here (or the environment sets)
    [[ $set == default ]] || kernels=(OPENBLAS_CORETYPE="$set")
    env "${kernels[@]}" OMP_NUM_THREADS=$t "$bin" train "$deck" "${common[@]}" --set train.steps=8 --set train.checkpoint_file="$dir/$name.h5" \
      --kokkos-num-threads=$t >"$dir/$name.log" || fail "train ($name) failed: $(cat "$dir/$name.log")"
    [[ $name == default-t1 ]] && continue
    same "$dir/default-t1.h5" "$dir/$name.h5"
    rm -f "$dir/$name.h5"
  done
done
echo "1, 2 and 4 threads under OpenBLAS kernel sets ${kernel_sets[*]}: the same bits after 8 steps"

# --- 2. SIGTERM and restart
"$bin" train "$deck" "${common[@]}" --set train.checkpoint_file="$dir/whole.h5" >"$dir/whole.log"
"$bin" train "$deck" "${common[@]}" --set train.checkpoint_file="$dir/part.h5" >"$dir/part.log" 2>"$dir/part.err" &
pid=$!
wait_for 'grep -q "step      3/" "$dir/part.log"' 120 || fail "no step 3: $(cat "$dir/part.err")"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[[ $status == 3 ]] || fail "exit status $status after SIGTERM, expected 3: $(cat "$dir/part.err")"
grep -q "train stopped by SIGTERM after step" "$dir/part.err" || fail "no message: $(cat "$dir/part.err")"
step=$(h5dump -a step "$dir/part.h5" | sed -n 's/^ *(0): *//p')
((step >= 3 && step < 30)) || fail "the checkpoint holds step '$step'"
"$bin" train "$deck" "${common[@]}" --set train.checkpoint_file="$dir/part.h5" --set train.restart_from="$dir/part.h5" \
  >"$dir/rest.log"
grep -q "restart    from $dir/part.h5 at step $step of 30" "$dir/rest.log" || fail "no restart line: $(cat "$dir/rest.log")"
same "$dir/whole.h5" "$dir/part.h5"
h5dump -d /train/model_flops_per_second "$dir/whole.h5" >/dev/null || fail "no model FLOP/s in the checkpoint"
grep -qE "tok/s +[0-9.]+ GFLOP/s" "$dir/whole.log" || fail "no model GFLOP/s in the step lines"
echo "stopped after step $step with a checkpoint; the restart ends bit for bit as an uninterrupted run"

# --- 3. eval
logged=$(sed -n 's/.*validation step 30: \([0-9.]*\) bits per byte.*/\1/p' "$dir/whole.log")
[[ -n $logged ]] || fail "no validation line at step 30: $(cat "$dir/whole.log")"
"$bin" eval "$deck" "${common[@]}" --set eval.checkpoint="$dir/whole.h5" --set eval.output="$dir/eval.h5" >"$dir/eval.log"
grep -q "done: $logged bits per byte on 4 windows of 256 bytes" "$dir/eval.log" ||
  fail "eval does not report the logged $logged: $(cat "$dir/eval.log")"
h5dump -d /window_bits_per_byte "$dir/eval.h5" >/dev/null || fail "no per-window losses in eval.h5"
echo "eval: $logged bits per byte, as logged at step 30"

# --- 4. bad input
status=0
"$bin" train "$deck" "${common[@]}" --set data.train="$dir/none.bin" >/dev/null 2>"$dir/bad.err" || status=$?
[[ $status == 2 ]] && grep -q "data.train: cannot open '$dir/none.bin'" "$dir/bad.err" ||
  fail "missing corpus: exit $status, $(cat "$dir/bad.err")"
status=0
"$bin" eval "$deck" "${common[@]}" --set eval.checkpoint="$dir/none.h5" >/dev/null 2>"$dir/bad.err" || status=$?
[[ $status == 2 ]] && grep -q "none.h5" "$dir/bad.err" || fail "missing checkpoint: exit $status, $(cat "$dir/bad.err")"
echo "missing corpus or checkpoint: exit 2 naming the file"
rm -rf "$dir"
