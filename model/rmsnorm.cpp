// CPU reference of the weightless RMSNorm (see rmsnorm.h).
#include "model/rmsnorm.h"
#include <cmath>

template <typename F>
void rmsnorm_forward_cpu(F* out, F* rstd, const F* inp, int64_t N, int C, double eps) {
    for (int64_t n = 0; n < N; n++) {
        const F* x = inp + n * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) out[n * C + c] = (F)(x[c] * r);
        rstd[n] = (F)r;
    }
}

template <typename F>
void rmsnorm_backward_cpu(F* dinp, const F* dout, const F* inp, const F* rstd, int64_t N, int C) {
    // y = x r, r = (mean(x^2) + eps)^-1/2, dr/dx_c = -r^3 x_c / C
    // => dx_c = r dy_c - (r^3 / C) x_c sum_k dy_k x_k = r (dy_c - y_c mean(dy y))
    for (int64_t n = 0; n < N; n++) {
        const F* x = inp + n * C;
        const F* dy = dout + n * C;
        double r = rstd[n];
        double dot = 0;
        for (int c = 0; c < C; c++) dot += (double)dy[c] * x[c] * r;
        double m = dot / C;
        for (int c = 0; c < C; c++) dinp[n * C + c] = (F)(r * (dy[c] - x[c] * r * m));
    }
}

template void rmsnorm_forward_cpu<float>(float*, float*, const float*, int64_t, int, double);
template void rmsnorm_forward_cpu<double>(double*, double*, const double*, int64_t, int, double);
template void rmsnorm_backward_cpu<float>(float*, const float*, const float*, const float*, int64_t, int);
template void rmsnorm_backward_cpu<double>(double*, const double*, const double*, const double*, int64_t, int);
