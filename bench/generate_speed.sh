#!/usr/bin/env bash
# Decoding speed of `fmattn generate` by position, next to PyTorch's ordinary KV cache
# (bench/generate_torch_anchor.py), in one run on the same machine: the study model's shape
# (4 layers, width 256, 4 heads, float32; FMA with block_size 64, rank 4, learned basis
# functions) with positions: none so that one model runs at every position, trained for one
# step (the weights do not change the time). For each position P (prompt of P bytes from the
# corpus) and each stream count, the time per step (one byte per stream) after the prefill,
# the decoder state per stream, and PyTorch's time per step at the same position.
#   bash bench/generate_speed.sh [OUT_DIR]      (default results/generate-speed-<date>)
# Environment: FMATTN_BUILD_DIR (build), FMATTN_POSITIONS (default "1024 4096 16384 65536"),
# FMATTN_STREAMS (default "1 8"), FMATTN_GENERATE_BYTES (bytes per stream, default 256; the
# time per step is that of the second half, after the first steps' warm-up from cold caches),
# OMP_NUM_THREADS (default: all cores), FMATTN_SPEED_CORPUS (default data/fortunes-train.bin).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin
out=${1:-$root/results/generate-speed-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
threads=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS=$threads OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-threads}
py=$(for p in python3 /usr/bin/python3; do "$p" -c 'import torch' 2>/dev/null && echo "$p" && break; done || true)
[[ -n $py ]] || { echo "generate_speed.sh: needs python3 with torch (Debian: python3-torch)" >&2; exit 2; }
positions=${FMATTN_POSITIONS:-1024 4096 16384 65536}
streams_list=${FMATTN_STREAMS:-1 8}
length=${FMATTN_GENERATE_BYTES:-256}
corpus=${FMATTN_SPEED_CORPUS:-$root/data/fortunes-train.bin}
[[ -f $corpus ]] || { echo "generate_speed.sh: $corpus missing: bash scripts/make-corpus.sh fortunes" >&2; exit 2; }

# One model per method: a training step at a short context (positions none: no parameter is
# tied to the context, so the same checkpoint generates at every position).
for method in fma exact; do
  "$bin/fmattn" train "$root/inputs/train-study.yaml" --set model.positions=none --set model.context=1024 \
    --set attention.method=$method --set attention.downsampling=learned --set train.batch=1 --set train.steps=1 \
    --set train.eval_windows=1 --set train.checkpoint_file="$out/$method.h5" --set data.train="$corpus" \
    --set data.val="$corpus" >"$out/train-$method.log"
done

echo "method,position,streams,ms_per_step,bytes_per_s,state_bytes_per_stream,prefill_s" >"$out/fmattn.csv"
for P in $positions; do
  head -c "$P" "$corpus" >"$out/prompt-$P.bin"
  for method in fma exact; do
    for s in $streams_list; do
      log=$out/$method-$P-$s.log
      "$bin/fmattn" generate "$root/inputs/generate-quick.yaml" --set generate.checkpoint="$out/$method.h5" \
        --set generate.prompt= --set generate.prompt_file="$out/prompt-$P.bin" --set generate.length="$length" \
        --set generate.streams="$s" --set generate.output="$out/text-$method-$P-$s" --set run.progress_seconds=0 >"$log"
      line=$(grep 'done:' "$log")
      ms=$(sed -nE 's/.* ([0-9.]+) ms\/step over the second.*/\1/p' "$log")
      rate=$(sed -nE 's/.* ([0-9.]+) bytes\/s.*/\1/p' <<<"$line")
      prefill=$(sed -nE 's/.*prefill ([0-9.]+) s.*/\1/p' <<<"$line")
      state=$(sed -nE 's/.*prompt bytes through the forward in [0-9.]+ s; state (.*) per stream/\1/p' "$log")
      echo "$method,$P,$s,$ms,$rate,$state,$prefill" | tee -a "$out/fmattn.csv"
    done
  done
done

"$py" "$root/bench/generate_torch_anchor.py" --positions "$(tr ' ' ',' <<<"$positions")" \
  --streams "$(tr ' ' ',' <<<"$streams_list")" --threads "$threads" | tee "$out/torch.log"

# The table: fmattn fma and exact, PyTorch, and the ratios the README reports.
"$py" - "$out" <<'PY'
import csv, re, sys
out = sys.argv[1]
rows = {(r["method"], int(r["position"]), int(r["streams"])): r for r in csv.DictReader(open(f"{out}/fmattn.csv"))}
torch = {}
for line in open(f"{out}/torch.log"):
    m = re.search(r"position (\d+) streams (\d+): ([0-9.]+) ms/byte", line)
    if m:
        torch[(int(m[1]), int(m[2]))] = float(m[3])
ms = lambda k: float(rows[k]["ms_per_step"])
lines = ["| position | streams | fma ms/step | exact ms/step | PyTorch KV cache ms/step | fma state/stream | exact state/stream | fma / exact bytes/s | exact vs PyTorch |",
         "|---|---|---|---|---|---|---|---|---|"]
for (method, P, s) in sorted(k for k in rows if k[0] == "fma"):
    t = torch.get((P, s))
    lines.append(f"| {P} | {s} | {ms(('fma', P, s)):.3f} | {ms(('exact', P, s)):.3f} | "
                 f"{t:.3f} | {rows[('fma', P, s)]['state_bytes_per_stream']} | {rows[('exact', P, s)]['state_bytes_per_stream']} | "
                 f"{ms(('exact', P, s)) / ms(('fma', P, s)):.1f}x | {t / ms(('exact', P, s)):.2f}x |" if t else "")
print("\n".join(l for l in lines if l))
ps = sorted({k[1] for k in rows})
for s in sorted({k[2] for k in rows}):
    print(f"streams {s}: fma time per step at {ps[-1]} / at {ps[0]} = {ms(('fma', ps[-1], s)) / ms(('fma', ps[0], s)):.2f}")
PY
