#!/usr/bin/env bash
# What fitting the learned downsampling buys: for each synthetic kind, `fmattn fit` on one
# seed's data, then the sampled error of `fmattn run` with the average operator and with the
# fitted weights, on the data it was fitted to and on another seed's data of the same kind.
#   bash bench/fit_study.sh [OUT_DIR]      (default results/fit-study-<date>)
# Environment: FMATTN_BUILD_DIR (build), FMATTN_FIT_KINDS ("smooth gaussian piecewise_constant"),
# FMATTN_FIT_ARGS (extra --set options for fit and run, e.g. "--set fit.steps=50").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FMATTN_BUILD_DIR:-$root/build}/bin
out=${1:-$root/results/fit-study-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
export OMP_PROC_BIND=false
# 2^14 tokens, d = 32, m = 32, p = 4 (8 coarse levels), 4 heads; the piecewise_constant span
# (24) is not aligned to the cells, so the average operator is not exact on it.
read -r -a extra <<<"${FMATTN_FIT_ARGS:-}"
problem=(--set problem.length=16384 --set problem.head_dim=32 --set attention.block_size=32 --set attention.rank=4
  --set input.synthetic.span=24 --set validation.sample_queries=256 --set output.write_output=false
  --set fit.sample_queries=256 --set fit.steps=200 --set fit.learning_rate=0.01 --set fit.checkpoint_every=100)
mean_error() { sed -nE 's/.*sampled rel. error max [^,]+, mean ([^ ]+).*/\1/p' | head -n 1; }
echo "kind,data_seed,average_error,fitted_error,ratio" >"$out/fit-study.csv"
for kind in ${FMATTN_FIT_KINDS:-smooth gaussian piecewise_constant}; do
  ck=$out/$kind.h5
  "$bin/fmattn" fit "$root/inputs/fit.yaml" "${problem[@]}" --set input.synthetic.kind="$kind" \
    --set fit.checkpoint_file="$ck" "${extra[@]}" | tee "$out/fit-$kind.log" | grep -E 'step +(1|50|100|150|200)/|validation|done'
  for seed in 1234 777; do
    run=("$bin/fmattn" run "$root/inputs/fit.yaml" "${problem[@]}" --set input.synthetic.kind="$kind"
      --set run.seed=$seed --set output.file="$out/run.h5" "${extra[@]}")
    avg=$("${run[@]}" --set attention.downsampling=average | mean_error)
    fitted=$("${run[@]}" --set weights.file="$ck" | mean_error)
    echo "$kind,$seed,$avg,$fitted,$(python3 -c "print('%.3f' % ($fitted / $avg))")" | tee -a "$out/fit-study.csv"
  done
  python3 "$root/tools/fmattn-analyze" "$ck" --plots "$out/plots" >"$out/analyze-$kind.txt"
done
rm -f "$out/run.h5"
column -s, -t "$out/fit-study.csv"
