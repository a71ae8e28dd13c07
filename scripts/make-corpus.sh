#!/usr/bin/env bash
# Byte corpora for training byte-level language models, made from Debian packages: the chosen
# files of a package concatenated, split into training and validation by source file.
#
#   scripts/make-corpus.sh fortunes|linux [OUTDIR]
#
#   fortunes  the plain-text fortune files of Debian's `fortunes` package (not the .dat index
#             files, not the .u8 links): ~2.5 MB.
#   linux     ~100 MB (100,000,000 bytes, the size of enwik8) of C source (*.c, *.h) from the
#             `linux-source-6.1` package's tarball: files taken in the order of the hash of
#             their path until the total reaches 100 MB, so the sample spans the whole tree
#             (the order skips the hash's first byte, which decides the split: ordered by the
#             whole hash, the first 10% of the files would all be validation files).
#             Made on demand only: the package is a ~150 MB download.
#
# OUTDIR (default `data`, relative to the working directory) gets
#   <name>-train.bin, <name>-val.bin  raw bytes: the files of each split concatenated in
#                                     sorted (LC_ALL=C) path order
#   <name>-manifest.txt               one line per file, in the same order: split, byte count,
#                                     path relative to the package's root (the fortunes
#                                     folder, or the tarball's top folder)
#   <name>.stamp                      the corpus version and the package version it was made
#                                     from; a run whose stamp matches does nothing
# Split rule: a file goes to validation when the first byte of sha256(relative path) is below
# 26 (the first two hex digits < 0x1a, 26/256 = 10.2% of the files), to training otherwise; a
# file is never in both. A corpus with no validation (or no training) file is an error.
#
# A missing package is installed when run as root (apt-get, no recommends); otherwise the
# script says which package to install. Outputs are written under temporary names and renamed
# into place, so an interrupted run never leaves a truncated corpus.
set -euo pipefail
export LC_ALL=C

corpus_version=1
val_below=26              # first byte of sha256(path) below this: validation
linux_target=100000000    # bytes of C source in the linux corpus (enwik8's size)
fortunes_root=/usr/share/games/fortunes

log() { echo "[corpus] $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
  echo "usage: $0 fortunes|linux [OUTDIR]" >&2
  exit 2
}

(($# >= 1 && $# <= 2)) || usage
name=$1
outdir=${2:-data}
case $name in
  fortunes) pkg=fortunes ;;
  linux) pkg=linux-source-6.1 ;;
  *) usage ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

ensure_package() {
  installed "$1" && return 0
  if ((EUID != 0)); then
    die "Debian package '$1' is not installed; install it (as root): apt-get install --no-install-recommends $1"
  fi
  log "installing Debian package $1"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1; then
    log "apt-get install $1 failed; updating the package lists and trying again"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$1" >/dev/null
  fi
  installed "$1" || die "could not install Debian package '$1'"
}

# Reads paths, one a line, and writes "<sha256 hex of the path> <path>" for each, in order.
hash_paths() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c '
import hashlib, sys
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    path = line.rstrip(b"\n")
    out.write(hashlib.sha256(path).hexdigest().encode() + b" " + path + b"\n")
'
  else
    local path
    while IFS= read -r path; do
      printf '%s %s\n' "$(printf '%s' "$path" | sha256sum | cut -c1-64)" "$path"
    done
  fi
}

ensure_package "$pkg"
pkg_version=$(dpkg-query -W -f='${Version}' "$pkg")
stamp_value="make-corpus v$corpus_version $name: $pkg $pkg_version, validation sha256(path) < $val_below/256"

train=$outdir/$name-train.bin
val=$outdir/$name-val.bin
manifest=$outdir/$name-manifest.txt
stamp=$outdir/$name.stamp
if [[ -f $train && -f $val && -f $manifest && -f $stamp && $(cat "$stamp") == "$stamp_value" ]]; then
  log "$name corpus in $outdir is up to date ($pkg $pkg_version)"
  exit 0
fi

