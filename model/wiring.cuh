// The block's elementwise wiring on the GPU (CPU twins in model/model.h: resid_mix_*_cpu,
// scale_add_*_cpu, and model/rmsnorm.h), fused with the RMSNorms around it so the fp32 residual
// stream (N, C) is read and written as few times as possible (each pass over it is 268 MB at the
// seed's 131k-token micro-batch):
//   scale_add:      out = x + scale * y                          (mlp_scale, the U-Net skips)
//   mix_norm:       n = rmsnorm(mix[0] * x + mix[1] * x0)         (resid_mix, then the mixer's norm)
//   mix_add_norm:   out = mix[0] * x + mix[1] * x0 + scale * y;  n = rmsnorm(out)
//                                                                 (mixer_scale, then the MLP's norm)
// x_mix = mix[0] * x + mix[1] * x0 is never stored: both directions recompute it with the same
// expression (bit-identical), which saves a write and a read of (N, C) fp32 per block.
// Backward: per-channel parameter gradients are column sums over the N rows, done as per-CTA
// partials plus a fixed-order reduction (model/reduce.cuh): deterministic, no atomics.
// Gradient contract: dmix, dscale ACCUMULATE; dx0 ACCUMULATES (x0 feeds every block); scale_add's
// dy = scale * dout OVERWRITES (bf16 where it is the input of a GEMM backward, fp32 for a U-Net
// skip) and the residual's own gradient (dout) passes through untouched (the caller keeps it).
// The fused kernels take a row at a time per CTA of ~C/4 threads (4 channels each): C <= 4096.
#pragma once
#include "model/cuda_common.cuh"

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

void mix_norm_forward(__nv_bfloat16* n,                // (N, C) rmsnorm(x_mix)
                      float* rstd,                     // (N) saved
                      const float* x, const float* x0, // (N, C) each
                      const float* mix,                // (2, C)
                      int64_t N, int C, float eps, cudaStream_t stream);
void mix_add_norm_forward(float* out,                      // (N, C) x_mix + scale * y
                          __nv_bfloat16* n,                // (N, C) rmsnorm(out)
                          float* rstd,                     // (N) saved
                          const float* x, const float* x0, // (N, C)
                          const float* mix,                // (2, C)
                          const __nv_bfloat16* y,          // (N, C)
                          const float* scale,              // (C)
                          int64_t N, int C, float eps, cudaStream_t stream);

// The MLP's norm backward and the mixer's scale_add backward in one pass:
//   dx += rmsnorm_backward(dn; inp, rstd)   (dx: d out of mix_add_norm, then d x_mid)
//   dy = scale * dx (bf16, overwrite);  dscale += sum_rows dx * y
void norm_scale_add_backward(float* dx,                     // (N, C) accumulate
                             __nv_bfloat16* dy,             // (N, C) overwrite
                             float* dscale,                 // (C) accumulate
                             const float* dn,               // (N, C) d rmsnorm output
                             const float* inp,              // (N, C) the norm's input (x_mid)
                             const float* rstd,             // (N)
                             const __nv_bfloat16* y,        // (N, C) saved mixer output
                             const float* scale,            // (C)
                             int64_t N, int C, cudaStream_t stream);
// The mixer's norm backward and resid_mix's backward in one pass, x_mix recomputed:
//   g = dout + rmsnorm_backward(dn; x_mix, rstd);  dx = mix[0] * g (overwrite);
//   dx0 += mix[1] * g;  dmix += (sum_rows g * x, sum_rows g * x0)
void mix_norm_backward(float* dx,                      // (N, C) overwrite
                       float* dx0,                     // (N, C) accumulate
                       float* dmix,                    // (2, C) accumulate
                       const float* dn,                // (N, C) d rmsnorm output
                       const float* dout,              // (N, C) d x_mix from the residual path
                       const float* x, const float* x0,  // (N, C) saved
                       const float* mix,               // (2, C)
                       const float* rstd,              // (N)
                       int64_t N, int C, cudaStream_t stream);
