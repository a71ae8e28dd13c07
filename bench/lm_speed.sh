#!/usr/bin/env bash
# Training speed of `fmattn train` next to the same model in PyTorch (bench/lm_torch_anchor.py),
# in one run on the same machine: the study model (4 layers, width 256, 4 heads, float32) at
# context 2048 (batch 4) and 8192 (batch 1), tokens per second over the timed steps.
#   bash bench/lm_speed.sh [OUT_DIR]      (default results/lm-speed-<date>)
# Environment: FMATTN_BUILD_DIR (build), FMATTN_SPEED_STEPS (timed steps of fmattn, default 6),
# FMATTN_TORCH_STEPS (default 3), OMP_NUM_THREADS (default: all cores). Needs data/linux-*.bin
# (scripts/make-corpus.sh linux) and python3-torch for the anchor.
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
corpus=$root/data/linux-train.bin
[[ -f $corpus ]] || { echo "lm_speed.sh: $corpus missing: bash scripts/make-corpus.sh linux" >&2; exit 2; }

# Median tokens/s of fmattn's step lines after the first (which pays the first touch).
median_rate() { sed -nE 's/.* ([0-9]+) tok\/s.*/\1/p' "$1" | tail -n +2 | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "case,context,batch,fmattn_tokens_per_s,torch_tokens_per_s,ratio,peak_rss" >"$out/lm-speed.csv"
declare -A anchor  # the PyTorch rate per context, measured once
run_case() {
  local name=$1 context=$2 batch=$3
  shift 3
  "$bin/fmattn" train "$root/inputs/train-study.yaml" --set model.context="$context" --set train.batch="$batch" \
    --set train.steps=$((steps + 1)) --set train.eval_every=1000000 --set train.eval_windows=1 \
    --set train.checkpoint_every=1000000 --set train.checkpoint_file="$out/$name.h5" --set data.val="$corpus" \
    "$@" >"$out/$name.log"
  local mine theirs rss
  mine=$(median_rate "$out/$name.log")
  rss=$(sed -nE 's/.*peak RSS ([^,]+),.*/\1/p' "$out/$name.log")
  if [[ -z ${anchor[$context]:-} ]]; then
    anchor[$context]=$("$py" "$root/bench/lm_torch_anchor.py" --corpus "$corpus" --context "$context" \
      --batch "$batch" --steps "${FMATTN_TORCH_STEPS:-3}" --threads "$threads" | tee "$out/torch-$context.log" |
      sed -nE 's/.*: ([0-9]+) tokens\/s.*/\1/p')
  fi
  theirs=${anchor[$context]}
  echo "$name,$context,$batch,$mine,$theirs,$("$py" -c "print('%.2f' % ($mine / $theirs))"),$rss" |
    tee -a "$out/lm-speed.csv"
  rm -f "$out/$name.h5"
}
run_case exact-2048 2048 4 --set attention.method=exact
run_case fma-learned-8192 8192 1
run_case fma-average-8192 8192 1 --set attention.downsampling=average
column -s, -t "$out/lm-speed.csv"
