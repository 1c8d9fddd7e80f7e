#!/usr/bin/python3
"""The seed write-up's per-seed table from train logs (rank 0's), with mean and std.

    tools/runs_table.py logs/seed1337.log logs/seed42.log logs/seed2025.log

Reads, per log: the seed (config table), "trained: N steps in S s (X ms/step, Y tok/s)",
"final val_loss .. val_bpb B" (or final_ema when EMA is on: the weights that get quantized),
"final_quant ... val_bpb Q", "artifact: code C + model M = T bytes", the matrix step of the last
"quantized: ... scales xS" line (quant_fit's pick), and any
"eval mode=<m> ... val_bpb V" lines (the last value of each mode: the artifact's). A log that
lacks a field shows "-" there, so a crashed run is visible rather than dropped.
"""
import re
import statistics
import sys

FIELDS = ["seed", "steps", "ms/step", "tok/s", "pre-quant bpb", "post-quant bpb", "artifact bytes", "matrix step"]


def parse(path):
    t = open(path, errors="replace").read()
    r = {}
    m = re.search(r"^\s*seed\s*=\s*(\d+)", t, re.M)
    if m: r["seed"] = m.group(1)
    m = re.search(r"^trained: (\d+) steps in \S+ s \((\S+) ms/step, (\S+) tok/s\)", t, re.M)
    if m: r["steps"], r["ms/step"], r["tok/s"] = int(m.group(1)), float(m.group(2)), int(float(m.group(3)))
    pre = re.findall(r"^final(?:_ema)? val_loss \S+ val_bpb (\S+)", t, re.M)
    if pre: r["pre-quant bpb"] = float(pre[-1])
    m = re.search(r"^final_quant val_loss \S+ val_bpb (\S+)", t, re.M)
    if m: r["post-quant bpb"] = float(m.group(1))
    arts = re.findall(r"^artifact: code \d+ \+ model \d+ = (\d+) bytes", t, re.M)
    if arts: r["artifact bytes"] = int(arts[-1])
    steps = re.findall(r"^quantized: .* scales x(\S+),", t, re.M)
    if steps: r["matrix step"] = float(steps[-1])
    for mode, v in re.findall(r"^eval mode=(\S+) val_loss \S+ val_bpb (\S+)", t, re.M):
        r[f"{mode} bpb"] = float(v)
    return r


def fmt(v):
    if v is None: return "-"
    if isinstance(v, str): return v
    if isinstance(v, int): return f"{v:,}"
    return f"{v:.4f}" if v < 100 else f"{v:,.1f}"


def main(paths):
    if not paths:
        sys.exit(__doc__)
    rows = [parse(p) for p in paths]
    cols = FIELDS + sorted({k for r in rows for k in r if k.endswith(" bpb") and k not in FIELDS})
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    if len(rows) > 1:
        for name, f in (("mean", statistics.mean), ("std", statistics.stdev)):
            cells = []
            for c in cols:
                vals = [r[c] for r in rows if c in r]
                cells.append(fmt(f(vals)) if c != "seed" and len(vals) == len(rows) else "")
            print(f"| {name} " + "| " + " | ".join(cells[1:]) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
