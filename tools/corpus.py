"""The offline corpus: real English text from Debian packages, split, tokenized, sharded.

Two steps, both called by tools/make_data.sh (which downloads and unpacks the packages):

  corpus.py extract PKGROOT OUTDIR
      PKGROOT/<package>/ holds each package unpacked by `dpkg -x`. Writes OUTDIR/train.jsonl,
      OUTDIR/val.jsonl (one {"id", "text"} document per line), OUTDIR/train.txt (the training
      documents' non-blank lines, the input of spm_train) and OUTDIR/extract.json (counts).
  corpus.py shards MODEL DOCDIR OUTDIR PREFIX
      Tokenizes each document with the SentencePiece model (BOS id 1 before each document, no
      EOS, as the challenge does) and writes OUTDIR/PREFIX_{train,val}_NNNNNN.bin in the
      challenge's shard format, then OUTDIR/stats.json (its presence marks the step done).

Documents (spec: ../shared/data/README.md): a file of linux-doc-6.1 (html/_sources/**/*.rst.txt,
translations/ skipped), of python3.11-doc (**/*.txt), of perl-doc (**/*.pod), or one entry of
GCIDE (gcide.dict.dz, cut by its dictd index). Text is decoded as UTF-8 (Latin-1 where a file is
not valid UTF-8), line ends normalized, control characters dropped. The split is by a hash of the
document id (package + path or entry offset): 1 in 25 (4%) goes to validation; the shards hold
documents in hash order, so the packages are interleaved and the order never depends on the
file system.
"""
import gzip, hashlib, json, os, re, sys, time

VAL_EVERY = 25          # 1/25 = 4% of documents go to validation
SHARD_TOKENS = 10**8    # tokens per shard, as the challenge's shards
BOS_ID = 1
MAGIC, VERSION = 20240520, 1

_CTRL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def clean(raw: bytes) -> str:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        s = raw.decode("latin-1")  # old POD files; every byte is a Latin-1 character
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    s = _CTRL.sub("", s)
    s = s.replace("\ufeff", "")
    lines = [ln.rstrip() for ln in s.split("\n")]
    return "\n".join(lines).strip("\n")


def _files(root, pred):
    out = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if pred(os.path.relpath(p, root)) and os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def _file_docs(pkgroot, pkg, pred):
    root = os.path.join(pkgroot, pkg)
    for p in _files(root, pred):
        with open(p, "rb") as f:
            raw = f.read()
        if p.endswith(".gz"):
            raw = gzip.decompress(raw)
        yield f"{pkg}:{os.path.relpath(p, root)}", clean(raw)


_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64num(s):
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def _gcide_docs(pkgroot):
    base = os.path.join(pkgroot, "dict-gcide", "usr/share/dictd")
    with gzip.open(os.path.join(base, "gcide.dict.dz"), "rb") as f:
        data = f.read()
    seen = set()
    with open(os.path.join(base, "gcide.index"), "rb") as f:
        for line in f:
            parts = line.rstrip(b"\n").split(b"\t")
            if len(parts) < 3 or parts[0].startswith(b"00-database") or parts[0].startswith(b"00database"):
                continue
            off, ln = _b64num(parts[1].decode()), _b64num(parts[2].decode())
            if (off, ln) in seen:  # several headwords share one entry
                continue
            seen.add((off, ln))
            yield f"dict-gcide:{off}", clean(data[off:off + ln])


def all_docs(pkgroot):
    yield from _file_docs(pkgroot, "linux-doc-6.1", lambda r: "/html/_sources/" in "/" + r
                          and r.endswith(".rst.txt") and "/translations/" not in "/" + r)
    yield from _file_docs(pkgroot, "python3.11-doc", lambda r: r.endswith(".txt"))
    yield from _gcide_docs(pkgroot)
    yield from _file_docs(pkgroot, "perl-doc", lambda r: r.endswith(".pod"))


def doc_hash(doc_id):
    return hashlib.sha1(doc_id.encode()).hexdigest()


