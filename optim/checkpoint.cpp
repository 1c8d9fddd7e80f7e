// Checkpoint writer and validating reader; the format is in optim/checkpoint.h.
#include "optim/checkpoint.h"
#include "model/common.h"
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

enum { H_MAGIC = 0, H_VERSION = 1, H_SHAPE = 2, H_STEP = 32, H_ELAPSED = 34, H_RNG = 36, H_LOADER = 38,
       H_NARENAS = 40, H_ARENAS = 41, H_HASH = 64, H_GIT = 80, H_GIT_INTS = 16,
       H_QAT_STEP = 96,  // a double; zero in files from before it existed (= QAT not started)
       H_INTS = 256 };

// The fields that decide the parameter layout; a resumed run must agree on every one.
#define CKPT_SHAPE_FIELDS(X)                                                                   \
    X(vocab_size) X(model_dim) X(num_layers) X(num_attn_layers) X(num_heads) X(num_kv_heads)   \
    X(mlp_mult) X(d_state) X(expand) X(ssm_headdim) X(ssm_ngroups) X(chunk_size)

static void put64(int32_t* h, int at, uint64_t v) { memcpy(h + at, &v, 8); }
static uint64_t get64(const int32_t* h, int at) { uint64_t v; memcpy(&v, h + at, 8); return v; }

static void put_git(int32_t* h, const std::string& g) {
    memcpy(h + H_GIT, g.data(), std::min(g.size(), (size_t)H_GIT_INTS * 4 - 1));
}
static std::string get_git(const int32_t* h) {
    char b[H_GIT_INTS * 4 + 1] = {0};
    memcpy(b, h + H_GIT, H_GIT_INTS * 4);
    return b;
}

static void shape_fields(const Config& c, int32_t* h) {
    int k = H_SHAPE;
#define CKPT_PUT(f) h[k++] = (int32_t)c.f;
    CKPT_SHAPE_FIELDS(CKPT_PUT)
#undef CKPT_PUT
    float rf = (float)c.rope_fraction;
    memcpy(h + k, &rf, 4);
}

// FNV-1a over 8-byte words (then the tail bytes): a corruption check, fast enough for 500 MB.
struct Fnv {
    uint64_t h = 1469598103934665603ull;
    void add(const void* p, size_t n) {
        const uint8_t* b = (const uint8_t*)p;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, b + i, 8);
            h = (h ^ w) * 1099511628211ull;
        }
        for (; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    }
};

static uint64_t payload_hash(const CkptState& s) {
    Fnv f;
    f.add(s.loader.data(), s.loader.size());
    for (auto& a : s.arenas) f.add(a.data, (size_t)a.n * sizeof(float));
    return f.h;
}

void checkpoint_write(const char* path, const Config& c, const CkptState& s) {
    if ((int)s.arenas.size() > kCkptMaxArenas) fatal("checkpoint '%s': %d arenas, at most %d", path, (int)s.arenas.size(), kCkptMaxArenas);
    int32_t h[H_INTS] = {0};
    h[H_MAGIC] = kCkptMagic;
    h[H_VERSION] = kCkptVersion;
    shape_fields(c, h);
    put64(h, H_STEP, (uint64_t)s.step);
    uint64_t el;
    memcpy(&el, &s.elapsed_s, 8);
    put64(h, H_ELAPSED, el);
    put64(h, H_RNG, s.rng_state);
    uint64_t qs;
    memcpy(&qs, &s.qat_step, 8);
    put64(h, H_QAT_STEP, qs);
    put64(h, H_LOADER, (uint64_t)s.loader.size());
    h[H_NARENAS] = (int32_t)s.arenas.size();
    for (size_t k = 0; k < s.arenas.size(); k++) put64(h, H_ARENAS + 2 * (int)k, (uint64_t)s.arenas[k].n);
    put64(h, H_HASH, payload_hash(s));
    put_git(h, s.git_hash);

    std::string tmp = std::string(path) + ".tmp";
    FILE* f = fopen_check(tmp.c_str(), "wb");
    fwrite_check(h, sizeof(int32_t), H_INTS, f, tmp.c_str());
    if (!s.loader.empty()) fwrite_check(s.loader.data(), 1, s.loader.size(), f, tmp.c_str());
    for (auto& a : s.arenas) fwrite_check(a.data, sizeof(float), (size_t)a.n, f, tmp.c_str());
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) fatal("checkpoint '%s': flush/fsync failed: %s", tmp.c_str(), strerror(errno));
    if (fclose(f) != 0) fatal("checkpoint '%s': close failed: %s", tmp.c_str(), strerror(errno));
    if (rename(tmp.c_str(), path) != 0) fatal("checkpoint: rename '%s' -> '%s' failed: %s", tmp.c_str(), path, strerror(errno));
    // the rename itself is durable only once the directory is
    std::string dir(path);
    size_t slash = dir.rfind('/');
    dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : dir.substr(0, slash));
    int fd = open(dir.c_str(), O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
}

