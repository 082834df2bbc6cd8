#!/usr/bin/env python3
"""Markdown table of the #6 kv-eval rows: python3 make_table.py 260k|656k ROWS.json [MORE.json ...]
(several files are concatenated: the runs may be split over processes). Bits/value = bytes × 8 over
the K and V values of one token in all layers (stories260K 5·2·4·8 = 320, TinyStories-656K 2·2·4·16 = 256)."""
import json, re, sys

VALUES = {"260k": 320, "656k": 256}


def label(kv):
    fixed = {"fp16": "fp16", "int4:group=head": "int4 (per token, 1 group/head)",
             "int3:group=head": "int3 (per token, 1 group/head)",
             "kivi:bits=2,group=32,residual=128": "kivi:bits=2 (residual 128 fp16)",
             "kivi:bits=2,group=32,residual=0": "kivi:bits=2,residual=0 (uniform 2-bit, no fp16 window)",
             "kivi:bits=4,group=32,residual=0": "kivi:bits=4,residual=0 (uniform 4-bit, no fp16 window)"}
    if kv in fixed:
        return fixed[kv]
    m = re.match(r"kvquant:calib=.*?-kvq(\d)([-\w]*)\.kvq[^+]*(\+sink.*)?$", kv)
    if m:
        bits, var, sink = m.groups()
        s = f"kvquant {bits}-bit" + (" no outliers" if "noout" in var else " 1% outliers") \
            + (" no Fisher" if "nofisher" in var else " Fisher")
        return s + (" **+ sink:sinks=4,window=128**" if sink else "")
    m = re.match(r"cq:calib=.*?-cq(\d+)c(\d)b([-\w]*)\.kvq", kv)
    if m:
        c, b, var = m.groups()
        return f"cq c={c} {b} bit/ch ({int(c) * int(b)}-bit codes)" + (" no Fisher" if "nofisher" in var else " Fisher")
    m = re.match(r"aqua:calib=.*?-aqua2([-\w]*)\.kvq.*buffer=(\w+)", kv)
    if m:
        var, buf = m.groups()
        first = "fp16" if "first16" in var else "2-bit" if "first2" in var else "4-bit"
        return f"aqua 2-bit, layer 0 {first}, buffer " + ("128" if buf == "file" else buf)
    if kv.startswith("fp16+sink"):
        return "fp16 **+ sink:sinks=4,window=128**"
    return kv


def main():
    model, files = sys.argv[1], sys.argv[2:]
    rows = [r for f in files for r in json.load(open(f))]
    fp = next(r for r in rows if r["kv"] == "fp16")
    print("| KV policy | PPL | ΔPPL vs fp16 | B/token end | bits/value end | ratio vs fp16 end | B/token avg | ratio avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = (r["ppl"] / fp["ppl"] - 1) * 100
        print(f"| {label(r['kv'])} | {r['ppl']:.4f} | {d:+.2f} % | {r['kv_bytes_per_token_end']:.1f} | "
              f"{r['kv_bytes_per_token_end'] * 8 / VALUES[model]:.2f} | {r['ratio_vs_fp16_end']:.2f}x | "
              f"{r['kv_bytes_per_token_avg']:.1f} | {r['ratio_vs_fp16_avg']:.2f}x |")


if __name__ == "__main__":
    main()
