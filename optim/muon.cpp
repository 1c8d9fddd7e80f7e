// Muon CPU reference; the math is in optim/muon.h.
#include "optim/muon.h"
#include <cmath>
#include <vector>

template <typename T>
void muon_momentum_cpu(T* u, T* buf, const T* grad, int64_t n, double momentum, bool nesterov) {
    for (int64_t i = 0; i < n; i++) {
        buf[i] = (T)(momentum * buf[i] + grad[i]);
        u[i] = nesterov ? (T)(grad[i] + momentum * buf[i]) : buf[i];
    }
}

// out (m, n) = alpha * P (m, k) Q (k, n) + beta * S (m, n); sums in float64, stored as T.
// Q is given transposed when q_t (then it is (n, k)), which is how X X^T is read.
template <typename T>
static void gemm(T* out, const T* P, const T* Q, bool q_t, const T* S, int64_t m, int64_t k, int64_t n,
                 double alpha, double beta) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t l = 0; l < k; l++) acc += (double)P[i * k + l] * (double)(q_t ? Q[j * k + l] : Q[l * n + j]);
            out[i * n + j] = (T)(alpha * acc + (S ? beta * (double)S[i * n + j] : 0.0));
        }
}

template <typename T>
void muon_orthogonalize_cpu(T* upd, const T* u, int64_t rows, int64_t cols, int ns_steps, bool eq_r) {
    const bool transposed = rows > cols;
    const int64_t m = transposed ? cols : rows, k = transposed ? rows : cols;  // X is (m, k)
    std::vector<T> g(u, u + rows * cols);
    if (eq_r) {  // MuonEq-R: rows of the (R, C) matrix, before any transpose
        for (int64_t r = 0; r < rows; r++) {
            double ss = 0;
            for (int64_t c = 0; c < cols; c++) ss += (double)g[r * cols + c] * g[r * cols + c];
            double nrm = std::fmax(std::sqrt(ss), kMuonEps);
            for (int64_t c = 0; c < cols; c++) g[r * cols + c] = (T)(g[r * cols + c] / nrm);
        }
    }
    double ss = 0;
    for (auto x : g) ss += (double)x * x;
    double inv = 1.0 / (std::sqrt(ss) + kMuonEps);
    std::vector<T> X(m * k), Xn(m * k), A(m * m), B(m * m);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            T v = (T)(g[r * cols + c] * inv);
            if (transposed) X[c * k + r] = v; else X[r * k + c] = v;
        }
    for (int s = 0; s < ns_steps; s++) {
        gemm(A.data(), X.data(), X.data(), true, (const T*)nullptr, m, k, m, 1.0, 0.0);  // A = X X^T
        gemm(B.data(), A.data(), A.data(), false, A.data(), m, m, m, kMuonNsC, kMuonNsB);  // B = c A A + b A
        gemm(Xn.data(), B.data(), X.data(), false, X.data(), m, m, k, 1.0, kMuonNsA);      // X = B X + a X
        X.swap(Xn);
    }
    double scale = std::sqrt(std::fmax(1.0, (double)rows / (double)cols));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            upd[r * cols + c] = (T)(scale * (transposed ? X[c * k + r] : X[r * k + c]));
}

template <typename T>
void muon_apply_cpu(T* param, const T* upd, int64_t n, double lr, double wd) {
    for (int64_t i = 0; i < n; i++) {
        T decayed = (T)(param[i] * (1.0 - lr * wd));
        param[i] = (T)(decayed - lr * upd[i]);
    }
}

template <typename T>
void muon_step_cpu(T* param, T* buf, const T* grad, int64_t rows, int64_t cols, const MuonHyper& h) {
    int64_t n = rows * cols;
    std::vector<T> u(n), upd(n);
    muon_momentum_cpu(u.data(), buf, grad, n, h.momentum, h.nesterov);
    muon_orthogonalize_cpu(upd.data(), u.data(), rows, cols, h.ns_steps, h.eq_r);
    muon_apply_cpu(param, upd.data(), n, h.lr, h.wd);
}

#define MUON_INSTANTIATE(T)                                                                          \
    template void muon_momentum_cpu<T>(T*, T*, const T*, int64_t, double, bool);                     \
    template void muon_orthogonalize_cpu<T>(T*, const T*, int64_t, int64_t, int, bool);              \
    template void muon_apply_cpu<T>(T*, const T*, int64_t, double, double);                          \
    template void muon_step_cpu<T>(T*, T*, const T*, int64_t, int64_t, const MuonHyper&);
MUON_INSTANTIATE(float)
MUON_INSTANTIATE(double)
