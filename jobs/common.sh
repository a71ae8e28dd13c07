# shellcheck shell=bash
# Shared by the fmattn job scripts (jobs/*.sbatch); sourced, never run. Each job script finds it
# next to itself, or, under sbatch (which runs a copy of the script from Slurm's spool folder),
# in $FMATTN_ROOT/jobs or $SLURM_SUBMIT_DIR/jobs.
#
# The scripts run the same way under Slurm (sbatch/srun) and without it (plain bash, with
# mpirun when more than one rank is asked for). Environment they all read:
#   FMATTN_BIN       the fmattn binary (default <checkout>/build/bin/fmattn, else fmattn on PATH)
#   FMATTN_RESULTS   the job's results folder (default results/<job id>, relative to the
#                    folder the job was started or submitted from)
#   FMATTN_RANKS     MPI ranks without Slurm (default 1; run-gpu: one per visible GPU)
#   FMATTN_MPIRUN    the launcher without Slurm (default mpirun)
#   FMATTN_MPIRUN_ARGS  extra launcher arguments without Slurm (default: --bind-to none)
#   FMATTN_SRUN_ARGS extra srun arguments under Slurm

FM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FM_SCRIPT=${FM_SCRIPT:-fmattn-job}

fm_die() {
  echo "$FM_SCRIPT: error: $*" >&2
  exit 2
}

fm_log() { echo "[$FM_SCRIPT] $*"; }

# Under Slurm? (srun must exist too: a stray SLURM_JOB_ID alone does not make a Slurm job.)
fm_under_slurm() { [[ -n ${SLURM_JOB_ID:-} ]] && command -v srun >/dev/null 2>&1; }

# The job id: the array's id for job arrays (all elements share one folder), Slurm's job id
# (unchanged when a job is requeued), or a local id made of the time and the shell's pid.
fm_job_id() {
  if [[ -n ${SLURM_ARRAY_JOB_ID:-} ]]; then
    echo "$SLURM_ARRAY_JOB_ID"
  elif [[ -n ${SLURM_JOB_ID:-} ]]; then
    echo "$SLURM_JOB_ID"
  else
    echo "local-$(date +%Y%m%d-%H%M%S)-$$"
  fi
}

# fm_setup SCRIPT DECK: checks the deck and the binary, then sets FM_DECK, FM_NAME (the deck's
# base name), FM_BIN, FM_JOB and FM_OUT (the results folder, created).
fm_setup() {
  FM_SCRIPT=$1
  FM_DECK=${2:-}
  [[ -n $FM_DECK ]] || fm_die "usage: $FM_SCRIPT DECK.yaml [--set section.key=value ...]"
  [[ -f $FM_DECK ]] || fm_die "deck '$FM_DECK' not found"
  FM_NAME=$(basename "$FM_DECK" .yaml)
  FM_BIN=${FMATTN_BIN:-}
  if [[ -z $FM_BIN ]]; then
    FM_BIN=$FM_ROOT/build/bin/fmattn
    # An installed copy of the jobs (share/fmattn/jobs) uses the installed fmattn.
    [[ -x $FM_BIN ]] || FM_BIN=$(command -v fmattn || echo "$FM_BIN")
  fi
  [[ -x $FM_BIN ]] || fm_die "fmattn binary not found at $FM_BIN (build first, or set FMATTN_BIN)"
  FM_JOB=$(fm_job_id)
  FM_OUT=${FMATTN_RESULTS:-results/$FM_JOB}
  mkdir -p "$FM_OUT" || fm_die "cannot create the results folder '$FM_OUT'"
}

# fm_threads RANKS: exports the OpenMP settings for host threads: OMP_NUM_THREADS from Slurm's
# --cpus-per-task, else the caller's value, else the cores divided among RANKS ranks; threads
# spread over cores and pinned (override OMP_PROC_BIND / OMP_PLACES to change that).
fm_threads() {
  local ranks=${1:-1} cores
  cores=$(nproc 2>/dev/null || echo 1)
  if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then
    OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
  elif [[ -z ${OMP_NUM_THREADS:-} ]]; then
    OMP_NUM_THREADS=$((cores / ranks > 0 ? cores / ranks : 1))
  fi
  export OMP_NUM_THREADS
  export OMP_PROC_BIND=${OMP_PROC_BIND:-spread}
  export OMP_PLACES=${OMP_PLACES:-threads}
}

