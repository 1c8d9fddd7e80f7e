"""Where a kernel's instructions and stalls go, from an ncu SASS source page.

Input: `ncu --import R.ncu-rep --page source --csv --print-source sass > k.csv` of a report taken with
`--section SourceCounters --section WarpStateStats` (one launch). The SASS is cut at every barrier
(BAR.SYNC / BAR.ARV): for each piece it prints its share of the warp instructions and of the stall
samples, its most executed opcodes and its main stall reasons. With --range A B it prints the opcode
histogram of SASS lines [A, B) instead. --per N divides instruction counts by N (e.g. warps x chunks
to get instructions per warp and chunk).

    python3 tools/ncu_segments.py k.csv --per 131072
    python3 tools/ncu_segments.py k.csv --range 1745 3573 --per 131072
"""
import argparse, collections, csv, sys

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("csv")
ap.add_argument("--range", nargs=2, type=int, metavar=("A", "B"))
ap.add_argument("--per", type=float, default=1.0, help="divide instruction counts by this")
args = ap.parse_args()

rows = list(csv.reader(open(args.csv)))
hdr = next((r for r in rows if "Source" in r and "Instructions Executed" in r), None)
if hdr is None:
    sys.exit(f"{args.csv}: no SASS source page with 'Instructions Executed' (take the report with --section SourceCounters)")
data = rows[rows.index(hdr) + 1:]
i_src, i_ex = hdr.index("Source"), hdr.index("Instructions Executed")
i_smp = hdr.index("Warp Stall Sampling (All Samples)")
stalls = [(i, h[len("stall_"):]) for i, h in enumerate(hdr) if h.startswith("stall_") and "Not Issued" not in h]


def opcode(src):
    t = src.split()
    return (t[1] if t[0].startswith("@") else t[0]) if t else "?"


def summary(lines):
    ops, st = collections.Counter(), collections.Counter()
    for r in lines:
        ops[opcode(r[i_src])] += int(r[i_ex])
        for i, name in stalls:
            st[name] += int(r[i])
    return ops, st


tot_ex = sum(int(r[i_ex]) for r in data) or 1
tot_smp = sum(int(r[i_smp]) for r in data) or 1
print(f"{len(data)} SASS lines, {tot_ex / args.per:.1f} instructions (/{args.per:g}), {tot_smp} stall samples")
if args.range:
    a, b = args.range
    ops, _ = summary(data[a:b])
    n = sum(ops.values()) or 1
    print(f"lines {a}-{b}: {n / args.per:.1f} instructions")
    for op, c in ops.most_common(30):
        print(f"  {op:28s} {c / args.per:9.1f} {100 * c / n:5.1f}%")
    sys.exit(0)
start = 0
for k, r in enumerate(data):
    if "BAR.SYNC" in r[i_src] or "BAR.ARV" in r[i_src] or k == len(data) - 1:
        piece = data[start:k + 1]
        ex = sum(int(x[i_ex]) for x in piece)
        smp = sum(int(x[i_smp]) for x in piece)
        if ex >= 0.005 * tot_ex or smp >= 0.005 * tot_smp:
            ops, st = summary(piece)
            top = ", ".join(f"{o} {c / args.per:.0f}" for o, c in ops.most_common(6))
            why = ", ".join(f"{n} {100 * c // max(smp, 1)}%" for n, c in st.most_common(3))
            print(f"lines {start:5d}-{k:5d}: instr {100 * ex / tot_ex:5.1f}%  samples {100 * smp / tot_smp:5.1f}%  | {top} | {why}")
        start = k + 1
