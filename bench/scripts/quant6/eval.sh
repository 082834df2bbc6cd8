#!/bin/bash
# kv-eval of every #6 policy on one model and text: first 4096 tokens, windows of 512, 1 thread.
# usage: bench/scripts/quant6/eval.sh 260k|656k TEXT_FILE OUT.json [CAL_DIR]
set -u
m=$1 TEXT=$2 OUTJ=$3 CAL=${4:-/tmp/quant/cal}
SHARED=${SHARED:-../shared}
case $m in 260k) MODEL=$SHARED/models/stories260K.gguf ;; 656k) MODEL=$SHARED/models/tinystories-656k/tinystories-656k-f32.gguf ;; esac
C=$CAL/$m
KV=(fp16 int4 int3 kivi:bits=2 kivi:bits=2,residual=0 kivi:bits=4,residual=0)
for b in 4 3 2; do for v in "" -noout -nofisher -noout-nofisher; do KV+=("kvquant:calib=$C-kvq$b$v.kvq"); done; done
KV+=("cq:calib=$C-cq4c2b.kvq" "cq:calib=$C-cq8c1b.kvq" "cq:calib=$C-cq8c1b-nofisher.kvq"
     "aqua:calib=$C-aqua2.kvq" "aqua:calib=$C-aqua2.kvq,buffer=16" "aqua:calib=$C-aqua2-first16.kvq"
     "aqua:calib=$C-aqua2-first2.kvq" "aqua:calib=$C-aqua2-first2.kvq,buffer=16"
     "kvquant:calib=$C-kvq4.kvq+sink:sinks=4,window=128" "fp16+sink:sinks=4,window=128")
args=(); for p in "${KV[@]}"; do args+=(--kv "$p"); done
${JAVA:-java} --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -jar dist/target/kvserve.jar \
  kv-eval --backend cpu -m $MODEL -f $TEXT "${args[@]}" --max-tokens 4096 --ctx 512 -t 1 -o $OUTJ
