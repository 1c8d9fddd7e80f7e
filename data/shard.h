// Token shards in the challenge's format (spec/golf.md): a header of 256 little-endian int32
// ([0] magic 20240520, [1] version 1, [2] token count n, rest zero), then n little-endian uint16
// tokens; the file size is exactly 1024 + 2n. Shards are memory-mapped read-only: the 80 training
// shards (16 GB) are never copied, the page cache serves them to every rank.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

constexpr int32_t SHARD_MAGIC = 20240520;
constexpr int32_t SHARD_VERSION = 1;
constexpr int64_t SHARD_HEADER_BYTES = 256 * 4;

struct Shard {
    std::string path;
    int64_t num_tokens = 0;
    const uint16_t* tokens = nullptr;  // (num_tokens,) inside the mapping
    void* map = nullptr;
    size_t map_bytes = 0;
};

// Maps `path` and validates size, magic and version; fatal() naming the file otherwise.
// vocab_size > 0 also scans every token id (< vocab_size); pass 0 to skip the scan (the training
// loader checks the windows it hands out instead, so opening 80 shards reads only headers).
void shard_open(Shard* s, const std::string& path, int vocab_size);
void shard_close(Shard* s);
// fatal() naming the shard and position if any token id >= vocab_size.
void shard_check_tokens(const Shard& s, int vocab_size);
void shard_check_range(const Shard& s, int64_t begin, int64_t count, int vocab_size);
// Whole or absent: writes `path`.tmp, then renames it over `path`.
void shard_write(const std::string& path, const uint16_t* tokens, int64_t n);
// Files in `dir` matching `*_<split>_*.bin` (split = "train" or "val"), sorted by name;
// fatal() if the folder cannot be read or none match.
std::vector<std::string> shard_list(const std::string& dir, const char* split);
