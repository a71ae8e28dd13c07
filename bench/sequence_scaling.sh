#!/usr/bin/env bash
# Weak scaling of sequence-sharded training (parallel.decomposition: sequence): the same
# positions per rank at each rank count (the context grows with the ranks), one OpenMP thread
# per rank, the model of inputs/train-long.yaml. Prints a Markdown table per run: ranks, context,
# tokens/s in all and per core in use, the communication share of a step (the slowest rank's
# waiting for messages over the step's time), and the bytes the busiest rank sent per layer and
# window against the plan's figure (fmattn's `parallel` line, which `fmattn validate` prints too).
#
#   bash bench/sequence_scaling.sh [RANKS ...]        (default: 1 2 4)
#
# More ranks than cores run oversubscribed (mpirun --oversubscribe, no binding): ranks then share
# cores, so tokens/s per core, not per rank, is the figure to compare. Environment:
# FMATTN_BUILD_DIR (default build), FMATTN_SCALING_TOKENS (positions per rank, default 65536),
# FMATTN_SCALING_STEPS (default 4; the first step is left out as warm-up), FMATTN_SCALING_DECK
# (default inputs/train-long.yaml) and FMATTN_SCALING_SET (more --set arguments).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin/fmattn
deck=${FMATTN_SCALING_DECK:-$root/inputs/train-long.yaml}
tokens=${FMATTN_SCALING_TOKENS:-65536}
steps=${FMATTN_SCALING_STEPS:-4}
read -r -a extra <<<"${FMATTN_SCALING_SET:-}"
ranks=("$@")
((${#ranks[@]})) || ranks=(1 2 4)
cores=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OMP_PROC_BIND=false OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "| ranks | context | tokens/s | tokens/s per core | communication share | sent per rank per layer and window | planned |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in "${ranks[@]}"; do
  log=$work/np$n.log
  sets=(--set model.context=$((n * tokens)) --set train.steps="$steps" --set train.batch=1
    --set train.eval_every="$steps" --set train.eval_windows=1 --set train.checkpoint_every="$steps"
    --set train.checkpoint_file="$work/np$n.h5" --set parallel.decomposition=sequence)
  [[ -n ${FMATTN_SCALING_SET:-} ]] && sets+=("${extra[@]}")
  (cd "$root" && mpirun --oversubscribe --bind-to none -np "$n" "$bin" train "$deck" "${sets[@]}") >"$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
  layers=$("$bin" validate "$deck" "${sets[@]}" | sed -n 's/^  layers: \([0-9]*\).*/\1/p' | head -n 1)
  awk -v n="$n" -v cores="$cores" -v layers="$layers" -v ctx=$((n * tokens)) '
    function bytes(v, u) { return v * (u == "B" ? 1 : u == "KiB" ? 1024 : u == "MiB" ? 1048576 : 1073741824) }
    /parallel +sequence/ { for (i = 1; i <= NF; ++i) if ($i == "sent") planned = bytes($(i - 2), $(i - 1)) }
    / step +[0-9]+\/[0-9]+ / {
      split($3, s, "/"); if (s[1] == 1) next
      for (i = 1; i <= NF; ++i) {
        if ($i == "tok/s") tps = $(i - 1)
        if ($i == "comm") { c = $(i + 1); sub(/s$/, "", c); b = bytes($(i + 2), $(i + 3)) }
      }
      t += tps; share += c * tps / ctx; sent += b; k += 1
    }
    END {
      used = n < cores ? n : cores
      printf "| %d | %d | %.0f | %.0f | %.1f %% | %.1f KiB | %.1f KiB |\n", n, ctx, t / k, t / k / used,
        100 * share / k, sent / k / layers / 1024, planned / layers / 1024
    }' "$log"
done
