// Shard reader (mmap, full validation) and atomic writer. Format in shard.h.
#include "data/shard.h"
#include "model/common.h"
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void shard_open(Shard* s, const std::string& path, int vocab_size) {
    const char* p = path.c_str();
    int fd = open(p, O_RDONLY);
    if (fd < 0) fatal("shard '%s': cannot open (%s)", p, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fatal("shard '%s': cannot stat (%s)", p, strerror(errno));
    int64_t size = (int64_t)st.st_size;
    if (size < SHARD_HEADER_BYTES)
        fatal("shard '%s': truncated: %lld bytes, shorter than the %lld-byte header", p, (long long)size,
              (long long)SHARD_HEADER_BYTES);
    void* m = mmap(nullptr, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) fatal("shard '%s': mmap failed (%s)", p, strerror(errno));
    close(fd);
    int32_t header[3];
    memcpy(header, m, sizeof header);  // the format is little-endian, as is every machine we run on
    if (header[0] != SHARD_MAGIC)
        fatal("shard '%s': bad magic %d (expected %d): not a token shard", p, header[0], SHARD_MAGIC);
    if (header[1] != SHARD_VERSION)
        fatal("shard '%s': unsupported version %d (expected %d)", p, header[1], SHARD_VERSION);
    int64_t n = header[2];
    if (n < 0) fatal("shard '%s': negative token count %lld in header", p, (long long)n);
    if (size != SHARD_HEADER_BYTES + 2 * n)
        fatal("shard '%s': truncated or corrupt: file size %lld != 1024 + 2 * %lld tokens = %lld", p,
              (long long)size, (long long)n, (long long)(SHARD_HEADER_BYTES + 2 * n));
    s->path = path;
    s->num_tokens = n;
    s->map = m;
    s->map_bytes = (size_t)size;
    s->tokens = (const uint16_t*)((const char*)m + SHARD_HEADER_BYTES);
    if (vocab_size > 0) shard_check_tokens(*s, vocab_size);
}

void shard_close(Shard* s) {
    if (s->map) munmap(s->map, s->map_bytes);
    *s = Shard{};
}

void shard_check_range(const Shard& s, int64_t begin, int64_t count, int vocab_size) {
    for (int64_t i = begin; i < begin + count; i++)
        if (s.tokens[i] >= vocab_size)
            fatal("shard '%s': token id %d at position %lld >= vocab_size %d (wrong tokenizer or vocab?)",
                  s.path.c_str(), (int)s.tokens[i], (long long)i, vocab_size);
}

void shard_check_tokens(const Shard& s, int vocab_size) { shard_check_range(s, 0, s.num_tokens, vocab_size); }

void shard_write(const std::string& path, const uint16_t* tokens, int64_t n) {
    if (n > INT32_MAX) fatal("shard '%s': %lld tokens do not fit the int32 header", path.c_str(), (long long)n);
    std::string tmp = path + ".tmp";
    FILE* f = fopen_check(tmp.c_str(), "wb");
    int32_t header[256] = {0};
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = (int32_t)n;
    fwrite_check(header, 4, 256, f, tmp.c_str());
    if (n) fwrite_check(tokens, 2, (size_t)n, f, tmp.c_str());
    if (fclose(f) != 0) fatal("'%s': close failed (disk full?)", tmp.c_str());
    if (rename(tmp.c_str(), path.c_str()) != 0)
        fatal("cannot rename '%s' to '%s' (%s)", tmp.c_str(), path.c_str(), strerror(errno));
}

std::vector<std::string> shard_list(const std::string& dir, const char* split) {
    DIR* d = opendir(dir.c_str());
    if (!d) fatal("data folder '%s': cannot open (%s); run `make data` or set DATA_PATH", dir.c_str(), strerror(errno));
    std::string pattern = std::string("*_") + split + "_*.bin";
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d))
        if (fnmatch(pattern.c_str(), e->d_name, 0) == 0) names.push_back(e->d_name);
    closedir(d);
    if (names.empty()) fatal("data folder '%s': no shards matching '%s'", dir.c_str(), pattern.c_str());
    std::sort(names.begin(), names.end());
    for (auto& n : names) n = dir + "/" + n;
    return names;
}
