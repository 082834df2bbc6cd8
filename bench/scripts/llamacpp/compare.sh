#!/usr/bin/env bash
# kvserve vs llama.cpp, side by side on the same synthetic GGUF files and the same machine:
# pp512 and tg128 on 1 and 2 threads, KV cache f16, the two programs alternating per model so that
# load on a shared machine hits both alike. Prints one table with the ratio kvserve / llama.cpp.
#
#   bench/scripts/llamacpp/compare.sh              # all four files of issue #3
#   MODELS="llama-3.2-1b:q4_0" R=3 bench/scripts/llamacpp/compare.sh
#
# llama.cpp comes from npm: node-llama-cpp's prebuilt llama.cpp release libraries (every x86 CPU
# variant; the AVX-512 VNNI one loads on Zen 4/5). Needs node ≥ 20 and npm; installs once into
# bench/scripts/llamacpp/node_modules (ignored by git). Synthetic models go to $OUT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT=${OUT:-/tmp/kvserve-vs-llamacpp}
THREADS=${THREADS:-1,2}
P=${P:-512}; N=${N:-128}; R=${R:-2}
MODELS=${MODELS:-"smollm2-135m:q8_0 smollm2-135m:q4_0 llama-3.2-1b:q8_0 llama-3.2-1b:q4_0"}
mkdir -p "$OUT"
if [ ! -d "$HERE/node_modules/node-llama-cpp" ]; then
  echo "installing node-llama-cpp (llama.cpp release binaries) into $HERE/node_modules ..." >&2
  (cd "$HERE" && npm install --no-audit --no-fund --ignore-scripts >&2)
fi
results="$OUT/results.tsv"
: > "$results"
for m in $MODELS; do
  like=${m%%:*}; type=${m##*:}
  f="$OUT/$like-$type.gguf"
  [ -f "$f" ] || "$ROOT/kvserve" synth --like "$like" --type "$type" -o "$f" >&2
  echo "== $like $type: kvserve" >&2
  "$ROOT/kvserve" bench -m "$f" -p "$P" -n "$N" -t "$THREADS" -r "$R" --warmup 1 2>/dev/null \
    | awk -F'|' -v m="$like $type" '$8 ~ /(pp|tg)[0-9]/ { gsub(/ /, "", $6); gsub(/ /, "", $8); split($9, t, "±");
        gsub(/ /, "", t[1]); gsub(/ /, "", t[2]); print m "\tkvserve\t" $6 "\t" $8 "\t" t[1] "\t" t[2] }' >> "$results"
  echo "== $like $type: llama.cpp" >&2
  node "$HERE/llama-bench.mjs" "$f" "$THREADS" "$P" "$N" "$R" 2>/dev/null \
    | awk -F'\t' -v m="$like $type" '{ split($5, t, " ± "); print m "\tllama.cpp\t" $3 "\t" $4 "\t" t[1] "\t" t[2] }' >> "$results"
done
python3 - "$results" <<'PY'
import sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    model, prog, threads, test, mean, sd = line.rstrip("\n").split("\t")
    rows.setdefault((model, threads, test), {})[prog] = (float(mean), float(sd))
print("| model | threads | test | kvserve t/s | llama.cpp t/s | kvserve / llama.cpp |")
print("|---|---:|---|---:|---:|---:|")
for (model, threads, test), r in rows.items():
    k, l = r.get("kvserve"), r.get("llama.cpp")
    cell = lambda v: f"{v[0]:.2f} ± {v[1]:.2f}" if v else "n/a"
    ratio = f"{k[0] / l[0]:.2f}×" if k and l else "n/a"
    print(f"| {model} | {threads} | {test} | {cell(k)} | {cell(l)} | {ratio} |")
PY
