#!/usr/bin/env bash
# mpi_warnings.sh FMATTN DECK MPIEXEC: under mpirun, Kokkos' start-up advice is printed once
# (not once per rank), and ranks x threads beyond the node's cores get a warning saying what
# to change (threads per rank, or ranks per node when one thread each is already too many).
set -euo pipefail
bin=$1 deck=$2 mpiexec=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cores=$(nproc)
env -u OMP_PROC_BIND OMP_NUM_THREADS="$cores" "$mpiexec" -np 3 --oversubscribe "$bin" run "$deck" \
  --set problem.length=3000 --set output.file="$out/o.h5" >"$out/log" 2>&1
advice=$(grep -c "OMP_PROC_BIND environment variable not set" "$out/log" || true)
# With OpenMP, Kokkos advises once; a Serial-only build has no such advice and one thread a rank.
if "$bin" info | grep -q "^Kokkos backends:.*OpenMP"; then expected=1 threads=$cores; else expected=0 threads=1; fi
[[ $advice == "$expected" ]] || { echo "Kokkos' advice printed $advice times, not $expected:"; cat "$out/log"; exit 1; } >&2
if ((3 * threads > cores)); then
  # More ranks than cores: fewer threads cannot help, only fewer ranks.
  if ((threads == 1 || 3 > cores)); then remedy="run at most $cores rank(s) per node"; else remedy="set OMP_NUM_THREADS=$((cores / 3))"; fi
  want="warning: 3 rank(s) x $threads threads on this node exceed its $cores cores: $remedy"
  grep -qF "$want" "$out/log" || { echo "no oversubscription warning '$want':"; cat "$out/log"; exit 1; } >&2
else
  ! grep -q "exceed its" "$out/log" || { echo "a warning without oversubscription:"; cat "$out/log"; exit 1; } >&2
fi
echo "Kokkos' advice $advice time(s); oversubscription handled"
