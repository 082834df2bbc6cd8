#!/usr/bin/env bash
# kvserve vs llama.cpp built from source (the peer in ../shared/peers/llama.cpp), side by side on the
# same synthetic GGUF files, on this machine, the two programs alternating round by round so that
# load on a shared machine hits both alike. One command, every table of the speed issues:
#
#   bench/scripts/llamacpp/compare.sh                      # bench + long + serve sections, defaults below
#   SECTIONS=bench MODELS="smollm2-135m:q4_k_m" bench/scripts/llamacpp/compare.sh
#
# Sections (SECTIONS, space-separated):
#   bench  pp$P and tg$N per file: `kvserve bench` vs `llama-bench` (f16 KV, empty cache)
#   long   pp$LONG per file: `kvserve bench -p $LONG -n 0` vs `llama-bench -p $LONG -n 0 -fa 1`
#   serve  output tok/s, TPOT and TTFT at concurrency $CONC: `kvserve serve` vs `llama-server -np 16 -fa on`,
#          both driven by the same load generator (`kvserve bench serve`, prompt ~$SP tokens, $SG out)
#   depth  tg$DN after $DEPTH tokens in the cache, per KV policy: `kvserve bench -p 0 -n $DN -d $DEPTH --kv K`
#          for K in $DEPTH_KV vs `llama-bench -p 0 -n $DN -d $DEPTH -fa 1 -ctk T -ctv T` for T in f16 q8_0 q4_0
#          (each policy against the peer's f16 cache and its matching type: fp16-f16, int8-q8_0, int4-q4_0)
#   batched aggregate tg of $BB sequences decoding together at depth $BD: `kvserve bench -p 0 -n $BN -d $BD
#          --batch $BB --kv K` for K in $BATCH_KV vs `llama-batched-bench -npp $BD -ntg $BN -npl $BB` (its S_TG),
#          with an f16 cache and with q4_0 (-fa on)
# Files: MODELS is a list of LIKE:TYPE with LIKE a `kvserve synth --like` preset and TYPE q8_0, q4_0,
# q4_k, q6_k, f16 (written by `kvserve synth`) or a llama-quantize preset such as q4_k_m, q5_k_m
# (quantized by the peer's llama-quantize from a `kvserve synth --type f16` file, fallbacks included).
# The peer is built once by its build.sh (~12 min on 2 cores) into $PEER.
# Output: one markdown table per section on stdout, every raw figure under $OUT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SHARED=${SHARED:-"$ROOT/../shared"}
PEER=${PEER:-/tmp/llama.cpp-peer}
OUT=${OUT:-/tmp/kvserve-vs-llamacpp}
SECTIONS=${SECTIONS:-"bench long serve"}   # also: depth batched
MODELS=${MODELS:-"smollm2-135m:q8_0 smollm2-135m:q4_0 smollm2-135m:q4_k_m smollm2-135m:q5_k_m llama-3.2-1b:q8_0 llama-3.2-1b:q4_0 llama-3.2-1b:q4_k_m llama-3.2-1b:q5_k_m"}
SERVE_MODELS=${SERVE_MODELS:-"smollm2-135m:q8_0 smollm2-135m:q4_k_m"}
LONG_MODELS=${LONG_MODELS:-"smollm2-135m:q8_0 llama-3.2-1b:q4_0"}
THREADS=${THREADS:-2}
P=${P:-512}; N=${N:-64}; LONG=${LONG:-3584}
R=${R:-3}            # repetitions inside one program run
ROUNDS=${ROUNDS:-2}  # alternations kvserve / llama.cpp
CONC=${CONC:-"1 4 16"}; SP=${SP:-128}; SG=${SG:-64}; SN=${SN:-32}
DEPTH_MODELS=${DEPTH_MODELS:-"smollm2-135m:q8_0 llama-3.2-1b:q4_0"}
DEPTH=${DEPTH:-4096}; DN=${DN:-64}; DEPTH_KV=${DEPTH_KV:-"fp16 int8 int4 kivi:bits=2"}; DEPTH_PEER_KV=${DEPTH_PEER_KV:-"f16 q8_0 q4_0"}
BATCH_MODELS=${BATCH_MODELS:-"smollm2-135m:q8_0 llama-3.2-1b:q4_0"}
BD=${BD:-2048}; BN=${BN:-64}; BB=${BB:-16}; BATCH_KV=${BATCH_KV:-"int4 fp16"}; BATCH_PEER_KV=${BATCH_PEER_KV:-"f16 q4_0"}
BATCH_CTX=${BATCH_CTX:-40000}   # llama-batched-bench -c: must hold BB x (BD + BN) tokens
mkdir -p "$OUT"

bash "$SHARED/peers/llama.cpp/build.sh" "$PEER" >&2
KV="$ROOT/kvserve"

