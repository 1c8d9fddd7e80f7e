// Central finite differences in double for the CPU references' backward passes.
// loss() recomputes a scalar from the current inputs; each checked entry of x is nudged by
// +-eps and (loss(+) - loss(-)) / 2eps is compared with the analytic gradient. Big tensors are
// sampled (`max_entries` evenly spread indices). The error is max|fd - analytic| / max|analytic|
// over the checked entries, like rel_err.
#pragma once
#include "model/common.h"
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

inline double fd_rel_err(double* x, int64_t n, const double* analytic, const std::function<double()>& loss,
                         int64_t max_entries = 64, double eps = 1e-6) {
    double maxdiff = 0, maxref = 0;
    int64_t step = std::max<int64_t>(1, n / max_entries);
    for (int64_t k = 0; k < n; k += step) {
        double save = x[k];
        x[k] = save + eps;
        double lp = loss();
        x[k] = save - eps;
        double lm = loss();
        x[k] = save;
        double fd = (lp - lm) / (2 * eps);
        double d = fabs(fd - analytic[k]);
        if (!(d <= maxdiff)) maxdiff = d;
        maxref = std::max(maxref, fabs(analytic[k]));
    }
    return maxref > 0 ? maxdiff / maxref : maxdiff;
}

#define CHECK_FD(name, x, n, analytic, loss, tol)                                     \
    do {                                                                              \
        double _e = fd_rel_err((x), (n), (analytic), (loss));                         \
        INFO(name << ": finite-difference rel err " << _e << " (tol " << (tol) << ")"); \
        CHECK(_e <= (tol));                                                           \
    } while (0)

inline std::vector<double> fd_randn(uint64_t seed, int64_t n, double scale = 1.0, double shift = 0.0) {
    Rng r(seed);
    std::vector<double> v(n);
    for (auto& e : v) e = shift + scale * r.normal();
    return v;
}
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
    return s;
}
