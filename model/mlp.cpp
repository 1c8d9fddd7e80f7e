// CPU reference of the MLP (see mlp.h).
#include "model/mlp.h"
#include "model/linear.h"

template <typename F>
void mlp_act_forward_cpu(F* out, const F* inp, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        double h = inp[k];
        double r = h >= 0 ? h : 0.5 * h;  // leaky_relu(h, 0.5)
        out[k] = (F)(r * r);
    }
}

template <typename F>
void mlp_act_backward_cpu(F* dinp, const F* dout, const F* inp, int64_t n) {
    // a = r^2, r = h or h/2  =>  da/dh = 2 r dr/dh = 2h (h >= 0) or 0.5h (h < 0)
    for (int64_t k = 0; k < n; k++) {
        double h = inp[k];
        dinp[k] = (F)(dout[k] * (h >= 0 ? 2.0 * h : 0.5 * h));
    }
}

template <typename F>
void mlp_forward_cpu(F* out, F* h, F* a, const F* inp, const F* fc, const F* proj, int64_t N, int C, int FH) {
    linear_forward_cpu(h, inp, fc, N, C, FH);
    mlp_act_forward_cpu(a, h, N * FH);
    linear_forward_cpu(out, a, proj, N, FH, C);
}

template <typename F>
void mlp_backward_cpu(F* dinp, F* dfc, F* dproj, const F* dout, const F* inp, const F* h, const F* a,
                      const F* fc, const F* proj, F* scratch, int64_t N, int C, int FH) {
    linear_backward_cpu(scratch, dproj, dout, a, proj, N, FH, C);  // scratch = da
    mlp_act_backward_cpu(scratch, scratch, h, N * FH);              // scratch = dh (elementwise, in place)
    linear_backward_cpu(dinp, dfc, scratch, inp, fc, N, C, FH);
}

#define MLP_INST(F)                                                                                    \
    template void mlp_act_forward_cpu<F>(F*, const F*, int64_t);                                       \
    template void mlp_act_backward_cpu<F>(F*, const F*, const F*, int64_t);                            \
    template void mlp_forward_cpu<F>(F*, F*, F*, const F*, const F*, const F*, int64_t, int, int);     \
    template void mlp_backward_cpu<F>(F*, F*, F*, const F*, const F*, const F*, const F*, const F*,     \
                                      const F*, F*, int64_t, int, int);
MLP_INST(float)
MLP_INST(double)
