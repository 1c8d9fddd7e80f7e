// Late-QAT fake quantization on the GPU (quant/fake_quant.h has the math and its CPU reference):
// overwrites the matrix rows of the bf16 GEMM copy with bf16(q·s), after the plain fp32 -> bf16
// refresh. One warp per row; float64 for the scale and w / s so the codes equal the CPU's.
#pragma once
#include "model/cuda_common.cuh"
#include "quant/fake_quant.h"

struct FakeQuantGpu {
    int64_t rows = 0;
    int64_t* offset = nullptr;  // (rows) device
    int32_t *cols = nullptr, *bits = nullptr;
    int matrix_bits = 0;        // rows at these bits take the scale x step (apply_matrix_step)
    double step = 1.0;
};
void fake_quant_gpu_create(FakeQuantGpu* f, const Config& cfg);
void fake_quant_gpu_destroy(FakeQuantGpu* f);
// params: the fp32 arena; params_bf16: its bf16 copy, whose matrix rows are overwritten.
void fake_quant_bf16(__nv_bfloat16* params_bf16, const float* params, const FakeQuantGpu& f, cudaStream_t stream);
