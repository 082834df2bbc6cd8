#!/usr/bin/env bash
# Compiles src/main/cuda/*.cu to PTX for sm_80 (Ampere) and sm_90 (Hopper) into the resources that
# the CUDA backend loads with cuModuleLoadData. The PTX is committed, so machines without nvcc (CI,
# GPU hosts with only a driver) still run the kernels; this script only has to run after a .cu or
# .cuh file changes. SOURCES.sha256 next to the PTX records which sources it was built from; a test
# (PtxResourcesTest) fails when it no longer matches.
#
#   ./build-ptx.sh           rebuild when the sources changed (the Maven profile runs this)
#   ./build-ptx.sh --force   rebuild unconditionally
#   ./build-ptx.sh --check   exit 1 when the committed PTX is stale, build nothing
#
# The PTX ISA version written by nvcc (9.0 for CUDA 13) is lowered to $PTX_ISA (default 8.0, which
# drivers of CUDA 12.0 and later, r525+, can JIT) when ptxas accepts the file at that version, so an
# older driver than the toolkit's still loads the modules.
# Exits 0 without building when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-}
src=src/main/cuda
res=src/main/resources/dev/kvserve/nativ/cuda/ptx
archs="80 90"
isa=${PTX_ISA:-8.0}

stamp() {
  (cd "$src" && for f in $(ls | LC_ALL=C sort); do printf '%s\n' "$f"; cat "$f"; done) | sha256sum | cut -d' ' -f1
}
current=$(stamp)
recorded=$(cat "$res/SOURCES.sha256" 2>/dev/null || true)

if [ "$mode" = "--check" ]; then
  if [ "$current" = "$recorded" ]; then echo "build-ptx: PTX up to date"; exit 0; fi
  echo "build-ptx: PTX is stale (sources $current, PTX built from ${recorded:-nothing}); run native/build-ptx.sh" >&2
  exit 1
fi

nvcc=${NVCC:-$(command -v nvcc 2>/dev/null || true)}
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
  echo "build-ptx: nvcc not found; keeping the committed PTX"
  exit 0
fi
ptxas=$(dirname "$(readlink -f "$nvcc")")/ptxas
[ -x "$ptxas" ] || ptxas=$(command -v ptxas || true)

if [ "$mode" != "--force" ] && [ "$current" = "$recorded" ]; then
  exit 0   # up to date
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for a in $archs; do
  mkdir -p "$res/sm_$a"
  for cu in "$src"/*.cu; do
    name=$(basename "$cu" .cu)
    "$nvcc" -ptx -arch=compute_$a -O3 -std=c++17 -Xptxas -warn-spills -o "$tmp/$name.ptx" "$cu"
    sed -E "s/^\.version [0-9]+\.[0-9]+$/.version $isa/" "$tmp/$name.ptx" > "$tmp/$name.low.ptx"
    if [ -n "$ptxas" ] && "$ptxas" -arch=sm_$a "$tmp/$name.low.ptx" -o /dev/null 2> "$tmp/ptxas.log"; then
      mv "$tmp/$name.low.ptx" "$res/sm_$a/$name.ptx"
    else
      echo "build-ptx: $name.ptx for sm_$a kept at nvcc's PTX version ($(cat "$tmp/ptxas.log" 2>/dev/null | head -3))" >&2
      [ -n "$ptxas" ] && "$ptxas" -arch=sm_$a "$tmp/$name.ptx" -o /dev/null
      mv "$tmp/$name.ptx" "$res/sm_$a/$name.ptx"
    fi
  done
done
echo "$current" > "$res/SOURCES.sha256"
echo "build-ptx: $("$nvcc" --version | tail -1) -> $res (sm_${archs// /, sm_}), PTX ISA $isa"
