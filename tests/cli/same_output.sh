#!/usr/bin/env bash
# same_output.sh FMATTN DECK OUT_DIR: runs the deck with 1 and with 2 OpenMP threads, for each
# synthetic input kind (an odd head_dim takes the normal generator's last-channel path), and
# requires bit-identical `output` datasets (synthetic inputs and kernels do not depend on the
# thread count: no reductions across threads).
set -euo pipefail
bin=$1 deck=$2 dir=$3
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
