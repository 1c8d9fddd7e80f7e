// The model artifact: what we ship (with the code) and what eval loads.
// File layout (little-endian), version 1:
//   header: 256 x int32, not compressed
//     [0] magic 20261124   [1] version 1
//     [2..]   the Config fields that define the model and its quantization plan (ART_INT_FIELDS,
//             then ART_FLOAT_FIELDS as float32 bits, in artifact.cpp order)
//     [40] tensor count    [41] stream count
//     [42..43] payload bytes (uncompressed, int64)   [44..45] compressed bytes (int64)
//     [46] CRC32 of the uncompressed payload
//     [47..51] LZMA2 lc, lp, pb, delta distance (0 = no delta filter), dictionary bytes
//     [255] CRC32 of words 0..254
//   then the payload, compressed as one raw LZMA2 stream (preset 9 | extreme with the lc/lp/pb
//   and delta filter recorded above, picked by measured size among a few candidates).
// Payload: the directory, then the streams in directory order.
//   directory, per tensor (quant_plan order): name, kind, rows, cols, row groups (name, row0,
//   row1, bits), then its streams: (what, row0, row1, layout, bytes).
//   A matrix has a scale stream (per-row fp16) and integer streams: one per row group (the
//   row-group layout: in_proj's z, x, B, C, dd_dt, dd_A, trap, angles each contiguous) or one for
//   the whole tensor. A scalar tensor has one value stream (fp16 or fp32).
//   Stream layouts (each stream keeps whichever of its candidates compresses smallest alone):
//     ints:   PACKED   tight bits, row-major, each row at its own width (quant/pack.h)
//             BYTES    one byte per value (two's complement), row-major
//             BYTES_T  one byte per value, column-major (transposed)
//     floats: F16 / F32 plain, F16_PLANES / F32_PLANES byte planes (all low bytes first, ...)
// The reader checks, each as a named error with the file name: size (truncated / trailing bytes),
// magic, version, header checksum, config sanity, decompression, payload size, payload CRC32,
// and every directory entry against the plan derived from the header's config.
#pragma once
#include "model/config.h"
#include "quant/plan.h"
#include <cstdint>
#include <string>
#include <vector>

constexpr int32_t kArtifactMagic = 20261124;
constexpr int32_t kArtifactVersion = 1;

enum Layout : int { L_PACKED = 0, L_BYTES = 1, L_BYTES_T = 2, L_F16 = 3, L_F16_PLANES = 4, L_F32 = 5, L_F32_PLANES = 6 };
const char* layout_name(int layout);

struct LzmaFilter {
    int lc = 3, lp = 0, pb = 2, delta = 0;
    uint32_t dict = 0;  // dictionary bytes; 0 = the data's size rounded up to a power of two
};

struct ArtifactOptions {
    // true: one stream per row group (in_proj's z, x, B, C, ...); false: one integer stream per
    // tensor. Measured on trained weights: one stream per tensor is 5-12 KB smaller (notes/quant.md).
    bool split_groups = false;
    // candidate layouts per stream; each stream keeps the one that compresses smallest alone
    std::vector<int> int_layouts = {L_BYTES, L_PACKED, L_BYTES_T};
    std::vector<bool> float_planes = {false, true};  // F16/F32 plain, byte planes
    // first = the one each stream's layout is chosen with. A 4 KiB dictionary wins on trained
    // weights (i.i.d.-like codes: far matches cost more than they save; notes/quant.md)
    std::vector<LzmaFilter> filters = {{0, 0, 0, 0, 4096}, {3, 0, 2, 0, 4096}, {3, 0, 2, 0}, {0, 0, 0, 0}, {0, 0, 0, 1}};
};

struct StreamInfo {
    int tensor;            // index into the plan
    int what;              // 0 = per-row scales, 1 = values (ints or floats)
    int64_t row0, row1;
    int layout;
    int64_t offset, bytes;  // in the uncompressed payload
    int64_t alone_bytes;    // this stream compressed on its own (writer: measured; reader: 0 until measured)
    std::string group;      // row-group name, "all" or "scales"
};

struct ArtifactInfo {
    int32_t header[256];
    int64_t file_bytes = 0, payload_bytes = 0, compressed_bytes = 0;
    uint32_t payload_crc = 0;
    LzmaFilter filter;
    std::vector<StreamInfo> streams;
    std::vector<uint8_t> payload;  // reader: the uncompressed payload (tools measure streams in it)
};

// Atomic: writes path.tmp, fsyncs, renames. info (may be null) gets the streams and sizes.
void artifact_write(const char* path, const Config& cfg, const QuantModel& qm, const ArtifactOptions& opt,
                    ArtifactInfo* info);
// Reads and validates. cfg keeps its non-model fields; the model and quantization fields come
// from the header. Returns false with *err = "artifact '<path>': <problem>" on any bad input.
bool artifact_load(const char* path, Config* cfg, QuantModel* qm, ArtifactInfo* info, std::string* err);
// artifact_load or fatal(err).
void artifact_read(const char* path, Config* cfg, QuantModel* qm, ArtifactInfo* info);

// "" when every Config field an artifact carries agrees, else the first difference,
// "<field>: artifact X, config Y" (train --eval-artifact refuses a model it was not configured for).
std::string artifact_config_diff(const Config& artifact_cfg, const Config& cfg);

// Helpers shared with the size accounting and tools.
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);  // crc32_update(0, ...) = CRC-32/IEEE
// Raw LZMA2 at preset 9|extreme with the given lc/lp/pb/delta; fatal() on liblzma errors.
std::vector<uint8_t> lzma_raw_compress(const uint8_t* data, size_t n, const LzmaFilter& f, uint32_t dict_bytes);
uint32_t lzma_dict_for(size_t n);  // dictionary size: the payload rounded up to a power of two, 4 KiB .. 64 MiB
inline uint32_t lzma_dict_of(const LzmaFilter& f, size_t n) { return f.dict ? f.dict : lzma_dict_for(n); }