# fm_launcher RANKS [SRUN_OPTION ...]: sets the array FM_LAUNCH, the command that starts the
# ranks. Under Slurm: srun with the given options (the job's --ntasks decides the rank count;
# --cpus-per-task is passed on explicitly because srun no longer inherits it from sbatch).
# Without Slurm: $FMATTN_MPIRUN -np RANKS when RANKS > 1, else nothing (the binary itself).
fm_launcher() {
  local ranks=${1:-1}
  shift
  FM_LAUNCH=()
  if fm_under_slurm; then
    FM_LAUNCH=(srun ${SLURM_CPUS_PER_TASK:+"--cpus-per-task=$SLURM_CPUS_PER_TASK"} "$@")
    # shellcheck disable=SC2206  # word splitting of user-supplied extra arguments is intended
    FM_LAUNCH+=(${FMATTN_SRUN_ARGS:-})
  elif ((ranks > 1)); then
    # shellcheck disable=SC2206
    FM_LAUNCH=("${FMATTN_MPIRUN:-mpirun}" -np "$ranks" ${FMATTN_MPIRUN_ARGS:---bind-to none})
    # Open MPI refuses to run as root unless told (containers, CI).
    if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  fi
}

# fm_ranks: the number of ranks a run will have (for records and summaries).
fm_ranks() {
  if fm_under_slurm; then
    echo "${SLURM_NTASKS:-1}"
  else
    echo "${FMATTN_RANKS:-1}"
  fi
}

# fm_record DIR COMMAND...: appends the exact command (shell-quoted, with the folder it runs in)
# to DIR/command.txt and the environment that shapes the run to DIR/environment.txt. Appending
# keeps the history of a requeued job or of a reused folder; the last entry is the latest.
fm_record() {
  local dir=$1
  shift
  local stamp attempt=""
  stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  if [[ -n ${SLURM_RESTART_COUNT:-} ]]; then attempt=", restart $SLURM_RESTART_COUNT"; fi
  {
    echo "# $stamp on $(uname -n), job ${FM_JOB:-?}$attempt, $FM_SCRIPT"
    echo "cd $(printf '%q' "$PWD")"
    printf '%q ' "$@"
    echo
  } >>"$dir/command.txt"
  {
    echo "# ===== $stamp, job ${FM_JOB:-?}$attempt, $FM_SCRIPT"
    echo "## fmattn info"
    timeout 30 "$FM_BIN" info 2>&1 || echo "(fmattn info failed)"
    echo "## source"
    git -C "$FM_ROOT" describe --always --dirty --abbrev=12 2>/dev/null || echo "(not a git checkout)"
    echo "## host"
    uname -srm
    echo "cores: $(nproc 2>/dev/null || echo ?)"
    echo "## variables"
    env | grep -E '^(OMP_|KOKKOS_|FMATTN_|SLURM_|SRUN_|SBATCH_|CUDA_|HIP_|ROCR_|OMPI_|MPICH_|I_MPI_|UCX_|FI_|PMI|HDF5_|LD_LIBRARY_PATH=|PATH=)' |
      sort || true
    if declare -F module >/dev/null 2>&1 || command -v module >/dev/null 2>&1; then
      echo "## modules"
      module list 2>&1 || true
    fi
    if command -v nvidia-smi >/dev/null 2>&1; then
      echo "## nvidia-smi -L"
      timeout 30 nvidia-smi -L 2>&1 || true
    fi
    if command -v rocm-smi >/dev/null 2>&1; then
      echo "## rocm-smi --showid"
      timeout 30 rocm-smi --showid 2>&1 || true
    fi
  } >>"$dir/environment.txt"
}

# fm_run LOG COMMAND...: runs COMMAND, its output shown and appended to LOG; returns COMMAND's
# exit status (not tee's). With FM_WAIT_INTERRUPTIBLE=1 the command runs in the background and
# the script waits for it, so that a trap (e.g. Slurm's pre-timeout signal) runs at once.
fm_run() {
  local log=$1 rc=0
  shift
  if [[ ${FM_WAIT_INTERRUPTIBLE:-0} == 1 ]]; then
    (
      set -o pipefail
      "$@" 2>&1 | tee -a "$log"
    ) &
    local pid=$!
    while :; do
      rc=0
      wait "$pid" || rc=$?
      # Still there: wait was interrupted by a trapped signal, not ended by the command.
      kill -0 "$pid" 2>/dev/null || break
    done
  else
    {
      "$@" 2>&1 | tee -a "$log"
      rc=${PIPESTATUS[0]}
    } || true
  fi
  return "$rc"
}

# fm_job OUT COMMAND...: records and runs one fmattn command whose results go to OUT; the log is
# OUT/$FM_NAME.log. Returns the command's exit status.
fm_job() {
  local out=$1
  shift
  fm_record "$out" "$@"
  fm_run "$out/$FM_NAME.log" "$@"
}

# fm_latest_checkpoint DIR: the newest non-empty checkpoint*.h5 in DIR (a file being written has
# a temporary name and is never picked), or nothing.
fm_latest_checkpoint() {
  local dir=$1
  [[ -d $dir ]] || return 0
  find "$dir" -maxdepth 1 -type f -name 'checkpoint*.h5' -size +0 -printf '%T@ %p\n' 2>/dev/null |
    sort -n | tail -n 1 | cut -d' ' -f2-
}
