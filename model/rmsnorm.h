// RMSNorm without weight over the last dim: out = x / sqrt(mean(x^2) + eps) = x * rstd.
// Used on the embedding output, before each mixer and MLP, and as the final norm
// (eps = cfg.norm_eps, F.rms_norm's default for fp32). Attention's per-head q/k norm is the
// same math applied inside attn_qkv_prep_* (attention.h).
//
// Backward (y = x*r, r = (mean(x^2)+eps)^-1/2):
//   dx = r * (dy - y * mean(dy * y))
// Gradient contract: dinp OVERWRITES (=). There are no parameters.
// Sums (mean of squares, mean of dy*y) run in double.
#pragma once
#include <cstdint>

template <typename F>
void rmsnorm_forward_cpu(F* out,        // (N, C)
                         F* rstd,       // (N)     saved for backward
                         const F* inp,  // (N, C)
                         int64_t N, int C, double eps);

template <typename F>
void rmsnorm_backward_cpu(F* dinp,        // (N, C) overwrite
                          const F* dout,  // (N, C)
                          const F* inp,   // (N, C)
                          const F* rstd,  // (N)
                          int64_t N, int C);
