#!/usr/bin/env bash
# The GPU check, on the GPU node, from a pack made by bench/device_pack.sh (this script is copied
# into it): no build, no install, no network, about five minutes on an H100.
#
#   bash PACK/device_run.sh OUT_DIR
#
# 1. the kernel tests on the GPU (bin/test_*; the sequence-parallel test as one rank);
# 2. fmattn_bench: FMA causal and bidirectional and exact causal, forward and backward, fp32 and
#    fp64, d 64 and 128, n from 2^14 up (exact while it takes seconds), against the cuBLAS GEMM
#    ceiling measured in the same run;
# 3. the step rate of `fmattn train` on the README's study model (inputs/train-study.yaml);
# 4. PyTorch's scaled_dot_product_attention at the same shapes (flash in bf16 and fp16, the math
#    backend in fp32), forward and backward, with the node's own Python.
# Writes at most 8 files into OUT_DIR: summary.txt, tests.txt, bench.csv, bench.txt, train.txt,
# sdpa.csv, environment.txt. Each stage has a time limit, so one that hangs leaves the others'
# results. FMATTN_RUN_NMIN and FMATTN_RUN_NMAX set the smallest and largest log2 n (default 14
# and 24 in fp32; fp64 and exact stop earlier),
# FMATTN_RUN_TRAIN_STEPS the training steps (default 12).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: device_run.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
run=("$here/run.sh")
nmin=${FMATTN_RUN_NMIN:-14} nmax=${FMATTN_RUN_NMAX:-24}
status=0
stage() { echo "[device-run] $(date -u +%H:%M:%S) $*" | tee -a "$out/summary.txt" >&2; }

{
  cat "$here/BUILD"
  echo "node: $(uname -srm), $(ldd --version 2>&1 | head -n 1)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1
  "${run[@]}" fmattn info 2>&1
} >"$out/environment.txt"
: >"$out/summary.txt"
stage "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"

stage "kernel tests"
: >"$out/tests.txt"
for t in "$here"/bin/test_*; do
  name=$(basename "$t")
  timeout 150 "${run[@]}" "$t" --gtest_brief=1 >>"$out/tests.txt" 2>&1
  rc=$?
  stage "  $name: $( ((rc == 0)) && echo passed || echo "FAILED (exit $rc)")"
  ((rc == 0)) || status=1
done

stage "fmattn_bench fp32 2^$nmin to 2^$nmax, fp64 to 2^$((nmax - 1))"
cases=fma-causal,fma-bidirectional,exact-causal,grad-causal,grad-bidirectional,exact-grad-causal
: >"$out/bench.txt"
for dtype in float double; do
  top=$nmax
  [[ $dtype == double ]] && top=$((nmax - 1))
  timeout 150 "${run[@]}" fmattn_bench --dtype "$dtype" --d 64,128 --n-min "$nmin" --n-max "$top" --exact-max 17 \
    --repeat 3 --cases "$cases" --csv "$out/bench-$dtype.csv" >>"$out/bench.txt" 2>&1 ||
    { stage "  fmattn_bench $dtype stopped (exit $?): the CSV keeps the rows measured"; status=1; }
done
# One CSV of both precisions (a header once), to stay within the files a run may return.
{ cat "$out/bench-float.csv" 2>/dev/null; tail -n +2 "$out/bench-double.csv" 2>/dev/null; } >"$out/bench.csv"
rm -f "$out/bench-float.csv" "$out/bench-double.csv"
grep '^#' "$out/bench.txt" | tee -a "$out/summary.txt" >/dev/null

steps=${FMATTN_RUN_TRAIN_STEPS:-12}
stage "fmattn train: the study model, $steps steps"
work=$(mktemp -d)
timeout 120 "${run[@]}" fmattn train "$here/share/train-study.yaml" --set data.train="$here/share/train.bin" \
  --set data.val="$here/share/val.bin" --set train.steps="$steps" --set train.eval_every=100000 --set train.checkpoint_every=100000 \
  --set train.checkpoint_file="$work/study.h5" --set run.progress_seconds=0 >"$out/train.txt" 2>&1 ||
  { stage "  fmattn train failed (exit $?)"; status=1; }
grep -E '^\[fmattn\] (model|done)' "$out/train.txt" | tee -a "$out/summary.txt" >/dev/null
rm -rf "$work"

stage "PyTorch scaled_dot_product_attention"
timeout 120 python3 "$here/sdpa_bench.py" --n-min "$nmin" --n-max "$nmax" --d 64,128 --csv "$out/sdpa.csv" \
  >>"$out/summary.txt" 2>&1 || { stage "  sdpa_bench failed (exit $?)"; status=1; }

stage "done (status $status)"
exit $status
