"""Compare a training run with the reference trainer's run on the same dump (notes/reftrain.md).

  python3 tools/ref/compare_run.py DIR --run LOG_OR_CSV --ref-losses FILE
          [--ckpt CKPT | --arena FILE] [--ref-arena FILE] [--ref-ema FILE]
          [--tol-loss X] [--tol-params Y]

DIR: the dump_run folder (run.txt gives the config, hence the tensor names and offsets).
--run: train's --csv file (columns step,train_loss,...), any log with "step N/M train_loss X"
  lines (train's stdout, dump_run --cpu-train, train_ref.py), or a --losses file.
--ref-losses: train_ref.py --losses (one loss a line).
--ckpt: train's --save checkpoint (optim/checkpoint.h: arenas params, muon_momentum, adam_m,
  adam_v[, ema]); or --arena: a raw float32 parameter arena (dump_run --save-arena).
--ref-arena / --ref-ema: train_ref.py --save-arena / --save-ema.
Prints the loss curves side by side with their relative difference, then the worst tensors
(||diff||_F / ||ref||_F per tensor, which --tol-params bounds; max|diff| / max|ref|, the tests'
rel_err, beside it: Adam turns gradients that nearly cancel into full-size steps, so single
embedding entries differ far more than the tensor does); exits 1 when a tolerance is exceeded.
"""
import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import train_ref  # noqa: E402

CKPT_MAGIC = 20261123


def read_losses(path):
    """{step: loss} from train's CSV or from "step N/M train_loss X" log lines."""
    out = {}
    with open(path) as f:
        lines = f.read().splitlines()
    if lines and lines[0].startswith("step,train_loss"):
        for ln in lines[1:]:
            cols = ln.split(",")
            if len(cols) > 1 and cols[1]:
                out[int(cols[0])] = float(cols[1])
        return out
    try:  # train_ref.py --losses: one loss a line
        return {s + 1: float(x) for s, x in enumerate(lines)}
    except ValueError:
        pass
    for ln in lines:
        m = re.match(r"step (\d+)/\d+ train_loss (\S+)", ln)
        if m:
            out[int(m.group(1))] = float(m.group(2))
    return out


def read_ckpt_arenas(path):
    """The arenas of an optim/checkpoint.h file, in their order."""
    raw = open(path, "rb").read()
    head = np.frombuffer(raw[:1024], dtype="<i4")
    if head[0] != CKPT_MAGIC or head[1] != 1:
        raise SystemExit(f"error: '{path}': not a version-1 checkpoint")
    loader_bytes = int(head[38:40].view("<i8")[0])
    count = int(head[40])
    sizes = [int(head[41 + 2 * i:43 + 2 * i].view("<i8")[0]) for i in range(count)]
    off = 1024 + loader_bytes
    arenas = []
    for n in sizes:
        arenas.append(np.frombuffer(raw, dtype="<f4", count=n, offset=off))
        off += 4 * n
    if off != len(raw):
        raise SystemExit(f"error: '{path}': {len(raw)} bytes, the header accounts for {off}")
    return arenas


def tensor_errors(layout, got, want):
    """[(fro_rel, max_rel, name)] worst first: ||diff||_F / ||ref||_F and max|diff| / max|ref|."""
    errs = []
    for name, off, n in layout:
        g, w = got[off:off + n].astype(np.float64), want[off:off + n].astype(np.float64)
        d = g - w
        fro, ref_fro = np.linalg.norm(d), np.linalg.norm(w)
        mx, ref_mx = np.abs(d).max(), np.abs(w).max()
        errs.append((fro / ref_fro if ref_fro > 0 else fro, mx / ref_mx if ref_mx > 0 else mx, name))
    return sorted(errs, reverse=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--run", required=True)
    ap.add_argument("--ref-losses", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--arena")
    ap.add_argument("--ref-arena")
    ap.add_argument("--ref-ema")
    ap.add_argument("--tol-loss", type=float, default=1e-2)
    ap.add_argument("--tol-params", type=float, default=5e-2)
    a = ap.parse_args()

    run = read_losses(a.run)
    ref = [float(x) for x in open(a.ref_losses).read().split()]
    steps = [s for s in range(1, len(ref) + 1) if s in run]
    if not steps:
        raise SystemExit(f"error: '{a.run}': no training losses for steps 1..{len(ref)}")
    print(f"{'step':>5} {'run':>10} {'ref':>10} {'rel diff':>9}")
    worst = 0.0
    for s in steps:
        r = abs(run[s] - ref[s - 1]) / abs(ref[s - 1])
        worst = max(worst, r)
        print(f"{s:5d} {run[s]:10.6f} {ref[s - 1]:10.6f} {r:9.2e}")
    ok = worst <= a.tol_loss
    print(f"loss curve: {len(steps)} steps, max rel diff {worst:.3e} (tol {a.tol_loss:g}) {'ok' if ok else 'FAIL'}")

    pairs = []
    if a.ckpt or a.arena:
        hp = train_ref.read_run_txt(os.path.join(a.dir, "run.txt"))
        layout, size = M.arena_layout(M.GPT(train_ref.model_config(hp)))
        arenas = read_ckpt_arenas(a.ckpt) if a.ckpt else [np.fromfile(a.arena, dtype="<f4")]
        if a.ref_arena:
            pairs.append(("params", arenas[0], np.fromfile(a.ref_arena, dtype="<f4")))
        if a.ref_ema:
            if len(arenas) < 5:
                raise SystemExit(f"error: '{a.ckpt or a.arena}' holds no EMA arena")
            pairs.append(("ema", arenas[4], np.fromfile(a.ref_ema, dtype="<f4")))
    for what, got, want in pairs:
        if got.size != size or want.size != size:
            raise SystemExit(f"error: {what}: arenas of {got.size} and {want.size} floats, the config needs {size}")
        errs = tensor_errors(layout, got, want)
        good = errs[0][0] <= a.tol_params
        ok = ok and good
        print(f"{what}: worst tensors by ||diff||_F/||ref||_F (max|diff|/max|ref|): "
              + ", ".join(f"{n} {f:.2e} ({m:.2e})" for f, m, n in errs[:6])
              + f"; tol {a.tol_params:g} on the first: {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
