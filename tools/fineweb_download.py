#!/usr/bin/env python3
"""Download the challenge's published FineWeb shards and tokenizer (needs the Hugging Face hub).

    tools/fineweb_download.py --variant sp8192            # val + 80 train shards (8B tokens) + tokenizer
    tools/fineweb_download.py --variant sp1024 --train-shards 10
    ./train --data-path data/datasets/fineweb10B_sp8192 --tokenizer-path data/tokenizers/fineweb_8192_bpe.model

Writes data/datasets/fineweb10B_<variant>/fineweb_{train,val}_NNNNNN.bin (100M tokens per shard, the
challenge's format, read unchanged by data/shard.cpp) and data/tokenizers/fineweb_<V>_bpe.model.

Where the files live (openai/parameter-golf, data/cached_challenge_fineweb.py): a Hugging Face
dataset repository holding, under the root folder `datasets/`, a manifest.json that lists each
dataset (`fineweb10B_<variant>`, with stats.files_train / files_val and its tokenizer_name) and
each tokenizer (model_path, vocab_path relative to the root), the shards under
datasets/datasets/fineweb10B_<variant>/ and the tokenizers under datasets/tokenizers/.
  sp1024, sp4096, ... : willdepueoai/parameter-golf (the challenge's own export)
  sp8192              : kevclark/parameter-golf (the SP8192 export the SP8192 records use; the
                        challenge's export has no sp8192)
--repo-id / --root (or MATCHED_FINEWEB_REPO_ID / MATCHED_FINEWEB_REMOTE_ROOT_PREFIX, the
challenge's variables) choose another export. HF_TOKEN is sent when set.

Uses only the Python standard library (huggingface_hub is not needed). Files already present are
skipped; each download goes to a .part file, is checked (shard size == 1024 + 2 * header count) and
renamed, so an interrupted run leaves no half shard and can simply be restarted. Exits with a
clear message, status 2, when the hub cannot be reached (as on the offline machines; there use
`make data`, the Debian corpus).
"""
import argparse, json, os, struct, sys, time, urllib.error, urllib.request

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_REPO = {"sp8192": "kevclark/parameter-golf"}
CHALLENGE_REPO = "willdepueoai/parameter-golf"
ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def url_for(repo, path):
    return f"{ENDPOINT}/datasets/{repo}/resolve/main/{path}"


def request(url, timeout):
    req = urllib.request.Request(url, headers={"User-Agent": "golf-fineweb-download"})
    if os.environ.get("HF_TOKEN"):
        req.add_header("Authorization", "Bearer " + os.environ["HF_TOKEN"])
    return urllib.request.urlopen(req, timeout=timeout)


def die_unreachable(url, err):
    print(f"fineweb_download: error: cannot reach the Hugging Face hub ({url}): {err}\n"
          "  This machine has no access to the hub. Run this tool where huggingface.co is reachable\n"
          "  and copy data/datasets/fineweb10B_* and data/tokenizers/ over, or use the offline\n"
          "  Debian corpus: `make data`.", file=sys.stderr)
    sys.exit(2)


