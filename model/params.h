// The parameter table: every tensor of the model, its shape, its optimizer group.
// Sizes, arena offsets (256-byte aligned), init, checkpoint order, quantization
// groups and tests all come from these lists; nothing else names a tensor's shape.
// Parameters, gradients and optimizer moments share this layout, each in its own
// contiguous arena, so a checkpoint is one write per arena.
#pragma once
#include "model/config.h"
#include <cstdint>
#include <string>
#include <vector>

enum class Group { matrix, embed, scalar };  // Muon, Adam (embedding lr), Adam (scalar lr)

// X(name, rows, cols, group, init)   shapes are expressions over `const Config& c`.
// init: ZERO, ONE, NORMAL_EMBED, UNIFORM_FANIN (U(+-1/sqrt(cols))), QGAIN, DT_BIAS
#define GLOBAL_TENSORS(X)                                                       \
    X(wte, c.vocab_size, c.model_dim, embed, NORMAL_EMBED) /* (V, C), tied head */ \
    X(skip_weight, c.num_skips(), c.model_dim, scalar, ONE) /* U-Net skips */

#define BLOCK_TENSORS(X)                                                        \
    X(resid_mix, 2, c.model_dim, scalar, RESID_MIX) /* row 0 x, row 1 x0 */     \
    X(mixer_scale, 1, c.model_dim, scalar, ONE)                                 \
    X(mlp_scale, 1, c.model_dim, scalar, ONE)                                   \
    X(mlp_fc, c.mlp_hidden(), c.model_dim, matrix, UNIFORM_FANIN)               \
    X(mlp_proj, c.model_dim, c.mlp_hidden(), matrix, ZERO)

#define ATTN_TENSORS(X)                                                         \
    X(attn_qkv, c.qkv_rows(), c.model_dim, matrix, UNIFORM_FANIN) /* q|k|v */   \
    X(attn_proj, c.model_dim, c.num_heads * c.head_dim(), matrix, ZERO)         \
    X(q_gain, 1, c.num_heads, scalar, QGAIN)

#define MAMBA_TENSORS(X)                                                        \
    X(in_proj, c.in_proj_rows(), c.model_dim, matrix, UNIFORM_FANIN)            \
    X(out_proj, c.model_dim, c.d_inner(), matrix, UNIFORM_FANIN)                \
    X(dt_bias, 1, c.ssm_heads(), scalar, DT_BIAS)                               \
    X(B_bias, c.ssm_heads(), c.d_state, scalar, ONE)                            \
    X(C_bias, c.ssm_heads(), c.d_state, scalar, ONE)                            \
    X(B_norm_w, 1, c.d_state, scalar, ONE)                                      \
    X(C_norm_w, 1, c.d_state, scalar, ONE)                                      \
    X(D, 1, c.ssm_heads(), scalar, ONE)

// The tensors of one arena (parameters, gradients, moments) as pointers of element type F:
// float for the model and the GPU, double for the CPU reference's finite-difference twin.
#define PT_FIELD(name, rows, cols, group, init) F* name = nullptr;
template <typename F>
struct BlockTensors {  // nullptr where the block kind lacks the tensor
    BLOCK_TENSORS(PT_FIELD)
    ATTN_TENSORS(PT_FIELD)
    MAMBA_TENSORS(PT_FIELD)
};
constexpr int kMaxLayers = 64;
template <typename F>
struct ModelTensors {
    GLOBAL_TENSORS(PT_FIELD)
    int num_layers = 0;
    BlockTensors<F> blocks[kMaxLayers];
};
#undef PT_FIELD
using BlockParams = BlockTensors<float>;
using ModelParams = ModelTensors<float>;

struct TensorSpec {
    std::string name;  // "wte", "blocks.3.in_proj", ...
    int layer;         // -1 for globals
    int64_t rows, cols;
    Group group;
    int init;          // one of the Init values below
    int64_t offset;    // in elements from the arena base, multiple of 64
    int64_t numel() const { return rows * cols; }
};
enum Init { ZERO, ONE, NORMAL_EMBED, UNIFORM_FANIN, QGAIN, DT_BIAS, RESID_MIX };

// Every tensor of the model in arena order; the last entry's end is the arena size.
std::vector<TensorSpec> param_specs(const Config& c);
int64_t param_count(const Config& c);      // parameters (no padding)
int64_t param_arena_size(const Config& c); // elements, padding included
// Point every field of `p` into `base` (param_arena_size(c) elements, host or device memory:
// only offsets are used), offsets from param_specs(c). Instantiated for float and double.
template <typename F>
void model_tensors_bind(const Config& c, F* base, ModelTensors<F>* p);
inline void param_bind(const Config& c, float* base, ModelParams* p) { model_tensors_bind(c, base, p); }
// Seeded initialization on the host (spec/model.md, spec/mamba3.md §2.2).
void param_init(const Config& c, float* base, uint64_t seed);
