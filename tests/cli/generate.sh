#!/usr/bin/env bash
# generate.sh FMATTN CORPUS_DIR DIR: fmattn generate as a user runs it.
# 1. A few training steps give a checkpoint (learned positions) and one with positions: none.
# 2. The same deck gives the same bytes at 1 and 2 threads (4 streams, temperature, top-k,
#    top-p), and standard output ("-") the same bytes as the file.
# 3. A learned-positions model stops at its context with a message; a positions-none model
#    generates past it, from a prompt longer than its training context.
# 4. SIGINT and SIGTERM: exit 130 and 143, no file under the final name, no temporary left.
# 5. Bad input: exit 2 at once naming the key or file, nothing written.
set -euo pipefail
bin=$1 corpus=$2 dir=$3
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
fail() { echo "generate.sh: $*" >&2; exit 1; }

cat >deck.yaml <<YAML
run: {name: gen, seed: 7, progress_seconds: 0}
model: {layers: 2, width: 32, heads: 2, context: 128}
attention: {method: fma, block_size: 8, rank: 2, downsampling: learned}
data: {train: $corpus/fortunes-train.bin, val: $corpus/fortunes-val.bin}
train: {steps: 3, batch: 2, eval_every: 3, eval_windows: 2, checkpoint_every: 3, checkpoint_file: learned.h5}
generate: {checkpoint: learned.h5, prompt: "Q: ", length: 60, streams: 4, temperature: 0.8, top_k: 40, top_p: 0.95,
           seed: 3, output: out/text}
YAML
"$bin" train deck.yaml >train.log 2>&1 || fail "train: $(cat train.log)"
"$bin" train deck.yaml --set model.positions=none --set train.checkpoint_file=none.h5 >>train.log 2>&1 ||
  fail "train (positions none): $(cat train.log)"
"$bin" train deck.yaml --set model.positions=none --set attention.method=exact --set train.checkpoint_file=exact.h5 \
  >>train.log 2>&1 || fail "train (exact, positions none): $(cat train.log)"
"$bin" eval deck.yaml --set eval.checkpoint=learned.h5 --set eval.output=eval.h5 >>train.log 2>&1 || fail "eval: $(cat train.log)"
mkdir -p out

# --- 2. threads, standard output
for t in 1 2; do
  OMP_NUM_THREADS=$t "$bin" generate deck.yaml --set generate.output=out/t$t --kokkos-num-threads=$t >t$t.log 2>&1 ||
    fail "generate ($t threads): $(cat t$t.log)"
  grep -q "done: 60 bytes x 4 stream(s) after a 3-byte prompt" t$t.log || fail "no summary: $(cat t$t.log)"
done
for s in 0 1 2 3; do
  [[ $(wc -c <out/t1-$s.txt) == 60 ]] || fail "out/t1-$s.txt holds $(wc -c <out/t1-$s.txt) bytes, expected 60"
  cmp out/t1-$s.txt out/t2-$s.txt || fail "stream $s differs between 1 and 2 threads"
done
cmp -s out/t1-0.txt out/t1-1.txt && fail "streams 0 and 1 gave the same bytes"
"$bin" generate deck.yaml --set generate.streams=1 --set 'generate.output="-"' >stdout.txt 2>stdout.log ||
  fail "generate to stdout: $(cat stdout.log)"
cmp stdout.txt out/t1-0.txt || fail "standard output differs from stream 0's file"
grep -q "done: 60 bytes x 1 stream" stdout.log || fail "no summary on stderr: $(cat stdout.log)"
echo "same bytes at 1 and 2 threads, on standard output as in the file"

# --- 3. the context
"$bin" generate deck.yaml --set generate.streams=1 --set generate.length=500 --set generate.output=out/long >long.log 2>&1 ||
  fail "generate past the context: $(cat long.log)"
