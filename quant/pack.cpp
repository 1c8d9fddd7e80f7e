// Bit packing and fp16 conversion; the format is in quant/pack.h.
#include "quant/pack.h"
#include "model/common.h"
#include <cstring>

static void check_bits(int bits) {
    if (!((bits >= 2 && bits <= 8) || bits == 16)) fatal("pack: unsupported bit width %d (2..8 or 16)", bits);
}

int64_t packed_bytes(int64_t n, int bits) { return (n * bits + 7) / 8; }

void BitWriter::put(int32_t v, int bits) {
    const int32_t half = 1 << (bits - 1);
    if (v < -half || v >= half) fatal("pack: value %d does not fit %d signed bits", v, bits);
    acc |= (uint64_t)(uint32_t)(v + half) << nacc;
    nacc += bits;
    while (nacc >= 8) {
        out->push_back((uint8_t)(acc & 0xff));
        acc >>= 8;
        nacc -= 8;
    }
}

void BitWriter::flush() {
    if (nacc > 0) out->push_back((uint8_t)(acc & 0xff));
    acc = 0;
    nacc = 0;
}

bool BitReader::get(int32_t* v, int bits) {
    while (nacc < bits) {
        if (pos >= nbytes) return false;
        acc |= (uint64_t)in[pos++] << nacc;
        nacc += 8;
    }
    *v = (int32_t)(acc & ((1ull << bits) - 1)) - (1 << (bits - 1));
    acc >>= bits;
    nacc -= bits;
    return true;
}

void pack_signed(uint8_t* out, const int32_t* v, int64_t n, int bits) {
    check_bits(bits);
    std::vector<uint8_t> buf;
    buf.reserve((size_t)packed_bytes(n, bits));
    BitWriter w(&buf);
    for (int64_t i = 0; i < n; i++) w.put(v[i], bits);
    w.flush();
    if (!buf.empty()) memcpy(out, buf.data(), buf.size());
}

void unpack_signed(int32_t* v, const uint8_t* in, int64_t n, int bits) {
    check_bits(bits);
    BitReader r(in, packed_bytes(n, bits));
    for (int64_t i = 0; i < n; i++)
        if (!r.get(&v[i], bits)) fatal("unpack: stream ends before value %lld of %lld", (long long)i, (long long)n);
}

uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));  // inf / NaN
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00);  // rounds past 65504: inf
    if (absx < 0x38800000) {  // subnormal half (or zero): value = m * 2^-24
        float a;
        memcpy(&a, &absx, 4);
        // a * 2^24 rounded to nearest even is the subnormal mantissa (exact in float arithmetic)
        return (uint16_t)(sign | (uint32_t)std::nearbyint(a * 16777216.0f));
    }
    uint32_t e = (absx >> 23) - 127 + 15, m = absx & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fff;  // the 13 dropped bits: round to nearest, ties to even
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;  // a carry into the exponent is correct
    return (uint16_t)(sign | h);
}

float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float f;
    if (e == 0) {
        f = (float)m * (1.0f / 16777216.0f);
        uint32_t x;
        memcpy(&x, &f, 4);
        x |= sign;
        memcpy(&f, &x, 4);
        return f;
    }
    uint32_t x = e == 31 ? (sign | 0x7f800000 | (m << 13)) : (sign | ((e - 15 + 127) << 23) | (m << 13));
    memcpy(&f, &x, 4);
    return f;
}
