// The block's elementwise wiring on the GPU (CPU twins in model/model.h: resid_mix_*_cpu,
// scale_add_*_cpu): the per-channel residual mix, the scaled residual adds (mixer_scale,
// mlp_scale, and the U-Net skips with skip_weight[j]). Residual stream in fp32.
//   resid_mix:  out = mix[0] * x + mix[1] * x0
//   scale_add:  out = x + scale * y
// Backward: per-channel parameter gradients are column sums over the N rows, done as per-CTA
// partials plus a fixed-order reduction (model/reduce.cuh): deterministic, no atomics.
// Gradient contract: dmix, dscale ACCUMULATE; dx OVERWRITES; dx0 ACCUMULATES (x0 feeds every
// block); scale_add's dy = scale * dout OVERWRITES (bf16: it is the input of a GEMM backward)
// and the residual's own gradient (dout) passes through untouched (the caller keeps it).
// dy is bf16 where it feeds a GEMM backward (mixer/MLP outputs) and fp32 for a U-Net skip.
#pragma once
#include "model/cuda_common.cuh"

void resid_mix_forward(float* out, const float* x, const float* x0,  // (N, C) each
                       const float* mix,                             // (2, C)
                       int64_t N, int C, cudaStream_t stream);
void resid_mix_backward(float* dx,          // (N, C) overwrite
                        float* dx0,         // (N, C) accumulate
                        float* dmix,        // (2, C) accumulate
                        const float* dout, const float* x, const float* x0,  // (N, C)
                        const float* mix, int64_t N, int C, cudaStream_t stream);

// y may be fp32 (y_f32) or bf16 (y_bf16): exactly one non-null (a GEMM writes either).
void scale_add_forward(float* out,                                       // (N, C)
                       const float* x,                                   // (N, C)
                       const float* y_f32, const __nv_bfloat16* y_bf16,  // (N, C)
                       const float* scale,                               // (C)
                       int64_t N, int C, cudaStream_t stream);
void scale_add_backward(float* dy_f32, __nv_bfloat16* dy_bf16,  // (N, C) overwrite, exactly one non-null
                        float* dscale,      // (C) accumulate
                        const float* dout,  // (N, C)
                        const float* y_f32, const __nv_bfloat16* y_bf16,  // (N, C) saved
                        const float* scale, int64_t N, int C, cudaStream_t stream);
