// Logit softcap + cross-entropy, fused: z -> s = cap * tanh(z / cap) -> loss_n = lse(s_n) - s_n[y_n],
// mean over the N tokens. The forward returns the mean loss and, when dlogits is non-null,
// writes the gradient of the MEAN loss wrt the raw logits z (so the softmax probabilities are
// never stored):
//   dz[n, v] = (softmax(s_n)[v] - [v == y_n]) / N * (1 - (s[n, v] / cap)^2)
// Gradient contract: dlogits OVERWRITES (=). Sums (max, log-sum-exp) run in double.
// Targets outside [0, V) are fatal.
#pragma once
#include <cstdint>

template <typename F>
double softcap_ce_forward_backward_cpu(F* losses,              // (N)    per-token loss, may be nullptr
                                       F* dlogits,             // (N, V) may be nullptr (forward only)
                                       const F* logits,        // (N, V) raw, before the softcap
                                       const int32_t* targets, // (N)
                                       int64_t N, int V, double cap);

// Evaluation form (no gradient): per-token losses in double of the softcapped logits divided by a
// temperature, s = cap * tanh(z / cap) / tau (the seed's eval order: softcap first, then 1/tau).
// tau = 1 gives exactly the losses of softcap_ce_forward_backward_cpu. Returns the mean.
template <typename F>
double softcap_ce_losses_cpu(double* losses,          // (N) may be nullptr
                             const F* logits,         // (N, V) raw, before the softcap
                             const int32_t* targets,  // (N)
                             int64_t N, int V, double cap, double temperature);
