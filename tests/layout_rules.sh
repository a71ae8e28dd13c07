#!/usr/bin/env bash
# The tree's two rules (docs/architecture.md): each layer of src/fmattn includes only itself
# and the layers before it (util, core, parallel, model, io, app), and every Kokkos launch is in
# kernels/. Usage: layout_rules.sh SOURCE_DIR
set -euo pipefail
root=$1
layers=(util core parallel model io app)
status=0
for i in "${!layers[@]}"; do
  layer=${layers[$i]}
  allowed=("${layers[@]:0:$((i + 1))}")
  while IFS= read -r line; do
    used=$(sed -E 's|.*#include <fmattn/([a-z]+)/.*|\1|' <<<"${line#*:}")
    [[ $used == version.hpp* ]] && continue
    if [[ " ${allowed[*]} " != *" $used "* ]]; then
      echo "layer $layer includes layer $used (allowed: ${allowed[*]}): $line"
      status=1
    fi
  done < <(grep -Hn '#include <fmattn/[a-z]*/' "$root"/src/fmattn/"$layer"/* || true)
done
if launches=$(grep -rnE 'Kokkos::parallel_(for|reduce|scan)' "$root/src" "$root/bench" --include='*.cpp' --include='*.hpp'); then
  echo "Kokkos launches outside kernels/:"
  echo "$launches"
  status=1
fi
if kernels_in_public=$(grep -rln '#include "kernels/' "$root"/src/fmattn/*/*.hpp); then
  echo "public headers that include internal kernel headers:"
  echo "$kernels_in_public"
  status=1
fi
[[ $status == 0 ]] && echo "layout rules hold"
exit $status
