// RMSNorm without weight on the GPU (CPU twin: model/rmsnorm.h): out = x * rstd,
// rstd = (mean(x^2) + eps)^-1/2, one warp per row, fp32 math.
// The forward writes fp32 (the residual stream's x0) and/or bf16 (a GEMM's input); either
// pointer may be nullptr. Backward: dx = rstd * (dy - y * mean(dy * y)), y = x * rstd.
// (The block's two norms are fused with the wiring around them: model/wiring.cuh.)
// Gradient contract: dinp OVERWRITES. No parameters.
#pragma once
#include "model/cuda_common.cuh"

void rmsnorm_forward(float* out_f32, __nv_bfloat16* out_bf16,  // (N, C) each, either may be nullptr
                     float* rstd,                              // (N) saved
                     const float* inp,                         // (N, C)
                     int64_t N, int C, float eps, cudaStream_t stream);

void rmsnorm_backward(float* dinp,        // (N, C) overwrite
                      const float* dout,  // (N, C)
                      const float* inp,   // (N, C)
                      const float* rstd,  // (N)
                      int64_t N, int C, cudaStream_t stream);
