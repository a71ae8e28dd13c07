#!/usr/bin/env bash
# Runs a job script of jobs/ under plain bash (Slurm variables removed) on a tiny problem and
# checks what it leaves behind.
#
#   check_jobs.sh run-cpu|run-gpu|scaling|fit|train|train-long|generate WORK_DIR
#
# WORK_DIR is emptied first. Environment (set by ctest): FMATTN_SOURCE_DIR (the checkout) and
# FMATTN_BINARY (the fmattn binary).
#   run-cpu   2 ranks under mpirun, default results folder results/<job id>/ below WORK_DIR; also
#             a missing deck and a bad --set must end the job with fmattn's exit code 2.
#             WORK_DIR/output.h5 links to the output file afterwards (for the analysis tests).
#   run-gpu   host backend here; results in WORK_DIR/results; the device option is passed.
#   scaling   two lengths, a folder per length, summary.csv and its plot.
#   fit       a tiny `fmattn fit`: checkpoint in the job folder; a second run (more steps)
#             picks it up and continues; `fmattn run` then uses the fitted weights.
#   train     a tiny `fmattn train` on the fortunes corpus (FMATTN_FORTUNES_DIR): checkpoint and
#             eval.h5 in the job folder; a requeued run (more steps) continues from it.
#   train-long  inputs/train-long.yaml cut down (context 128), every window sharded over 2 ranks:
#             checkpoint and eval.h5 in the job folder, the step lines' communication.
#   generate  text from a model trained for two steps: one file per stream in the job folder.
set -u
mode=${1:?usage: check_jobs.sh MODE WORK_DIR}
work=${2:?usage: check_jobs.sh MODE WORK_DIR}
src=${FMATTN_SOURCE_DIR:?FMATTN_SOURCE_DIR not set}
export FMATTN_BIN=${FMATTN_BINARY:?FMATTN_BINARY not set}
deck=$src/inputs/quickstart.yaml
tiny=(--set problem.length=2000 --set problem.heads=2 --set validation.sample_queries=16)

# The fallback path is what is tested, even inside a Slurm allocation.
for v in "${!SLURM_@}"; do unset "$v"; done
unset FMATTN_RESULTS FMATTN_RANKS FMATTN_LENGTHS FMATTN_RESTART_FROM

rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
log=$work/job.out

fail() {
  echo "FAILED ($mode): $*" >&2
  if [ -f "$log" ]; then
    echo "----- job output -----" >&2
    cat "$log" >&2
    echo "----------------------" >&2
  fi
  exit 1
}

# job SCRIPT ARGS...: runs the job script, output to $log; sets rc.
job() {
  local script=$1
  shift
  timeout 120 bash "$src/jobs/$script" "$@" >"$log" 2>&1
  rc=$?
}
expect_rc() { [ "$rc" -eq "$1" ] || fail "exit code $rc, expected $1"; }
expect_output() { grep -Eq -- "$1" "$log" || fail "job output does not match /$1/"; }
need() { for f in "$@"; do [ -s "$f" ] || fail "'$f' missing or empty"; done; }
is_hdf5() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "894844460d0a1a0a" ] || fail "'$1' is not HDF5"; }
# records DIR: the command and environment of a run were recorded.
records() {
  need "$1/command.txt" "$1/environment.txt"
  grep -q "$FMATTN_BIN" "$1/command.txt" || fail "$1/command.txt does not name the binary"
  grep -q '^## fmattn info' "$1/environment.txt" || fail "$1/environment.txt lacks the fmattn info section"
  grep -q '^OMP_NUM_THREADS=' "$1/environment.txt" || fail "$1/environment.txt lacks OMP_NUM_THREADS"
}

