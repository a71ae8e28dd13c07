#!/usr/bin/env bash
# What a user pays: one cold `fmattn run` (fresh process, fresh memory) against the warm kernel
# time of `fmattn_bench` (best of its repeats, memory already touched), in one script so both
# are measured on the same machine at the same time. Also the rate of the synthetic gaussian
# generator, from the `input` phase of the cold runs (which includes allocating q, k and v).
#   bash bench/cold_run.sh [OUT_DIR]     (default results/cold-<date>)
# Environment: FMATTN_BUILD_DIR (build), OMP_NUM_THREADS (2), FMATTN_COLD_LOG2N ("20 22").
# Problem: fp32, d 64, m 64, p 4, one head, gaussian inputs, validation off; FMA causal and the
# linear variant.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin
out=${1:-$root/results/cold-$(date +%Y%m%d-%H%M%S)}
sizes=${FMATTN_COLD_LOG2N:-20 22}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_PROC_BIND=false
mkdir -p "$out"
python=$(command -v /usr/bin/python3 || command -v python3)

lo=${sizes%% *} hi=${sizes##* }
"$bin/fmattn_bench" --n-min "$lo" --n-max "$hi" --d 64 --repeat 3 --cases fma-causal,linear-causal \
  --csv "$out/warm.csv" | tee "$out/warm.txt"

for log2n in $sizes; do
  for queries in fine coarse; do
    name=cold-$queries-$log2n
    "$bin/fmattn" run "$root/inputs/quickstart.yaml" --set run.name="$name" --set problem.heads=1 \
      --set problem.length=$((1 << log2n)) --set attention.queries=$queries --set input.synthetic.kind=gaussian \
      --set validation.sample_queries=0 --set output.write_output=false --set output.file="$out/$name.h5" \
      | tee "$out/$name.log"
  done
done

"$python" - "$out" $sizes <<'PY'
import csv, sys, h5py
out, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
warm = {(r["case"], int(r["n"])): float(r["time_s"]) for r in csv.DictReader(open(f"{out}/warm.csv"))}
print(f"{'case':<14} {'n':>9} {'warm_s':>8} {'cold_attention_s':>17} {'cold/warm':>10} {'input_s':>8} {'Mvalues/s':>10}")
for log2n in sizes:
    n = 1 << log2n
    for queries, case in (("fine", "fma-causal"), ("coarse", "linear-causal")):
        with h5py.File(f"{out}/cold-{queries}-{log2n}.h5", "r") as f:
            t = f["diagnostics/timings"].attrs
            cold, inp = float(t["attention"]), float(t["input"])
        w = warm[(case, n)]
        print(f"{case:<14} {n:>9} {w:>8.3f} {cold:>17.3f} {cold / w:>10.2f} {inp:>8.3f} {3 * n * 64 / inp / 1e6:>10.0f}")
PY
