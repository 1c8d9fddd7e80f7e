// Code-size accounting; see quant/size.h.
#include "quant/size.h"
#include "model/common.h"
#include <algorithm>
#include <cstring>
#include <dirent.h>
#include <lzma.h>
#include <sys/stat.h>

static bool ends_with(const std::string& s, const char* suf) {
    size_t n = strlen(suf);
    return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

std::vector<std::string> counted_sources(const std::string& root) {
    std::vector<std::string> out;
    for (const char* top : {"Makefile", "train.cu"}) {
        struct stat st;
        if (stat((root + "/" + top).c_str(), &st) != 0) fatal("size: '%s/%s' not found: is '%s' the repository root?", root.c_str(), top, root.c_str());
        out.push_back(top);
    }
    for (const char* dir : {"model", "data", "optim", "quant", "eval"}) {
        DIR* d = opendir((root + "/" + dir).c_str());
        if (!d) continue;  // a folder that does not exist yet holds no code
        while (struct dirent* e = readdir(d)) {
            std::string name = e->d_name;
            if (!(ends_with(name, ".cu") || ends_with(name, ".cuh") || ends_with(name, ".h") || ends_with(name, ".cpp"))) continue;
            std::string rel = std::string(dir) + "/" + name;
            struct stat st;
            if (stat((root + "/" + rel).c_str(), &st) == 0 && S_ISREG(st.st_mode)) out.push_back(rel);
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<uint8_t> code_archive(const std::string& root, int64_t* raw_bytes) {
    std::string ar;
    for (auto& rel : counted_sources(root)) {
        std::string path = root + "/" + rel;
        FILE* f = fopen_check(path.c_str(), "rb");
        std::string body;
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) body.append(buf, n);
        fclose(f);
        ar += rel + "\n" + std::to_string(body.size()) + "\n" + body;
    }
    *raw_bytes = (int64_t)ar.size();
    std::vector<uint8_t> out(ar.size() + ar.size() / 2 + 65536);
    size_t pos = 0;
    lzma_ret r = lzma_easy_buffer_encode(9 | LZMA_PRESET_EXTREME, LZMA_CHECK_CRC32, nullptr, (const uint8_t*)ar.data(), ar.size(),
                                         out.data(), &pos, out.size());
    if (r != LZMA_OK) fatal("size: xz of the sources failed (liblzma code %d)", (int)r);
    out.resize(pos);
    return out;
}

SizeReport code_report(const std::string& root) {
    SizeReport r;
    r.nfiles = (int)counted_sources(root).size();
    r.code_bytes = (int64_t)code_archive(root, &r.code_raw).size();
    return r;
}

SizeReport size_report(SizeReport code, const char* artifact_path) {
    struct stat st;
    if (stat(artifact_path, &st) != 0) fatal("size: artifact '%s' not found", artifact_path);
    code.model_bytes = (int64_t)st.st_size;
    return code;
}

SizeReport size_report(const std::string& root, const char* artifact_path) {
    return size_report(code_report(root), artifact_path);
}

void size_print(const SizeReport& r, FILE* out) {
    fprintf(out, "size: code %lld (xz of %lld source bytes, %d files; base85-wrapped would be %lld) + model %lld = %lld bytes: %s 16,000,000 (%+lld)\n",
            (long long)r.code_bytes, (long long)r.code_raw, r.nfiles, (long long)((r.code_bytes + 3) / 4 * 5), (long long)r.model_bytes,
            (long long)r.total(), r.ok() ? "OK <=" : "OVER", (long long)(r.total() - kSizeLimit));
}
