// CPU reference of the bias-free linear layer (see linear.h).
#include "model/linear.h"
#include <vector>

template <typename F>
void linear_forward_cpu(F* out, const F* inp, const F* weight, int64_t N, int IC, int OC) {
#pragma omp parallel for
    for (int64_t n = 0; n < N; n++) {
        const F* x = inp + n * IC;
        for (int o = 0; o < OC; o++) {
            const F* w = weight + (int64_t)o * IC;
            double s = 0;
            for (int i = 0; i < IC; i++) s += (double)x[i] * w[i];
            out[n * OC + o] = (F)s;
        }
    }
}

template <typename F>
void linear_backward_cpu(F* dinp, F* dweight, const F* dout, const F* inp, const F* weight,
                         int64_t N, int IC, int OC) {
    // out[n,o] = sum_i inp[n,i] w[o,i]  =>  dinp[n,i] = sum_o dout[n,o] w[o,i]
    if (dinp) {
#pragma omp parallel for
        for (int64_t n = 0; n < N; n++) {
            std::vector<double> acc(IC, 0.0);
            for (int o = 0; o < OC; o++) {
                double g = dout[n * OC + o];
                const F* w = weight + (int64_t)o * IC;
                for (int i = 0; i < IC; i++) acc[i] += g * w[i];
            }
            for (int i = 0; i < IC; i++) dinp[n * IC + i] = (F)acc[i];
        }
    }
    //                                 =>  dw[o,i] += sum_n dout[n,o] inp[n,i]
#pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        std::vector<double> acc(IC, 0.0);
        for (int64_t n = 0; n < N; n++) {
            double g = dout[n * OC + o];
            const F* x = inp + n * IC;
            for (int i = 0; i < IC; i++) acc[i] += g * x[i];
        }
        F* dw = dweight + (int64_t)o * IC;
        for (int i = 0; i < IC; i++) dw[i] = (F)(dw[i] + acc[i]);
    }
}

template void linear_forward_cpu<float>(float*, const float*, const float*, int64_t, int, int);
template void linear_forward_cpu<double>(double*, const double*, const double*, int64_t, int, int);
template void linear_backward_cpu<float>(float*, float*, const float*, const float*, const float*, int64_t, int, int);
template void linear_backward_cpu<double>(double*, double*, const double*, const double*, const double*, int64_t, int, int);
