// Token embedding on the GPU (CPU twin: model/embedding.h): out[n, :] = wte[tokens[n], :], fp32.
// The tied head is gemm(logits, x, wte_bf16, N, V, C, false, true, ...) (model/gemm.cuh) and
// its weight gradient accumulates into the same dwte.
// Backward without float atomics: one CTA owns 16 vocabulary rows, scans all N tokens in order,
// and sums the dout rows of its tokens in that order in shared memory, so every dwte row is a
// sum in position order, bit-identical run to run. Cost: each CTA reads the N tokens (from L2).
// A token outside [0, V) gives a NaN row in the forward (the device cannot fatal()).
// Gradient contract: dwte ACCUMULATES.
#pragma once
#include "model/cuda_common.cuh"

void embedding_forward(float* out,             // (N, C)
                       const int32_t* tokens,  // (N)
                       const float* wte,       // (V, C)
                       int64_t N, int C, int V, cudaStream_t stream);

void embedding_backward(float* dwte,            // (V, C) accumulate
                        const float* dout,      // (N, C)
                        const int32_t* tokens,  // (N)
                        int64_t N, int C, int V, cudaStream_t stream);
