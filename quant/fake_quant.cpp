// Late-QAT fake quantization, CPU reference: see quant/fake_quant.h.
#include "quant/fake_quant.h"
#include "quant/gptq.h"
#include "quant/pack.h"
#include "quant/plan.h"
#include <cstring>

FakeQuantRows fake_quant_rows(const Config& cfg) {
    FakeQuantRows r;
    for (const TensorPlan& p : quant_plan(cfg)) {
        if (!p.is_matrix()) continue;
        std::vector<int> bits = plan_row_bits(p);
        for (int64_t i = 0; i < p.spec.rows; i++) {
            r.offset.push_back(p.spec.offset + i * p.spec.cols);
            r.cols.push_back((int32_t)p.spec.cols);
            r.bits.push_back(bits[i]);
        }
    }
    return r;
}

void fake_quant_cpu(float* out, const float* arena, const Config& cfg) {
    memcpy(out, arena, param_arena_size(cfg) * sizeof(float));
    for (const TensorPlan& p : quant_plan(cfg)) {
        if (!p.is_matrix()) continue;
        const int64_t R = p.spec.rows, C = p.spec.cols;
        const float* W = arena + p.spec.offset;
        std::vector<int> bits = plan_row_bits(p);
        std::vector<uint16_t> scale(R);
        std::vector<int8_t> q(R * C);
        row_scales_cpu(scale.data(), W, bits.data(), R, C, /*clip_search=*/false);
        apply_matrix_step(scale.data(), bits.data(), R, cfg);
        rtn_quantize_cpu(q.data(), W, scale.data(), bits.data(), R, C);
        for (int64_t r = 0; r < R; r++) {
            const float s = half_to_float(scale[r]);
            for (int64_t c = 0; c < C; c++) out[p.spec.offset + r * C + c] = (float)q[r * C + c] * s;
        }
    }
}
