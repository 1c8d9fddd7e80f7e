// MLP: out = proj(leaky_relu(fc(x), 0.5)^2), hidden F = cfg.mlp_hidden(); no biases.
// Split like the GPU version: fc and proj are linear_* (linear.h), the activation is its own
// elementwise op so it can be fused into the fc GEMM's epilogue on the GPU.
//   act(h) = h^2 for h >= 0, (0.5 h)^2 = 0.25 h^2 for h < 0;  act'(h) = 2h or 0.5h.
// Gradient contract: parameter gradients (dfc, dproj) ACCUMULATE (+=); dinp OVERWRITES (=).
#pragma once
#include <cstdint>

template <typename F>
void mlp_act_forward_cpu(F* out,        // (n)
                         const F* inp,  // (n) pre-activation h = fc(x)
                         int64_t n);

template <typename F>
void mlp_act_backward_cpu(F* dinp,        // (n) overwrite
                          const F* dout,  // (n)
                          const F* inp,   // (n) pre-activation, saved
                          int64_t n);

// The whole MLP, composed of the three pieces above (what the model calls).
template <typename F>
void mlp_forward_cpu(F* out,          // (N, C)
                     F* h,            // (N, F) saved: fc(x), pre-activation
                     F* a,            // (N, F) saved: act(h), proj's input
                     const F* inp,    // (N, C)
                     const F* fc,     // (F, C)
                     const F* proj,   // (C, F)
                     int64_t N, int C, int FH);

// `scratch` holds N*FH elements (da, then dh in place).
template <typename F>
void mlp_backward_cpu(F* dinp,          // (N, C)  overwrite
                      F* dfc,           // (F, C)  accumulate
                      F* dproj,         // (C, F)  accumulate
                      const F* dout,    // (N, C)
                      const F* inp, const F* h, const F* a,  // saved by the forward
                      const F* fc, const F* proj,
                      F* scratch,       // (N, F)
                      int64_t N, int C, int FH);
