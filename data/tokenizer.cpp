// SentencePiece .model reader (a minimal protobuf decoder) and the bpb byte tables; see tokenizer.h.
#include "data/tokenizer.h"
#include "model/common.h"
#include <cstring>

namespace {

// Protobuf wire format: each field is a varint key (field_number << 3 | wire_type), then
// a varint (type 0), 8 bytes (1), a varint length and that many bytes (2), or 4 bytes (5).
struct PbReader {
    const uint8_t* p;
    const uint8_t* end;
    const char* name;  // file name, for errors
    bool done() const { return p >= end; }
    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) fatal("tokenizer '%s': corrupt SentencePiece model (truncated varint)", name);
            uint8_t b = *p++;
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        fatal("tokenizer '%s': corrupt SentencePiece model (varint longer than 10 bytes)", name);
    }
    const uint8_t* take(uint64_t n) {
        if (n > (uint64_t)(end - p)) fatal("tokenizer '%s': corrupt SentencePiece model (field runs past the end)", name);
        const uint8_t* q = p;
        p += n;
        return q;
    }
    // Skips the value of a field of the given wire type.
    void skip(int wire) {
        switch (wire) {
            case 0: varint(); break;
            case 1: take(8); break;
            case 2: take(varint()); break;
            case 5: take(4); break;
            default: fatal("tokenizer '%s': corrupt SentencePiece model (wire type %d)", name, wire);
        }
    }
};

void parse_piece(Tokenizer* tok, PbReader r) {
    std::string piece;
    float score = 0.0f;
    int type = (int)PieceType::normal;
    bool has_piece = false;
    while (!r.done()) {
        uint64_t key = r.varint();
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 2) {
            uint64_t n = r.varint();
            piece.assign((const char*)r.take(n), n);
            has_piece = true;
        } else if (field == 2 && wire == 5) {
            memcpy(&score, r.take(4), 4);
        } else if (field == 3 && wire == 0) {
            type = (int)r.varint();
        } else {
            r.skip(wire);
        }
    }
    if (!has_piece) fatal("tokenizer '%s': corrupt SentencePiece model (piece %d has no text)", r.name, tok->vocab_size());
    if (type < 1 || type > 6) fatal("tokenizer '%s': piece %d has unknown type %d", r.name, tok->vocab_size(), type);
    tok->pieces.push_back(piece);
    tok->scores.push_back(score);
    tok->types.push_back((PieceType)type);
}

void build_byte_tables(Tokenizer* tok) {
    static const char kSpace[] = "\xe2\x96\x81";  // U+2581 "▁" in UTF-8
    int V = tok->vocab_size();
    tok->base_bytes.assign(V, 0);
    tok->has_leading_space.assign(V, 0);
    tok->is_boundary.assign(V, 0);
    for (int i = 0; i < V; i++) {
        PieceType t = tok->types[i];
        if (t == PieceType::control || t == PieceType::unknown || t == PieceType::unused) {
            tok->is_boundary[i] = 1;
            continue;
        }
        if (t == PieceType::byte) {
            tok->base_bytes[i] = 1;
            continue;
        }
        const std::string& s = tok->pieces[i];
        size_t skip = 0;
        if (s.compare(0, 3, kSpace) == 0) {
            tok->has_leading_space[i] = 1;
            skip = 3;
        }
        tok->base_bytes[i] = (int16_t)(s.size() - skip);
    }
}

}  // namespace

void tokenizer_parse(Tokenizer* tok, const std::string& name, const uint8_t* data, size_t size) {
    *tok = Tokenizer{};
    tok->path = name;
    PbReader r{data, data + size, name.c_str()};
    while (!r.done()) {
        uint64_t key = r.varint();
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 2) {  // ModelProto.pieces
            uint64_t n = r.varint();
            const uint8_t* q = r.take(n);
            parse_piece(tok, PbReader{q, q + n, name.c_str()});
        } else {
            r.skip(wire);
        }
    }
    if (tok->pieces.empty()) fatal("tokenizer '%s': not a SentencePiece model (no pieces)", name.c_str());
    if (tok->vocab_size() > 65536)
        fatal("tokenizer '%s': %d pieces do not fit uint16 shard tokens", name.c_str(), tok->vocab_size());
    build_byte_tables(tok);
}

void tokenizer_load(Tokenizer* tok, const std::string& path) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fatal("tokenizer '%s': cannot open (missing? run `make data` or set TOKENIZER_PATH)", path.c_str());
    std::vector<uint8_t> buf;
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
    if (ferror(f)) fatal("tokenizer '%s': read error", path.c_str());
    fclose(f);
    if (buf.empty()) fatal("tokenizer '%s': empty file, not a SentencePiece model", path.c_str());
    tokenizer_parse(tok, path, buf.data(), buf.size());
}