void checkpoint_read(const char* path, const Config& c, CkptState* s) {
    FILE* f = fopen_check(path, "rb");
    struct stat st;
    if (fstat(fileno(f), &st) != 0) fatal("checkpoint '%s': cannot stat: %s", path, strerror(errno));
    const int64_t file_bytes = st.st_size;
    int32_t h[H_INTS];
    if (file_bytes < (int64_t)sizeof(h))
        fatal("checkpoint '%s': truncated: %lld bytes, shorter than the %d-byte header", path, (long long)file_bytes, (int)sizeof(h));
    fread_check(h, sizeof(int32_t), H_INTS, f, path);
    if (h[H_MAGIC] != kCkptMagic) fatal("checkpoint '%s': wrong magic %d (expected %d): not a checkpoint", path, h[H_MAGIC], kCkptMagic);
    if (h[H_VERSION] != kCkptVersion) fatal("checkpoint '%s': version %d, this build reads version %d", path, h[H_VERSION], kCkptVersion);
    int32_t want[H_INTS] = {0};
    shape_fields(c, want);
    int k = H_SHAPE;
#define CKPT_CHECK(fld)                                                                                     \
    if (h[k] != want[k]) fatal("checkpoint '%s': config mismatch: " #fld " is %d in the file, %d in this run", path, h[k], want[k]); \
    k++;
    CKPT_SHAPE_FIELDS(CKPT_CHECK)
#undef CKPT_CHECK
    if (h[k] != want[k]) {
        float a, b;
        memcpy(&a, h + k, 4);
        memcpy(&b, want + k, 4);
        fatal("checkpoint '%s': config mismatch: rope_fraction is %g in the file, %g in this run", path, a, b);
    }
    const int64_t loader_bytes = (int64_t)get64(h, H_LOADER);
    if (loader_bytes != (int64_t)s->loader.size())
        fatal("checkpoint '%s': loader state is %lld bytes in the file, this run expects %lld", path, (long long)loader_bytes, (long long)s->loader.size());
    if (h[H_NARENAS] != (int32_t)s->arenas.size())
        fatal("checkpoint '%s': %d arenas in the file, this run expects %d", path, h[H_NARENAS], (int)s->arenas.size());
    int64_t expect_bytes = (int64_t)sizeof(h) + loader_bytes;
    for (size_t a = 0; a < s->arenas.size(); a++) {
        int64_t n = (int64_t)get64(h, H_ARENAS + 2 * (int)a);
        if (n != s->arenas[a].n)
            fatal("checkpoint '%s': arena %s has %lld floats in the file, this run expects %lld", path, s->arenas[a].name, (long long)n, (long long)s->arenas[a].n);
        expect_bytes += n * (int64_t)sizeof(float);
    }
    if (file_bytes < expect_bytes)
        fatal("checkpoint '%s': truncated: %lld bytes, the header promises %lld", path, (long long)file_bytes, (long long)expect_bytes);
    if (file_bytes > expect_bytes)
        fatal("checkpoint '%s': %lld trailing bytes after the last arena", path, (long long)(file_bytes - expect_bytes));
    if (loader_bytes) fread_check(s->loader.data(), 1, (size_t)loader_bytes, f, path);
    for (auto& a : s->arenas) fread_check(a.data, sizeof(float), (size_t)a.n, f, path);
    fclose(f);
    if (payload_hash(*s) != get64(h, H_HASH)) fatal("checkpoint '%s': checksum mismatch: the payload is corrupt", path);
    s->step = (int64_t)get64(h, H_STEP);
    uint64_t el = get64(h, H_ELAPSED);
    memcpy(&s->elapsed_s, &el, 8);
    s->rng_state = get64(h, H_RNG);
    uint64_t qs = get64(h, H_QAT_STEP);
    memcpy(&s->qat_step, &qs, 8);
    s->git_hash = get_git(h);
}

void checkpoint_header(const char* path, Config* c, CkptHeader* hd) {
    FILE* f = fopen_check(path, "rb");
    int32_t h[H_INTS];
    if (fread(h, sizeof(int32_t), H_INTS, f) != H_INTS)
        fatal("checkpoint '%s': truncated: shorter than the %d-byte header", path, (int)sizeof(h));
    fclose(f);
    if (h[H_MAGIC] != kCkptMagic) fatal("checkpoint '%s': wrong magic %d (expected %d): not a checkpoint", path, h[H_MAGIC], kCkptMagic);
    if (h[H_VERSION] != kCkptVersion) fatal("checkpoint '%s': version %d, this build reads version %d", path, h[H_VERSION], kCkptVersion);
    if (h[H_NARENAS] < 1 || h[H_NARENAS] > kCkptMaxArenas)
        fatal("checkpoint '%s': corrupt header: %d arenas (1..%d)", path, h[H_NARENAS], kCkptMaxArenas);
    int k = H_SHAPE;
#define CKPT_GET(fld) c->fld = h[k++];
    CKPT_SHAPE_FIELDS(CKPT_GET)
#undef CKPT_GET
    float rf;
    memcpy(&rf, h + k, 4);
    c->rope_fraction = rf;
    hd->step = (int64_t)get64(h, H_STEP);
    hd->loader_bytes = (int64_t)get64(h, H_LOADER);
    hd->git_hash = get_git(h);
    hd->arena_floats.clear();
    for (int a = 0; a < h[H_NARENAS]; a++) hd->arena_floats.push_back((int64_t)get64(h, H_ARENAS + 2 * a));
}
