// Training checkpoints: everything --resume needs to continue bit-exactly.
// Layout (little-endian), version 1:
//   header: 256 x int32
//     [0] magic 20261123   [1] version 1
//     [2..31]   the Config shape fields (kCkptShapeFields in checkpoint.cpp order; floats as bits)
//     [32..33]  step (int64)            [34..35] elapsed training seconds (float64 bits)
//     [36..37]  RNG state (uint64)      [38..39] loader blob bytes (int64)
//     [40]      number of arenas (<= kCkptMaxArenas)
//     [41..41+2*kCkptMaxArenas) arena sizes in floats (int64 each)
//     [64..65]  FNV-1a 64 of everything after the header
//     [80..95]  the writer's git commit (`git describe --always --dirty`), NUL-padded, <= 63 chars
//               (not checked on read: a resumed run may be a later build)
//   then the loader blob, then each arena's floats in order.
// The caller names the arenas and their order (params, Muon momentum, Adam m, Adam v, EMA, ...):
// the reader checks the count and every size against what the caller expects.
// Written to `path.tmp`, fsync'd, renamed over `path` and the directory fsync'd: a crash leaves
// either the old checkpoint or the new one, never half of one.
#pragma once
#include "model/config.h"
#include <cstdint>
#include <string>
#include <vector>

constexpr int32_t kCkptMagic = 20261123;
constexpr int32_t kCkptVersion = 1;
constexpr int kCkptMaxArenas = 8;

struct CkptArena {
    const char* name;  // for error messages
    float* data;       // host memory, `n` floats (read fills it)
    int64_t n;
};

struct CkptState {
    int64_t step = 0;
    double elapsed_s = 0;
    uint64_t rng_state = 0;
    double qat_step = 0;          // the matrix step late QAT took (0: QAT not started); see train.cu
    std::string git_hash;         // the writer's build; filled by read
    std::vector<uint8_t> loader;  // opaque data-loader position; read expects loader.size() bytes
    std::vector<CkptArena> arenas;
};

void checkpoint_write(const char* path, const Config& c, const CkptState& s);
// Validates magic, version, config shape, sizes, file length and checksum; every problem is a
// fatal() naming the file and what is wrong. Fills step, elapsed_s, rng_state, loader, arenas.
void checkpoint_read(const char* path, const Config& c, CkptState* s);

// What a checkpoint's header says, for tools that open a checkpoint without a run's Config
// (tools/quantize): checkpoint_header checks magic and version (each a named fatal()), writes
// the header's shape fields into *c (its other fields keep their values) and fills *h, so the
// caller can size a CkptState for checkpoint_read, which then validates everything else.
struct CkptHeader {
    int64_t step = 0;
    int64_t loader_bytes = 0;
    std::string git_hash;
    std::vector<int64_t> arena_floats;  // one per arena, in file order
};
void checkpoint_header(const char* path, Config* c, CkptHeader* h);
