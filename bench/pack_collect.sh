#!/usr/bin/env bash
# Packs executables with what they need to start on a machine that lacks this one's MPI, HDF5,
# yaml-cpp and Kokkos libraries (a GPU node, say):
#
#   bash bench/pack_collect.sh [--check CORPUS] PACK EXE...
#
# PACK/bin: the executables, stripped. PACK/lib: every shared library they load except glibc's
# own and NVIDIA's driver and toolkit libraries (the GPU node has those, and cuBLAS alone is
# larger than a pack may be). PACK/lib/openmpi, share/openmpi, etc/openmpi: Open MPI's plug-ins,
# help texts and defaults, when the executables use Open MPI; plug-ins for network fabrics
# (UCX, libfabric, verbs, PSM) are left out: a pack runs as one rank on one node. PACK/run.sh
# runs a packed program with the environment that makes the loader and Open MPI use the pack.
# --check CORPUS adds what bench/device_run.sh needs: that script, bench/sdpa_bench.py, the study
# model's deck and 2 MiB of CORPUS-train.bin and 256 KiB of CORPUS-val.bin (a step rate does not
# depend on the bytes).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "[pack] error: $*" >&2; exit 2; }
corpus=
if [[ ${1:-} == --check ]]; then
  corpus=${2:?--check needs a corpus prefix}
  shift 2
  [[ -f $corpus-train.bin && -f $corpus-val.bin ]] || die "no $corpus-train.bin and $corpus-val.bin"
fi
(($# >= 2)) || { echo "usage: pack_collect.sh [--check CORPUS] PACK EXE..." >&2; exit 2; }
pack=$1
shift

# Libraries the target machine provides: glibc's, and NVIDIA's driver and CUDA toolkit.
system_lib='^(ld-linux.*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libcuda|libcudart|libcublas|libcublasLt|libnvidia-.*|libnvJitLink|libnvrtc)\.so'
fabric_dep='lib(uc[pmst]|fabric|ibverbs|rdmacm|psm|psm2|psm_infinipath|infinipath|mlx[0-9]|hcoll|xpmem|knem)[.-]'

rm -rf "$pack"
mkdir -p "$pack/bin" "$pack/lib"
declare -A seen=()

# copy_deps FILE: the libraries FILE loads (ldd: recursively) into PACK/lib.
copy_deps() {
  local line name path
  while read -r line; do
    [[ $line == *"=>"* ]] || continue
    name=${line%% =>*}
    name=${name//[[:space:]]/}
    path=$(sed -E 's/.*=> ([^ ]*).*/\1/' <<<"$line")
    [[ $name =~ $system_lib ]] && continue
    [[ $path == not ]] && die "$1 needs $name, which is not found here"
    [[ -n ${seen[$name]:-} ]] && continue
    seen[$name]=1
    cp -L "$path" "$pack/lib/$name"
    chmod u+w "$pack/lib/$name"
    strip --strip-unneeded "$pack/lib/$name"
  done < <(ldd "$1")
}

uses_openmpi=0
for exe in "$@"; do
  [[ -x $exe ]] || die "$exe is not an executable"
  cp "$exe" "$pack/bin/"
  strip --strip-unneeded "$pack/bin/$(basename "$exe")"
  copy_deps "$exe"
  [[ $(ldd "$exe") == *libopen-pal* ]] && uses_openmpi=1
done

if ((uses_openmpi)); then
  command -v ompi_info >/dev/null || die "the executables use Open MPI but ompi_info is not on PATH"
  ompi_dir() { ompi_info --path "$1" | sed -nE 's/^ *[A-Za-z]+: (.*)$/\1/p' | head -n 1; }
  plugins=$(ompi_dir pkglibdir)
  mkdir -p "$pack/lib/openmpi" "$pack/share/openmpi" "$pack/etc/openmpi"
  for plugin in "$plugins"/mca_*.so; do
    [[ $(ldd "$plugin") =~ $fabric_dep ]] && continue
    cp -L "$plugin" "$pack/lib/openmpi/"
    copy_deps "$plugin"
  done
  cp "$(ompi_dir pkgdatadir)"/*.txt "$pack/share/openmpi/"
  cp "$(ompi_dir sysconfdir)"/*.conf "$pack/etc/openmpi/" 2>/dev/null || true
fi

cat >"$pack/run.sh" <<'EOF'
#!/usr/bin/env bash
# bash run.sh PROGRAM [ARGS...]: runs bin/PROGRAM (or any program) with the pack's libraries
# and Open MPI's plug-ins; one rank (a singleton: no mpiexec is needed or packed).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# cuBLAS and the CUDA runtime come from the machine: its CUDA toolkit, wherever the loader
# does not find them already.
cuda_lib=
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.'; then
  for dir in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d $dir ]] && cuda_lib=$dir && break
  done
fi
export LD_LIBRARY_PATH=$here/lib${cuda_lib:+:$cuda_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OPAL_PKGLIBDIR=$here/lib/openmpi OPAL_PKGDATADIR=$here/share/openmpi OPAL_SYSCONFDIR=$here/etc/openmpi
export OMPI_MCA_mca_base_component_path=$here/lib/openmpi
# hwloc's plug-ins (GL, OpenCL, PCI, XML) are not packed; it finds the topology without them.
export HWLOC_PLUGINS_PATH=$here/lib/hwloc
# No orted to start and no network fabric to look for: one rank on one node.
export OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
(($# >= 1)) || { echo "usage: run.sh PROGRAM [ARGS...] (programs: $(ls "$here/bin" | tr '\n' ' '))" >&2; exit 2; }
program=$1
shift
[[ $program != */* && -x $here/bin/$program ]] && program=$here/bin/$program
exec "$program" "$@"
EOF
chmod +x "$pack/run.sh"
if [[ -n $corpus ]]; then
  cp "$root/bench/device_run.sh" "$root/bench/sdpa_bench.py" "$pack/"
  mkdir -p "$pack/share"
  cp "$root/inputs/train-study.yaml" "$pack/share/"
  head -c 2097152 "$corpus-train.bin" >"$pack/share/train.bin"
  head -c 262144 "$corpus-val.bin" >"$pack/share/val.bin"
fi
echo "[pack] $pack: $# executables, $(find "$pack/lib" -name '*.so*' | wc -l) libraries and plug-ins," \
  "$(du -sh "$pack" | cut -f1)" >&2
