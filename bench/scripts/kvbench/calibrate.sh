#!/bin/bash
# Calibration files of the #6 kvbench-31m table: 8 sequences × 512 tokens from the LAST 400 KB of
# the training pack's valid.txt (kv-eval scores the first 4,096 tokens: disjoint). One file per
# method / bit width / variant in $OUT/cal, with wall times in $OUT/cal/times.tsv.
set -u
. "$(dirname "$0")/common.sh"
tail -c 400000 $OUT/valid.txt > $CAL/calib.txt
CFGS=()
for b in 4 3 2; do CFGS+=("kvquant kvq$b bits=$b" "kvquant kvq$b-noout bits=$b,outliers=0" "kvquant kvq$b-nofisher bits=$b,fisher=false"); done
CFGS+=("cq cq4c2b c=4,bits=2" "cq cq8c1b c=8,bits=1" "cq cq8c1b-nofisher c=8,bits=1,fisher=false"
       "aqua aqua2 bits=2" "aqua aqua2-first16 bits=2,first=fp16")
for cfg in "${CFGS[@]}"; do
  set -- $cfg
  s=$(date +%s.%N)
  $J calibrate -m $M -f $CAL/calib.txt --method $1 --params $3 --sequences 8 -o $CAL/$2.kvq -t 1 > $CAL/$2.log 2>&1
  rc=$?
  printf "%s\t%s\t%.1f s\trc=%d\n" $2 $3 $(echo "$(date +%s.%N) - $s" | bc) $rc | tee -a $CAL/times.tsv
done
