// CPU reference of the fused logit softcap + cross-entropy (see loss.h).
#include "model/loss.h"
#include "model/common.h"
#include <cmath>
#include <vector>

static void check_targets(const int32_t* targets, int64_t N, int V) {
    for (int64_t n = 0; n < N; n++)
        if (targets[n] < 0 || targets[n] >= V)
            fatal("cross-entropy: target %d at position %lld outside [0, %d)", targets[n], (long long)n, V);
}

// One row: s_v = cap * tanh(z_v / cap) / tau into s (V,), returns logsumexp(s).
// Dividing by tau = 1 is exact, so training and evaluation share these numbers bit for bit.
template <typename F>
static double softcap_lse_row(double* s, const F* z, int V, double cap, double tau) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++) {
        s[v] = cap * tanh((double)z[v] / cap) / tau;
        mx = fmax(mx, s[v]);
    }
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp(s[v] - mx);
    return mx + log(sum);
}

template <typename F>
double softcap_ce_forward_backward_cpu(F* losses, F* dlogits, const F* logits, const int32_t* targets,
                                       int64_t N, int V, double cap) {
    check_targets(targets, N, V);
    std::vector<double> row_loss(N);
#pragma omp parallel for
    for (int64_t n = 0; n < N; n++) {
        std::vector<double> s(V);
        int32_t y = targets[n];
        double lse = softcap_lse_row(s.data(), logits + n * V, V, cap, 1.0);
        row_loss[n] = lse - s[y];
        if (losses) losses[n] = (F)row_loss[n];
        if (dlogits) {
            // d loss / d s_v = softmax(s)_v - [v == y];  d s / d z = 1 - tanh^2 = 1 - (s / cap)^2
            for (int v = 0; v < V; v++) {
                double p = exp(s[v] - lse) - (v == y ? 1.0 : 0.0);
                double t = s[v] / cap;
                dlogits[n * V + v] = (F)(p / (double)N * (1.0 - t * t));
            }
        }
    }
    double total = 0;  // summed in token order: the same number for any thread count
    for (int64_t n = 0; n < N; n++) total += row_loss[n];
    return total / (double)N;
}

template <typename F>
double softcap_ce_losses_cpu(double* losses, const F* logits, const int32_t* targets, int64_t N, int V, double cap,
                             double temperature) {
    if (!(temperature > 0)) fatal("cross-entropy: temperature %g must be > 0", temperature);
    check_targets(targets, N, V);
    std::vector<double> row_loss(N);
#pragma omp parallel for
    for (int64_t n = 0; n < N; n++) {
        std::vector<double> s(V);
        row_loss[n] = softcap_lse_row(s.data(), logits + n * V, V, cap, temperature) - s[targets[n]];
    }
    double total = 0;  // in token order, as softcap_ce_forward_backward_cpu
    for (int64_t n = 0; n < N; n++) {
        total += row_loss[n];
        if (losses) losses[n] = row_loss[n];
    }
    return total / (double)N;
}

template double softcap_ce_losses_cpu<float>(double*, const float*, const int32_t*, int64_t, int, double, double);
template double softcap_ce_losses_cpu<double>(double*, const double*, const int32_t*, int64_t, int, double, double);
template double softcap_ce_forward_backward_cpu<float>(float*, float*, const float*, const int32_t*, int64_t, int, double);
template double softcap_ce_forward_backward_cpu<double>(double*, double*, const double*, const int32_t*, int64_t, int, double);
