// SentencePiece models built by hand for tests: a minimal protobuf writer for ModelProto
// (field 1 = pieces, each {1: piece, 2: score, 3: type}), the format data/tokenizer.cpp reads.
#pragma once
#include <cstdint>
#include <string>

inline void pb_varint(std::string* o, uint64_t v) {
    while (v >= 0x80) { o->push_back((char)(v | 0x80)); v >>= 7; }
    o->push_back((char)v);
}
inline void pb_bytes(std::string* o, int field, const std::string& s) {
    pb_varint(o, (uint64_t)field << 3 | 2);
    pb_varint(o, s.size());
    *o += s;
}
// type: 1 normal (the default, not written), 2 unknown, 3 control, 5 unused, 6 byte
inline std::string pb_piece(const std::string& piece, float score, int type) {
    std::string m;
    pb_bytes(&m, 1, piece);
    pb_varint(&m, 2 << 3 | 5);
    m.append((const char*)&score, 4);
    if (type != 1) { pb_varint(&m, 3 << 3 | 0); pb_varint(&m, (uint64_t)type); }
    return m;
}
