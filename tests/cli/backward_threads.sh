#!/usr/bin/env bash
# backward_threads.sh TEST_BACKWARD OUT_DIR: the digest of Backward.DigestIsTheSameForAnyThreadCount
# (every gradient of a fixed problem, bit for bit) at 1 and at 2 OpenMP threads must agree: the
# backward's passes sum every gradient entry in an order that does not depend on the threads.
set -euo pipefail
bin=$1 dir=$2
mkdir -p "$dir"
for t in 1 2; do
  OMP_NUM_THREADS=$t FMATTN_BACKWARD_DIGEST="$dir/digest-$t" \
    "$bin" --gtest_filter=Backward.DigestIsTheSameForAnyThreadCount >"$dir/log-$t" ||
    { cat "$dir/log-$t"; exit 1; }
done
cmp "$dir/digest-1" "$dir/digest-2" || { echo "gradients differ: 1 thread $(cat "$dir/digest-1"), 2 threads $(cat "$dir/digest-2")"; exit 1; }
echo "gradients bit-identical at 1 and 2 threads (digest $(cat "$dir/digest-1"))"
rm -rf "$dir"
