// Token embedding on the GPU (CPU twin: model/embedding.h): out[n, :] = wte[tokens[n], :], fp32.
// The tied head is gemm(logits, x, wte_bf16, N, V, C, false, true, ...) (model/gemm.cuh) and
// its weight gradient accumulates into the same dwte.
// Backward without float atomics: the N positions are sorted by token (CUB's LSD radix sort is
// stable, so each token's positions stay in ascending order), then one CTA per vocabulary row
// sums the dout rows of its positions: 4 thread groups take every 4th position and their partial
// sums are added in a fixed order, so every dwte row is the same sum run to run. A frequent token
// (thousands of positions) is one CTA's serial walk: the 4 groups and 8 loads in flight per
// thread keep that tail short. (The previous design, every CTA scanning all N tokens for its 16
// rows, cost 13 ms per 131k-token micro-batch at V 8192: 10% of a training step.)
// A token outside [0, V) gives a NaN row in the forward (the device cannot fatal()) and is
// left out of the backward.
// Gradient contract: dwte ACCUMULATES.
#pragma once
#include "model/cuda_common.cuh"

void embedding_forward(float* out,             // (N, C)
                       const int32_t* tokens,  // (N)
                       const float* wte,       // (V, C)
                       int64_t N, int C, int V, cudaStream_t stream);

// Bytes of device scratch embedding_backward needs for N tokens (the sort's keys, positions and
// CUB's temporary storage).
size_t embedding_backward_scratch_bytes(int64_t N, int V);
void embedding_backward(float* dwte,            // (V, C) accumulate
                        const float* dout,      // (N, C)
                        const int32_t* tokens,  // (N)
                        int64_t N, int C, int V,
                        void* scratch,          // embedding_backward_scratch_bytes(N, V)
                        cudaStream_t stream);