def extract(pkgroot, outdir):
    t0 = time.time()
    os.makedirs(outdir, exist_ok=True)
    docs = {"train": [], "val": []}
    stats = {}
    for doc_id, text in all_docs(pkgroot):
        if not text.strip():
            continue
        pkg = doc_id.split(":", 1)[0]
        h = doc_hash(doc_id)
        split = "val" if int(h[:8], 16) % VAL_EVERY == 0 else "train"
        docs[split].append((h, doc_id, text))
        st = stats.setdefault(pkg, {"docs": 0, "val_docs": 0, "utf8_bytes": 0})
        st["docs"] += 1
        st["val_docs"] += split == "val"
        st["utf8_bytes"] += len(text.encode("utf-8"))
    for split in ("train", "val"):
        docs[split].sort()
        tmp = os.path.join(outdir, split + ".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for h, doc_id, text in docs[split]:
                f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        os.replace(tmp, os.path.join(outdir, split + ".jsonl"))
    tmp = os.path.join(outdir, "train.txt.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for _, _, text in docs["train"]:
            for ln in text.split("\n"):
                if ln.strip():
                    f.write(ln + "\n")
    os.replace(tmp, os.path.join(outdir, "train.txt"))
    summary = {"packages": stats, "train_docs": len(docs["train"]), "val_docs": len(docs["val"]),
               "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(outdir, "extract.json.tmp"), "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(os.path.join(outdir, "extract.json.tmp"), os.path.join(outdir, "extract.json"))
    print(f"corpus: {summary['train_docs']} train / {summary['val_docs']} val documents "
          f"in {summary['seconds']} s")
    for pkg, st in stats.items():
        print(f"corpus:   {pkg}: {st['docs']} docs ({st['val_docs']} val), {st['utf8_bytes'] / 1e6:.1f} MB")


def write_shard(path, tokens):
    """Challenge format: 256 little-endian int32 (magic, version, count, zeros), then uint16
    tokens. Written to a temporary name and renamed, so a shard is whole or absent."""
    import numpy as np
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, len(tokens)
    with open(path + ".tmp", "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())
    os.replace(path + ".tmp", path)


def shards(model, docdir, outdir, prefix):
    import sentencepiece as spm
    t0 = time.time()
    sp = spm.SentencePieceProcessor(model_file=model)
    assert sp.piece_to_id("<s>") == BOS_ID or sp.id_to_piece(BOS_ID) == "<s>", "BOS must be id 1"
    assert sp.get_piece_size() <= 65536, "uint16 tokens need vocab <= 65536"
    os.makedirs(outdir, exist_ok=True)
    stats = {"tokenizer": os.path.basename(model), "tokenizer_path": os.path.abspath(model),
             "vocab_size": sp.get_piece_size()}
    for split in ("train", "val"):
        with open(os.path.join(docdir, split + ".jsonl"), encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        buf, n_shard, n_tok, n_bytes = [], 0, 0, 0
        for k in range(0, len(texts), 4096):
            batch = texts[k:k + 4096]
            for ids in sp.encode(batch, out_type=int):
                buf.append(BOS_ID)
                buf.extend(ids)
                # bpb counts bytes of the decoded (normalized) text, not of the raw text
                n_bytes += len(sp.decode(ids).encode("utf-8"))
            while len(buf) >= SHARD_TOKENS:
                write_shard(os.path.join(outdir, f"{prefix}_{split}_{n_shard:06d}.bin"), buf[:SHARD_TOKENS])
                n_tok += SHARD_TOKENS
                buf = buf[SHARD_TOKENS:]
                n_shard += 1
        if buf or n_shard == 0:
            write_shard(os.path.join(outdir, f"{prefix}_{split}_{n_shard:06d}.bin"), buf)
            n_tok += len(buf)
            n_shard += 1
        stats[split] = {"docs": len(texts), "tokens": n_tok, "decoded_utf8_bytes": n_bytes,
                        "shards": n_shard, "bytes_per_token": round(n_bytes / max(1, n_tok - len(texts)), 4)}
        print(f"shards: {split}: {len(texts)} docs, {n_tok} tokens (with BOS), {n_bytes} bytes, {n_shard} shard(s)")
    stats["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(outdir, "stats.json.tmp"), "w") as f:
        json.dump(stats, f, indent=1)
    os.replace(os.path.join(outdir, "stats.json.tmp"), os.path.join(outdir, "stats.json"))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "extract":
        extract(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "shards":
        shards(*sys.argv[2:])
    else:
        sys.exit(__doc__)