# ---------------------------------------------------------------- files
model_file() {   # LIKE:TYPE -> path (made on first use)
  local like=${1%%:*} type=${1##*:} f
  f="$OUT/$like-$type.gguf"
  if [ ! -f "$f" ]; then
    case "$type" in
      f32|f16|q8_0|q4_0|q4_k|q6_k) "$KV" synth --like "$like" --type "$type" -o "$f" >&2 ;;
      *) local src="$OUT/$like-f16.gguf"
         [ -f "$src" ] || "$KV" synth --like "$like" --type f16 -o "$src" >&2
         "$PEER/bin/llama-quantize" "$src" "$f" "${type^^}" >"$OUT/quantize-$like-$type.log" 2>&1 ;;
    esac
  fi
  echo "$f"
}

# ---------------------------------------------------------------- bench / long
# Appends "model<TAB>program<TAB>round<TAB>test<TAB>tok/s" rows to $1.
run_bench() {   # results model-spec pp tg fa
  local results=$1 spec=$2 p=$3 n=$4 fa=$5 f round
  f=$(model_file "$spec")
  for round in $(seq 1 "$ROUNDS"); do
    echo "== $spec round $round: kvserve bench -p $p -n $n" >&2
    rm -f "$OUT/kv.json"
    "$KV" bench -m "$f" -p "$p" -n "$n" -t "$THREADS" -r "$R" --warmup 1 --out "$OUT/kv.json" >/dev/null 2>"$OUT/kv.err" \
      || { echo "   kvserve failed: $(grep -v '^WARNING' "$OUT/kv.err" | tail -1)" >&2; echo '[]' > "$OUT/kv.json"; }
    python3 - "$OUT/kv.json" "$spec" "$round" >> "$results" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1])):
    print(f"{sys.argv[2]}\tkvserve\t{sys.argv[3]}\t{row['test']}\t{row['tps_mean']}")
PY
    echo "== $spec round $round: llama-bench -p $p -n $n -fa $fa" >&2
    "$PEER/bin/llama-bench" -m "$f" -p "$p" -n "$n" -t "$THREADS" -r "$R" -fa "$fa" -o json > "$OUT/ll.json" 2>"$OUT/ll.err" \
      || { echo "   llama-bench failed: $(tail -1 "$OUT/ll.err")" >&2; echo '[]' > "$OUT/ll.json"; }
    python3 - "$OUT/ll.json" "$spec" "$round" >> "$results" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1])):
    test = f"pp{row['n_prompt']}" if row['n_gen'] == 0 else f"tg{row['n_gen']}"
    print(f"{sys.argv[2]}\tllama.cpp\t{sys.argv[3]}\t{test}\t{row['avg_ts']}")
PY
  done
}

table() {   # results title
  python3 - "$1" "$2" <<'PY'
import sys, collections, statistics
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    model, prog, rnd, test, tps = line.rstrip("\n").split("\t")
    rows.setdefault((model, test), collections.defaultdict(dict))[prog][rnd] = float(tps)
print(f"\n### {sys.argv[2]}\n")
print("| file | test | kvserve t/s | llama.cpp t/s | kvserve / llama.cpp, per round |")
print("|---|---|---:|---:|---:|")
for (model, test), r in rows.items():
    k, l = r.get("kvserve", {}), r.get("llama.cpp", {})
    ratios = [f"{k[x] / l[x]:.2f}×" for x in k if x in l]
    fmt = lambda d: " / ".join(f"{v:.1f}" for v in d.values()) or "n/a"
    print(f"| {model} | {test} | {fmt(k)} | {fmt(l)} | {' / '.join(ratios) or 'n/a'} |")
PY
}

if [[ " $SECTIONS " == *" bench "* ]]; then
  results="$OUT/bench.tsv"; : > "$results"
  for m in $MODELS; do run_bench "$results" "$m" "$P" "$N" 0; done
  table "$results" "pp$P / tg$N, $THREADS threads, f16 KV, empty cache"
fi
if [[ " $SECTIONS " == *" long "* ]]; then
  results="$OUT/long.tsv"; : > "$results"
  for m in $LONG_MODELS; do run_bench "$results" "$m" "$LONG" 0 1; done
  table "$results" "pp$LONG, $THREADS threads (llama.cpp -fa 1)"
fi

# ---------------------------------------------------------------- serve
wait_up() {   # url
  for _ in $(seq 1 600); do curl -sf "$1/health" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "server at $1 did not come up" >&2; return 1
}

