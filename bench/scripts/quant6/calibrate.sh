#!/bin/bash
# Calibration files for the #6 table (bench/RESULTS.md, "KV quantization methods (#6)").
# Calibration text = the LAST 60,000 bytes of the TinyStories validation text, disjoint from the
# first 4096 tokens that kv-eval scores. One file per model / method / bit width / variant in $CAL.
# usage: bench/scripts/quant6/calibrate.sh [CAL_DIR]   (run from the repository root after mvn package)
set -u
CAL=${1:-/tmp/quant/cal}; mkdir -p $CAL
SHARED=${SHARED:-../shared}
J="${JAVA:-java} --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -jar dist/target/kvserve.jar"
tail -c 60000 $SHARED/data/tinystories_val.txt > $CAL/calib_260k.txt
tail -c 60000 $SHARED/data/tinystories_val_ascii.txt > $CAL/calib_656k.txt
declare -A MODEL=([260k]=$SHARED/models/stories260K.gguf [656k]=$SHARED/models/tinystories-656k/tinystories-656k-f32.gguf)
CFGS=()
for b in 4 3 2; do
  CFGS+=("kvquant kvq$b bits=$b" "kvquant kvq$b-noout bits=$b,outliers=0"
         "kvquant kvq$b-nofisher bits=$b,fisher=false" "kvquant kvq$b-noout-nofisher bits=$b,outliers=0,fisher=false")
done
CFGS+=("cq cq4c2b c=4,bits=2" "cq cq8c1b c=8,bits=1" "cq cq8c1b-nofisher c=8,bits=1,fisher=false"
       "aqua aqua2 bits=2" "aqua aqua2-first16 bits=2,first=fp16" "aqua aqua2-first2 bits=2,first=2")
for m in 260k 656k; do
  for cfg in "${CFGS[@]}"; do
    set -- $cfg
    s=$(date +%s.%N)
    $J calibrate -m ${MODEL[$m]} -f $CAL/calib_$m.txt --method $1 --params $3 -o $CAL/$m-$2.kvq -t 1 > $CAL/$m-$2.log 2>&1
    printf "%s\t%s\t%s\t%.1f s\trc=%d\n" $m $2 $3 $(echo "$(date +%s.%N) - $s" | bc) $? | tee -a $CAL/times.tsv
  done
done
