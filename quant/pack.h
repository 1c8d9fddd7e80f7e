// Tight bit packing of small signed integers, and fp16 conversion for the artifact.
// A value v of b bits (2..8, or 16) is stored as the unsigned offset code u = v + 2^(b-1)
// in [0, 2^b), written LSB-first into a continuous bit stream: n values take exactly
// ceil(n*b/8) bytes. b = 16 is the passthrough for fp16 bit patterns (as int16).
// Offset codes (not two's complement) so that unpacking needs no sign extension per width.
#pragma once
#include <cstdint>
#include <vector>

int64_t packed_bytes(int64_t n, int bits);
// out must hold packed_bytes(n, bits); values outside [-2^(b-1), 2^(b-1)) are a fatal() (a bug).
void pack_signed(uint8_t* out, const int32_t* v, int64_t n, int bits);
void unpack_signed(int32_t* v, const uint8_t* in, int64_t n, int bits);

// A growing bit stream for rows of different widths (in_proj rows are INT6 and INT8 in one tensor).
struct BitWriter {
    std::vector<uint8_t>* out;
    uint64_t acc = 0;
    int nacc = 0;
    explicit BitWriter(std::vector<uint8_t>* o) : out(o) {}
    void put(int32_t v, int bits);
    void flush();  // pad the last byte with zero bits
};
struct BitReader {
    const uint8_t* in;
    int64_t nbytes, pos = 0;
    uint64_t acc = 0;
    int nacc = 0;
    BitReader(const uint8_t* p, int64_t n) : in(p), nbytes(n) {}
    bool get(int32_t* v, int bits);  // false when the stream is exhausted
};

// IEEE binary16, round to nearest even; overflow goes to +-inf, NaN stays NaN.
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);
