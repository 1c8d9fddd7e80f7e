// SentencePiece model (.model) reader without the sentencepiece library, and the per-token byte
// tables of the exact bits-per-byte formula (spec/golf.md). A .model file is a serialized
// protobuf ModelProto; we read only its repeated field 1, `pieces`, each a SentencePiece message
// {1: piece (string), 2: score (float), 3: type (enum, default NORMAL)} and skip everything else.
//
// Byte tables, per token id:
//   control, unknown, unused:  base_bytes = 0, is_boundary = true
//   byte fallback <0xNN>:      base_bytes = 1
//   other pieces:              a leading "▁" (U+2581) sets has_leading_space and is dropped;
//                              base_bytes = UTF-8 length of what remains
// A target t after previous token p then covers
//   base_bytes[t] + (has_leading_space[t] && !is_boundary[p])   bytes of the decoded text.
// The tables are always built from the model: tokenizers differ in which ids are control/byte.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

enum class PieceType : int { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct Tokenizer {
    std::string path;
    std::vector<std::string> pieces;   // (V,) UTF-8, "▁" marks a space
    std::vector<float> scores;         // (V,)
    std::vector<PieceType> types;      // (V,)
    // byte tables (V,)
    std::vector<int16_t> base_bytes;
    std::vector<uint8_t> has_leading_space;
    std::vector<uint8_t> is_boundary;
    int vocab_size() const { return (int)pieces.size(); }
    // Decoded-text bytes covered by target `tgt` after token `prev`. Ids past the model's pieces
    // (a model vocab padded beyond the tokenizer's) count as boundary tokens of 0 bytes.
    int64_t token_bytes(int prev, int tgt) const {
        int V = vocab_size();
        bool prev_boundary = prev < 0 || prev >= V || is_boundary[prev];
        if (tgt < 0 || tgt >= V) return 0;
        return base_bytes[tgt] + (has_leading_space[tgt] && !prev_boundary ? 1 : 0);
    }
};

// Reads the model and builds the byte tables; fatal() naming the file if it is missing,
// truncated or not a SentencePiece model.
void tokenizer_load(Tokenizer* tok, const std::string& path);
// The same from bytes already in memory (`name` is used in error messages).
void tokenizer_parse(Tokenizer* tok, const std::string& name, const uint8_t* data, size_t size);
