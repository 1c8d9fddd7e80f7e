// MLP activation on the GPU (CPU twin: model/mlp.h): a = leaky_relu(h, 0.5)^2, i.e. h^2 for
// h >= 0 and 0.25 h^2 below; da/dh = 2h or 0.5h. bf16 in and out (between the fc and proj
// GEMMs), fp32 math. fc and proj themselves are gemm() calls (model/gemm.cuh).
// Gradient contract: dinp OVERWRITES.
#pragma once
#include "model/cuda_common.cuh"

void mlp_act_forward(__nv_bfloat16* out,        // (n)
                     const __nv_bfloat16* inp,  // (n) h = fc(x)
                     int64_t n, cudaStream_t stream);

void mlp_act_backward(__nv_bfloat16* dinp,        // (n) may alias dout
                      const __nv_bfloat16* dout,  // (n)
                      const __nv_bfloat16* inp,   // (n) saved h
                      int64_t n, cudaStream_t stream);