if [[ " $SECTIONS " == *" serve "* ]]; then
  results="$OUT/serve.tsv"; : > "$results"
  port=18431
  for m in $SERVE_MODELS; do
    f=$(model_file "$m")
    for round in $(seq 1 "$ROUNDS"); do
      for prog in kvserve llama.cpp; do
        if [ "$prog" = kvserve ]; then
          "$KV" serve -m "$f" -t "$THREADS" --port $port --max-batch 16 >"$OUT/server-$prog.log" 2>&1 &
        else
          "$PEER/bin/llama-server" -m "$f" -np 16 -c 8192 -t "$THREADS" -fa on --port $port >"$OUT/server-$prog.log" 2>&1 &
        fi
        pid=$!
        wait_up "http://127.0.0.1:$port"
        for c in $CONC; do
          echo "== $m round $round: $prog, concurrency $c" >&2
          "$KV" bench serve --url "http://127.0.0.1:$port" -c "$c" -n $(( SN > c ? SN : c * 2 )) --prompt-len "$SP" \
            --gen-len "$SG" --model "$(basename "$f" .gguf)" -o "$OUT/serve.json" >/dev/null 2>&1
          python3 - "$OUT/serve.json" "$m" "$prog" "$round" "$c" >> "$results" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("\t".join(sys.argv[2:6] + [str(d["output_throughput"]), str(d["median_tpot_ms"]), str(d["median_ttft_ms"]), str(d["failed"])]))
PY
        done
        kill "$pid"; wait "$pid" 2>/dev/null || true
      done
    done
  done
  python3 - "$results" "$SP" "$SG" <<'PY'
import sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    model, prog, rnd, c, out, tpot, ttft, failed = line.rstrip("\n").split("\t")
    rows.setdefault((model, int(c)), collections.defaultdict(dict))[prog][rnd] = (float(out), float(tpot), float(ttft), int(failed))
print(f"\n### serving, prompt ~{sys.argv[2]} tokens, {sys.argv[3]} out, streamed (kvserve bench serve)\n")
print("| file | concurrency | kvserve out tok/s | llama-server out tok/s | ratio, per round | TPOT ms kvserve / llama-server | failed |")
print("|---|---:|---:|---:|---:|---:|---:|")
for (model, c), r in rows.items():
    k, l = r.get("kvserve", {}), r.get("llama.cpp", {})
    ratios = [f"{k[x][0] / l[x][0]:.2f}×" for x in k if x in l]
    f = lambda d, i: " / ".join(f"{v[i]:.1f}" for v in d.values())
    failed = sum(v[3] for v in k.values()) + sum(v[3] for v in l.values())
    print(f"| {model} | {c} | {f(k, 0)} | {f(l, 0)} | {' / '.join(ratios)} | {f(k, 1)} / {f(l, 1)} | {failed} |")
PY
fi

# ---------------------------------------------------------------- depth / batched
# Rows "model<TAB>program<TAB>round<TAB>kv<TAB>tok/s<TAB>kv bytes/token" in $1; kvserve's kv is its policy
# spec, llama.cpp's the cache type (type_k = type_v).
kv_rows() {   # json model round -> rows of kvserve bench's JSON
  python3 - "$@" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1])):
    print(f"{sys.argv[2]}\tkvserve\t{sys.argv[3]}\t{row['kv']}\t{row['tps_mean']}\t{row.get('kv_bytes_per_token') or ''}")
PY
}

vs_table() {   # results title peer-column-label
  python3 - "$1" "$2" "$3" <<'PY'
import sys, collections
kv, peer = collections.OrderedDict(), collections.defaultdict(dict)
for line in open(sys.argv[1]):
    model, prog, rnd, typ, tps, kvb = (line.rstrip("\n").split("\t") + [""])[:6]
    if prog == "kvserve":
        kv.setdefault((model, typ), {})[rnd] = (float(tps), kvb)
    else:
        peer[(model, typ)][rnd] = float(tps)
def match(policy):   # the peer cache type that stores what the policy stores
    base = policy.split(":")[0].split("+")[0]
    return {"fp16": "f16", "int8": "q8_0", "int4": "q4_0"}.get(base)
fmt = lambda d: " / ".join(f"{v:.1f}" for v in d.values()) or "n/a"
def ratios(k, l):
    return " / ".join(f"{k[x][0] / l[x]:.2f}×" for x in k if x in l) or "n/a"
print(f"\n### {sys.argv[2]}\n")
print(f"| file | kvserve --kv | kv/token | kvserve t/s | {sys.argv[3]} f16 t/s | vs f16, per round | peer type | {sys.argv[3]} t/s | vs it, per round |")
print("|---|---|---:|---:|---:|---:|---|---:|---:|")
for (model, policy), k in kv.items():
    f16 = peer.get((model, "f16"), {})
    t = match(policy)
    same = peer.get((model, t), {}) if t else {}
    kvb = next((v[1] for v in k.values() if v[1]), "")
    kvb = f"{float(kvb) / 1024:.1f} KiB" if kvb else ""
    print(f"| {model} | {policy} | {kvb} | {fmt({r: v[0] for r, v in k.items()})} | {fmt(f16)} | {ratios(k, f16)} | "
          f"{t or '-'} | {fmt(same) if t else '-'} | {ratios(k, same) if t else '-'} |")
PY
}

