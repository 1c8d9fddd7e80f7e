// Mamba-3 SISO chunked scan on the GPU (spec/mamba3.md §3.4 forward, §5 backward): the CUDA twin
// of mamba3_scan_forward_cpu / mamba3_scan_backward_cpu in model/mamba3.h, same argument order,
// same layouts, same saved tensors (phi, y, states; states in bf16 here). One CTA walks one (b, h)
// over its chunks (the forward's angles phi come first, from a kernel of their own, through the
// states buffer as scratch);
// the intra-chunk products run on tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulate);
// the state H (P x N), the angle phi and every per-position scalar stay fp32.
//
// dtypes at the boundary: the large per-(b,t,h) tensors are bf16 (q_raw, k_raw, v, z, out, y, dout,
// dv, dz); the per-(b,h,t) scalars (adt, dt, trap), theta, phi, the biases, D, the group-reduced
// dq_raw/dk_raw, dtheta and all initial/final states are fp32. The saved per-chunk states are bf16:
// the state is carried in fp32, but the backward's only use of a saved state is as a bf16 MMA
// operand, so fp32 copies were twice the bytes (268 MB each way at the seed's shape) for nothing.
// Supported: N = P = L = 64, S in {8, 16, 32}, H % G == 0 (fatal otherwise). dq_raw, dk_raw and dtheta
// are written 16 bytes at a time: 16-byte aligned (cudaMalloc and the model's arena are).
//
// Gradient contract (as the CPU twin): dq_bias, dk_bias, dD ACCUMULATE; everything else OVERWRITES.
// Deterministic: no atomics; head sums (GQA, biases, D) are fixed-order reductions.
#pragma once
#include "model/cuda_common.cuh"
#include "model/mamba3.h"

// fin may be nullptr (no final states). init may be nullptr (zero states).
void mamba3_scan_forward(__nv_bfloat16* out,                          // (B,T,H,P)
                         const Mamba3States<float>* fin,              // device pointers
                         float* phi, __nv_bfloat16* y,                // saved: (B,H,T,S) (B,T,H,P)
                         __nv_bfloat16* states,                       // saved: (B,H,nchunks,P,N)
                         const __nv_bfloat16* q_raw, const __nv_bfloat16* k_raw,  // (B,T,G,N)
                         const __nv_bfloat16* v,                      // (B,T,H,P)
                         const float* adt, const float* dt, const float* trap,    // (B,H,T)
                         const float* theta,                          // (B,T,S)
                         const float* q_bias, const float* k_bias,    // (H,N)
                         const float* D,                              // (H)
                         const __nv_bfloat16* z,                      // (B,T,H,P)
                         const Mamba3States<float>* init,
                         const Mamba3Dims& d, cudaStream_t stream);

// Bytes of device scratch the backward needs (per-head dq/dk/dtheta before the head sums,
// per-(b,h) bias and D partials).
size_t mamba3_scan_backward_scratch_bytes(const Mamba3Dims& d);

// dfin may be nullptr, and so may any of its four pointers (zero gradient). dinit non-null iff init is.
void mamba3_scan_backward(float* dq_raw, float* dk_raw,               // (B,T,G,N)
                          __nv_bfloat16* dv,                          // (B,T,H,P)
                          float* dadt, float* ddt, float* dtrap,      // (B,H,T)
                          float* dtheta,                              // (B,T,S)
                          float* dq_bias, float* dk_bias,             // (H,N) accumulate
                          float* dD,                                  // (H)   accumulate
                          __nv_bfloat16* dz,                          // (B,T,H,P)
                          const Mamba3States<float>* dinit,
                          const __nv_bfloat16* dout,                  // (B,T,H,P)
                          const Mamba3States<float>* dfin,
                          const float* phi, const __nv_bfloat16* y, const __nv_bfloat16* states,  // saved
                          const __nv_bfloat16* q_raw, const __nv_bfloat16* k_raw, const __nv_bfloat16* v,
                          const float* adt, const float* dt, const float* trap, const float* theta,
                          const float* q_bias, const float* k_bias, const float* D,
                          const __nv_bfloat16* z,
                          const Mamba3States<float>* init,
                          void* scratch, const Mamba3Dims& d, cudaStream_t stream);
