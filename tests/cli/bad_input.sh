#!/usr/bin/env bash
# bad_input.sh FMATTN DIR: "nothing lost, nothing non-finite written, no hang" through the CLI.
# Each case is bad input (exit 2, naming the key) found within seconds, with no user file
# changed and nothing left behind; a long step stops on SIGTERM.
set -euo pipefail
bin=$1 dir=$2
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
fail() { echo "bad_input.sh: $*" >&2; exit 1; }

for i in $(seq 400); do echo "fast multipole attention $i: kokkos alpha beta gamma"; done >train.bin
head -c 8000 train.bin >val.bin
cat >deck.yaml <<'YAML'
run: {name: bad, seed: 7, progress_seconds: 0}
model: {layers: 1, width: 16, heads: 2, context: 64}
attention: {method: fma, block_size: 8, rank: 2}
data: {train: train.bin, val: val.bin}
train: {steps: 2, batch: 2, eval_every: 2, eval_windows: 2, checkpoint_every: 2, checkpoint_file: model.h5}
eval: {checkpoint: model.h5}
YAML
"$bin" train deck.yaml >train.log 2>&1 || fail "train: $(cat train.log)"
sums=$(md5sum deck.yaml train.bin val.bin model.h5)

# expect CODE REGEX ARGS...: exit CODE within 5 s (bad input is found at once), output matching REGEX.
expect() {
  local code=$1 regex=$2 status=0
  shift 2
  local start=$SECONDS
  timeout 20 "$bin" "$@" >out.log 2>&1 || status=$?
  [[ $status == "$code" ]] || fail "exit $status, expected $code: $* -> $(head -c 2000 out.log)"
  ((SECONDS - start <= 5)) || fail "took $((SECONDS - start)) s: $*"
  grep -Eq -- "$regex" out.log || fail "no /$regex/ in: $(head -c 2000 out.log)"
}

# Aliases nested in aliases (a "billion laughs" deck): refused at once, at the first anchor.
{
  echo 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
  for i in $(seq 9); do
    p="*a$((i - 1))"
    echo "a$i: &a$i [$p, $p, $p, $p, $p, $p, $p, $p, $p, $p]"
  done
} >bomb.yaml
expect 2 "bomb[.]yaml:1:[0-9]+: an anchor" validate bomb.yaml
expect 2 "bomb[.]yaml:1:[0-9]+: an anchor" run bomb.yaml
# Inputs must be regular files: a FIFO would block in open(), /dev/zero never ends.
mkfifo fifo
expect 2 "fifo.*it is a FIFO, not a regular file" validate fifo
expect 2 "data[.]train: cannot open 'fifo': it is a FIFO" train deck.yaml --set data.train=fifo
expect 2 "train[.]restart_from: cannot open 'fifo': it is a FIFO" train deck.yaml --set train.restart_from=fifo
expect 2 "data[.]train: cannot open '/dev/zero': it is a character device" train deck.yaml --set data.train=/dev/zero
expect 2 "eval[.]checkpoint: cannot open '/dev/null': it is a character device" eval deck.yaml --set eval.checkpoint=/dev/null
expect 2 "train[.]restart_from: cannot open 'nope[.]h5': No such file" train deck.yaml --set train.restart_from=nope.h5
# An output that is one of the run's own inputs, however spelled.
ln -s train.bin corpus-link
expect 2 "eval[.]output: '[.]/model[.]h5' is the same file as deck[.]yaml:6:[0-9]+: eval[.]checkpoint" \
  eval deck.yaml --set eval.output=./model.h5
expect 2 "train[.]checkpoint_file: 'corpus-link' is the same file as deck[.]yaml:4:[0-9]+: data[.]train" \
  train deck.yaml --set train.checkpoint_file=corpus-link
expect 2 "train[.]checkpoint_file: '[^']*val[.]bin' is the same file as deck[.]yaml:4:[0-9]+: data[.]val" \
  train deck.yaml --set train.checkpoint_file="$PWD/../$(basename "$PWD")/val.bin"
