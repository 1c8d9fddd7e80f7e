"""Run every tools/ref/ref_*.py module's cases() and write one fixture file per case.

Each module defines cases() -> iterable of (case_name, {tensor_name: tensor}).
Inputs are made from seeded generators inside each module; outputs and gradients
are computed by PyTorch autograd in float64, stored as float32 (float64 where the
test needs it). Usage: make_fixtures.py OUTDIR [module ...]
"""
import glob, importlib, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    names = sys.argv[2:] or sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(here, "ref_*.py")))
    for mod_name in names:
        t0 = time.time()
        mod = importlib.import_module(mod_name)
        n = 0
        for case, tensors in mod.cases():
            fixture.write(os.path.join(out, case + ".bin"), tensors)
            n += 1
        print(f"fixtures: {mod_name}: {n} cases in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
