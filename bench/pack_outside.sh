#!/usr/bin/env bash
# pack_outside.sh PACK LOG [ERE]: the files that LOG (a program's LD_DEBUG=files output) shows it
# loaded from outside PACK, one per line, other than glibc's own libraries and paths matching
# ERE. What bench/device_pack.sh and tests/cli/pack.sh check a packed program against.
set -euo pipefail
pack=$(cd "$1" && pwd) log=$2 allowed=${3:-^$}
grep -o 'file=/[^ ]*' "$log" | sed 's/^file=//' | sort -u | grep -v "^$pack/" |
  grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux-x86-64)\.so[.0-9]*$' | grep -vE "$allowed" || true
