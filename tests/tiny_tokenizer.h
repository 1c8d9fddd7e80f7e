// A hand-made 64-piece SentencePiece tokenizer and a structured token stream over its ids, for
// the evaluation tests (tests/test_eval.cpp, tests/gpu/test_eval.cu).
#pragma once
#include "data/tokenizer.h"
#include "model/common.h"
#include "tests/spm_model.h"
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

// 64 pieces: <unk>, <s> (BOS, a boundary), </s>, 8 byte pieces, then "▁"-led and plain pieces
// of 1..3 letters, so bytes per token vary and depend on the previous token.
inline Tokenizer tiny_tokenizer() {
    std::string m;
    pb_bytes(&m, 1, pb_piece("<unk>", 0, 2));
    pb_bytes(&m, 1, pb_piece("<s>", 0, 3));
    pb_bytes(&m, 1, pb_piece("</s>", 0, 3));
    for (int i = 0; i < 8; i++) {
        char b[8];
        snprintf(b, sizeof b, "<0x%02X>", 0x41 + i);
        pb_bytes(&m, 1, pb_piece(b, 0, 6));
    }
    for (int i = 11; i < 64; i++) {
        std::string s(1 + i % 3, (char)('a' + i % 26));
        if (i % 2 == 0) s = "\xe2\x96\x81" + s;
        pb_bytes(&m, 1, pb_piece(s, 0, 1));
    }
    Tokenizer tok;
    tokenizer_parse(&tok, "tiny.model", (const uint8_t*)m.data(), m.size());
    return tok;
}

// A stream with structure (a sticky random walk over ids, BOS every so often) so context helps.
inline std::vector<uint16_t> token_stream(int64_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<uint16_t> t(n);
    int cur = 11;
    for (int64_t i = 0; i < n; i++) {
        if (rng.uniform() < 0.08) { t[i] = 1; continue; }
        if (rng.uniform() < 0.3) cur = 3 + (int)(rng.next() % 61);
        else cur = 3 + (cur - 3 + 1 + (int)(rng.next() % 3)) % 61;
        t[i] = (uint16_t)cur;
    }
    t[0] = 1;
    return t;
}
