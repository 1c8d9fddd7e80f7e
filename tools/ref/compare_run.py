"""Compare a training run with the reference trainer's run on the same dump (notes/reftrain.md).

  python3 tools/ref/compare_run.py DIR --run LOG_OR_CSV --ref-losses FILE
          [--ckpt CKPT | --arena FILE] [--ref-arena FILE] [--ref-ema FILE]
          [--floor-losses FILE --floor-arena FILE --floor-ema FILE [--floor-factor 2]]
          [--tol-loss X] [--tol-params Y]

DIR: the dump_run folder (run.txt gives the config, hence the tensor names and offsets).
--run: train's --csv file (columns step,train_loss,...), any log with "step N/M train_loss X"
  lines (train's stdout, dump_run --cpu-train, train_ref.py), or a --losses file.
--ref-losses: train_ref.py --losses (one loss a line).
--ckpt: train's --save checkpoint (optim/checkpoint.h: arenas params, muon_momentum, adam_m,
  adam_v[, ema]); or --arena: a raw float32 parameter arena (dump_run --save-arena).
--ref-arena / --ref-ema: train_ref.py --save-arena / --save-ema.
--floor-*: the same files of a second reference run that differs from the first only by rounding
  (train_ref.py --bf16 --muon-bf16 against the fp32 one): a bf16 trainer cannot be expected closer
  to the fp32 reference than that, so each bound becomes tol + factor x the floor's difference
  (per step for the loss curve's maximum, per tensor for the arenas).
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


def read_losses(path):
    """{step: loss} from train's CSV or from "step N/M train_loss X" log lines."""
    out = {}
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines() if not ln.startswith("#")]  # "# git ..." comment lines
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
    ap.add_argument("--tol-loss", type=float, default=1e-2, help="max relative loss difference (+ floor)")
    ap.add_argument("--tol-params", type=float, default=5e-2, help="max per-tensor ||diff||_F/||ref||_F (+ floor)")
    ap.add_argument("--floor-losses", help="a second reference's losses (train_ref.py --bf16 --muon-bf16)")
    ap.add_argument("--floor-arena", help="... and its --save-arena")
    ap.add_argument("--floor-ema", help="... and its --save-ema")
    ap.add_argument("--floor-factor", type=float, default=2.0,
                    help="with a floor, the run may differ from the reference by tol + factor x the floor's difference")
    a = ap.parse_args()

    def loss_diffs(path, ref):
        got = read_losses(path)
        steps = [s for s in range(1, len(ref) + 1) if s in got]
        if not steps:
            raise SystemExit(f"error: '{path}': no training losses for steps 1..{len(ref)}")
        return steps, got, {s: abs(got[s] - ref[s - 1]) / abs(ref[s - 1]) for s in steps}

    ref = [float(x) for x in open(a.ref_losses).read().split()]
    steps, run, diff = loss_diffs(a.run, ref)
    fdiff = loss_diffs(a.floor_losses, ref)[2] if a.floor_losses else {}
    print(f"{'step':>5} {'run':>10} {'ref':>10} {'rel diff':>9}" + (f" {'floor':>9}" if fdiff else ""))
    for s in steps:
        print(f"{s:5d} {run[s]:10.6f} {ref[s - 1]:10.6f} {diff[s]:9.2e}" + (f" {fdiff.get(s, 0):9.2e}" if fdiff else ""))
    worst, fworst = max(diff.values()), max(fdiff.values(), default=0.0)
    bound = a.tol_loss + a.floor_factor * fworst
    ok = worst <= bound
    print(f"loss curve: {len(steps)} steps, max rel diff {worst:.3e}" + (f", floor {fworst:.3e}" if fdiff else "")
          + f"; bound {bound:.3e}: {'ok' if ok else 'FAIL'}")

    if a.ckpt or a.arena:
        hp = train_ref.read_run_txt(os.path.join(a.dir, "run.txt"))
        layout, size = M.arena_layout(M.GPT(train_ref.model_config(hp)))
        arenas = train_ref.read_ckpt_arenas(a.ckpt) if a.ckpt else [np.fromfile(a.arena, dtype="<f4")]
        todo = [("params", 0, a.ref_arena, a.floor_arena), ("ema", 4, a.ref_ema, a.floor_ema)]
        for what, idx, ref_path, floor_path in todo:
            if not ref_path:
                continue
            if idx >= len(arenas):
                raise SystemExit(f"error: '{a.ckpt or a.arena}' holds no {what} arena")
            got, want = arenas[idx], np.fromfile(ref_path, dtype="<f4")
            if got.size != size or want.size != size:
                raise SystemExit(f"error: {what}: arenas of {got.size} and {want.size} floats, the config needs {size}")
            errs = tensor_errors(layout, got, want)
            floor = {}
            if floor_path:
                floor = {n: f for f, _, n in tensor_errors(layout, np.fromfile(floor_path, dtype="<f4"), want)}
            bad = [(f, n) for f, _, n in errs if f > a.tol_params + a.floor_factor * floor.get(n, 0.0)]
            ok = ok and not bad
            print(f"{what}: worst tensors, ||diff||_F/||ref||_F (max|diff|/max|ref|)"
                  + (" [floor]" if floor else "") + ": "
                  + ", ".join(f"{n} {f:.2e} ({m:.2e})" + (f" [{floor[n]:.2e}]" if floor else "") for f, m, n in errs[:6]))
            print(f"{what}: {len(bad)} of {len(errs)} tensors over tol {a.tol_params:g}"
                  + (f" + {a.floor_factor:g} x floor" if floor else "") + (": " + ", ".join(n for _, n in bad[:8]) if bad else "")
                  + f": {'ok' if not bad else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
