#!/usr/bin/env bash
# Training speed of `fmattn train` next to the same model in PyTorch (bench/lm_torch_anchor.py),
# in one run on the same machine, as a user runs it (no BLAS or thread variables set beyond
# OMP_NUM_THREADS): the study model (4 layers, width 256, 4 heads, float32), `exact` at context
# 2048 and `fma` (learned, average) at 8192, 4 windows per step; tokens per second over the
# timed steps, model GFLOP/s and their share of the machine's sgemm ceiling (fmattn_bench's,
# KokkosBlas::gemm on the BLAS, measured in the same run).
#   bash bench/lm_speed.sh [OUT_DIR]      (default results/lm-speed-<date>)
# Environment: FMATTN_BUILD_DIR (build), FMATTN_SPEED_STEPS (timed steps of fmattn, default 6),
# FMATTN_TORCH_STEPS (default 3), OMP_NUM_THREADS (default: all cores), FMATTN_SPEED_CORPUS
# (default data/linux-train.bin, else data/fortunes-train.bin: the speed does not depend on the
# text). PyTorch runs exact attention at 8192 with one window per step (four would hold 16 GiB
# of attention matrices); its tokens/s is compared with fmattn's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin
out=${1:-$root/results/lm-speed-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
threads=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS=$threads OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-threads}
# The first Python that has the modules (Debian's packages live in /usr/bin/python3).
py=$(for p in python3 /usr/bin/python3; do "$p" -c 'import torch, numpy' 2>/dev/null && echo "$p" && break; done || true)
[[ -n $py ]] || { echo "$(basename "$0"): needs python3 with torch, numpy (Debian: python3-torch)" >&2; exit 2; }
steps=${FMATTN_SPEED_STEPS:-6}
corpus=${FMATTN_SPEED_CORPUS:-$root/data/linux-train.bin}
[[ -f $corpus || -n ${FMATTN_SPEED_CORPUS:-} ]] || corpus=$root/data/fortunes-train.bin
[[ -f $corpus ]] || { echo "lm_speed.sh: $corpus missing: bash scripts/make-corpus.sh fortunes (or linux)" >&2; exit 2; }

# The sgemm ceiling: fmattn_bench's header line, no attention cases (OpenBLAS's own threads must
# not inherit the Kokkos threads' binding).
ceiling=$(OMP_PROC_BIND=false "$bin/fmattn_bench" --n-min 1 --n-max 0 --cases fma-causal --csv "$out/ceiling.csv" |
  sed -nE 's/.*GEMM ceiling [(]KokkosBlas::gemm[)] fp32 ([0-9.]+).*/\1/p')
[[ -n $ceiling ]] || { echo "lm_speed.sh: no GEMM ceiling from fmattn_bench" >&2; exit 1; }
echo "sgemm ceiling (KokkosBlas::gemm, $threads threads): $ceiling GFLOP/s" | tee "$out/ceiling.txt"

# Median of a column of fmattn's step lines after the first (which pays the first touch).
median_of() {
  sed -nE "s|.* ([0-9.]+) $2.*|\1|p" "$1" | tail -n +2 | sort -g |
    awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}

echo "case,context,batch,fmattn_tokens_per_s,model_gflops,percent_of_sgemm_ceiling,torch_tokens_per_s,ratio,peak_rss" \
  >"$out/lm-speed.csv"
declare -A anchor  # the PyTorch rate per context, measured once
run_case() {
  local name=$1 context=$2 batch=$3 torch_batch=$4
  shift 4
  "$bin/fmattn" train "$root/inputs/train-study.yaml" --set model.context="$context" --set train.batch="$batch" \
    --set train.steps=$((steps + 1)) --set train.eval_every=1000000 --set train.eval_windows=1 \
    --set train.checkpoint_every=1000000 --set train.checkpoint_file="$out/$name.h5" --set data.train="$corpus" \
    --set data.val="$corpus" "$@" >"$out/$name.log"
  local mine gflops rss
  mine=$(median_of "$out/$name.log" "tok/s")
  gflops=$(median_of "$out/$name.log" "GFLOP/s")
  rss=$(sed -nE 's/.*peak RSS ([^,]+),.*/\1/p' "$out/$name.log")
  if [[ -z ${anchor[$context]:-} ]]; then
    anchor[$context]=$("$py" "$root/bench/lm_torch_anchor.py" --corpus "$corpus" --context "$context" \
      --batch "$torch_batch" --steps "${FMATTN_TORCH_STEPS:-3}" --threads "$threads" |
      tee "$out/torch-$context.log" | sed -nE 's/.*: ([0-9]+) tokens\/s.*/\1/p')
  fi
  local theirs=${anchor[$context]}
  echo "$name,$context,$batch,$mine,$gflops,$("$py" -c "print('%.0f' % (100 * $gflops / $ceiling))"),$theirs,$(
    "$py" -c "print('%.2f' % ($mine / $theirs))"),$rss" | tee -a "$out/lm-speed.csv"
  rm -f "$out/$name.h5"
}
run_case exact-2048 2048 4 4 --set attention.method=exact
run_case fma-learned-8192 8192 4 1
run_case fma-average-8192 8192 4 1 --set attention.downsampling=average
column -s, -t "$out/lm-speed.csv"
