#!/usr/bin/env bash
# The study of the README: the same byte-level model (inputs/train-study.yaml: 4 layers, width
# 256, 4 heads, float32) trained on the Linux-source corpus with exact, FMA (average and learned
# basis functions) and local attention, at context 2048 (batch 4) and 8192 (batch 1): the same
# steps and the same tokens per step everywhere. Reports the final validation bits per byte
# (the same validation bytes at both contexts), training tokens/s and peak memory, as a table
# (lm-study.csv, lm-study.md) and a plot of the validation curves (lm-study.png).
#   bash bench/lm_study.sh [OUT_DIR]      (default results/lm-study-<date>)
# Environment: FMATTN_BUILD_DIR (build), FMATTN_STUDY_STEPS (default 180),
# FMATTN_STUDY_CONTEXTS ("2048 8192"), FMATTN_STUDY_METHODS ("exact fma-average fma-learned local"),
# OMP_NUM_THREADS (default: all cores). Needs data/linux-*.bin (scripts/make-corpus.sh linux).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin
out=${1:-$root/results/lm-study-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-threads}
# The first Python that has the modules (Debian's packages live in /usr/bin/python3).
py=$(for p in python3 /usr/bin/python3; do "$p" -c 'import h5py, matplotlib' 2>/dev/null && echo "$p" && break; done || true)
[[ -n $py ]] || { echo "$(basename "$0"): needs python3 with h5py, matplotlib (Debian: python3-h5py)" >&2; exit 2; }
steps=${FMATTN_STUDY_STEPS:-180}
for f in "$root/data/linux-train.bin" "$root/data/linux-val.bin"; do
  [[ -f $f ]] || { echo "lm_study.sh: $f missing: bash scripts/make-corpus.sh linux" >&2; exit 2; }
done

echo "context,method,steps,tokens,val_bpb,tokens_per_s,peak_rss,seconds" >"$out/lm-study.csv"
for context in ${FMATTN_STUDY_CONTEXTS:-2048 8192}; do
  batch=$((8192 / context))
  windows=$((131072 / context))  # 128 KiB of validation bytes at every context
  for method in ${FMATTN_STUDY_METHODS:-exact fma-average fma-learned local}; do
    name=$context-$method
    opts=(--set model.context="$context" --set train.batch="$batch" --set train.steps="$steps"
      --set train.warmup_steps=$((steps / 20)) --set train.eval_every=$((steps / 4))
      --set train.checkpoint_every="$steps" --set train.eval_windows="$windows"
      --set train.checkpoint_file="$out/$name.h5" --set run.name="$name")
    case $method in
      exact) opts+=(--set attention.method=exact) ;;
      local) opts+=(--set attention.method=local) ;;
      fma-average) opts+=(--set attention.method=fma --set attention.downsampling=average) ;;
      fma-learned) opts+=(--set attention.method=fma --set attention.downsampling=learned) ;;
      *) echo "lm_study.sh: unknown method $method" >&2; exit 2 ;;
    esac
    echo "== $name: $steps steps of $batch x $context bytes"
    "$bin/fmattn" train "$root/inputs/train-study.yaml" "${opts[@]}" >"$out/$name.log"
    grep -E 'validation step|done:' "$out/$name.log"
    done_line=$(grep 'done:' "$out/$name.log")
    val=$(sed -nE 's/.*validation ([0-9.]+) bpb.*/\1/p' <<<"$done_line")
    rate=$(sed -nE 's/.* ([0-9]+) tok\/s.*/\1/p' <<<"$done_line")
    rss=$(sed -nE 's/.*peak RSS ([^,]+),.*/\1/p' <<<"$done_line")
    secs=$(sed -nE 's/.*, ([0-9.]+) s -> .*/\1/p' <<<"$done_line")
    echo "$context,$method,$steps,$((steps * batch * context)),$val,$rate,$rss,$secs" >>"$out/lm-study.csv"
  done
done
"$py" "$root/bench/lm_study_plot.py" "$out"
column -s, -t "$out/lm-study.csv"
