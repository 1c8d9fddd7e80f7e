// The quantization plan: for every tensor of param_specs(cfg), its kind and its row groups with
// their bit widths. The one place bits are decided (knobs quant_bits_* in model/config.h):
//   embedding (tied, also the head)       quant_bits_embed   (8)
//   in_proj rows dd_dt and dd_A           quant_bits_ssm_dyn (8)  they set dt and A: small errors
//                                                                  there move every state decay
//   every other matrix row                quant_bits_matrix  (6)
//   scalars and vectors (Group::scalar)   quant_bits_scalar  (16 = fp16 values, 32 = fp32)
// in_proj is split into its eight row groups z | x | B | C | dd_dt | dd_A | trap | angles from
// the Config's ip_* methods; the artifact stores each group as its own stream.
// Also: QuantModel (a quantized model in memory) and quantize/dequantize of a parameter arena.
#pragma once
#include "model/config.h"
#include "model/params.h"
#include "quant/gptq.h"
#include <string>
#include <vector>

enum class TensorKind : int { embed, attn_qkv, attn_proj, in_proj, out_proj, mlp_fc, mlp_proj, scalar };
const char* tensor_kind_name(TensorKind k);

struct RowGroup {
    std::string name;  // "all", or in_proj's "z", "x", "B", "C", "dd_dt", "dd_A", "trap", "angles"
    int64_t row0, row1;
    int bits;          // 2..8 for matrices; 16 or 32 (float storage) for scalars
};

struct TensorPlan {
    TensorSpec spec;
    TensorKind kind;
    std::vector<RowGroup> groups;  // cover rows [0, spec.rows) in order
    bool is_matrix() const { return kind != TensorKind::scalar; }
};

// fatal() on bit widths outside 2..8 (matrices) or {16, 32} (scalars).
std::vector<TensorPlan> quant_plan(const Config& cfg);
// Per-row bits of a matrix plan, expanded (length rows).
std::vector<int> plan_row_bits(const TensorPlan& p);

struct QTensor {
    TensorPlan plan;
    std::vector<int8_t> q;        // matrices: (rows, cols) integers
    std::vector<uint16_t> scale;  // matrices: (rows) fp16 bits
    std::vector<float> values;    // scalars: (rows, cols) as stored (already rounded to fp16 when bits 16)
};
struct QuantModel {
    std::vector<QTensor> tensors;  // quant_plan order (= param_specs order)
};

// GPTQ of one matrix: gptq_quantize_cpu, or gptq_quantize_gpu (quant/gptq.cuh: H on the device).
typedef void (*GptqFn)(int8_t* q, const float* W, const double* H, const uint16_t* scale, const int* row_bits,
                       int64_t R, int64_t C, const GptqOptions& opt);

// Quantizes the float arena (param_specs layout). hessians: nullptr, or one pointer per plan
// entry (nullptr for a tensor without one): GPTQ where there is a Hessian (cols x cols, where
// `gptq` reads it), else round-to-nearest. Scales: row_scales_cpu with opt.clip_search, for both;
// rows at quant_bits_matrix times cfg.quant_matrix_step (fatal below 1: it would clip).
void quantize_model(QuantModel* qm, const Config& cfg, const float* arena, const std::vector<const double*>* hessians,
                    const GptqOptions& opt, GptqFn gptq = gptq_quantize_cpu);
// quant_fit (train.cu): the next try after an artifact `over` bytes above the limit, quantized with
// clip-search (or absmax) scales times `step` on the rows at quant_bits_matrix. The rows are
// Gaussian, so the codes' entropy falls by log2(step) bits when the step grows: ~matrix_values / 8
// bytes of LZMA output per doubling (0.123 B per value measured; INT6 with step x2.07 *is* INT5
// absmax, same bytes and error), absmax scales alone save ~1% of the model (0.2 MB). So a small
// overshoot (<= 1% of model_bytes) tries absmax at the same step; a larger one goes straight to
// absmax with the step the estimate says fits (+0.5%), which fills the 16 MB instead of dropping a
// whole bit (INT5 left 0.4 MB unused and 22% more squared error than the step that fits).
// Coarsest: the INT4-equivalent step, (2^(bits-1)-1)/7. Returns false when nothing is left to try.
struct QuantFitTry {
    bool clip_search;
    double step;
};
bool quant_fit_next(QuantFitTry* t, int bits, int64_t over, int64_t model_bytes, int64_t matrix_values);
// Values in matrix rows the plan quantizes at quant_bits_matrix (the rows quant_fit lowers).
int64_t matrix_values(const Config& cfg);

// scale[r] x cfg.quant_matrix_step (one more fp16 rounding) for the rows at quant_bits_matrix with a
// nonzero scale: the export (quantize_model) and late QAT's grid (fake_quant_cpu, and its GPU twin
// with the same double product) both take it from here.
void apply_matrix_step(uint16_t* scale, const int* row_bits, int64_t R, const Config& cfg);

// The artifact's model bytes without writing it, for choosing the matrix step before the slow
// LZMA rounds (and before late QAT, so QAT trains on the grid the artifact will have): every
// matrix's round-to-nearest absmax codes at cfg's bits and step, their order-0 entropy per tensor
// x kLzmaOverOrder0 (LZMA's measured overhead on such codes), + 2 bytes a row scale, + the scalars
// at quant_bits_scalar. On the 600 s run's weights: within 0.2% of artifact_write at steps 1 to
// 2.07 (notes/quant.md).
constexpr double kLzmaOverOrder0 = 1.015;
int64_t quant_bytes_estimate(const Config& cfg, const float* arena);
// The step for the rows at quant_bits_matrix that brings quant_bytes_estimate to `budget` bytes:
// the rows are Gaussian, so their codes' entropy falls by log2(step) bits per value as the step
// grows (checked: INT6 x2.0667 = INT5, 5.318 - 1.047 = 4.271 vs 4.274 bits measured); >= 1 (1 when
// it fits already), <= the INT4 step.
// estimate (may be nullptr): quant_bytes_estimate at cfg's own step, the one pass this takes.
double quant_step_for_budget(const Config& cfg, const float* arena, int64_t budget, int64_t* estimate = nullptr);

// Writes the dequantized weights into a float arena of param_arena_size(cfg) (padding zeroed).
void dequantize_model(float* arena, const Config& cfg, const QuantModel& qm);
