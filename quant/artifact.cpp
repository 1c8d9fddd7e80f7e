// Artifact writer and validating reader; the format is in quant/artifact.h.
#include "quant/artifact.h"
#include "model/common.h"
#include "quant/pack.h"
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>

enum { H_MAGIC = 0, H_VERSION = 1, H_CFG = 2, H_NTENSORS = 40, H_NSTREAMS = 41, H_RAW = 42, H_PACKED = 44,
       H_CRC = 46, H_LC = 47, H_LP = 48, H_PB = 49, H_DELTA = 50, H_DICT = 51, H_HCRC = 255, H_INTS = 256 };

// The Config fields an artifact carries: the model's shape and math constants, and the
// quantization knobs the plan is derived from (the reader re-derives the plan and compares).
#define ART_INT_FIELDS(X)                                                                      \
    X(vocab_size) X(model_dim) X(num_layers) X(num_attn_layers) X(num_heads) X(num_kv_heads)   \
    X(mlp_mult) X(d_state) X(expand) X(ssm_headdim) X(ssm_ngroups) X(chunk_size)               \
    X(quant_bits_matrix) X(quant_bits_embed) X(quant_bits_ssm_dyn) X(quant_bits_scalar)
#define ART_FLOAT_FIELDS(X) X(rope_fraction) X(logit_softcap) X(rope_base) X(norm_eps) X(a_floor)

const char* layout_name(int layout) {
    static const char* names[] = {"packed", "bytes", "bytes_T", "f16", "f16_planes", "f32", "f32_planes"};
    return layout >= 0 && layout <= 6 ? names[layout] : "?";
}

// ---- checksums and LZMA

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
    static uint32_t table[256];
    static bool init = false;
    if (!init) {  // benign race: every thread writes the same values
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        init = true;
    }
    const uint8_t* b = (const uint8_t*)data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t lzma_dict_for(size_t n) {
    uint32_t d = 4096;
    while (d < n && d < (64u << 20)) d <<= 1;
    return d;
}

struct LzmaChain {  // the filter chain for raw encode/decode; options live as long as the chain
    lzma_options_lzma lz;
    lzma_options_delta delta;
    lzma_filter f[3];
    LzmaChain(const LzmaFilter& o, uint32_t dict) {
        if (lzma_lzma_preset(&lz, 9 | LZMA_PRESET_EXTREME)) fatal("liblzma: preset 9e not supported");
        lz.lc = (uint32_t)o.lc;
        lz.lp = (uint32_t)o.lp;
        lz.pb = (uint32_t)o.pb;
        lz.dict_size = dict;
        memset(&delta, 0, sizeof delta);
        delta.type = LZMA_DELTA_TYPE_BYTE;
        delta.dist = (uint32_t)o.delta;
        int k = 0;
        if (o.delta > 0) f[k++] = {LZMA_FILTER_DELTA, &delta};
        f[k++] = {LZMA_FILTER_LZMA2, &lz};
        f[k] = {LZMA_VLI_UNKNOWN, nullptr};
    }
};

static bool filter_ok(const LzmaFilter& f) {
    return f.lc >= 0 && f.lp >= 0 && f.lc + f.lp <= 4 && f.pb >= 0 && f.pb <= 4 && f.delta >= 0 && f.delta <= 256;
}

std::vector<uint8_t> lzma_raw_compress(const uint8_t* data, size_t n, const LzmaFilter& f, uint32_t dict_bytes) {
    if (!filter_ok(f)) fatal("lzma: bad filter lc %d lp %d pb %d delta %d", f.lc, f.lp, f.pb, f.delta);
    LzmaChain chain(f, dict_bytes);
    std::vector<uint8_t> out(n + n / 2 + 65536);
    size_t pos = 0;
    lzma_ret r = lzma_raw_buffer_encode(chain.f, nullptr, data, n, out.data(), &pos, out.size());
    if (r != LZMA_OK) fatal("liblzma: raw encode failed (code %d)", (int)r);
    out.resize(pos);
    return out;
}

// ---- little-endian byte buffers

