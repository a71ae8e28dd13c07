#!/usr/bin/env bash
# The study of the README: does FMA's far field buy accuracy over local attention, and where in
# the context? The same byte-level model trained on the Linux-source corpus with `exact`, `fma`
# (average and learned basis functions) and `local` attention, at each context (default 8192;
# 2048 too with FMATTN_STUDY_CONTEXTS="8192 2048"), with several seeds (default 3): the same
# steps and bytes per step everywhere (one window of 8192 bytes a step by default: at this budget
# a small model gains more from more optimizer steps than from larger ones). After training,
# `fmattn eval` scores every model on the same validation windows and writes the loss at each
# position (position_bits_per_byte); bench/lm_study_plot.py then gives the mean and spread of the
# validation loss over the seeds, the loss-by-position curves, and the paired difference
# method − local beyond the near field's reach 2m with its confidence interval (lm-study.csv,
# lm-study.md, lm-study.png, lm-study-positions.png).
#   bash bench/lm_study.sh [OUT_DIR]      (default results/lm-study-<date>)
# Environment: FMATTN_BUILD_DIR (build), FMATTN_STUDY_STEPS (default 500: about 1 h 45 min on 2
# cores for the 12 runs at 8192, exact attention over half of it; context 2048 adds about an
# hour), FMATTN_STUDY_SEEDS ("1 2 3"), FMATTN_STUDY_CONTEXTS ("8192"), FMATTN_STUDY_METHODS
# ("exact fma-average fma-learned local"), FMATTN_STUDY_WIDTH (default 128: a smaller model than
# train-study.yaml's 256, so that the runs fit in about two hours on 2 cores and the attention,
# which is what differs between the methods, is a larger share of each model),
# FMATTN_STUDY_SKIP (names of runs to leave out, e.g. "8192-exact-s2 8192-exact-s3": exact
# attention at the longest context costs more than all the others together),
# FMATTN_STUDY_TOKENS (bytes a step, default 8192), FMATTN_STUDY_VAL_BYTES (validation bytes,
# default 262144), FMATTN_STUDY_TRAIN and FMATTN_STUDY_VAL (default data/linux-train.bin and
# data/linux-val.bin: bash scripts/make-corpus.sh linux), OMP_NUM_THREADS (default: all cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin
out=${1:-$root/results/lm-study-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-threads}
# The first Python that has the modules (Debian's packages live in /usr/bin/python3).
py=$(for p in python3 /usr/bin/python3; do "$p" -c 'import h5py, numpy, matplotlib' 2>/dev/null && echo "$p" && break; done || true)
[[ -n $py ]] || { echo "$(basename "$0"): needs python3 with h5py, numpy, matplotlib (Debian: python3-h5py)" >&2; exit 2; }
steps=${FMATTN_STUDY_STEPS:-500}
width=${FMATTN_STUDY_WIDTH:-128}
tokens=${FMATTN_STUDY_TOKENS:-8192}
val_bytes=${FMATTN_STUDY_VAL_BYTES:-262144}
train=${FMATTN_STUDY_TRAIN:-$root/data/linux-train.bin}
val=${FMATTN_STUDY_VAL:-$root/data/linux-val.bin}
for f in "$train" "$val"; do
  [[ -f $f ]] || { echo "lm_study.sh: $f missing: bash scripts/make-corpus.sh linux" >&2; exit 2; }
done

echo "context,method,seed,steps,tokens,val_bpb,tokens_per_s,model_gflops,peak_rss,seconds" >"$out/lm-study.csv"
for context in ${FMATTN_STUDY_CONTEXTS:-8192}; do
  batch=$(((tokens + context - 1) / context))
  windows=$(((val_bytes + context - 1) / context))  # the same validation bytes at every context
  # Seeds outside methods: a study cut short still compares every method on its first seeds.
  for seed in ${FMATTN_STUDY_SEEDS:-1 2 3}; do
    for method in ${FMATTN_STUDY_METHODS:-exact fma-average fma-learned local}; do
      name=$context-$method-s$seed
      [[ " ${FMATTN_STUDY_SKIP:-} " == *" $name "* ]] && continue
      opts=(--set model.context="$context" --set model.width="$width" --set train.batch="$batch"
        --set train.steps="$steps" --set train.warmup_steps=$((steps / 20)) --set train.eval_every="$steps"
        --set train.checkpoint_every="$steps" --set train.eval_windows="$windows" --set run.seed="$seed"
        --set train.checkpoint_file="$out/$name.h5" --set run.name="$name"
        --set data.train="$train" --set data.val="$val")
      case $method in
        exact) opts+=(--set attention.method=exact) ;;
        local) opts+=(--set attention.method=local) ;;
        fma-average) opts+=(--set attention.method=fma --set attention.downsampling=average) ;;
        fma-learned) opts+=(--set attention.method=fma --set attention.downsampling=learned) ;;
        *) echo "lm_study.sh: unknown method $method" >&2; exit 2 ;;
      esac
      echo "== $name: $steps steps of $batch x $context bytes, width $width"
      "$bin/fmattn" train "$root/inputs/train-study.yaml" "${opts[@]}" >"$out/$name.log"
      # The same validation windows for every model (run.seed picks them: the study's first seed's).
      "$bin/fmattn" eval "$root/inputs/train-study.yaml" "${opts[@]}" --set run.seed=1 \
        --set eval.checkpoint="$out/$name.h5" --set eval.output="$out/$name-eval.h5" >"$out/$name-eval.log"
      done_line=$(grep 'done:' "$out/$name.log")
      bpb=$(sed -nE 's/.*done: ([0-9.]+) bits per byte.*/\1/p' "$out/$name-eval.log")
      rate=$(sed -nE 's/.* ([0-9]+) tok\/s.*/\1/p' <<<"$done_line")
      gflops=$(sed -nE 's/.* ([0-9.]+) model GFLOP\/s.*/\1/p' <<<"$done_line")
      rss=$(sed -nE 's/.*peak RSS ([^,]+),.*/\1/p' <<<"$done_line")
      secs=$(sed -nE 's/.*, ([0-9.]+) s -> .*/\1/p' <<<"$done_line")
      echo "   validation $bpb bits per byte, $rate tokens/s, $secs s"
      echo "$context,$method,$seed,$steps,$((steps * batch * context)),$bpb,$rate,$gflops,$rss,$secs" >>"$out/lm-study.csv"
    done
  done
done
"$py" "$root/bench/lm_study_plot.py" "$out"
