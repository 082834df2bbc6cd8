#!/usr/bin/env bash
# Runs on the GPU machine (CUDA driver, no Java, no Maven), from the repository root, after
# bench/gpu-prepare.sh built .gpu/ here and the device tool carried it:
#
#   tar xzf .gpu/jre.tgz -C /tmp && bench/gpu-check.sh [CudaDecodeBench options]
#
# 1. the CUDA tests on the real device: driver binding, kernel catalog against the PTX, every
#    kernel against its scalar reference, the CUDA backend against the CPU backend, Backends.select;
#    emulator variants are not run (-Dkvserve.test.devices=cuda), so nothing may be skipped;
# 2. the decode benchmark (CudaDecodeBench; defaults: llama3-8b shape, Q4_K and Q8_0 weights,
#    F16/INT8/INT4 KV, batch 1/8/32, context 512/4096).
# Results go to $OUT (the device tool's folder; /tmp/gpu-check otherwise): tests.txt, junit/*.xml,
# bench.txt, bench.log, gpu.txt. Exit status: the tests'.
set -uo pipefail
JAVA=${JAVA:-/tmp/jre/bin/java}
[ -x "$JAVA" ] || { tar xzf .gpu/jre.tgz -C /tmp && JAVA=/tmp/jre/bin/java; }
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
g=.gpu/extra/gpu-check
cp=$(ls .gpu/app/*.jar | grep -E 'kvserve-(native|kernels)' | tr '\n' ':')
cp="$cp$g/native-test-classes:$g/kernels-test-classes:$g/lib/assertj-core.jar"
flags="--enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector -Xmx16g"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true; } | tee "$out/gpu.txt"

"$JAVA" $flags -Dkvserve.test.devices=cuda -jar "$g/lib/junit-platform-console-standalone.jar" execute \
  --class-path "$cp" --disable-banner --disable-ansi-colors --details=tree --reports-dir "$out/junit" \
  --select-class dev.kvserve.nativ.cuda.CudaProbeTest \
  --select-class dev.kvserve.nativ.cuda.KernelArgsTest \
  --select-class dev.kvserve.kernels.cuda.KernelCatalogTest \
  --select-class dev.kvserve.kernels.cuda.CudaBackendOpsTest \
  --select-class dev.kvserve.kernels.cuda.CudaKvKernelsTest \
  --select-class dev.kvserve.kernels.cuda.CudaVsCpuBackendTest \
  --select-class dev.kvserve.kernels.BackendsTest 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}
# On a GPU machine every selected test must run: an aborted (skipped) one means the device was not usable.
aborted=$(sed -n 's/.*\[ *\([0-9][0-9]*\) tests aborted.*/\1/p' "$out/tests.txt")
if [ "${aborted:-0}" != "0" ]; then
  echo "gpu-check: $aborted tests were skipped; see their reasons in $out/tests.txt" >&2
  [ "$tests" = "0" ] && tests=3
fi

"$JAVA" $flags -cp "$cp" dev.kvserve.kernels.cuda.CudaDecodeBench --out "$out/bench.txt" "$@" 2>&1 | tee "$out/bench.log"
exit "$tests"