struct Buf {
    std::vector<uint8_t> b;
    void put(const void* p, size_t n) { b.insert(b.end(), (const uint8_t*)p, (const uint8_t*)p + n); }
    void i32(int32_t v) { put(&v, 4); }
    void i64(int64_t v) { put(&v, 8); }
    void str(const std::string& s) { i32((int32_t)s.size()); put(s.data(), s.size()); }
};
struct Cursor {
    const uint8_t* p;
    int64_t n, at = 0;
    bool take(void* dst, int64_t k) {
        if (k < 0 || at + k > n) return false;
        memcpy(dst, p + at, (size_t)k);
        at += k;
        return true;
    }
    bool i32(int32_t* v) { return take(v, 4); }
    bool i64(int64_t* v) { return take(v, 8); }
    bool str(std::string* s) {
        int32_t len;
        if (!i32(&len) || len < 0 || len > 256 || at + len > n) return false;
        s->assign((const char*)p + at, (size_t)len);
        at += len;
        return true;
    }
};

// ---- stream encodings

static int64_t ints_bytes(int layout, const std::vector<int>& bits, int64_t r0, int64_t r1, int64_t cols) {
    if (layout == L_BYTES || layout == L_BYTES_T) return (r1 - r0) * cols;
    int64_t nbits = 0;
    for (int64_t r = r0; r < r1; r++) nbits += (int64_t)bits[r] * cols;
    return (nbits + 7) / 8;
}

static std::vector<uint8_t> encode_ints(const QTensor& t, const std::vector<int>& bits, int64_t r0, int64_t r1, int layout) {
    const int64_t C = t.plan.spec.cols;
    std::vector<uint8_t> out;
    out.reserve((size_t)ints_bytes(layout, bits, r0, r1, C));
    if (layout == L_PACKED) {
        BitWriter w(&out);
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < C; c++) w.put(t.q[r * C + c], bits[r]);
        w.flush();
    } else if (layout == L_BYTES) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < C; c++) out.push_back((uint8_t)t.q[r * C + c]);
    } else {
        for (int64_t c = 0; c < C; c++)
            for (int64_t r = r0; r < r1; r++) out.push_back((uint8_t)t.q[r * C + c]);
    }
    return out;
}

// false if a value does not fit its row's width (a BYTES stream can hold any byte)
static bool decode_ints(QTensor* t, const std::vector<int>& bits, int64_t r0, int64_t r1, int layout, const uint8_t* in, int64_t n) {
    const int64_t C = t->plan.spec.cols;
    if (layout == L_PACKED) {
        BitReader rd(in, n);
        for (int64_t r = r0; r < r1; r++)
            for (int64_t c = 0; c < C; c++) {
                int32_t v;
                if (!rd.get(&v, bits[r])) return false;
                t->q[r * C + c] = (int8_t)v;
            }
    } else {
        int64_t k = 0;
        for (int64_t a = 0; a < (layout == L_BYTES ? r1 - r0 : C); a++)
            for (int64_t b = 0; b < (layout == L_BYTES ? C : r1 - r0); b++) {
                int64_t r = layout == L_BYTES ? r0 + a : r0 + b, c = layout == L_BYTES ? b : a;
                t->q[r * C + c] = (int8_t)in[k++];
            }
    }
    for (int64_t r = r0; r < r1; r++) {
        const int qmax = (1 << (bits[r] - 1)) - 1;
        for (int64_t c = 0; c < C; c++)
            if (t->q[r * C + c] < -qmax || t->q[r * C + c] > qmax) return false;
    }
    return true;
}

// Floats as little-endian words of `width` bytes (2: fp16 bits, 4: fp32); planes: byte k of
// every word together, low bytes first (the exponent bytes of neighbours are alike).
static std::vector<uint8_t> encode_words(const uint8_t* words, int64_t n, int width, bool planes) {
    std::vector<uint8_t> out((size_t)(n * width));
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < width; k++) out[planes ? k * n + i : i * width + k] = words[i * width + k];
    return out;
}
static void decode_words(uint8_t* words, const uint8_t* in, int64_t n, int width, bool planes) {
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < width; k++) words[i * width + k] = in[planes ? k * n + i : i * width + k];
}
static std::vector<uint8_t> scalar_words(const QTensor& t) {
    const int64_t n = t.plan.spec.numel();
    std::vector<uint8_t> w;
    if (t.plan.groups[0].bits == 16) {
        std::vector<uint16_t> h((size_t)n);
        for (int64_t i = 0; i < n; i++) h[i] = float_to_half(t.values[i]);
        w.assign((const uint8_t*)h.data(), (const uint8_t*)h.data() + 2 * n);
    } else {
        w.assign((const uint8_t*)t.values.data(), (const uint8_t*)t.values.data() + 4 * n);
    }
    return w;
}

