// Checkpoint -> artifact (tools/quantize): the parameters (or the EMA weights) of a trainer
// checkpoint, quantized by the plan (GPTQ where a Hessian is given, else round-to-nearest),
// written as an artifact, with the per-tensor quantization error (relative Frobenius
// ||W - deq(W)|| / ||W||, like llama2.c's export), bytes/param by kind and the size verdict.
// Checkpoint arenas, in train.cu's order: params, muon_momentum, adam_m, adam_v[, ema]; the EMA
// arena exists when the run had ema_decay > 0 (5 arenas).
// Hessians file (written by hessians_write; train will collect them), little-endian:
//   int32 magic 20261125, int32 version 1, int32 entries; per entry: int32 plan index,
//   int32 cols, then cols x cols float64 (row-major). Tensors without an entry get RTN.
#pragma once
#include "model/config.h"
#include "quant/artifact.h"
#include "quant/plan.h"
#include "quant/size.h"
#include <cstdio>
#include <string>
#include <vector>

constexpr int32_t kHessMagic = 20261125;
constexpr int32_t kHessVersion = 1;
constexpr int kCkptArenasNoEma = 4;  // params, muon_momentum, adam_m, adam_v
constexpr int kCkptEmaArena = 4;     // index of "ema" when present

// hs: one entry per plan tensor (empty = none), each cols x cols.
void hessians_write(const char* path, const Config& cfg, const std::vector<std::vector<double>>& hs);
// Validates magic, version, indices (a matrix of the plan, no repeats), sizes, file length: named fatal()s.
std::vector<std::vector<double>> hessians_read(const char* path, const Config& cfg);

// The weights of a trainer checkpoint: its params arena, or its EMA arena (fatal if the run kept
// none). *cfg takes the checkpoint's shape fields (checkpoint_header) and is validated; every
// problem with the file is a named fatal(). step (may be nullptr): the checkpoint's step.
std::vector<float> checkpoint_weights(const char* ckpt, Config* cfg, bool ema, int64_t* step);

struct ExportOptions {
    bool ema = false;            // quantize the EMA arena (fatal if the checkpoint has none)
    const char* hessians = nullptr;
    std::string code_root;       // non-empty: also the code + model size verdict
    GptqOptions gptq;
    ArtifactOptions artifact;    // split_groups: in_proj's row groups as separate streams
};
struct ExportResult {
    int64_t step = 0;
    std::vector<std::string> names;   // param_specs order
    std::vector<double> rel_err;      // relative Frobenius error per tensor (0 for an all-zero tensor)
    int64_t artifact_bytes = 0;
    bool has_size = false;
    SizeReport size;
};
// *cfg: its non-shape fields (quant bits, a_act, ...) are used as given; the shape fields are
// taken from the checkpoint's header. Prints the report to `out` (nullptr: silent).
void quantize_checkpoint(const char* ckpt, const char* artifact, Config* cfg, const ExportOptions& opt, ExportResult* res,
                         FILE* out);
