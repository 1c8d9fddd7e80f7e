// Causal self-attention with GQA, in two pieces that the CUDA version mirrors one to one:
//  (a) qkv prep: the attn_qkv GEMM's output (B,T,(NH+2*NKV)*HD), split q | k | v, becomes the
//      core's inputs:
//        v = v * sigmoid(v)                               (SiLU on values)
//        q, k = RMSNorm per head (no weight, eps = cfg.norm_eps)
//        q, k = RoPE, half-split per head: x1 = dims [0, HD/2), x2 = dims [HD/2, HD),
//               angle(t, i) = t * base^(-2i/HD),  (x1, x2) -> (x1 cos + x2 sin, -x1 sin + x2 cos)
//        q = q * q_gain[h]                                (per query head)
//  (b) core: y = softmax(q k^T / sqrt(HD) + causal mask) v; query head h reads kv head
//      h / (NH/NKV). The forward saves the row log-sum-exp (flash-attention style) so the
//      backward recomputes the probabilities instead of storing (T, T) per head:
//        P = exp(S - lse);  dV = P^T dY;  dP = dY V^T;  D_i = sum_d dY_i * Y_i;
//        dS = P * (dP - D);  dQ = dS K / sqrt(HD);  dK = dS^T Q / sqrt(HD)
//      (GQA: dK, dV of a kv head sum over its NH/NKV query heads).
// Around them: qkv = linear(x, attn_qkv), out = linear(y, attn_proj) (linear.h).
//
// Layouts (row-major, last index fastest):
//   qkv (B, T, (NH + 2*NKV)*HD)    q | k | v within each row
//   q   (B, T, NH, HD)     k, v (B, T, NKV, HD)     y (B, T, NH, HD) = (B, T, NH*HD), proj's input
//   q_rstd (B, T, NH)      k_rstd (B, T, NKV)       lse (B, NH, T)
//
// Gradient contract: dq_gain ACCUMULATES (+=); activation gradients (dqkv, dq, dk, dv)
// OVERWRITE (=). Sums run in double; RoPE's cos/sin are computed in double.
#pragma once
#include <cstdint>

struct AttnDims {
    int B, T;        // batch, time
    int NH, NKV, HD; // query heads, kv heads, head dim (even)
    double rope_base, eps;
    int qkv_cols() const { return (NH + 2 * NKV) * HD; }
};

// (a) prep. Saved for the backward: qkv itself (raw) and the two rstd vectors.
template <typename F>
void attn_qkv_prep_forward_cpu(F* q,             // (B,T,NH,HD)
                               F* k,             // (B,T,NKV,HD)
                               F* v,             // (B,T,NKV,HD)
                               F* q_rstd,        // (B,T,NH)   saved
                               F* k_rstd,        // (B,T,NKV)  saved
                               const F* qkv,     // (B,T,(NH+2NKV)*HD)
                               const F* q_gain,  // (NH)
                               const AttnDims& d);

template <typename F>
void attn_qkv_prep_backward_cpu(F* dqkv,          // (B,T,(NH+2NKV)*HD) overwrite
                                F* dq_gain,       // (NH) accumulate
                                const F* dq,      // (B,T,NH,HD)
                                const F* dk,      // (B,T,NKV,HD)
                                const F* dv,      // (B,T,NKV,HD)
                                const F* qkv, const F* q_rstd, const F* k_rstd,  // saved
                                const F* q_gain,  // (NH)
                                const AttnDims& d);

// (b) core causal attention, scale 1/sqrt(HD).
template <typename F>
void attention_forward_cpu(F* y,        // (B,T,NH,HD)
                           F* lse,      // (B,NH,T) saved: log-sum-exp of each scaled score row
                           const F* q,  // (B,T,NH,HD)
                           const F* k,  // (B,T,NKV,HD)
                           const F* v,  // (B,T,NKV,HD)
                           const AttnDims& d);

template <typename F>
void attention_backward_cpu(F* dq,        // (B,T,NH,HD)  overwrite
                            F* dk,        // (B,T,NKV,HD) overwrite
                            F* dv,        // (B,T,NKV,HD) overwrite
                            const F* dy,  // (B,T,NH,HD)
                            const F* q, const F* k, const F* v,  // forward inputs
                            const F* y, const F* lse,            // forward outputs (saved)
                            const AttnDims& d);
