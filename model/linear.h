// Linear layer without bias, weight in PyTorch's (out, in) layout: out = inp @ weight^T.
// Every projection of the model (attn_qkv, attn_proj, mlp_fc, mlp_proj, the tied head with
// weight = wte) is this; on the GPU it is a cuBLAS(Lt) GEMM.
//
// Backward: dinp = dout @ weight;  dweight += dout^T @ inp.
// Gradient contract: dweight ACCUMULATES (+=); dinp OVERWRITES (=); dinp == nullptr skips it
// (the tied head's input gradient is always needed, but callers that only want dweight may skip).
// Dot products run in double.
#pragma once
#include <cstdint>

template <typename F>
void linear_forward_cpu(F* out,           // (N, OC)
                        const F* inp,     // (N, IC)
                        const F* weight,  // (OC, IC)
                        int64_t N, int IC, int OC);

template <typename F>
void linear_backward_cpu(F* dinp,          // (N, IC)  overwrite, may be nullptr
                         F* dweight,       // (OC, IC) accumulate
                         const F* dout,    // (N, OC)
                         const F* inp,     // (N, IC)
                         const F* weight,  // (OC, IC)
                         int64_t N, int IC, int OC);