if [[ " $SECTIONS " == *" depth "* ]]; then
  results="$OUT/depth.tsv"; : > "$results"
  for m in $DEPTH_MODELS; do
    f=$(model_file "$m")
    for round in $(seq 1 "$ROUNDS"); do
      echo "== $m round $round: kvserve bench -p 0 -n $DN -d $DEPTH --kv ${DEPTH_KV// /,}" >&2
      rm -f "$OUT/kv.json"
      "$KV" bench -m "$f" -p 0 -n "$DN" -d "$DEPTH" --kv "${DEPTH_KV// /,}" -t "$THREADS" -r "$R" --warmup 1 \
        --out "$OUT/kv.json" >/dev/null 2>"$OUT/kv.err" \
        || { echo "   kvserve failed: $(grep -v '^WARNING' "$OUT/kv.err" | tail -1)" >&2; echo '[]' > "$OUT/kv.json"; }
      kv_rows "$OUT/kv.json" "$m" "$round" >> "$results"
      for t in $DEPTH_PEER_KV; do
        echo "== $m round $round: llama-bench -p 0 -n $DN -d $DEPTH -fa 1 -ctk $t -ctv $t" >&2
        "$PEER/bin/llama-bench" -m "$f" -p 0 -n "$DN" -d "$DEPTH" -fa 1 -ctk "$t" -ctv "$t" -t "$THREADS" -r "$R" -o json \
          > "$OUT/ll.json" 2>"$OUT/ll.err" \
          || { echo "   llama-bench failed: $(tail -1 "$OUT/ll.err")" >&2; echo '[]' > "$OUT/ll.json"; }
        python3 - "$OUT/ll.json" "$m" "$round" >> "$results" <<'PY'
import json, sys
for row in json.load(open(sys.argv[1])):
    print(f"{sys.argv[2]}\tllama.cpp\t{sys.argv[3]}\t{row['type_k']}\t{row['avg_ts']}\t")
PY
      done
    done
  done
  vs_table "$results" "tg$DN at depth $DEPTH (llama-bench -d $DEPTH -fa 1), $THREADS threads, per KV policy" "llama-bench"
fi

if [[ " $SECTIONS " == *" batched "* ]]; then
  results="$OUT/batched.tsv"; : > "$results"
  for m in $BATCH_MODELS; do
    f=$(model_file "$m")
    for round in $(seq 1 "$ROUNDS"); do
      echo "== $m round $round: kvserve bench -p 0 -n $BN -d $BD --batch $BB --kv ${BATCH_KV// /,}" >&2
      rm -f "$OUT/kv.json"
      "$KV" bench -m "$f" -p 0 -n "$BN" -d "$BD" --batch "$BB" --kv "${BATCH_KV// /,}" -t "$THREADS" -r "$R" --warmup 1 \
        --out "$OUT/kv.json" >/dev/null 2>"$OUT/kv.err" \
        || { echo "   kvserve failed: $(grep -v '^WARNING' "$OUT/kv.err" | tail -1)" >&2; echo '[]' > "$OUT/kv.json"; }
      kv_rows "$OUT/kv.json" "$m" "$round" >> "$results"
      for t in $BATCH_PEER_KV; do
        # llama-batched-bench prefills BB prompts of BD tokens (T_PP), then times BN decode steps of all BB (S_TG)
        peer_kv=(); [ "$t" = f16 ] || peer_kv=(-fa on -ctk "$t" -ctv "$t")
        echo "== $m round $round: llama-batched-bench -c $BATCH_CTX -b 2048 -ub 512 -npp $BD -ntg $BN -npl $BB ${peer_kv[*]}" >&2
        "$PEER/bin/llama-batched-bench" -m "$f" -c "$BATCH_CTX" -b 2048 -ub 512 -npp "$BD" -ntg "$BN" -npl "$BB" \
          -t "$THREADS" "${peer_kv[@]}" --output-format jsonl > "$OUT/llb.jsonl" 2>"$OUT/llb.err" \
          || { echo "   llama-batched-bench failed: $(tail -1 "$OUT/llb.err")" >&2; : > "$OUT/llb.jsonl"; }
        python3 - "$OUT/llb.jsonl" "$m" "$round" "$t" >> "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{") and '"speed_tg"' in line:
        print(f"{sys.argv[2]}\tllama.cpp\t{sys.argv[3]}\t{sys.argv[4]}\t{json.loads(line)['speed_tg']}\t")
PY
      done
    done
  done
  vs_table "$results" "aggregate tg$DN of $BB sequences at depth $BD (llama-batched-bench S_TG), $THREADS threads" "llama-batched-bench"
fi