grep -q "warning    the model has 128 positions" long.log || fail "no warning: $(cat long.log)"
[[ $(wc -c <out/long.txt) == 126 ]] || fail "out/long.txt holds $(wc -c <out/long.txt) bytes, expected 126 (129 - prompt)"
head -c 300 "$corpus/fortunes-val.bin" >prompt.bin
"$bin" generate deck.yaml --set generate.checkpoint=none.h5 --set generate.streams=2 --set generate.length=400 \
  --set generate.prompt= --set generate.prompt_file=prompt.bin --set generate.output=out/none >none.log 2>&1 ||
  fail "positions none past the context: $(cat none.log)"
[[ $(wc -c <out/none-1.txt) == 400 ]] || fail "out/none-1.txt holds $(wc -c <out/none-1.txt) bytes"
echo "learned positions stop at the context; positions none run from a 300-byte prompt to 700 bytes"

# --- 4. signals
for sig in INT TERM; do
  "$bin" generate deck.yaml --set generate.checkpoint=none.h5 --set generate.length=100000000 --set generate.output=out/sig \
    >sig.log 2>&1 &
  pid=$!
  deadline=$((SECONDS + 60))
  until compgen -G "out/sig-0.txt.tmp-*" >/dev/null; do
    ((SECONDS < deadline)) || fail "no temporary file: $(cat sig.log)"
    sleep 0.05
  done
  sleep 0.3
  kill -$sig $pid
  status=0
  wait $pid || status=$?
  expected=$([[ $sig == INT ]] && echo 130 || echo 143)
  [[ $status == "$expected" ]] || fail "exit $status after SIG$sig, expected $expected: $(cat sig.log)"
  compgen -G "out/sig*" >/dev/null && fail "SIG$sig left $(ls out/sig*)"
done
echo "SIGINT and SIGTERM: 130 and 143, nothing left"

# --- 5. bad input
touch empty.bin
mkdir folder folder.txt
touch bad.log
h5=$(ls)  # nothing below may change or add a file
expect() {  # expect REGEX ARGS...: exit 2 within 10 s, output matching REGEX
  local regex=$1 status=0 start=$SECONDS
  shift
  timeout 20 "$bin" generate deck.yaml "$@" >bad.log 2>&1 || status=$?
  [[ $status == 2 ]] || fail "exit $status, expected 2: $* -> $(head -c 2000 bad.log)"
  ((SECONDS - start <= 10)) || fail "took $((SECONDS - start)) s: $*"
  grep -Eq -- "$regex" bad.log || fail "no /$regex/ in: $(head -c 2000 bad.log)"
  [[ $(ls) == "$h5" ]] || fail "$* left files behind"
}
expect "generate[.]checkpoint: cannot open 'missing[.]h5'" --set generate.checkpoint=missing.h5
expect "generate[.]checkpoint: .*not an HDF5 file" --set generate.checkpoint=prompt.bin
expect "generate[.]checkpoint: no model checkpoint given" --set generate.checkpoint=
expect "generate[.]checkpoint: .*eval[.]h5.*schema" --set generate.checkpoint=eval.h5
expect "generate[.]prompt_file: 'empty[.]bin' is empty" --set generate.prompt= --set generate.prompt_file=empty.bin
expect "generate[.]prompt_file: cannot open 'folder'" --set generate.prompt= --set generate.prompt_file=folder
expect "generate[.]prompt_file: a prompt of 300 bytes is longer than the model's context [(]128" \
  --set generate.prompt= --set generate.prompt_file=prompt.bin
expect "generate[.]length: expected" --set generate.length=0
expect "generate[.]temperature: expected" --set generate.temperature=-1
expect "generate[.]top_p: expected" --set generate.top_p=0
expect "generate[.]top_p: expected" --set generate.top_p=1.5
expect "generate[.]top_k: expected" --set generate.top_k=-1
expect "generate[.]length: 4 stream[(]s[)] of .* positions need .* of decoder state [(]exact attention[)], more than" \
  --set generate.checkpoint=exact.h5 --set generate.length=1099511627776
expect "generate[.]output: cannot write into '/proc/self'" --set generate.output=/proc/self/x
expect "generate[.]output: .*folder[.]txt" --set generate.streams=1 --set generate.output=folder
echo "bad input: exit 2 naming the key, nothing written"
