#!/usr/bin/env bash
# Fresh machine to first result: set up, build, make the small fortunes corpus that
# inputs/train-quick.yaml trains on, and run the CPU job on inputs/quickstart.yaml.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh"
cd "$root"
bash scripts/make-corpus.sh fortunes data
FMATTN_BIN=${FMATTN_BUILD_DIR:-$root/build}/bin/fmattn bash jobs/run-cpu.sbatch "${1:-inputs/quickstart.yaml}"
