#!/usr/bin/env bash
# `make data`: the offline corpus end to end (../shared/data/README.md's recipe).
#   1. apt-get download the four Debian packages into data/raw/debs/ (no root, nothing installed)
#   2. dpkg -x each into data/raw/pkgs/<package>/
#   3. tools/corpus.py extract: clean UTF-8 documents, hash split (4% val) -> data/raw/corpus/
#   4. spm_train (Debian's) on the training split with the challenge's settings
#      -> data/tokenizers/debian_${VOCAB}_bpe.model
#   5. tools/corpus.py shards: BOS + tokens per document -> data/datasets/debian_sp${VOCAB}/
# Idempotent: each step is skipped when its output exists (outputs appear by rename, whole).
# VOCAB=1024 make data builds the 1024-piece tokenizer and its own dataset folder.
# TOKENIZER=path/to/x.model make data tokenizes the corpus with that model instead of training one
# (e.g. ../shared/data/tokenizers/fineweb_8192_bpe.model -> data/datasets/debian_fineweb_8192_bpe/).
set -euo pipefail
cd "$(dirname "$0")/.."
VOCAB=${VOCAB:-8192}
PYTHON=${PYTHON:-/usr/bin/python3}
RAW=data/raw
PKGS=(linux-doc-6.1 python3.11-doc dict-gcide perl-doc)
if [ -n "${TOKENIZER:-}" ]; then
    [ -f "$TOKENIZER" ] || { echo "make_data: error: tokenizer '$TOKENIZER' not found" >&2; exit 1; }
    MODEL=$TOKENIZER
    OUT=data/datasets/debian_$(basename "$TOKENIZER" .model)
else
    MODEL=data/tokenizers/debian_${VOCAB}_bpe.model
    OUT=data/datasets/debian_sp${VOCAB}
fi
t_start=$(date +%s)
step() { echo "make_data: [$(( $(date +%s) - t_start )) s] $*"; }

mkdir -p "$RAW/debs" "$RAW/pkgs" data/tokenizers data/datasets
for p in "${PKGS[@]}"; do
    if ! compgen -G "$RAW/debs/${p}_*.deb" >/dev/null; then
        step "downloading $p"
        (cd "$RAW/debs" && apt-get download "$p") \
            || { echo "make_data: error: 'apt-get download $p' failed (no Debian mirror reachable?)" >&2; exit 1; }
    fi
    if [ ! -d "$RAW/pkgs/$p" ]; then
        step "unpacking $p"
        rm -rf "$RAW/pkgs/$p.tmp"
        dpkg -x "$(compgen -G "$RAW/debs/${p}_*.deb" | head -1)" "$RAW/pkgs/$p.tmp"
        mv "$RAW/pkgs/$p.tmp" "$RAW/pkgs/$p"
    fi
done

if [ ! -f "$RAW/corpus/extract.json" ]; then
    step "extracting documents"
    "$PYTHON" tools/corpus.py extract "$RAW/pkgs" "$RAW/corpus"
fi

if [ ! -f "$MODEL" ]; then
    step "training SentencePiece BPE, vocab $VOCAB (spm_train)"
    command -v spm_train >/dev/null || { echo "make_data: error: spm_train not found (apt-get install sentencepiece; make deps)" >&2; exit 1; }
    tmp=$(mktemp -d)
    # The challenge's settings (spec/golf.md); the rest make the run reproducible and bounded:
    # a fixed seed, 2M sampled lines, 2 threads (the CI box has 2 cores).
    spm_train --input="$RAW/corpus/train.txt" --model_prefix="$tmp/m" --vocab_size="$VOCAB" \
        --model_type=bpe --character_coverage=0.999 --byte_fallback=true --split_digits=true \
        --normalization_rule_name=nmt_nfkc --add_dummy_prefix=false \
        --pad_id=0 --bos_id=1 --eos_id=2 --unk_id=3 --hard_vocab_limit=false \
        --input_sentence_size=2000000 --shuffle_input_sentence=true --random_seed=1337 \
        --num_threads=2 --minloglevel=1 > "$tmp/log" 2>&1 \
        || { tail -20 "$tmp/log" >&2; echo "make_data: error: spm_train failed" >&2; exit 1; }
    mv "$tmp/m.model" "$MODEL"
    mv "$tmp/m.vocab" "${MODEL%.model}.vocab"
    rm -rf "$tmp"
fi

if [ ! -f "$OUT/stats.json" ]; then
    step "tokenizing into $OUT"
    "$PYTHON" tools/corpus.py shards "$MODEL" "$RAW/corpus" "$OUT" debian
fi

step "done: $MODEL, $OUT/"
cat "$OUT/stats.json"
