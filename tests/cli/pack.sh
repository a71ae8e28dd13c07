#!/usr/bin/env bash
# pack.sh SOURCE_DIR BUILD_DIR CORPUS_DIR DIR: bench/pack_collect.sh (what bench/device_pack.sh
# uses to carry a GPU build to a node without MPI, HDF5 or yaml-cpp) on the host build.
# 1. The pack holds the executable, stripped, and no library of glibc's.
# 2. fmattn run through the pack's run.sh (MPI_Init, HDF5 output) loads every shared library and
#    Open MPI plug-in from the pack, none from this machine but glibc's (LD_DEBUG=files) and the
#    OpenBLAS that the environment report looks for (dlopen, optional), and writes the same
#    output as the unpacked fmattn.
# 3. run.sh with no program is a usage error; a missing executable is refused when packing.
# 4. bench/device_run.sh, the GPU check, runs from a pack of the host build (small sizes): the
#    kernel test passes, bench.csv holds fp32 and fp64 rows, the study model trains; only the
#    PyTorch stage may fail here (it needs a CUDA device).
set -euo pipefail
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd) corpus=$(cd "$3" && pwd) dir=$4
bin=$build/bin/fmattn
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
fail() { echo "pack.sh: $*" >&2; exit 1; }

bash "$src/bench/pack_collect.sh" pack "$bin" 2>collect.log || fail "pack_collect: $(cat collect.log)"
[[ -x pack/bin/fmattn && -x pack/run.sh ]] || fail "no pack/bin/fmattn or run.sh: $(ls -R pack)"
[[ $(readelf -S pack/bin/fmattn) == *.symtab* ]] && fail "pack/bin/fmattn is not stripped"
glibc='^(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so'
for f in pack/lib/*; do
  [[ $(basename "$f") =~ $glibc ]] && fail "glibc's $(basename "$f") was packed"
done
compgen -G 'pack/lib/libmpi.so*' >/dev/null || fail "libmpi was not packed: $(ls pack/lib)"
[[ -f pack/lib/openmpi/mca_pml_ob1.so ]] || fail "Open MPI's plug-ins were not packed"
compgen -G 'pack/lib/openmpi/mca_*_ucx.so' >/dev/null && fail "a network-fabric plug-in was packed"

cat >deck.yaml <<YAML
run: {name: pack, seed: 5, progress_seconds: 0}
problem: {batch: 1, heads: 2, length: 1000, head_dim: 16, dtype: float64}
attention: {method: fma, variant: causal, block_size: 16, rank: 4}
validation: {sample_queries: 8}
output: {file: plain.h5}
YAML
"$bin" run deck.yaml >plain.log 2>&1 || fail "fmattn run: $(cat plain.log)"
LD_DEBUG=files bash pack/run.sh fmattn run deck.yaml --set output.file=packed.h5 >packed.log 2>loader.log ||
  fail "the packed fmattn run failed: $(cat packed.log; tail -n 20 loader.log)"
outside=$(bash "$src/bench/pack_outside.sh" pack loader.log '/lib(openblas|gfortran|quadmath)\.so')
[[ -z $outside ]] || fail "the packed fmattn loaded libraries from outside the pack: $outside"
grep -q 'mca_pml_ob1' loader.log || fail "no Open MPI plug-in was loaded (is MPI_Init run?)"
h5diff -d 0 plain.h5 packed.h5 /output >/dev/null || fail "the packed fmattn wrote other output than the plain one"

bash pack/run.sh >usage.log 2>&1 && fail "run.sh with no program succeeded"
grep -q "usage: run.sh PROGRAM" usage.log || fail "run.sh: no usage line: $(cat usage.log)"
bash "$src/bench/pack_collect.sh" pack2 "$bin" /nonexistent/fmattn_bench 2>missing.log &&
  fail "packing a missing executable succeeded"
grep -q "/nonexistent/fmattn_bench is not an executable" missing.log || fail "no message: $(cat missing.log)"
# --- 4. the GPU check's script from a pack of the host build
bash "$src/bench/pack_collect.sh" --check "$corpus/fortunes" check "$bin" "$build/bin/fmattn_bench" \
  "$build/tests/test_synthetic" 2>>collect.log || fail "pack_collect --check: $(cat collect.log)"
echo "host build" >check/BUILD
rc=0
FMATTN_RUN_NMIN=12 FMATTN_RUN_NMAX=13 FMATTN_RUN_TRAIN_STEPS=2 bash check/device_run.sh run-out >run.log 2>&1 || rc=$?
grep -q "test_synthetic: passed" run-out/summary.txt || fail "device_run: the test did not pass: $(cat run-out/summary.txt)"
grep -q "^fma-causal,.*,float$" run-out/bench.csv && grep -q "^exact-grad-causal,.*,double$" run-out/bench.csv ||
  fail "device_run: bench.csv lacks fp32 or fp64 rows: $(head -n 3 run-out/bench.csv)"
grep -q "done: steps 1-2" run-out/train.txt || fail "device_run: no training: $(tail -n 5 run-out/train.txt)"
failed=$(grep -E "FAILED|failed|stopped" run-out/summary.txt | grep -v "sdpa_bench failed" || true)
[[ -z $failed ]] || fail "device_run: $failed"
((rc == 0)) || grep -q "sdpa_bench failed" run-out/summary.txt || fail "device_run exit $rc: $(cat run.log)"
(($(ls run-out | wc -l) <= 8)) || fail "device_run wrote more than 8 files: $(ls run-out)"
echo "pack.sh: ok ($(du -sh pack | cut -f1), $(ls pack/lib | wc -l) libraries, $(ls pack/lib/openmpi | wc -l) plug-ins)"
