"""Cut a dataset folder down to a small copy (first N train tokens, first M val tokens), for runs
that must carry their data (the GPU box reaches nothing outside): the reference-trainer comparison
(notes/reftrain.md). Shards keep the challenge format (256 x int32 header: 20240520, 1, n; uint16).
Usage: python3 tools/cut_dataset.py SRC_DIR DST_DIR --train-tokens N --val-tokens M
"""
import argparse
import glob
import os

import numpy as np


def read_shard(path):
    head = np.fromfile(path, dtype="<i4", count=256)
    if head[0] != 20240520 or head[1] != 1:
        raise SystemExit(f"error: '{path}': not a shard (magic/version)")
    return np.fromfile(path, dtype="<u2", offset=1024)[: head[2]]


def write_shard(path, tokens):
    head = np.zeros(256, dtype="<i4")
    head[:3] = (20240520, 1, len(tokens))
    with open(path, "wb") as f:
        f.write(head.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--train-tokens", type=int, required=True)
    ap.add_argument("--val-tokens", type=int, required=True)
    a = ap.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for split, n in (("train", a.train_tokens), ("val", a.val_tokens)):
        paths = sorted(glob.glob(os.path.join(a.src, f"*_{split}_*.bin")))
        if not paths:
            raise SystemExit(f"error: '{a.src}': no *_{split}_*.bin shards")
        tok = np.concatenate([read_shard(p) for p in paths])[:n]
        write_shard(os.path.join(a.dst, f"cut_{split}_000000.bin"), tok)
        print(f"{a.dst}/cut_{split}_000000.bin: {len(tok)} tokens")


if __name__ == "__main__":
    main()