// ---- writer

static void header_config(const Config& c, int32_t* h) {
    int k = H_CFG;
#define ART_PUT_I(f) h[k++] = (int32_t)c.f;
#define ART_PUT_F(f) { float v = (float)c.f; memcpy(h + k++, &v, 4); }
    ART_INT_FIELDS(ART_PUT_I)
    h[k++] = c.a_activation() == AAct::heavytail ? 1 : 0;
    ART_FLOAT_FIELDS(ART_PUT_F)
#undef ART_PUT_I
#undef ART_PUT_F
}

std::string artifact_config_diff(const Config& art, const Config& cfg) {
    char buf[256];
#define ART_DIFF_I(f) if (art.f != cfg.f) { snprintf(buf, sizeof buf, #f ": artifact %d, config %d", art.f, cfg.f); return buf; }
#define ART_DIFF_F(f) if ((float)art.f != (float)cfg.f) { snprintf(buf, sizeof buf, #f ": artifact %g, config %g", art.f, cfg.f); return buf; }
    ART_INT_FIELDS(ART_DIFF_I)
    ART_FLOAT_FIELDS(ART_DIFF_F)
#undef ART_DIFF_I
#undef ART_DIFF_F
    if (art.a_activation() != cfg.a_activation()) return "a_act: artifact " + art.a_act + ", config " + cfg.a_act;
    return "";
}

static void check_model(const Config& cfg, const QuantModel& qm) {
    auto plan = quant_plan(cfg);
    if (plan.size() != qm.tensors.size()) fatal("artifact_write: the model has %zu tensors, the config %zu", qm.tensors.size(), plan.size());
    for (size_t k = 0; k < plan.size(); k++) {
        const QTensor& t = qm.tensors[k];
        const TensorPlan& p = plan[k];
        bool same = t.plan.spec.name == p.spec.name && t.plan.spec.rows == p.spec.rows && t.plan.spec.cols == p.spec.cols &&
                    t.plan.kind == p.kind && t.plan.groups.size() == p.groups.size();
        for (size_t g = 0; same && g < p.groups.size(); g++)
            same = t.plan.groups[g].row0 == p.groups[g].row0 && t.plan.groups[g].row1 == p.groups[g].row1 &&
                   t.plan.groups[g].bits == p.groups[g].bits;
        if (!same) fatal("artifact_write: tensor %zu (%s) does not match the config's quantization plan", k, t.plan.spec.name.c_str());
        size_t want_q = p.is_matrix() ? (size_t)p.spec.numel() : 0, want_s = p.is_matrix() ? (size_t)p.spec.rows : 0;
        size_t want_v = p.is_matrix() ? 0 : (size_t)p.spec.numel();
        if (t.q.size() != want_q || t.scale.size() != want_s || t.values.size() != want_v)
            fatal("artifact_write: tensor %s has %zu ints, %zu scales, %zu values (want %zu, %zu, %zu)", p.spec.name.c_str(),
                  t.q.size(), t.scale.size(), t.values.size(), want_q, want_s, want_v);
    }
}

struct Pending {  // one stream while its layout is chosen
    StreamInfo info;
    std::vector<std::vector<uint8_t>> cand;
    std::vector<int> cand_layout;
    int pick = 0;
};

