// Late QAT (the seed's recipe, spec/model.md): once the lr multiplier falls below
// late_qat_threshold, the forward and backward read every quantized matrix as its
// round-to-nearest fake quantization on the artifact's grid (per-row absmax scale rounded to
// fp16, q = round(w / s) clamped to ±qmax at the plan's bits, value q·s), while the optimizer
// keeps updating the fp32 master weights with the gradient taken at the quantized point: the
// straight-through estimator. On the GPU this is a second pass over the bf16 GEMM copy
// (quant/fake_quant.cuh); this is its CPU reference. Scalars (Group::scalar) are untouched.
#pragma once
#include "model/config.h"
#include <vector>

// out = arena with every matrix row of quant_plan(cfg) replaced by its fake quantization
// (absmax scales: row_scales_cpu without the clip search, times quant_matrix_step on the rows at
// quant_bits_matrix (apply_matrix_step), then rtn_quantize_cpu, then q·s). A step set before the run
// (e.g. the one quant_fit chose for an earlier seed) puts QAT on the artifact's final grid.
void fake_quant_cpu(float* out, const float* arena, const Config& cfg);

// One entry per quantized matrix row, in arena order: what the GPU pass walks.
struct FakeQuantRows {
    std::vector<int64_t> offset;  // arena offset of the row
    std::vector<int32_t> cols;
    std::vector<int32_t> bits;
};
FakeQuantRows fake_quant_rows(const Config& cfg);
