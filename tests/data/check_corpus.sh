#!/usr/bin/env bash
# Makes the fortunes byte corpus with scripts/make-corpus.sh into WORK_DIR/out and checks it:
# both splits non-empty, training at least 5x validation, no file in both splits, each .bin as
# long as its manifest says, the .bin files the manifest's files concatenated in order, a
# second run up to date and a rebuild (stamp changed) byte for byte the same, no temporaries
# left behind.
#
#   check_corpus.sh SOURCE_DIR WORK_DIR
#
# WORK_DIR is emptied first. Needs Debian's `fortunes` package, or root to install it.
set -u
src=${1:?usage: check_corpus.sh SOURCE_DIR WORK_DIR}
work=${2:?usage: check_corpus.sh SOURCE_DIR WORK_DIR}
script=$src/scripts/make-corpus.sh
fortunes_root=/usr/share/games/fortunes

rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
out=$work/out
log=$work/run.log

fail() {
  echo "FAIL: $*" >&2
  if [ -f "$log" ]; then
    echo "----- make-corpus.sh output -----" >&2
    cat "$log" >&2
    echo "---------------------------------" >&2
  fi
  exit 1
}

size() { stat -c '%s' "$1"; }
sums() { (cd "$out" && sha256sum fortunes-train.bin fortunes-val.bin fortunes-manifest.txt fortunes.stamp); }

bash "$script" fortunes "$out" >"$log" 2>&1 || fail "make-corpus.sh fortunes exited with $?"
train=$out/fortunes-train.bin
val=$out/fortunes-val.bin
manifest=$out/fortunes-manifest.txt
for f in "$train" "$val" "$manifest" "$out/fortunes.stamp"; do
  [ -f "$f" ] || fail "no $f"
done
[ -s "$train" ] || fail "$train is empty"
[ -s "$val" ] || fail "$val is empty"
train_bytes=$(size "$train")
val_bytes=$(size "$val")
[ "$train_bytes" -ge $((5 * val_bytes)) ] ||
  fail "training ($train_bytes bytes) is less than 5x validation ($val_bytes bytes)"

bad=$(awk '!(NF >= 3 && ($1 == "train" || $1 == "val") && $2 ~ /^[0-9]+$/)' "$manifest")
[ -z "$bad" ] || fail "malformed manifest lines: $bad"
both=$(awk '{print $3}' "$manifest" | sort | uniq -d)
[ -z "$both" ] || fail "files in both splits (or listed twice): $both"
for split in train val; do
  bin=$out/fortunes-$split.bin
  listed=$(awk -v s="$split" '$1 == s {n += $2} END {printf "%d", n}' "$manifest")
  [ "$(size "$bin")" = "$listed" ] ||
    fail "$split: $bin has $(size "$bin") bytes, the manifest's $split files $listed"
  # The .bin is exactly the manifest's files, in the manifest's order.
  expect=$(awk -v s="$split" '$1 == s {print $3}' "$manifest" |
    (cd "$fortunes_root" && tr '\n' '\0' | xargs -0 cat --) | sha256sum | cut -d' ' -f1)
  [ "$(sha256sum <"$bin" | cut -d' ' -f1)" = "$expect" ] ||
    fail "$split: $bin is not the concatenation of its manifest files from $fortunes_root"
done
echo "fortunes corpus: train $train_bytes bytes in $(grep -c '^train ' "$manifest") files," \
  "val $val_bytes bytes in $(grep -c '^val ' "$manifest") files"

first=$(sums)
bash "$script" fortunes "$out" >"$log" 2>&1 || fail "second run exited with $?"
grep -q "up to date" "$log" || fail "second run did not say the corpus is up to date"
[ "$(sums)" = "$first" ] || fail "second run changed the files"

# A stamp that does not match: the corpus is made again, byte for byte the same.
echo "stale" >"$out/fortunes.stamp"
bash "$script" fortunes "$out" >"$log" 2>&1 || fail "rebuild exited with $?"
grep -q "up to date" "$log" && fail "a stale stamp was taken as up to date"
[ "$(sums)" = "$first" ] || fail "the rebuilt corpus differs from the first one"

for f in "$out"/* "$out"/.[!.]*; do
  case ${f##*/} in
    fortunes-train.bin | fortunes-val.bin | fortunes-manifest.txt | fortunes.stamp | '*' | '.[!.]*') ;;
    *) fail "left behind in $out: ${f##*/}" ;;
  esac
done
echo "PASS"