void artifact_write(const char* path, const Config& cfg, const QuantModel& qm, const ArtifactOptions& opt, ArtifactInfo* info) {
    check_model(cfg, qm);
    if (opt.filters.empty() || opt.int_layouts.empty() || opt.float_planes.empty()) fatal("artifact_write: empty candidate list in the options");
    std::vector<Pending> streams;
    for (int k = 0; k < (int)qm.tensors.size(); k++) {
        const QTensor& t = qm.tensors[k];
        const int64_t rows = t.plan.spec.rows;
        if (!t.plan.is_matrix()) {
            Pending p{{k, 1, 0, rows, 0, 0, 0, 0, "all"}, {}, {}, 0};
            std::vector<uint8_t> words = scalar_words(t);
            const int width = t.plan.groups[0].bits / 8;
            const int plain = width == 2 ? L_F16 : L_F32, planes = width == 2 ? L_F16_PLANES : L_F32_PLANES;
            for (bool pl : opt.float_planes) {
                p.cand.push_back(encode_words(words.data(), t.plan.spec.numel(), width, pl));
                p.cand_layout.push_back(pl ? planes : plain);
            }
            streams.push_back(std::move(p));
            continue;
        }
        Pending s{{k, 0, 0, rows, 0, 0, 0, 0, "scales"}, {}, {}, 0};
        for (bool pl : opt.float_planes) {
            s.cand.push_back(encode_words((const uint8_t*)t.scale.data(), rows, 2, pl));
            s.cand_layout.push_back(pl ? L_F16_PLANES : L_F16);
        }
        streams.push_back(std::move(s));
        const std::vector<int> bits = plan_row_bits(t.plan);
        std::vector<RowGroup> parts = opt.split_groups ? t.plan.groups : std::vector<RowGroup>{{"all", 0, rows, 0}};
        for (auto& g : parts) {
            Pending p{{k, 1, g.row0, g.row1, 0, 0, 0, 0, g.name}, {}, {}, 0};
            for (int layout : opt.int_layouts) {
                if (layout != L_BYTES && layout != L_PACKED && layout != L_BYTES_T) fatal("artifact_write: %d is not an integer layout", layout);
                p.cand.push_back(encode_ints(t, bits, g.row0, g.row1, layout));
                p.cand_layout.push_back(layout);
            }
            streams.push_back(std::move(p));
        }
    }
    // each stream keeps the candidate that compresses smallest on its own (first filter candidate)
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < streams.size(); i++) {
        Pending& p = streams[i];
        int64_t best = -1;
        for (size_t c = 0; c < p.cand.size(); c++) {
            int64_t z = (int64_t)lzma_raw_compress(p.cand[c].data(), p.cand[c].size(), opt.filters[0], lzma_dict_of(opt.filters[0], p.cand[c].size())).size();
            if (best < 0 || z < best) { best = z; p.pick = (int)c; }
        }
        p.info.layout = p.cand_layout[p.pick];
        p.info.bytes = (int64_t)p.cand[p.pick].size();
        p.info.alone_bytes = best;
    }

    Buf pay;
    size_t si = 0;
    for (int k = 0; k < (int)qm.tensors.size(); k++) {
        const QTensor& t = qm.tensors[k];
        pay.str(t.plan.spec.name);
        pay.i32((int32_t)t.plan.kind);
        pay.i64(t.plan.spec.rows);
        pay.i64(t.plan.spec.cols);
        pay.i32((int32_t)t.plan.groups.size());
        for (auto& g : t.plan.groups) { pay.str(g.name); pay.i64(g.row0); pay.i64(g.row1); pay.i32(g.bits); }
        size_t n = 0;
        while (si + n < streams.size() && streams[si + n].info.tensor == k) n++;
        pay.i32((int32_t)n);
        for (size_t j = si; j < si + n; j++) {
            const StreamInfo& s = streams[j].info;
            pay.i32(s.what); pay.i64(s.row0); pay.i64(s.row1); pay.i32(s.layout); pay.i64(s.bytes);
        }
        si += n;
    }
    for (auto& p : streams) {
        p.info.offset = (int64_t)pay.b.size();
        pay.put(p.cand[p.pick].data(), p.cand[p.pick].size());
    }

    // the whole payload under each candidate (in parallel: ~12 s each at full size); keep the smallest
    std::vector<std::vector<uint8_t>> zs(opt.filters.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < opt.filters.size(); i++)
        zs[i] = lzma_raw_compress(pay.b.data(), pay.b.size(), opt.filters[i], lzma_dict_of(opt.filters[i], pay.b.size()));
    size_t pick = 0;
    for (size_t i = 1; i < zs.size(); i++)
        if (zs[i].size() < zs[pick].size()) pick = i;
    std::vector<uint8_t> best = std::move(zs[pick]);
    LzmaFilter best_f = opt.filters[pick];
    const uint32_t dict = lzma_dict_of(best_f, pay.b.size());
    best_f.dict = dict;
    zs.clear();

    int32_t h[H_INTS] = {0};
    h[H_MAGIC] = kArtifactMagic;
    h[H_VERSION] = kArtifactVersion;
    header_config(cfg, h);
    h[H_NTENSORS] = (int32_t)qm.tensors.size();
    h[H_NSTREAMS] = (int32_t)streams.size();
    int64_t raw = (int64_t)pay.b.size(), packed = (int64_t)best.size();
    memcpy(h + H_RAW, &raw, 8);
    memcpy(h + H_PACKED, &packed, 8);
    h[H_CRC] = (int32_t)crc32_update(0, pay.b.data(), pay.b.size());
    h[H_LC] = best_f.lc; h[H_LP] = best_f.lp; h[H_PB] = best_f.pb; h[H_DELTA] = best_f.delta;
    h[H_DICT] = (int32_t)dict;
    h[H_HCRC] = (int32_t)crc32_update(0, h, 4 * H_HCRC);

    std::string tmp = std::string(path) + ".tmp";
    FILE* f = fopen_check(tmp.c_str(), "wb");
    fwrite_check(h, 4, H_INTS, f, tmp.c_str());
    fwrite_check(best.data(), 1, best.size(), f, tmp.c_str());
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) fatal("artifact '%s': flush/fsync failed: %s", tmp.c_str(), strerror(errno));
    if (fclose(f) != 0) fatal("artifact '%s': close failed: %s", tmp.c_str(), strerror(errno));
    if (rename(tmp.c_str(), path) != 0) fatal("artifact: rename '%s' -> '%s' failed: %s", tmp.c_str(), path, strerror(errno));

    if (info) {
        memcpy(info->header, h, sizeof h);
        info->file_bytes = (int64_t)sizeof h + packed;
        info->payload_bytes = raw;
        info->compressed_bytes = packed;
        info->payload_crc = (uint32_t)h[H_CRC];
        info->filter = best_f;
        info->streams.clear();
        for (auto& p : streams) info->streams.push_back(p.info);
    }
}