case $mode in
  run-cpu)
    FMATTN_RANKS=2 job run-cpu.sbatch "$deck" "${tiny[@]}"
    expect_rc 0
    dirs=(results/local-*)
    { [ ${#dirs[@]} -eq 1 ] && [ -d "${dirs[0]}" ]; } || fail "expected one folder results/local-*, got ${dirs[*]}"
    out=$work/${dirs[0]}
    need "$out/quickstart.h5" "$out/quickstart.log"
    is_hdf5 "$out/quickstart.h5"
    records "$out"
    grep -q -- 'mpirun -np 2' "$out/command.txt" || fail "command.txt does not show mpirun -np 2"
    grep -q "output.file=$out/quickstart.h5" "$out/command.txt" ||
      grep -q "output.file=${dirs[0]}/quickstart.h5" "$out/command.txt" || fail "command.txt lacks the output file"
    expect_output '2 rank\(s\)'
    ln -sfn "$out/quickstart.h5" "$work/output.h5"
    # Bad input ends the job with fmattn's exit code (through tee) and message.
    job run-cpu.sbatch /nonexistent/deck.yaml
    expect_rc 2
    expect_output "deck '/nonexistent/deck.yaml' not found"
    FMATTN_RESULTS=$work/bad job run-cpu.sbatch "$deck" --set attention.blok_size=64
    expect_rc 2
    expect_output 'attention[.]blok_size: unknown key'
    need "$work/bad/command.txt" "$work/bad/quickstart.log"
    ;;
  run-gpu)
    FMATTN_RESULTS=$work/results job run-gpu.sbatch "$deck" "${tiny[@]}"
    expect_rc 0
    out=$work/results
    need "$out/quickstart.h5" "$out/quickstart.log"
    is_hdf5 "$out/quickstart.h5"
    records "$out"
    grep -q -- '--kokkos-map-device-id-by=mpi_rank' "$out/command.txt" || fail "command.txt lacks the device mapping"
    ;;
  scaling)
    FMATTN_LENGTHS="1000 3000" FMATTN_RESULTS=$work/results job scaling.sbatch "$deck" "${tiny[@]}"
    expect_rc 0
    out=$work/results
    for n in 1000 3000; do
      need "$out/n$n/quickstart.h5"
      is_hdf5 "$out/n$n/quickstart.h5"
      records "$out/n$n"
      grep -q "problem.length=$n" "$out/n$n/command.txt" || fail "n$n/command.txt does not set the length"
    done
    need "$out/summary.csv"
    [ "$(head -n 1 "$out/summary.csv")" = "series,n,batch,heads,ranks,time_s,total_s,gflops,rel_error_max,tokens_per_s,file" ] ||
      fail "summary.csv header: $(head -n 1 "$out/summary.csv")"
    grep -Eq '^quickstart,1000,1,2,1,[0-9.]+,' "$out/summary.csv" || fail "summary.csv lacks n = 1000: $(cat "$out/summary.csv")"
    grep -Eq '^quickstart,3000,1,2,1,[0-9.]+,' "$out/summary.csv" || fail "summary.csv lacks n = 3000: $(cat "$out/summary.csv")"
    [ "$(wc -l <"$out/summary.csv")" -eq 3 ] || fail "summary.csv should have 2 rows"
    need "$out/plots/summary-time-vs-n.png"
    # The summary alone can be rebuilt.
    rm -f "$out/summary.csv"
    job scaling.sbatch --summary "$out"
    expect_rc 0
    need "$out/summary.csv"
    ;;
  fit)
    fit=(--set problem.length=1000 --set problem.heads=2 --set problem.head_dim=8 --set fit.sample_queries=32
         --set validation.sample_queries=16 --set fit.checkpoint_every=2)
    FMATTN_RESULTS=$work/results job fit.sbatch "$src/inputs/fit.yaml" "${fit[@]}" --set fit.steps=3
    expect_rc 0
    expect_output 'step +3/3  loss'
    records "$work/results"
    need "$work/results/checkpoint.h5"
    is_hdf5 "$work/results/checkpoint.h5"
    grep -q "fit.checkpoint_file=$work/results/checkpoint.h5" "$work/results/command.txt" ||
      fail "command.txt does not set the checkpoint file"
    grep -q 'restart_from' "$work/results/command.txt" && fail "first run must not restart"
    # A requeued job finds the checkpoint its earlier run left in the same folder and continues.
    FMATTN_RESULTS=$work/results job fit.sbatch "$src/inputs/fit.yaml" "${fit[@]}" --set fit.steps=5
    expect_rc 0
    expect_output 'continuing from checkpoint'
    expect_output 'restart +from .*checkpoint.h5 at step 3 of 5'
    expect_output 'step +4/5'
    expect_output 'step +5/5'
    tail -n 1 "$work/results/command.txt" | grep -q "fit.restart_from=$work/results/checkpoint.h5" ||
      fail "second run does not restart from the checkpoint: $(tail -n 1 "$work/results/command.txt")"
    # The fitted weights drive a run.
    FMATTN_RESULTS=$work/run job run-cpu.sbatch "$src/inputs/fit.yaml" "${fit[@]}" \
      --set weights.file="$work/results/checkpoint.h5"
    expect_rc 0
    need "$work/run/fit.h5"
    ;;
  train)
    corpus=${FMATTN_FORTUNES_DIR:?FMATTN_FORTUNES_DIR not set}
    train=(--set data.train="$corpus/fortunes-train.bin" --set data.val="$corpus/fortunes-val.bin"
           --set model.context=64 --set model.width=32 --set train.batch=2 --set train.eval_windows=2
           --set train.eval_every=2 --set train.checkpoint_every=2)
    FMATTN_RESULTS=$work/results job train.sbatch "$src/inputs/train-quick.yaml" "${train[@]}" --set train.steps=3
    expect_rc 0
    expect_output 'step +3/3  loss [0-9.]+ bpb'
    expect_output 'done: [0-9.]+ bits per byte on 2 windows of 64 bytes'
    records "$work/results"
    need "$work/results/checkpoint.h5"
    need "$work/results/eval.h5"
    is_hdf5 "$work/results/checkpoint.h5"
    grep -q 'restart_from' "$work/results/command.txt" && fail "first run must not restart"
    FMATTN_RESULTS=$work/results job train.sbatch "$src/inputs/train-quick.yaml" "${train[@]}" --set train.steps=5
    expect_rc 0
    expect_output 'continuing from checkpoint'
    expect_output 'restart +from .*checkpoint.h5 at step 3 of 5'
    expect_output 'step +5/5'
    ;;
  train-long)
    corpus=${FMATTN_FORTUNES_DIR:?FMATTN_FORTUNES_DIR not set}
    long=(--set data.train="$corpus/fortunes-train.bin" --set data.val="$corpus/fortunes-val.bin"
          --set model.context=128 --set model.width=16 --set attention.block_size=16 --set train.steps=2
          --set train.checkpoint_every=2 --set train.eval_windows=1)
    FMATTN_RANKS=2 FMATTN_RESULTS=$work/results job train-long.sbatch "$src/inputs/train-long.yaml" "${long[@]}"
    expect_rc 0
    expect_output 'parallel +sequence: every window sharded over 2 ranks, 64 positions on rank 0'
    expect_output 'step +2/2 .* comm [0-9.]+s [0-9.]+ KiB'
    expect_output 'done: [0-9.]+ bits per byte on 1 windows of 128 bytes'
    records "$work/results"
    need "$work/results/checkpoint.h5" "$work/results/eval.h5"
    is_hdf5 "$work/results/checkpoint.h5"
    ;;
  generate)
    corpus=${FMATTN_FORTUNES_DIR:?FMATTN_FORTUNES_DIR not set}
    "$FMATTN_BIN" train "$src/inputs/train-quick.yaml" --set data.train="$corpus/fortunes-train.bin" \
      --set data.val="$corpus/fortunes-val.bin" --set model.context=64 --set model.width=32 --set train.batch=2 \
      --set train.steps=2 --set train.eval_windows=2 --set train.checkpoint_file="$work/model.h5" >"$work/train.log" 2>&1 ||
      fail "train: $(cat "$work/train.log")"
    FMATTN_RESULTS=$work/results job generate.sbatch "$src/inputs/generate-quick.yaml" \
      --set generate.checkpoint="$work/model.h5" --set generate.prompt=Q --set generate.length=20
    expect_rc 0
    expect_output 'done: 20 bytes x 4 stream[(]s[)] after a 1-byte prompt'
    records "$work/results"
    for s in 0 1 2 3; do need "$work/results/generated-$s.txt"; done
    ;;
  *)
    echo "check_jobs.sh: unknown mode '$mode'" >&2
    exit 64
    ;;
esac
echo "ok: jobs/$mode"
