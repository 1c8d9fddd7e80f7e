// Adam for everything Muon does not take: the tied embedding (lr tied_embed_lr) and the vectors
// and scalars (lr scalar_lr), CPU reference. One step t (1-based) on a tensor p with gradient g:
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   p = p*(1 - lr*wd)                                   (decoupled decay, AdamW; wd = 0 is Adam)
//   p = p - (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
// which is torch.optim.AdamW's (and, with wd = 0, torch.optim.Adam's) update, bias correction
// included; the seed ran Adam with no decay.
#pragma once
#include <cstdint>

struct AdamHyper {
    double lr;  // scheduled lr of this group
    double beta1, beta2, eps;
    double wd;  // decoupled weight decay
};

template <typename T>
void adam_step_cpu(T* param, T* m, T* v, const T* grad, int64_t n, const AdamHyper& h, int64_t t);