mkdir -p "$outdir"
# Temporaries live in OUTDIR, so that the final renames stay within one file system.
work=$(mktemp -d "$(cd "$outdir" && pwd)/.$name-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- the chosen files: $work/chosen holds their paths relative to $root, sorted.
case $name in
  fortunes)
    root=$fortunes_root
    dpkg -L "$pkg" | while IFS= read -r path; do
      if [[ $path == "$root"/* && $path != *.dat && -f $path && ! -L $path ]]; then
        printf '%s\n' "${path#"$root"/}"
      fi
    done | sort -u >"$work/chosen"
    ;;
  linux)
    tarball=$(dpkg -L "$pkg" | grep -E '^/usr/src/[^/]+\.tar\.(xz|bz2|gz)$' | head -n 1 || true)
    [[ -n $tarball && -f $tarball ]] || die "no source tarball under /usr/src in package $pkg (dpkg -L $pkg)"
    log "listing the C sources in $tarball"
    # Regular files named *.c or *.h (plain names only: no spaces or quoting) below one top folder.
    tar -tvf "$tarball" |
      awk 'substr($1, 1, 1) == "-" && NF == 6 && $6 ~ /^[^\/]+\/[A-Za-z0-9._+,\/-]+\.[ch]$/ {print $3, $6}' \
        >"$work/members"
    [[ -s $work/members ]] || die "no *.c or *.h files in $tarball"
    top=$(head -n 1 "$work/members" | cut -d' ' -f2 | cut -d/ -f1)
    awk -v top="$top" 'index($2, top "/") != 1 {exit 1}' "$work/members" ||
      die "$tarball has more than one top folder"
    # "size relpath", then "key size relpath" ordered by key, then path, where the key is
    # sha256(relpath) without its first byte (hex digits 3-64): independent of the split.
    sed "s| $top/| |" "$work/members" >"$work/sized"
    cut -d' ' -f2- "$work/sized" | hash_paths >"$work/hashed"
    paste -d' ' "$work/hashed" "$work/sized" | awk '{print substr($1, 3), $3, $2}' | sort -k1,1 -k3,3 >"$work/ordered"
    awk -v target="$linux_target" 'total >= target {exit} {print $3; total += $2}' "$work/ordered" |
      sort >"$work/chosen"
    log "extracting $(wc -l <"$work/chosen") of $(wc -l <"$work/members") C files"
    mkdir "$work/src"
    sed "s|^|$top/|" "$work/chosen" >"$work/extract"
    tar -xf "$tarball" -C "$work/src" --no-wildcards --verbatim-files-from -T "$work/extract"
    root=$work/src/$top
    ;;
esac
[[ -s $work/chosen ]] || die "no files found for the $name corpus in package $pkg"

# --- the split and the manifest, in sorted path order.
(cd "$root" && tr '\n' '\0' <"$work/chosen" | xargs -0 -r stat -c '%s') >"$work/sizes"
hash_paths <"$work/chosen" | paste -d' ' "$work/sizes" - >"$work/sized-hashed"
while read -r size hash path; do
  if ((16#${hash:0:2} < val_below)); then split="val"; else split="train"; fi
  printf '%s %s %s\n' "$split" "$size" "$path"
done <"$work/sized-hashed" >"$work/manifest"

declare -A files bytes
for split in train val; do
  grep "^$split " "$work/manifest" | cut -d' ' -f3- | tr '\n' '\0' >"$work/$split.list" || true
  (cd "$root" && xargs -0 -r cat -- <"$work/$split.list") >"$work/$split.bin"
  files[$split]=$(grep -c "^$split " "$work/manifest" || true)
  bytes[$split]=$(stat -c '%s' "$work/$split.bin")
  expected=$(awk -v s="$split" '$1 == s {n += $2} END {printf "%d", n}' "$work/manifest")
  ((bytes[$split] == expected)) || die "$split: wrote ${bytes[$split]} bytes, the manifest says $expected"
done
((files[val] > 0)) || die "the split rule (sha256(path) < $val_below/256) put none of the ${files[train]} files of the $name corpus in validation"
((files[train] > 0)) || die "the split rule put all of the ${files[val]} files of the $name corpus in validation"

# --- into place: the stamp goes first and comes back last, so a run stopped in between is redone.
rm -f "$stamp"
mv -f "$work/train.bin" "$train"
mv -f "$work/val.bin" "$val"
mv -f "$work/manifest" "$manifest"
echo "$stamp_value" >"$work/stamp"
mv -f "$work/stamp" "$stamp"

log "$name corpus from $pkg $pkg_version in $outdir:"
log "  train: ${bytes[train]} bytes in ${files[train]} files ($train)"
log "  val:   ${bytes[val]} bytes in ${files[val]} files ($val)"
