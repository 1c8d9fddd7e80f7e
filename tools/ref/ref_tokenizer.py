"""Fixtures for the tokenizer byte tables (tests/test_data.cpp): SentencePiece's own Python API
encodes and decodes real text; the C++ side parses the same .model (carried in the fixture as
bytes) and must reproduce, per line, the UTF-8 length of the decoded text from its byte tables.

Tokenizers, each one case `tokenizer_<name>` when its model is available:
  tiny           trained here on /usr/share/common-licenses/GPL-3 (vocab 400, the challenge's
                 settings), so CI always tests a real model
  fineweb_8192, fineweb_4096, fineweb_1024
                 from ../shared/data/tokenizers (or $SHARED_TOKENIZERS); skipped when absent
  debian_8192, debian_1024
                 from data/tokenizers (built by `make data`); skipped when absent
Text: paragraphs of GPL-3 (every Debian box has it), a few lines with non-ASCII characters (to
reach byte-fallback pieces), and when `make data` has run, paragraphs of the corpus' val split.

Tensors per case: model_bytes (the .model file, one byte per i32), ids (all lines, each preceded
by BOS), line_start (nlines+1 offsets into ids), line_bytes (UTF-8 length of sp.decode(line ids)),
piece_len (UTF-8 length of each piece), piece_kind (1 normal, 2 unknown, 3 control, 5 unused,
6 byte), score (f32).
"""
import json, os, tempfile
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED_TOK = os.environ.get("SHARED_TOKENIZERS", os.path.join(ROOT, "..", "shared", "data", "tokenizers"))
GPL3 = "/usr/share/common-licenses/GPL-3"

# The challenge's SentencePiece settings (spec/golf.md).
CHALLENGE_SETTINGS = dict(model_type="bpe", character_coverage=0.999, byte_fallback=True, split_digits=True,
                          normalization_rule_name="nmt_nfkc", add_dummy_prefix=False, pad_id=0, bos_id=1,
                          eos_id=2, unk_id=3, hard_vocab_limit=False)

NON_ASCII = [
    "Café society: déjà vu, naïve façades and a piñata — 3½ × 2 = 7 ± 0.",
    "Unicode mixes: Ελληνικά, русский текст, 日本語のテキスト, and emoji 🙂🚀 in one line.",
    "  Leading spaces,\ttabs and   repeated   spaces collapse under nmt_nfkc.  ",
    "Numbers 1234567890 split into digits; URLs like https://example.org/a?b=c&d=1.",
]


def paragraphs(text, n, max_chars=1500):
    out = []
    for p in text.split("\n\n"):
        p = " ".join(p.split())
        if len(p) > 20:
            out.append(p[:max_chars])
        if len(out) == n:
            break
    return out


def text_lines():
    with open(GPL3, encoding="utf-8") as f:
        lines = paragraphs(f.read(), 60)
    lines += NON_ASCII
    val = os.path.join(ROOT, "data", "raw", "corpus", "val.jsonl")
    if os.path.exists(val):
        with open(val, encoding="utf-8") as f:
            for k, line in enumerate(f):
                if k == 40:
                    break
                lines.append(json.loads(line)["text"][:1500])  # newlines kept: they normalize to spaces
    return lines


def train_tiny(workdir):
    import sentencepiece as spm
    with open(GPL3, encoding="utf-8") as f:
        text = f.read()
    inp = os.path.join(workdir, "gpl3.txt")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(ln for ln in text.split("\n") if ln.strip()) + "\n")
    prefix = os.path.join(workdir, "tiny")
    spm.SentencePieceTrainer.train(input=inp, model_prefix=prefix, vocab_size=400, num_threads=1,
                                   minloglevel=2, **CHALLENGE_SETTINGS)
    return prefix + ".model"


def piece_kinds(sp):
    """(V,) int32 PieceType per id (data/tokenizer.h numbering), from SentencePiece's own API."""
    V = sp.get_piece_size()
    kind = np.ones(V, dtype=np.int32)
    for i in range(V):
        if sp.is_control(i):
            kind[i] = 3
        elif sp.is_unknown(i):
            kind[i] = 2
        elif sp.is_unused(i):
            kind[i] = 5
        elif sp.is_byte(i):
            kind[i] = 6
    return kind


def byte_tables(model_path):
    """data/tokenizer.h's byte tables from SentencePiece's API (the C++ parses the protobuf itself):
    (base_bytes int64, has_leading_space bool, is_boundary bool), each (V,). Control, unknown and
    unused pieces: 0 bytes, boundary; byte pieces: 1; others: UTF-8 length without a leading "\u2581",
    which sets has_leading_space. A target t after p covers base[t] + (lead[t] and not boundary[p])."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    kind = piece_kinds(sp)
    V = len(kind)
    base = np.zeros(V, dtype=np.int64)
    lead = np.zeros(V, dtype=bool)
    boundary = np.isin(kind, (2, 3, 5))
    for i in range(V):
        if boundary[i]:
            continue
        if kind[i] == 6:
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        lead[i] = piece.startswith("\u2581")
        base[i] = len(piece.encode("utf-8")) - 3 * lead[i]
    return base, lead, boundary


def case(model_path, lines):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    V = sp.get_piece_size()
    ids, starts, nbytes = [], [], []
    for line in lines:
        piece_ids = sp.encode(line, out_type=int)
        starts.append(len(ids))
        ids.append(sp.bos_id())
        ids.extend(piece_ids)
        nbytes.append(len(sp.decode(piece_ids).encode("utf-8")))
    starts.append(len(ids))
    kind = piece_kinds(sp)
    with open(model_path, "rb") as f:
        model_bytes = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int32)
    return {
        "model_bytes": model_bytes,
        "ids": np.array(ids, dtype=np.int32),
        "line_start": np.array(starts, dtype=np.int32),
        "line_bytes": np.array(nbytes, dtype=np.int32),
        "piece_len": np.array([len(sp.id_to_piece(i).encode("utf-8")) for i in range(V)], dtype=np.int32),
        "piece_kind": kind,
        "score": np.array([sp.get_score(i) for i in range(V)], dtype=np.float32),
    }


def cases():
    lines = text_lines()
    with tempfile.TemporaryDirectory() as tmp:
        yield "tokenizer_tiny", case(train_tiny(tmp), lines)
    for name, path in [
        ("fineweb_8192", os.path.join(SHARED_TOK, "fineweb_8192_bpe.model")),
        ("fineweb_4096", os.path.join(SHARED_TOK, "fineweb_4096_bpe.model")),
        ("fineweb_1024", os.path.join(SHARED_TOK, "fineweb_1024_bpe.model")),
        ("debian_8192", os.path.join(ROOT, "data", "tokenizers", "debian_8192_bpe.model")),
        ("debian_1024", os.path.join(ROOT, "data", "tokenizers", "debian_1024_bpe.model")),
    ]:
        if os.path.exists(path):
            yield "tokenizer_" + name, case(path, lines)
        else:
            print(f"fixtures: ref_tokenizer: {path} absent, tokenizer_{name} skipped")
