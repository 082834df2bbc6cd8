#!/usr/bin/env bash
# Compiles src/main/c/cpu_kernels.c into the resource the CPU backend loads for its int8 Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q6_K
# matmuls (dev/kvserve/nativ/cpu/linux-x86_64/libkvserve_cpu.so). The library is committed, so
# machines without a C compiler still use it; this script only has to run after src/main/c changes.
# SOURCES.sha256 next to it records which sources it was built from; CpuKernelsResourceTest fails
# when it no longer matches. The library has no dependencies (not even libc) and picks AVX-512 VNNI
# or AVX2 at run time, so one file serves every x86-64 Linux machine.
#
#   ./build-cpu.sh           rebuild when the sources changed (the Maven profile runs this)
#   ./build-cpu.sh --force   rebuild unconditionally
#   ./build-cpu.sh --check   exit 1 when the committed library is stale, build nothing
#
# Exits 0 without building when there is no gcc or this is not x86-64.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-}
src=src/main/c
res=src/main/resources/dev/kvserve/nativ/cpu/linux-x86_64

stamp() {
  (cd "$src" && for f in $(ls | LC_ALL=C sort); do printf '%s\n' "$f"; cat "$f"; done) | sha256sum | cut -d' ' -f1
}
current=$(stamp)
recorded=$(cat "$res/SOURCES.sha256" 2>/dev/null || true)

if [ "$mode" = "--check" ]; then
  if [ "$current" = "$recorded" ]; then echo "build-cpu: libkvserve_cpu.so up to date"; exit 0; fi
  echo "build-cpu: libkvserve_cpu.so is stale (sources $current, built from ${recorded:-nothing}); run native/build-cpu.sh" >&2
  exit 1
fi
cc=${CC:-gcc}
if ! command -v "$cc" >/dev/null 2>&1 || [ "$(uname -m)" != x86_64 ]; then
  echo "build-cpu: no $cc for x86-64 here; keeping the committed libkvserve_cpu.so"
  exit 0
fi
if [ "$mode" != "--force" ] && [ "$current" = "$recorded" ]; then
  exit 0   # up to date
fi
mkdir -p "$res"
"$cc" -std=c11 -O2 -fPIC -shared -nostdlib -fvisibility=hidden -fno-asynchronous-unwind-tables \
  -Wall -Wextra -Werror -Wl,--build-id=none -Wl,-z,noexecstack -o "$res/libkvserve_cpu.so.tmp" "$src"/*.c -lgcc
mv "$res/libkvserve_cpu.so.tmp" "$res/libkvserve_cpu.so"
echo "$current" > "$res/SOURCES.sha256"
echo "build-cpu: $("$cc" --version | head -1) -> $res/libkvserve_cpu.so"
