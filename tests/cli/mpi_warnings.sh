#!/usr/bin/env bash
# mpi_warnings.sh FMATTN DECK MPIEXEC: under mpirun, Kokkos' start-up advice is printed once
# (not once per rank), and ranks x threads beyond the node's cores get a warning saying what
# to set.
set -euo pipefail
bin=$1 deck=$2 mpiexec=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cores=$(nproc)
env -u OMP_PROC_BIND OMP_NUM_THREADS="$cores" "$mpiexec" -np 3 --oversubscribe "$bin" run "$deck" \
  --set problem.length=3000 --set output.file="$out/o.h5" >"$out/log" 2>&1
advice=$(grep -c "OMP_PROC_BIND environment variable not set" "$out/log" || true)
[[ $advice == 1 ]] || { echo "Kokkos' advice printed $advice times:"; cat "$out/log"; exit 1; } >&2
grep -q "warning: 3 rank(s) x $cores threads on this node exceed its $cores cores: set OMP_NUM_THREADS=" "$out/log" ||
  { echo "no oversubscription warning:"; cat "$out/log"; exit 1; } >&2
echo "one Kokkos advice, one oversubscription warning"
