// Muon: the optimizer of the 2-D hidden matrices (spec/model.md, Training), CPU reference.
// One step on a matrix W (R, C) with gradient G (R, C) and momentum buffer M (R, C):
//   M = mu*M + G;  U = nesterov ? G + mu*M : M            (muon_momentum_cpu)
//   if MuonEq-R: each row of U to unit L2 norm            (muon_orthogonalize_cpu)
//   X = U / (||U||_F + eps); transpose if R > C so X is (m, k), m = min(R, C) <= k
//   5 times: A = X X^T; B = b A + c A A; X = a X + B X    ((a, b, c) = (3.4445, -4.7750, 2.0315))
//   O = X (transposed back) * sqrt(max(1, R/C))
//   W = W * (1 - lr*wd) - lr*O                             (muon_apply_cpu)
// The order is parameter-golf's Muon as the seed extended it (eq_r before the Frobenius
// normalization, decoupled decay with the scheduled lr before the update).
// The GPU runs the Newton-Schulz products in bf16 (optim/muon.cu); this reference runs them in
// T (float or double) with float64 sums, so the bf16 error is measured against it.
#pragma once
#include <cstdint>

constexpr double kMuonNsA = 3.4445, kMuonNsB = -4.7750, kMuonNsC = 2.0315;
constexpr double kMuonEps = 1e-7;  // ||U||_F + eps and the MuonEq-R row-norm floor, as the seed

struct MuonHyper {
    double lr;        // scheduled lr (matrix_lr * lr multiplier)
    double momentum;  // scheduled momentum (warmed 0.85 -> 0.99)
    double wd;        // decoupled weight decay
    int ns_steps;     // Newton-Schulz iterations
    bool nesterov;
    bool eq_r;        // MuonEq-R
};

// buf (n) updated in place; u (n) = the momentum direction fed to Newton-Schulz.
template <typename T>
void muon_momentum_cpu(T* u, T* buf, const T* grad, int64_t n, double momentum, bool nesterov);
// upd (R, C) = orthogonalized u (R, C), including the sqrt(max(1, R/C)) scale.
template <typename T>
void muon_orthogonalize_cpu(T* upd, const T* u, int64_t rows, int64_t cols, int ns_steps, bool eq_r);
// param (n): param = param*(1 - lr*wd) - lr*upd.
template <typename T>
void muon_apply_cpu(T* param, const T* upd, int64_t n, double lr, double wd);
// The three above in order, for one matrix; scratch-free for the caller.
template <typename T>
void muon_step_cpu(T* param, T* buf, const T* grad, int64_t rows, int64_t cols, const MuonHyper& h);
