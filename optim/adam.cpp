// Adam CPU reference; the math is in optim/adam.h.
#include "optim/adam.h"
#include <cmath>

template <typename T>
void adam_step_cpu(T* param, T* m, T* v, const T* grad, int64_t n, const AdamHyper& h, int64_t t) {
    const double bc1 = 1.0 - std::pow(h.beta1, (double)t);
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(h.beta2, (double)t));
    const double step_size = h.lr / bc1;
    for (int64_t i = 0; i < n; i++) {
        double g = grad[i];
        m[i] = (T)(h.beta1 * m[i] + (1.0 - h.beta1) * g);
        v[i] = (T)(h.beta2 * v[i] + (1.0 - h.beta2) * g * g);
        T decayed = (T)(param[i] * (1.0 - h.lr * h.wd));
        double denom = std::sqrt((double)v[i]) / bc2_sqrt + h.eps;
        param[i] = (T)(decayed - step_size * (double)m[i] / denom);
    }
}

template void adam_step_cpu<float>(float*, float*, float*, const float*, int64_t, const AdamHyper&, int64_t);
template void adam_step_cpu<double>(double*, double*, double*, const double*, int64_t, const AdamHyper&, int64_t);
