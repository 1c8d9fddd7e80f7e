// Logit softcap + cross-entropy on the GPU, fused (CPU twin: model/loss.h). One CTA per token
// row reads its bf16 logits once, keeps s = cap * tanh(z / cap) in shared memory (fp32), and
// writes the per-token loss and the bf16 gradient of the MEAN loss wrt the raw logits:
//   dz[n, v] = (softmax(s_n)[v] - [v == y_n]) / N * (1 - (s[n, v] / cap)^2)
// so the (N, V) logits cross device memory once in and once out, in bf16. dlogits may alias
// logits (in place) or be nullptr (forward only). A target outside [0, V) gives a NaN loss
// (the device cannot fatal(); the trainer's data checks keep targets in range).
// loss_mean sums the per-token losses in a fixed order (deterministic).
// Gradient contract: dlogits OVERWRITES.
#pragma once
#include "model/cuda_common.cuh"

void softcap_ce_forward_backward(float* losses,                // (N)
                                 __nv_bfloat16* dlogits,       // (N, V) may be nullptr or == logits
                                 const __nv_bfloat16* logits,  // (N, V) raw, before the softcap
                                 const int32_t* targets,       // (N)
                                 int64_t N, int V, float cap, cudaStream_t stream);

// Evaluation form (CPU twin: softcap_ce_losses_cpu): per-token losses of s = cap * tanh(z / cap) / tau,
// no gradient. tau = 1 gives exactly the losses of softcap_ce_forward_backward.
void softcap_ce_losses(float* losses,                // (N)
                       const __nv_bfloat16* logits,  // (N, V) raw, before the softcap
                       const int32_t* targets,       // (N)
                       int64_t N, int V, float cap, float temperature, cudaStream_t stream);

void loss_mean(float* out,           // (1)
               const float* losses,  // (N)
               int64_t N, cudaStream_t stream);
