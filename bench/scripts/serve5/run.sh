#!/bin/bash
# bench serve figures for issue #5 (bench/RESULTS.md, "Serving"); run from the repository root: fp16 vs int4 at concurrency 1/4/16, then admission under one budget.
J="${KVSERVE:-./kvserve}"
OUT=${OUT:-/tmp/serve5}; mkdir -p $OUT; rm -f $OUT/*.csv
start() { $J serve --port 8091 -t 2 "$@" > $OUT/server.log 2>&1 & SP=$!; for i in $(seq 100); do curl -sf localhost:8091/health >/dev/null && return; sleep 0.5; done; echo "server did not start"; cat $OUT/server.log; }
stop() { kill $SP; wait $SP 2>/dev/null; }
# Throughput/latency: 256 MiB budget (nothing waits on memory), each policy by the request's kv_policy.
start --kv-budget 256MiB --max-batch 32
for kv in fp16 int4:group=8; do for c in 1 4 16; do
  n=$(( c < 4 ? 8 : 4*c ))
  echo "=== $kv c=$c"; $J bench serve --url http://127.0.0.1:8091 --kv $kv -c $c -n $n --prompt-len 128 --gen-len 128 -o $OUT/throughput.csv 2>/dev/null | grep -v WARNING
done; done
stop
# Admission: one small budget, more clients than it holds.
for kv in fp16 int8:group=8 int4:group=8; do
  start --kv-budget 1536KiB --max-batch 64 --kv $kv
  echo "=== admission $kv"; $J bench serve --url http://127.0.0.1:8091 -c 48 -n 48 --prompt-len 128 --gen-len 128 -o $OUT/admission.csv 2>/dev/null | grep -v WARNING
  stop
done
