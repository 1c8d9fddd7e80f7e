// CPU reference of the fused logit softcap + cross-entropy (see loss.h).
#include "model/loss.h"
#include "model/common.h"
#include <cmath>
#include <vector>

template <typename F>
double softcap_ce_forward_backward_cpu(F* losses, F* dlogits, const F* logits, const int32_t* targets,
                                       int64_t N, int V, double cap) {
    std::vector<double> s(V);
    double total = 0;
    for (int64_t n = 0; n < N; n++) {
        int32_t y = targets[n];
        if (y < 0 || y >= V) fatal("cross-entropy: target %d at position %lld outside [0, %d)", y, (long long)n, V);
        const F* z = logits + n * V;
        double mx = -INFINITY;
        for (int v = 0; v < V; v++) {
            s[v] = cap * tanh((double)z[v] / cap);
            mx = fmax(mx, s[v]);
        }
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp(s[v] - mx);
        double lse = mx + log(sum);
        double loss = lse - s[y];
        total += loss;
        if (losses) losses[n] = (F)loss;
        if (dlogits) {
            // d loss / d s_v = softmax(s)_v - [v == y];  d s / d z = 1 - tanh^2 = 1 - (s / cap)^2
            for (int v = 0; v < V; v++) {
                double p = exp(s[v] - lse) - (v == y ? 1.0 : 0.0);
                double t = s[v] / cap;
                dlogits[n * V + v] = (F)(p / (double)N * (1.0 - t * t));
            }
        }
    }
    return total / (double)N;
}

template double softcap_ce_forward_backward_cpu<float>(float*, float*, const float*, const int32_t*, int64_t, int, double);
template double softcap_ce_forward_backward_cpu<double>(double*, double*, const double*, const int32_t*, int64_t, int, double);
