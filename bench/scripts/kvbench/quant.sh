#!/bin/bash
# The #6 policies on kvbench-31m: first 4,096 tokens of TEXT in two windows of 2,048 (the model's
# context), every token a decode step. usage: quant.sh NAME TEXT   (after calibrate.sh)
set -u
. "$(dirname "$0")/common.sh"
n=$1 f=$2
KV=(fp16 int8 int4 int3 kivi:bits=2 kivi:bits=2,residual=0 kivi:bits=4,residual=0)
for b in 4 3 2; do for v in "" -noout -nofisher; do KV+=("kvquant:calib=$CAL/kvq$b$v.kvq"); done; done
KV+=("cq:calib=$CAL/cq4c2b.kvq" "cq:calib=$CAL/cq8c1b.kvq" "cq:calib=$CAL/cq8c1b-nofisher.kvq"
     "aqua:calib=$CAL/aqua2.kvq" "aqua:calib=$CAL/aqua2.kvq,buffer=16" "aqua:calib=$CAL/aqua2-first16.kvq"
     "kvquant:calib=$CAL/kvq4.kvq+sink:sinks=4,window=128" "fp16+sink:sinks=4,window=128")
args=(); for p in "${KV[@]}"; do args+=(--kv "$p"); done
$J kv-eval -m $M -f $f "${args[@]}" --max-tokens 4096 --ctx 2048 -t 1 -o $OUT/quant-$n.json