def check_shard(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12:
        return f"{size} bytes, shorter than the header"
    magic, version, n = struct.unpack("<iii", head)
    if magic != 20240520 or version != 1:
        return f"bad header (magic {magic}, version {version})"
    if size != 1024 + 2 * n:
        return f"size {size} != 1024 + 2 * {n}"
    return None


def download(repo, remote, dest, timeout):
    if os.path.exists(dest):
        print(f"  have {os.path.relpath(dest, ROOT)}")
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    url = url_for(repo, remote)
    part = dest + ".part"
    t0, n = time.time(), 0
    try:
        with request(url, timeout) as r, open(part, "wb") as f:
            while True:
                chunk = r.read(1 << 22)
                if not chunk:
                    break
                f.write(chunk)
                n += len(chunk)
    except urllib.error.HTTPError as e:
        if os.path.exists(part):
            os.remove(part)
        sys.exit(f"fineweb_download: error: {url}: HTTP {e.code} {e.reason}")
    except (urllib.error.URLError, OSError) as e:
        if os.path.exists(part):
            os.remove(part)
        die_unreachable(url, e)
    if dest.endswith(".bin"):
        bad = check_shard(part)
        if bad:
            os.remove(part)
            sys.exit(f"fineweb_download: error: {url}: downloaded shard is corrupt: {bad}")
    os.replace(part, dest)
    dt = max(time.time() - t0, 1e-9)
    print(f"  got  {os.path.relpath(dest, ROOT)}  {n / 1e6:.1f} MB  {n / 1e6 / dt:.0f} MB/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sp8192", help="sp8192 (default), sp1024, sp4096, ...")
    ap.add_argument("--train-shards", type=int, default=80, help="training shards (100M tokens each); default 80")
    ap.add_argument("--repo-id", default=None, help="Hugging Face dataset repo (default: per variant, see above)")
    ap.add_argument("--root", default=os.environ.get("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", "datasets"),
                    help="root folder inside the repo (default: datasets)")
    ap.add_argument("--out", default=os.path.join(ROOT, "data"), help="local data folder (default: data/)")
    ap.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    a = ap.parse_args()
    if not (a.variant.startswith("sp") and a.variant[2:].isdigit()):
        sys.exit(f"fineweb_download: error: unsupported variant '{a.variant}' (expected sp<VOCAB>, e.g. sp8192)")
    repo = a.repo_id or os.environ.get("MATCHED_FINEWEB_REPO_ID") or DEFAULT_REPO.get(a.variant, CHALLENGE_REPO)
    dataset = f"fineweb10B_{a.variant}"

    murl = url_for(repo, f"{a.root}/manifest.json")
    print(f"fineweb_download: {dataset} from {repo} ({ENDPOINT})")
    try:
        with request(murl, a.timeout) as r:
            manifest = json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        sys.exit(f"fineweb_download: error: {murl}: HTTP {e.code} {e.reason} (wrong --repo-id or --root?)")
    except (urllib.error.URLError, OSError) as e:
        die_unreachable(murl, e)

    entry = next((d for d in manifest.get("datasets", []) if d.get("name") == dataset), None)
    if entry is None:
        names = [d.get("name") for d in manifest.get("datasets", [])]
        sys.exit(f"fineweb_download: error: {repo} has no {dataset} (it has: {', '.join(map(str, names))})")
    stats = entry.get("stats") or {}
    n_train, n_val = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if a.train_shards < 0 or a.train_shards > n_train:
        sys.exit(f"fineweb_download: error: {dataset} on {repo} has {n_train} training shards, asked for {a.train_shards}")
    tok = next((t for t in manifest.get("tokenizers", []) if t.get("name") == entry.get("tokenizer_name")), None)
    if tok is None:
        sys.exit(f"fineweb_download: error: tokenizer {entry.get('tokenizer_name')} missing from the manifest")

    ddir = os.path.join(a.out, "datasets", dataset)
    for i in range(n_val):
        name = f"fineweb_val_{i:06d}.bin"
        download(repo, f"{a.root}/datasets/{dataset}/{name}", os.path.join(ddir, name), a.timeout)
    for i in range(a.train_shards):
        name = f"fineweb_train_{i:06d}.bin"
        download(repo, f"{a.root}/datasets/{dataset}/{name}", os.path.join(ddir, name), a.timeout)
    for key in ("model_path", "vocab_path", "path"):
        rel = tok.get(key)
        if rel:  # e.g. tokenizers/fineweb_8192_bpe.model
            download(repo, f"{a.root}/{rel}", os.path.join(a.out, "tokenizers", os.path.basename(rel)), a.timeout)
    print(f"fineweb_download: done: {os.path.relpath(ddir, ROOT)}/ ({n_val} val + {a.train_shards} train shards)")


if __name__ == "__main__":
    main()
