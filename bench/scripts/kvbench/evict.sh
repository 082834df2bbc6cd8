#!/bin/bash
# The #7 policies on kvbench-31m: first 4,096 tokens of TEXT in two windows of 2,048, the first
# 1,024 of each a prompt chunk, the rest decoded. usage: evict.sh NAME TEXT [MAX_TOKENS]
# (the tok/s column of RESULTS.md comes from a separate run with MAX_TOKENS=2048 on an idle machine)
set -u
. "$(dirname "$0")/common.sh"
n=$1 f=$2 max=${3:-4096}
KV="fp16"; for B in 0.25 0.5 128; do case $B in 0.25) H=0.125 S=0.25;; 0.5) H=0.25 S=0.5;; 128) H=64 S=124;; esac
  KV="$KV,fp16+sink:sinks=4,window=$S,fp16+l2:budget=$B,skip=none,fp16+hashevict:budget=$B,fp16+h2o:budget=$B,window=$H"
  KV="$KV,fp16+snapkv:budget=$B,fp16+d2o:budget=$B,window=$H,skip=none,fp16+quest:budget=$B,skip=none"
  KV="$KV,fp16+clusterkv:budget=$B,sinks=4,clusters=32,window=64,window_clusters=4,skip=none"; done
KV="$KV,fp16+l2:budget=0.5"
$J kv-eval -m $M -f $f --kv "$KV" --max-tokens $max --ctx 2048 --prefill 1024 -t 1 -o $OUT/evict-$n.json
