// Token embedding: out[b,t,:] = wte[tokens[b,t], :], the first op of the model.
// The same matrix is the output head (tied): logits = x @ wte^T is linear_forward_cpu with
// weight = wte (V, C), and its weight gradient accumulates into the same dwte as the lookup's
// scatter-add below (both ACCUMULATE, so the order does not matter).
//
// Gradient contract: dwte ACCUMULATES (+=): dwte[tokens[n], :] += dout[n, :] for every n
// (a scatter-add; repeated tokens sum). Tokens outside [0, V) are fatal.
// Templates over the element type F (float, double: the double one for finite differences).
#pragma once
#include <cstdint>

template <typename F>
void embedding_forward_cpu(F* out,                 // (N, C)   N = B*T
                           const int32_t* tokens,  // (N)
                           const F* wte,           // (V, C)
                           int64_t N, int C, int V);

template <typename F>
void embedding_backward_cpu(F* dwte,                // (V, C) accumulate
                            const F* dout,          // (N, C)
                            const int32_t* tokens,  // (N)
                            int64_t N, int C, int V);
