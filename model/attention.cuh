// Causal GQA attention on the GPU (the CPU twin: model/attention.h).
//
// Two parts:
//  (a) the flash core: softmax(q k^T * scale, causal) v over bf16 q, k, v, our own tiled kernels
//      with tensor-core MMA (mma.sync m16n8k16 bf16 -> fp32), online softmax, no T x T matrix in
//      memory; the forward saves the fp32 logsumexp, the backward recomputes P from it.
//      Determinism: dK/dV are summed over query tiles (and over the query heads of a KV group)
//      inside one CTA per KV tile; dQ is a second pass with one CTA per query tile. No atomics.
//  (b) the prep around it (qkv GEMM output -> silu(v), per-head RMSNorm of q and k, RoPE,
//      q gain) and its backward.
//
// Layouts (row-major, last index fastest); HD must be 64:
//   q, dq      (B, T, NH, HD)   bf16
//   k, v, dk, dv (B, T, NKV, HD) bf16
//   out, dout  (B, T, NH, HD)   bf16
//   lse        (B, NH, T)       fp32, natural-log logsumexp of each query row's scaled scores
//   delta      (B, NH, T)       fp32 scratch for the backward: rowsum(dout * out)
// Query head h reads KV head h / (NH / NKV).
//
// Gradient contract: dq, dk, dv OVERWRITE.
#pragma once
#include "model/cuda_common.cuh"

void attention_core_forward(__nv_bfloat16* out, float* lse,
                            const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                            int B, int T, int NH, int NKV, int HD, cudaStream_t stream);

void attention_core_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float* delta,
                             const __nv_bfloat16* dout,
                             const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                             const __nv_bfloat16* out, const float* lse,
                             int B, int T, int NH, int NKV, int HD, cudaStream_t stream);
// (b) qkv prep, the attn_qkv GEMM's output (B, T, (NH + 2 NKV) HD) bf16, q | k | v per row:
//   v = silu(v);  q, k = RMSNorm per head (no weight, eps);  q, k = RoPE half-split,
//   angle(t, i) = t * base^(-2i/HD) (cos/sin from a float64-built table);  q *= q_gain[h].
// One warp per (token, head); bf16 out, fp32 math; q_rstd (B,T,NH), k_rstd (B,T,NKV) saved.
// Backward: dqkv bf16 OVERWRITES; dq_gain ACCUMULATES (per-head sums as per-CTA partials and
// a fixed-order reduction: deterministic).
void attn_qkv_prep_forward(__nv_bfloat16* q, __nv_bfloat16* k, __nv_bfloat16* v,  // see layouts above
                           float* q_rstd, float* k_rstd,                          // saved
                           const __nv_bfloat16* qkv,                              // (B,T,(NH+2NKV)*HD)
                           const float* q_gain,                                   // (NH)
                           int B, int T, int NH, int NKV, int HD, float rope_base, float eps, cudaStream_t stream);
void attn_qkv_prep_backward(__nv_bfloat16* dqkv,  // (B,T,(NH+2NKV)*HD) overwrite
                            float* dq_gain,       // (NH) accumulate
                            const __nv_bfloat16* dq, const __nv_bfloat16* dk, const __nv_bfloat16* dv,
                            const __nv_bfloat16* qkv, const float* q_rstd, const float* k_rstd,  // saved
                            const float* q_gain, int B, int T, int NH, int NKV, int HD, float rope_base,
                            cudaStream_t stream);
