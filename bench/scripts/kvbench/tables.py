#!/usr/bin/env python3
"""Markdown tables of the kvbench-31m rows of bench/RESULTS.md from kv-eval's JSON output.

usage: tables.py evict WIKI.json VALID.json [SPEED.json]   (#7: eviction and sparse attention)
       tables.py quant WIKI.json VALID.json                (#6: quantization methods)
(each JSON argument may be several files, comma-separated)
"""
import json
import re
import sys


def load(paths):
    """Rows of one or more kv-eval JSON files (comma-separated), keyed by policy spec."""
    rows = {}
    for path in (paths.split(",") if paths else []):
        rows.update({r["kv"]: r for r in json.load(open(path))})
    return rows


def family(spec):
    """Table order of the #6 rows: baselines, KVQuant, CQ, AQUA-KV, compositions."""
    if "+" in spec:
        return 6
    for i, prefix in enumerate(["fp16", "int", "kivi", "kvquant", "cq", "aqua"]):
        if spec.startswith(prefix):
            return i
    return 5


def short(spec):
    spec = re.sub(r"calib=/[^,+]*/", "calib=", spec)
    # parameters that only restate a default or the calibration file's values
    spec = re.sub(r",(bits|outliers|fisher|sinks|qnorm|c|window|rope|dim|first|prefix)=file", "", spec)
    spec = re.sub(r",(iterations=20|gqa=head|seed=0|alpha=0\.5|beta=0\.5|merge=paper|kernel=5|pooling=avg|reduce=sum|bits=16|score=current|page=16)", "", spec)
    return spec


def delta(p, ref):
    return f"{(p / ref - 1) * 100:+.1f} %"


def evict(wiki, valid, speed):
    w, v, s = load(wiki), load(valid), load(speed)
    ref_w, ref_v = w["fp16"]["ppl"], v["fp16"]["ppl"]
    print("| method | budget | spec | PPL wiki | ΔPPL wiki | PPL valid | ΔPPL valid | B/token avg | B/token end | vs fp16 (avg) | tok/s | needle |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for kv, r in w.items():
        m = re.match(r"fp16\+(\w+):(.*)", kv)
        method = m.group(1) if m else "full cache"
        budget = "–"
        if m:
            b = re.search(r"budget=([\d.]+)", kv) or re.search(r"window=([\d.]+)", kv)
            budget = {"0.25": "25%", "0.5": "50%", "0.125": "12.5%"}.get(b.group(1), b.group(1))
            if method == "sink":
                budget = {"0.25": "25%", "0.5": "50%", "124": "128"}.get(b.group(1), b.group(1))
        rv = v.get(kv)
        tps = f"{s[kv]['tokens_per_s']:.0f}" if kv in s else "–"
        print(f"| {method} | {budget} | `{short(kv)}` | {r['ppl']:.2f} | {delta(r['ppl'], ref_w)} | "
              f"{rv['ppl']:.2f} | {delta(rv['ppl'], ref_v)} | {r['kv_bytes_per_token_avg']:.0f} | "
              f"{r['kv_bytes_per_token_end']:.0f} | {r['ratio_vs_fp16_avg']:.2f}x | {tps} | n/a |")


def quant(wiki, valid):
    w, v = load(wiki), load(valid)
    ref_w, ref_v = w["fp16"]["ppl"], v["fp16"]["ppl"]
    values = 8 * 2 * 2 * 64  # layers × (K, V) × KV heads × head dim
    print("| policy | PPL wiki | ΔPPL wiki | PPL valid | ΔPPL valid | B/token end | bits/value | ratio vs fp16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kv in sorted(w, key=family):
        r, rv = w[kv], v.get(kv)
        b = r["kv_bytes_per_token_end"]
        print(f"| `{short(kv)}` | {r['ppl']:.2f} | {delta(r['ppl'], ref_w)} | {rv['ppl']:.2f} | {delta(rv['ppl'], ref_v)} | "
              f"{b:.0f} | {b * 8 / values:.2f} | {r['ratio_vs_fp16_end']:.2f}x |")


if __name__ == "__main__":
    {"evict": lambda a: evict(a[0], a[1], a[2] if len(a) > 2 else None),
     "quant": lambda a: quant(a[0], a[1])}[sys.argv[1]](sys.argv[2:])