// ---- reader

static std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static std::string strf(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

bool artifact_load(const char* path, Config* cfg, QuantModel* qm, ArtifactInfo* info, std::string* err) {
#define BAD(...) do { *err = std::string("artifact '") + path + "': " + strf(__VA_ARGS__); if (f) fclose(f); return false; } while (0)
    FILE* f = fopen(path, "rb");
    if (!f) BAD("cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) BAD("cannot stat: %s", strerror(errno));
    const int64_t file_bytes = st.st_size;
    int32_t h[H_INTS];
    if (file_bytes < (int64_t)sizeof h) BAD("truncated: %lld bytes, shorter than the %d-byte header", (long long)file_bytes, (int)sizeof h);
    if (fread(h, 4, H_INTS, f) != H_INTS) BAD("read error in the header");
    if (h[H_MAGIC] != kArtifactMagic) BAD("wrong magic %d (expected %d): not a model artifact", h[H_MAGIC], kArtifactMagic);
    if (h[H_VERSION] != kArtifactVersion) BAD("version %d, this build reads version %d", h[H_VERSION], kArtifactVersion);
    if ((uint32_t)h[H_HCRC] != crc32_update(0, h, 4 * H_HCRC)) BAD("header checksum mismatch: the header is corrupt");
    int64_t raw, packed;
    memcpy(&raw, h + H_RAW, 8);
    memcpy(&packed, h + H_PACKED, 8);
    if (raw <= 0 || packed <= 0 || raw > (int64_t)1 << 34) BAD("bad payload sizes in the header (%lld raw, %lld compressed)", (long long)raw, (long long)packed);
    if (file_bytes < (int64_t)sizeof h + packed)
        BAD("truncated: %lld bytes, the header promises %lld", (long long)file_bytes, (long long)sizeof h + (long long)packed);
    if (file_bytes > (int64_t)sizeof h + packed)
        BAD("%lld trailing bytes after the compressed payload", (long long)(file_bytes - (int64_t)sizeof h - packed));

    // the model fields from the header; sanity first so that shape arithmetic cannot misbehave
    int k = H_CFG;
#define ART_GET_I(fld) { int32_t v = h[k++]; if (v < 0 || v > 65536) BAD("header field " #fld " = %d is out of range", v); cfg->fld = v; }
#define ART_GET_F(fld) { float v; memcpy(&v, h + k++, 4); if (!std::isfinite(v)) BAD("header field " #fld " is not finite"); cfg->fld = v; }
    ART_INT_FIELDS(ART_GET_I)
    cfg->a_act = h[k++] == 1 ? "heavytail" : "softplus";
    ART_FLOAT_FIELDS(ART_GET_F)
#undef ART_GET_I
#undef ART_GET_F
    if (cfg->num_layers < 1 || cfg->num_layers > kMaxLayers || cfg->num_heads < 1 || cfg->ssm_headdim < 1 || cfg->model_dim < 1 ||
        cfg->num_kv_heads < 1 || cfg->d_state < 1 || cfg->expand < 1)
        BAD("header config has zero or too many layers, heads or dims");
    for (int b : {cfg->quant_bits_matrix, cfg->quant_bits_embed, cfg->quant_bits_ssm_dyn})
        if (b < 2 || b > 8) BAD("header config has matrix bit width %d (2..8)", b);
    if (cfg->quant_bits_scalar != 16 && cfg->quant_bits_scalar != 32) BAD("header config has scalar width %d (16 or 32)", cfg->quant_bits_scalar);
    cfg->validate();
    const std::vector<TensorPlan> plan = quant_plan(*cfg);
    if (h[H_NTENSORS] != (int32_t)plan.size()) BAD("size mismatch: %d tensors in the file, the config has %zu", h[H_NTENSORS], plan.size());
    LzmaFilter lf{h[H_LC], h[H_LP], h[H_PB], h[H_DELTA], (uint32_t)h[H_DICT]};
    if (!filter_ok(lf) || h[H_DICT] < 4096) BAD("bad LZMA settings in the header");

    std::vector<uint8_t> z((size_t)packed), pay((size_t)raw);
    if (fread(z.data(), 1, z.size(), f) != z.size()) BAD("read error in the payload");
    fclose(f);
    f = nullptr;
    {
        LzmaChain chain(lf, (uint32_t)h[H_DICT]);
        size_t in_pos = 0, out_pos = 0;
        lzma_ret r = lzma_raw_buffer_decode(chain.f, nullptr, z.data(), &in_pos, z.size(), pay.data(), &out_pos, pay.size());
        if (r != LZMA_OK || in_pos != z.size() || out_pos != pay.size())
            BAD("corrupt compressed payload (liblzma code %d, %zu of %zu bytes read, %zu of %lld written)", (int)r, in_pos,
                z.size(), out_pos, (long long)raw);
    }
    const uint32_t crc = crc32_update(0, pay.data(), pay.size());
    if (crc != (uint32_t)h[H_CRC]) BAD("checksum mismatch: the payload is corrupt (CRC32 %08x, the header says %08x)", crc, (uint32_t)h[H_CRC]);

    // directory, checked entry by entry against the plan
    Cursor cur{pay.data(), raw};
    qm->tensors.clear();
    std::vector<StreamInfo> streams;
    for (int t = 0; t < (int)plan.size(); t++) {
        const TensorPlan& p = plan[t];
        std::string name;
        int32_t kind, ng;
        int64_t rows, cols;
        if (!cur.str(&name) || !cur.i32(&kind) || !cur.i64(&rows) || !cur.i64(&cols) || !cur.i32(&ng)) BAD("directory ends early at tensor %d", t);
        if (name != p.spec.name || kind != (int32_t)p.kind || rows != p.spec.rows || cols != p.spec.cols || ng != (int32_t)p.groups.size())
            BAD("size mismatch: tensor %d is %s (%lld x %lld, %d groups), the header's config wants %s (%lld x %lld, %zu groups)", t,
                name.c_str(), (long long)rows, (long long)cols, ng, p.spec.name.c_str(), (long long)p.spec.rows, (long long)p.spec.cols, p.groups.size());
        for (auto& g : p.groups) {
            std::string gn;
            int64_t r0, r1;
            int32_t bits;
            if (!cur.str(&gn) || !cur.i64(&r0) || !cur.i64(&r1) || !cur.i32(&bits)) BAD("directory ends early in %s", name.c_str());
            if (gn != g.name || r0 != g.row0 || r1 != g.row1 || bits != g.bits)
                BAD("size mismatch: %s group %s rows [%lld, %lld) at %d bits, the config wants %s [%lld, %lld) at %d bits", name.c_str(),
                    gn.c_str(), (long long)r0, (long long)r1, bits, g.name.c_str(), (long long)g.row0, (long long)g.row1, g.bits);
        }
        int32_t ns;
        if (!cur.i32(&ns) || ns < 1 || ns > 1 + (int32_t)p.groups.size()) BAD("bad stream count in %s", name.c_str());
        const std::vector<int> bits = plan_row_bits(p);
        int64_t next_row = 0;
        bool have_scales = false;
        for (int s = 0; s < ns; s++) {
            StreamInfo si{t, 0, 0, 0, 0, 0, 0, 0, ""};
            if (!cur.i32(&si.what) || !cur.i64(&si.row0) || !cur.i64(&si.row1) || !cur.i32(&si.layout) || !cur.i64(&si.bytes))
                BAD("directory ends early in %s's streams", name.c_str());
            int64_t want;
            if (si.what == 0) {
                if (!p.is_matrix() || have_scales || si.row0 != 0 || si.row1 != rows || (si.layout != L_F16 && si.layout != L_F16_PLANES))
                    BAD("size mismatch: bad scale stream for %s", name.c_str());
                have_scales = true;
                want = 2 * rows;
                si.group = "scales";
            } else if (si.what == 1) {
                if (si.row0 != next_row || si.row1 <= si.row0 || si.row1 > rows) BAD("size mismatch: %s streams do not tile its rows", name.c_str());
                next_row = si.row1;
                if (p.is_matrix()) {
                    if (si.layout != L_PACKED && si.layout != L_BYTES && si.layout != L_BYTES_T) BAD("bad layout %d in %s", si.layout, name.c_str());
                    want = ints_bytes(si.layout, bits, si.row0, si.row1, cols);
                } else {
                    const bool f16 = p.groups[0].bits == 16;
                    if (f16 ? (si.layout != L_F16 && si.layout != L_F16_PLANES) : (si.layout != L_F32 && si.layout != L_F32_PLANES))
                        BAD("bad layout %d in %s", si.layout, name.c_str());
                    want = (f16 ? 2 : 4) * p.spec.numel();
                }
                si.group = "all";
                for (auto& g : p.groups)
                    if (g.row0 == si.row0 && g.row1 == si.row1) si.group = g.name;
            } else {
                BAD("bad stream kind %d in %s", si.what, name.c_str());
            }
            if (si.bytes != want) BAD("size mismatch: a stream of %s has %lld bytes, its shape needs %lld", name.c_str(), (long long)si.bytes, (long long)want);
            streams.push_back(si);
        }
        if (next_row != rows || have_scales != p.is_matrix()) BAD("size mismatch: %s streams do not cover the tensor", name.c_str());
        QTensor qt;
        qt.plan = p;
        if (p.is_matrix()) { qt.q.resize((size_t)p.spec.numel()); qt.scale.resize((size_t)rows); }
        else qt.values.resize((size_t)p.spec.numel());
        qm->tensors.push_back(std::move(qt));
    }
    if ((int32_t)streams.size() != h[H_NSTREAMS]) BAD("size mismatch: %zu streams in the directory, the header says %d", streams.size(), h[H_NSTREAMS]);
    for (auto& s : streams) {
        s.offset = cur.at;
        if (s.offset + s.bytes > raw) BAD("size mismatch: the streams run past the end of the payload");
        QTensor& t = qm->tensors[s.tensor];
        const uint8_t* in = pay.data() + s.offset;
        if (s.what == 0) {
            decode_words((uint8_t*)t.scale.data(), in, t.plan.spec.rows, 2, s.layout == L_F16_PLANES);
        } else if (t.plan.is_matrix()) {
            if (!decode_ints(&t, plan_row_bits(t.plan), s.row0, s.row1, s.layout, in, s.bytes))
                BAD("%s: a value does not fit its row's bit width", t.plan.spec.name.c_str());
        } else {
            const int64_t n = t.plan.spec.numel();
            if (t.plan.groups[0].bits == 16) {
                std::vector<uint16_t> w((size_t)n);
                decode_words((uint8_t*)w.data(), in, n, 2, s.layout == L_F16_PLANES);
                for (int64_t i = 0; i < n; i++) t.values[i] = half_to_float(w[i]);
            } else {
                decode_words((uint8_t*)t.values.data(), in, n, 4, s.layout == L_F32_PLANES);
            }
        }
        cur.at += s.bytes;
    }
    if (cur.at != raw) BAD("size mismatch: %lld payload bytes left after the last stream", (long long)(raw - cur.at));
    if (info) {
        memcpy(info->header, h, sizeof h);
        info->file_bytes = file_bytes;
        info->payload_bytes = raw;
        info->compressed_bytes = packed;
        info->payload_crc = crc;
        info->filter = lf;
        info->streams = streams;
        info->payload = std::move(pay);
    }
    return true;
#undef BAD
}

void artifact_read(const char* path, Config* cfg, QuantModel* qm, ArtifactInfo* info) {
    std::string err;
    if (!artifact_load(path, cfg, qm, info, &err)) fatal("%s", err.c_str());
}
