// Mamba-3 pre-processing on the GPU: the CUDA twin of mamba3_prep_forward_cpu /
// mamba3_prep_backward_cpu (model/mamba3.h, same argument order and layouts). Everything in the
// layer outside the chunked scan (model/mamba3_scan.cuh, which also applies the silu(z) gate)
// and the in_proj / out_proj GEMMs (model/gemm.cuh):
//   zxbcdt (B,T,R) bf16, the in_proj output ->
//     z, x (B,T,H,P) bf16;  q_raw = rms(C) C_norm_w, k_raw = rms(B) B_norm_w (B,T,G,N) bf16
//     (eps kMamba3NormEps, rstd (B,T,G) fp32 saved);  A = -max(act(dd_A), a_floor),
//     dt = softplus(dd_dt + dt_bias), adt = A dt, trap (B,H,T) fp32;  theta (B,T,S) fp32.
// dtypes match the scan kernels' boundary. 16 consecutive tokens per CTA.
// Gradient contract: dzxbcdt OVERWRITES (bf16, the in_proj backward's input); ddt_bias,
// dB_norm_w, dC_norm_w ACCUMULATE, as per-CTA partials and a fixed-order reduction
// (deterministic). ddt excludes the adt path; the backward adds it (d dt_total = ddt + dadt A).
#pragma once
#include "model/cuda_common.cuh"
#include "model/mamba3.h"

void mamba3_prep_forward(__nv_bfloat16* z, __nv_bfloat16* x,          // (B,T,H,P) each
                         __nv_bfloat16* q_raw, __nv_bfloat16* k_raw,  // (B,T,G,N) each
                         float* adt, float* dt, float* trap,          // (B,H,T) each
                         float* theta,                                // (B,T,S)
                         float* rstd_q, float* rstd_k,                // (B,T,G) saved
                         const __nv_bfloat16* zxbcdt,                 // (B,T,R)
                         const float* dt_bias,                        // (H)
                         const float* B_norm_w, const float* C_norm_w,  // (N) each
                         const Mamba3Dims& d, cudaStream_t stream);

void mamba3_prep_backward(__nv_bfloat16* dzxbcdt,                      // (B,T,R) overwrite
                          float* ddt_bias,                             // (H) accumulate
                          float* dB_norm_w, float* dC_norm_w,          // (N) each, accumulate
                          const __nv_bfloat16* dz, const __nv_bfloat16* dx,  // (B,T,H,P)
                          const float* dq_raw, const float* dk_raw,    // (B,T,G,N)
                          const float* dadt, const float* ddt, const float* dtrap,  // (B,H,T)
                          const float* dtheta,                         // (B,T,S)
                          const __nv_bfloat16* zxbcdt, const float* rstd_q, const float* rstd_k,  // saved
                          const float* dt_bias, const float* B_norm_w, const float* C_norm_w,
                          const Mamba3Dims& d, cudaStream_t stream);