expect 2 "train[.]checkpoint_file: 'deck[.]yaml' is the same file as the deck" train deck.yaml --set train.checkpoint_file=deck.yaml
# Outputs that cannot be written: found before the first step, nothing created.
expect 2 "train[.]checkpoint_file: 'o[.]h5/' names a folder" train deck.yaml --set train.checkpoint_file=o.h5/
expect 2 "train[.]checkpoint_file: a file or folder name of 300 characters" \
  train deck.yaml --set train.checkpoint_file="$(printf 'x%.0s' $(seq 297)).h5"
expect 2 "eval[.]output: cannot write into '/proc/self'" eval deck.yaml --set eval.output=/proc/self/e.h5
expect 2 "eval[.]output: cannot write into '/sys'" eval deck.yaml --set eval.output=/sys/e.h5
# A path of 5,000 characters: refused with a short message.
expect 2 "train[.]restart_from: a path of 5003 characters" train deck.yaml --set train.restart_from="$(printf 'r%.0s' $(seq 5000)).h5"
(($(wc -c <out.log) < 400)) || fail "a message of $(wc -c <out.log) characters"
# A NUL byte in a path is refused, not cut.
expect 2 "train[.]checkpoint_file: a path cannot hold a NUL byte" train deck.yaml --set 'train.checkpoint_file="x\u0000y.h5"'
expect 2 "data[.]train: a path cannot hold a NUL byte" train deck.yaml --set 'data.train="train.bin\u0000junk"'
# Counts no machine can work through; the language-model rules where the deck gives the key.
expect 2 "train[.]batch: expected an integer between 1 and 2[^ ]* [(]16777216[)]" train deck.yaml --set train.batch=4611686018427387904
expect 2 "train[.]eval_windows: expected an integer between 1" eval deck.yaml --set train.eval_windows=4611686018427387904
sed 's/method: fma,/method: fma, variant: bidirectional,/' deck.yaml >bidi.yaml
expect 2 "bidi[.]yaml:3:[0-9]+: attention[.]variant: a language model" train bidi.yaml
expect 2 "model[.]context: the deck says 32, the checkpoint [(]eval[.]checkpoint[)] was trained with 64" eval deck.yaml --set model.context=32
[[ "$(md5sum deck.yaml train.bin val.bin model.h5)" == "$sums" ]] || fail "a user's file changed"
left=$(ls -A | grep -Ev '^(deck|bomb|bidi)[.]yaml$|^(train|val)[.]bin$|^model[.]h5$|^(train|out)[.]log$|^fifo$|^corpus-link$' || true)
[[ -z $left ]] || fail "left behind: $left"
echo "bad input: exit 2 at once naming the key; no file changed, nothing left behind"

# SIGTERM during one long step (2^24 windows): the step is given up, exit 3, within seconds.
"$bin" train deck.yaml --set train.batch=16777216 --set train.checkpoint_file=long.h5 >long.log 2>&1 &
pid=$!
deadline=$((SECONDS + 60))
until grep -q "^\[fmattn\] data" long.log; do
  ((SECONDS < deadline)) || { kill -KILL $pid; fail "no start: $(cat long.log)"; }
  sleep 0.05
done
sleep 0.5
start=$SECONDS
kill -TERM $pid
status=0
wait $pid || status=$?
[[ $status == 3 ]] || fail "exit $status after SIGTERM, expected 3: $(cat long.log)"
((SECONDS - start <= 10)) || fail "SIGTERM took $((SECONDS - start)) s"
grep -q "stopped by SIGTERM during step 1 of 2; long.h5 was not written" long.log || fail "message: $(cat long.log)"
[[ ! -e long.h5 ]] || fail "long.h5 written"
echo "SIGTERM during a long step: exit 3 at once, nothing written"
cd /
rm -rf "$dir"
