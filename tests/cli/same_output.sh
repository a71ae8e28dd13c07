#!/usr/bin/env bash
# same_output.sh FMATTN DECK OUT_DIR FIT_DECK: runs the deck with 1 and with 2 OpenMP threads,
# for each synthetic input kind (an odd head_dim takes the normal generator's last-channel path),
# and requires bit-identical `output` datasets (synthetic inputs and kernels do not depend on the
# thread count: no reductions across threads). Then fits the fit deck at 1 and 2 threads, both
# variants, and requires bit-identical checkpoints: the backward pass (far-field teams, the
# coarse reduction, the weight gradients) sums in the same order for any thread count.
set -euo pipefail
bin=$1 deck=$2 dir=$3 fit_deck=$4
mkdir -p "$dir"
for kind in smooth gaussian piecewise_constant; do
  for t in 1 2; do
    OMP_NUM_THREADS=$t "$bin" run "$deck" --set problem.length=3001 --set problem.heads=3 --set problem.head_dim=33 \
      --set attention.variant=bidirectional --set input.synthetic.kind=$kind \
      --set output.file="$dir/threads-$t.h5" >/dev/null
  done
  h5diff -d 0 "$dir/threads-1.h5" "$dir/threads-2.h5" /output /output
  rm -f "$dir"/threads-*.h5
  echo "$kind: identical output for 1 and 2 threads"
done

for variant in causal bidirectional; do
  for t in 1 2; do
    OMP_NUM_THREADS=$t "$bin" fit "$fit_deck" --set problem.length=1500 --set problem.heads=2 --set problem.head_dim=12 \
      --set attention.variant=$variant --set fit.steps=3 --set fit.sample_queries=32 --set validation.sample_queries=0 \
      --set fit.checkpoint_file="$dir/fit-$t.h5" >/dev/null
  done
  for object in /downsampling /fit/loss /optimizer/moment1 /optimizer/moment2; do
    h5diff -d 0 "$dir/fit-1.h5" "$dir/fit-2.h5" "$object" "$object"
  done
  rm -f "$dir"/fit-*.h5
  echo "fit, $variant: identical checkpoints for 1 and 2 threads"
done
