// Mamba-3 SISO mixer, CPU reference (see model/mamba3.h for layouts and the gradient contract).
// Loops read like spec/mamba3.md; every sum runs in double whatever the storage type.
#include "model/mamba3.h"
#include "model/common.h"
#include <cmath>
#include <vector>

static const double kPi = 3.14159265358979323846;
static const double kTwoPi = 2.0 * kPi;

Mamba3Dims mamba3_dims(const Config& c, int B, int T) {
    Mamba3Dims d;
    d.B = B; d.T = T;
    d.C = c.model_dim; d.DI = c.d_inner(); d.R = c.in_proj_rows();
    d.H = c.ssm_heads(); d.P = c.ssm_headdim; d.N = c.d_state; d.G = c.ssm_ngroups;
    d.S = c.num_angles(); d.L = c.chunk_size;
    d.ip_z = c.ip_z(); d.ip_x = c.ip_x(); d.ip_B = c.ip_B(); d.ip_C = c.ip_C();
    d.ip_dd_dt = c.ip_dd_dt(); d.ip_dd_A = c.ip_dd_A(); d.ip_trap = c.ip_trap(); d.ip_angles = c.ip_angles();
    d.act = c.a_activation();
    d.a_floor = c.a_floor;
    return d;
}

// ---- elementwise pieces shared by prep forward and backward
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
// torch.nn.functional.softplus (beta 1, threshold 20): linear above 20.
static double softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }
static double softplus_grad(double x) { return x > 20.0 ? 1.0 : sigmoid(x); }
// heavy_tail(x) = 1+x (x >= 0), 1/(1-x) (x < 0): continuous with slope 1 at 0 on both sides.
static double a_act(AAct act, double x) {
    if (act == AAct::softplus) return softplus(x);
    return x >= 0 ? 1.0 + x : 1.0 / (1.0 - x);
}
static double a_act_grad(AAct act, double x) {
    if (act == AAct::softplus) return softplus_grad(x);
    return x >= 0 ? 1.0 : 1.0 / ((1.0 - x) * (1.0 - x));
}

// ==========================================================================================
// (a) prep
template <typename F>
void mamba3_prep_forward_cpu(F* z, F* x, F* q_raw, F* k_raw, F* adt, F* dt, F* trap, F* theta,
                             F* rstd_q, F* rstd_k, const F* zxbcdt, const F* dt_bias,
                             const F* B_norm_w, const F* C_norm_w, const Mamba3Dims& d) {
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, G = d.G, S = d.S;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t bt = (int64_t)b * T + t;
            const F* row = zxbcdt + bt * d.R;
            for (int k = 0; k < H * P; k++) {
                z[bt * H * P + k] = row[d.ip_z + k];
                x[bt * H * P + k] = row[d.ip_x + k];
            }
            // B -> k_raw, C -> q_raw: RMSNorm over N per group, times the weight
            for (int g = 0; g < G; g++) {
                for (int which = 0; which < 2; which++) {
                    const F* src = row + (which ? d.ip_C : d.ip_B) + g * N;
                    const F* w = which ? C_norm_w : B_norm_w;
                    F* dst = (which ? q_raw : k_raw) + (bt * G + g) * N;
                    double ss = 0;
                    for (int n = 0; n < N; n++) ss += (double)src[n] * src[n];
                    double r = 1.0 / sqrt(ss / N + kMamba3NormEps);
                    (which ? rstd_q : rstd_k)[bt * G + g] = (F)r;
                    for (int n = 0; n < N; n++) dst[n] = (F)((double)src[n] * r * w[n]);
                }
            }
            for (int h = 0; h < H; h++) {
                const int64_t bht = ((int64_t)b * H + h) * T + t;
                double A = -fmax(a_act(d.act, row[d.ip_dd_A + h]), d.a_floor);
                double delta = softplus((double)row[d.ip_dd_dt + h] + dt_bias[h]);
                dt[bht] = (F)delta;
                adt[bht] = (F)(A * delta);
                trap[bht] = row[d.ip_trap + h];
            }
            for (int i = 0; i < S; i++) theta[bt * S + i] = row[d.ip_angles + i];
        }
}

template <typename F>
void mamba3_prep_backward_cpu(F* dzxbcdt, F* ddt_bias, F* dB_norm_w, F* dC_norm_w, const F* dz,
                              const F* dx, const F* dq_raw, const F* dk_raw, const F* dadt,
                              const F* ddt, const F* dtrap, const F* dtheta, const F* zxbcdt,
                              const F* rstd_q, const F* rstd_k, const F* dt_bias, const F* B_norm_w,
                              const F* C_norm_w, const Mamba3Dims& d) {
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, G = d.G, S = d.S;
    std::vector<double> dw_b(N, 0.0), dw_c(N, 0.0), ddtb(H, 0.0);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t bt = (int64_t)b * T + t;
            const F* row = zxbcdt + bt * d.R;
            F* drow = dzxbcdt + bt * d.R;
            for (int k = 0; k < H * P; k++) {
                drow[d.ip_z + k] = dz[bt * H * P + k];
                drow[d.ip_x + k] = dx[bt * H * P + k];
            }
            // out = x r w, r = (mean(x^2)+eps)^-1/2:  dx = r (dout w) - x r^3/N sum(dout w x)
            for (int g = 0; g < G; g++)
                for (int which = 0; which < 2; which++) {
                    const F* src = row + (which ? d.ip_C : d.ip_B) + g * N;
                    const F* w = which ? C_norm_w : B_norm_w;
                    const F* dout = (which ? dq_raw : dk_raw) + (bt * G + g) * N;
                    double r = (which ? rstd_q : rstd_k)[bt * G + g];
                    std::vector<double>& dw = which ? dw_c : dw_b;
                    double dot = 0;
                    for (int n = 0; n < N; n++) {
                        dot += (double)dout[n] * w[n] * src[n];
                        dw[n] += (double)dout[n] * src[n] * r;
                    }
                    F* dsrc = drow + (which ? d.ip_C : d.ip_B) + g * N;
                    for (int n = 0; n < N; n++)
                        dsrc[n] = (F)(r * dout[n] * w[n] - (double)src[n] * r * r * r / N * dot);
                }
            for (int h = 0; h < H; h++) {
                const int64_t bht = ((int64_t)b * H + h) * T + t;
                const double ddA = row[d.ip_dd_A + h], pre = (double)row[d.ip_dd_dt + h] + dt_bias[h];
                const double act = a_act(d.act, ddA);
                const double A = -fmax(act, d.a_floor), delta = softplus(pre);
                // adt = A*delta: dA = dadt*delta; A = -max(act, floor) passes no gradient at the floor
                const double dA = (double)dadt[bht] * delta;
                drow[d.ip_dd_A + h] = (F)(act > d.a_floor ? -dA * a_act_grad(d.act, ddA) : 0.0);
                const double ddelta = (double)ddt[bht] + (double)dadt[bht] * A;
                const double dpre = ddelta * softplus_grad(pre);
                drow[d.ip_dd_dt + h] = (F)dpre;
                ddtb[h] += dpre;
                drow[d.ip_trap + h] = dtrap[bht];
            }
            for (int i = 0; i < S; i++) drow[d.ip_angles + i] = dtheta[bt * S + i];
        }
    for (int n = 0; n < N; n++) { dB_norm_w[n] += (F)dw_b[n]; dC_norm_w[n] += (F)dw_c[n]; }
    for (int h = 0; h < H; h++) ddt_bias[h] += (F)ddtb[h];
}

// ==========================================================================================
// (b) scan

// (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos) on pairs i < S; dims >= 2S untouched.
static void rotate(double* out, const double* in, const double* cs, const double* sn, int N, int S) {
    for (int n = 0; n < N; n++) out[n] = in[n];
    for (int i = 0; i < S; i++) {
        double x0 = in[2 * i], x1 = in[2 * i + 1];
        out[2 * i] = x0 * cs[i] - x1 * sn[i];
        out[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
    }
}
// R(phi)^T
static void rotate_T(double* out, const double* in, const double* cs, const double* sn, int N, int S) {
    for (int n = 0; n < N; n++) out[n] = in[n];
    for (int i = 0; i < S; i++) {
        double g0 = in[2 * i], g1 = in[2 * i + 1];
        out[2 * i] = g0 * cs[i] + g1 * sn[i];
        out[2 * i + 1] = -g0 * sn[i] + g1 * cs[i];
    }
}
// d/dphi_i of (g . R(phi) x) for each pair i, added to dphi.
static void rotate_dphi(double* dphi, const double* g, const double* x, const double* cs, const double* sn, int S) {
    for (int i = 0; i < S; i++) {
        double x0 = x[2 * i], x1 = x[2 * i + 1];
        dphi[i] += g[2 * i] * (-x0 * sn[i] - x1 * cs[i]) + g[2 * i + 1] * (x0 * cs[i] - x1 * sn[i]);
    }
}
static double reduce_2pi(double a) { return a - kTwoPi * floor(a / kTwoPi); }

template <typename F>
void mamba3_scan_recurrent_cpu(F* out, const Mamba3States<F>* fin, const F* q_raw, const F* k_raw,
                               const F* v, const F* adt, const F* dt, const F* trap, const F* theta,
                               const F* q_bias, const F* k_bias, const F* D, const F* z,
                               const Mamba3States<F>* init, const Mamba3Dims& d) {
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, G = d.G, S = d.S;
    const bool has_init = init && init->angle;
    std::vector<double> Hs((size_t)P * N), phi(S), cs(S), sn(S), qb(N), kb(N), q(N), k(N), kprev(N), vprev(P);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / G);
            const int64_t bh = (int64_t)b * H + h;
            for (int i = 0; i < S; i++) phi[i] = has_init ? (double)init->angle[bh * S + i] : 0.0;
            for (int k2 = 0; k2 < P * N; k2++) Hs[k2] = has_init ? (double)init->ssm[bh * P * N + k2] : 0.0;
            for (int n = 0; n < N; n++) kprev[n] = has_init ? (double)init->k[bh * N + n] : 0.0;
            for (int p = 0; p < P; p++) vprev[p] = has_init ? (double)init->v[bh * P + p] : 0.0;
            for (int t = 0; t < T; t++) {
                const int64_t bt = (int64_t)b * T + t;
                const double delta = dt[bh * T + t], lam = sigmoid(trap[bh * T + t]);
                for (int i = 0; i < S; i++) {
                    phi[i] = reduce_2pi(phi[i] + kPi * tanh((double)theta[bt * S + i]) * delta);
                    cs[i] = cos(phi[i]); sn[i] = sin(phi[i]);
                }
                for (int n = 0; n < N; n++) {
                    qb[n] = (double)q_raw[(bt * G + g) * N + n] + q_bias[h * N + n];
                    kb[n] = (double)k_raw[(bt * G + g) * N + n] + k_bias[h * N + n];
                }
                rotate(q.data(), qb.data(), cs.data(), sn.data(), N, S);
                rotate(k.data(), kb.data(), cs.data(), sn.data(), N, S);
                // H_t = alpha H_{t-1} + beta v_{t-1} k_{t-1}^T + gamma v_t k_t^T
                const double alpha = exp((double)adt[bh * T + t]);
                const double beta = (1.0 - lam) * delta * alpha, gamma = lam * delta;
                const F* vt = v + (bt * H + h) * P;
                for (int p = 0; p < P; p++) {
                    double yp = 0;
                    for (int n = 0; n < N; n++) {
                        double& e = Hs[(size_t)p * N + n];
                        e = alpha * e + beta * vprev[p] * kprev[n] + gamma * (double)vt[p] * k[n];
                        yp += e * q[n];
                    }
                    yp += (double)D[h] * vt[p];
                    const double zz = z[(bt * H + h) * P + p];
                    out[(bt * H + h) * P + p] = (F)(yp * zz * sigmoid(zz));
                }
                kprev = k;
                for (int p = 0; p < P; p++) vprev[p] = vt[p];
            }
            if (fin && fin->angle) {
                for (int i = 0; i < S; i++) fin->angle[bh * S + i] = (F)phi[i];
                for (int k2 = 0; k2 < P * N; k2++) fin->ssm[bh * P * N + k2] = (F)Hs[k2];
                for (int n = 0; n < N; n++) fin->k[bh * N + n] = (F)kprev[n];
                for (int p = 0; p < P; p++) fin->v[bh * P + p] = (F)vprev[p];
            }
        }
}

// Per-(b, h) quantities of §3.1 that the chunked forward and the backward both need,
// recomputed from the inputs and the saved phi (so the backward sees the forward's exact angles).
struct ScanHead {
    int T, N, S;
    std::vector<double> lam, gamma, scale, qkd;      // (T)
    std::vector<double> cs, sn;                      // (T, S)
    std::vector<double> qb, kb, qr, kr, ks;          // (T, N)
};

template <typename F>
static void scan_head_prep(ScanHead& sh, int b, int h, const F* phi, const F* q_raw, const F* k_raw,
                           const F* dt, const F* trap, const F* q_bias, const F* k_bias, const Mamba3Dims& d) {
    const int T = d.T, H = d.H, N = d.N, G = d.G, S = d.S, g = h / (H / G);
    const int64_t bh = (int64_t)b * H + h;
    sh.T = T; sh.N = N; sh.S = S;
    sh.lam.assign(T, 0); sh.gamma.assign(T, 0); sh.scale.assign(T, 0); sh.qkd.assign(T, 0);
    sh.cs.assign((size_t)T * S, 0); sh.sn.assign((size_t)T * S, 0);
    for (auto* vec : {&sh.qb, &sh.kb, &sh.qr, &sh.kr, &sh.ks}) vec->assign((size_t)T * N, 0);
    for (int t = 0; t < T; t++) {
        sh.lam[t] = sigmoid(trap[bh * T + t]);
        sh.gamma[t] = (double)dt[bh * T + t] * sh.lam[t];
    }
    for (int t = 0; t < T; t++) {
        // sigma~_t = dt_{t+1} (1 - lam_{t+1}): the next step's beta without its alpha; 0 at the end
        double sg = t + 1 < T ? (double)dt[bh * T + t + 1] * (1.0 - sh.lam[t + 1]) : 0.0;
        sh.scale[t] = sh.gamma[t] + sg;
        for (int i = 0; i < S; i++) {
            double a = phi[(bh * T + t) * S + i];
            sh.cs[(size_t)t * S + i] = cos(a);
            sh.sn[(size_t)t * S + i] = sin(a);
        }
        const int64_t bt = (int64_t)b * T + t;
        double* qb = &sh.qb[(size_t)t * N];
        double* kb = &sh.kb[(size_t)t * N];
        double dot = 0;
        for (int n = 0; n < N; n++) {
            qb[n] = (double)q_raw[(bt * G + g) * N + n] + q_bias[h * N + n];
            kb[n] = (double)k_raw[(bt * G + g) * N + n] + k_bias[h * N + n];
            dot += qb[n] * kb[n];
        }
        sh.qkd[t] = sh.gamma[t] * dot;  // diagonal: gamma (not scale) times qbar.kbar
        rotate(&sh.qr[(size_t)t * N], qb, &sh.cs[(size_t)t * S], &sh.sn[(size_t)t * S], N, S);
        rotate(&sh.kr[(size_t)t * N], kb, &sh.cs[(size_t)t * S], &sh.sn[(size_t)t * S], N, S);
        for (int n = 0; n < N; n++) sh.ks[(size_t)t * N + n] = sh.scale[t] * sh.kr[(size_t)t * N + n];
    }
}

template <typename F>
void mamba3_scan_forward_cpu(F* out, const Mamba3States<F>* fin, F* phi, F* y, F* states,
                             const F* q_raw, const F* k_raw, const F* v, const F* adt, const F* dt,
                             const F* trap, const F* theta, const F* q_bias, const F* k_bias,
                             const F* D, const F* z, const Mamba3States<F>* init, const Mamba3Dims& d) {
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, S = d.S, L = d.L, NC = d.nchunks();
    const bool has_init = init && init->angle;
    ScanHead sh;
    std::vector<double> Hc((size_t)P * N), Hn((size_t)P * N), ang(S), vals(S), acs(L);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int64_t bh = (int64_t)b * H + h;
            // angle cumsum per chunk (§3.6): out = state + cumsum(vals) mod 2pi; state carried mod 2pi
            for (int i = 0; i < S; i++) ang[i] = has_init ? (double)init->angle[bh * S + i] : 0.0;
            for (int c = 0; c < NC; c++) {
                const int t0 = c * L, t1 = std::min(T, t0 + L);
                for (int i = 0; i < S; i++) vals[i] = 0;
                for (int t = t0; t < t1; t++)
                    for (int i = 0; i < S; i++) {
                        vals[i] += kPi * tanh((double)theta[((int64_t)b * T + t) * S + i]) * (double)dt[bh * T + t];
                        phi[(bh * T + t) * S + i] = (F)reduce_2pi(ang[i] + vals[i]);
                    }
                for (int i = 0; i < S; i++) ang[i] = reduce_2pi(ang[i] + vals[i]);
            }
            scan_head_prep(sh, b, h, phi, q_raw, k_raw, dt, trap, q_bias, k_bias, d);
            // H_init' = H_in + dt_0 (1 - lam_0) v_{-1} k_{-1}^T  (no alpha_0: the exp cumsum applies it)
            for (int p = 0; p < P; p++)
                for (int n = 0; n < N; n++) {
                    double e = 0;
                    if (has_init)
                        e = (double)init->ssm[(bh * P + p) * N + n] +
                            (double)dt[bh * T] * (1.0 - sh.lam[0]) * init->v[bh * P + p] * init->k[bh * N + n];
                    Hc[(size_t)p * N + n] = e;
                }
            for (int c = 0; c < NC; c++) {
                const int t0 = c * L, t1 = std::min(T, t0 + L);
                double run = 0;
                for (int t = t0; t < t1; t++) { run += adt[bh * T + t]; acs[t - t0] = run; }
                const double Ac = run;
                for (int k2 = 0; k2 < P * N; k2++) states[(bh * NC + c) * P * N + k2] = (F)Hc[k2];
                for (int i = t0; i < t1; i++) {
                    const int64_t bti = (int64_t)b * T + i;
                    const double* qi = &sh.qr[(size_t)i * N];
                    // intra-chunk weights S_ij = (q_i . ks_j) exp(Acs_i - Acs_j), j < i
                    std::vector<double> sw(i - t0);
                    for (int j = t0; j < i; j++) {
                        double dq = 0;
                        for (int n = 0; n < N; n++) dq += qi[n] * sh.ks[(size_t)j * N + n];
                        sw[j - t0] = dq * exp(std::min(acs[i - t0] - acs[j - t0], 0.0));
                    }
                    const double eA = exp(acs[i - t0]);
                    for (int p = 0; p < P; p++) {
                        double hq = 0;
                        for (int n = 0; n < N; n++) hq += Hc[(size_t)p * N + n] * qi[n];
                        double yp = eA * hq;
                        for (int j = t0; j < i; j++) yp += sw[j - t0] * v[(((int64_t)b * T + j) * H + h) * P + p];
                        yp += ((double)D[h] + sh.qkd[i]) * v[(bti * H + h) * P + p];
                        const int64_t o = (bti * H + h) * P + p;
                        y[o] = (F)yp;
                        const double zz = z[o];
                        out[o] = (F)(yp * zz * sigmoid(zz));
                    }
                }
                // Hc <- exp(A_c) Hc + sum_j exp(A_c - Acs_j) v_j ks_j^T
                for (int p = 0; p < P; p++)
                    for (int n = 0; n < N; n++) {
                        double e = exp(Ac) * Hc[(size_t)p * N + n];
                        for (int j = t0; j < t1; j++)
                            e += exp(Ac - acs[j - t0]) * v[(((int64_t)b * T + j) * H + h) * P + p] * sh.ks[(size_t)j * N + n];
                        Hn[(size_t)p * N + n] = e;
                    }
                std::swap(Hc, Hn);
            }
            if (fin && fin->angle) {
                for (int i = 0; i < S; i++) fin->angle[bh * S + i] = (F)ang[i];
                for (int k2 = 0; k2 < P * N; k2++) fin->ssm[bh * P * N + k2] = (F)Hc[k2];
                for (int n = 0; n < N; n++) fin->k[bh * N + n] = (F)sh.kr[(size_t)(T - 1) * N + n];
                for (int p = 0; p < P; p++) fin->v[bh * P + p] = v[(((int64_t)b * T + T - 1) * H + h) * P + p];
            }
        }
}

template <typename F>
void mamba3_scan_backward_cpu(F* dq_raw, F* dk_raw, F* dv, F* dadt, F* ddt, F* dtrap, F* dtheta,
                              F* dq_bias, F* dk_bias, F* dD, F* dz, const Mamba3States<F>* dinit,
                              const F* dout, const Mamba3States<F>* dfin, const F* phi, const F* y,
                              const F* states, const F* q_raw, const F* k_raw, const F* v,
                              const F* adt, const F* dt, const F* trap, const F* theta,
                              const F* q_bias, const F* k_bias, const F* D, const F* z,
                              const Mamba3States<F>* init, const Mamba3Dims& d) {
    const int B = d.B, T = d.T, H = d.H, P = d.P, N = d.N, G = d.G, S = d.S, L = d.L, NC = d.nchunks();
    const bool has_init = init && init->angle;
    if (has_init != (dinit && dinit->angle)) fatal("mamba3_scan_backward_cpu: dinit must be given iff init is");
    const bool df = dfin != nullptr;
    // group-reduced outputs are sums over heads: zero, then accumulate
    for (int64_t k2 = 0; k2 < (int64_t)B * T * G * N; k2++) { dq_raw[k2] = 0; dk_raw[k2] = 0; }
    for (int64_t k2 = 0; k2 < (int64_t)B * T * S; k2++) dtheta[k2] = 0;
    std::vector<double> dqb_acc((size_t)H * N, 0.0), dkb_acc((size_t)H * N, 0.0), dD_acc(H, 0.0);

    ScanHead sh;
    std::vector<double> dy((size_t)T * P), dq((size_t)T * N), dks((size_t)T * N), dvv((size_t)T * P);
    std::vector<double> dA(T), dqkd(T), dH((size_t)P * N), dHn((size_t)P * N), acs(L), u(L), w(L);
    std::vector<double> dgam(T), dsc(T), dphi((size_t)T * S), dDT(T), dTR(T), tmp(N), tmp2(N);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / G);
            const int64_t bh = (int64_t)b * H + h;
            scan_head_prep(sh, b, h, phi, q_raw, k_raw, dt, trap, q_bias, k_bias, d);
            auto V = [&](int t, int p) { return (double)v[((((int64_t)b * T + t) * H + h) * P) + p]; };
            // ---- dzdo (§5.2): o = y silu(z)
            for (int t = 0; t < T; t++)
                for (int p = 0; p < P; p++) {
                    const int64_t o = (((int64_t)b * T + t) * H + h) * P + p;
                    const double zz = z[o], sg = sigmoid(zz), go = dout[o];
                    dy[(size_t)t * P + p] = go * zz * sg;
                    dz[o] = (F)(go * (double)y[o] * sg * (1.0 + zz * (1.0 - sg)));
                }
            // ---- dqkv (§5.3), reverse over chunks; dH = d(state leaving the chunk)
            for (int k2 = 0; k2 < P * N; k2++) dH[k2] = (df && dfin->ssm) ? (double)dfin->ssm[bh * P * N + k2] : 0.0;
            std::fill(dq.begin(), dq.end(), 0.0); std::fill(dks.begin(), dks.end(), 0.0);
            std::fill(dvv.begin(), dvv.end(), 0.0);
            for (int c = NC - 1; c >= 0; c--) {
                const int t0 = c * L, t1 = std::min(T, t0 + L), n_c = t1 - t0;
                double run = 0;
                for (int t = t0; t < t1; t++) { run += adt[bh * T + t]; acs[t - t0] = run; }
                const double Ac = run;
                const F* Hc = states + (bh * NC + c) * P * N;
                for (int k2 = 0; k2 < n_c; k2++) { u[k2] = 0; w[k2] = 0; }
                // intra-chunk: y_i += M_ij (q_i.ks_j) v_j, M_ij = exp(Acs_i - Acs_j), i > j
                for (int i = t0; i < t1; i++)
                    for (int j = t0; j < i; j++) {
                        const double M = exp(acs[i - t0] - acs[j - t0]);
                        double dyv = 0, qk = 0;
                        for (int p = 0; p < P; p++) dyv += dy[(size_t)i * P + p] * V(j, p);
                        for (int n = 0; n < N; n++) qk += sh.qr[(size_t)i * N + n] * sh.ks[(size_t)j * N + n];
                        const double G_ = M * dyv * qk;  // d/dAcs_i of this term, and minus that for Acs_j
                        u[i - t0] += G_; u[j - t0] -= G_;
                        for (int n = 0; n < N; n++) {
                            dks[(size_t)j * N + n] += M * dyv * sh.qr[(size_t)i * N + n];
                            dq[(size_t)i * N + n] += M * dyv * sh.ks[(size_t)j * N + n];
                        }
                        for (int p = 0; p < P; p++) dvv[(size_t)j * P + p] += M * qk * dy[(size_t)i * P + p];
                    }
                for (int t = t0; t < t1; t++) {
                    const double eA = exp(acs[t - t0]), eR = exp(Ac - acs[t - t0]);
                    const double* qt = &sh.qr[(size_t)t * N];
                    const double* kst = &sh.ks[(size_t)t * N];
                    double hqdy = 0, dyv = 0, wt = 0;
                    for (int p = 0; p < P; p++) {
                        const double dyp = dy[(size_t)t * P + p], vp = V(t, p);
                        double hq = 0, dhk = 0;
                        for (int n = 0; n < N; n++) {
                            const double hc = Hc[(size_t)p * N + n], dh = dH[(size_t)p * N + n];
                            hq += hc * qt[n];
                            dhk += dh * kst[n];
                            // y_t += eA Hc q_t  ->  dq_t += eA Hc^T dy_t;  Hc_next += eR v_t ks_t^T -> dks_t += eR dH^T v_t
                            dq[(size_t)t * N + n] += eA * hc * dyp;
                            dks[(size_t)t * N + n] += eR * dh * vp;
                        }
                        hqdy += hq * dyp;
                        dyv += dyp * vp;
                        wt += dhk * vp;
                        dvv[(size_t)t * P + p] += eR * dhk + ((double)D[h] + sh.qkd[t]) * dyp;
                    }
                    dqkd[t] = dyv;
                    dD_acc[h] += dyv;
                    u[t - t0] += eA * hqdy;   // d/dAcs_t of exp(Acs_t) Hc q_t . dy_t
                    w[t - t0] = eR * wt;      // d/d(A_c - Acs_t) of the state update term
                }
                double m = 0;  // d/dA_c of exp(A_c) Hc . dH
                for (int k2 = 0; k2 < P * N; k2++) m += (double)Hc[k2] * dH[k2];
                m *= exp(Ac);
                // Acs_i = sum_{r<=i} a_r, A_c = sum of all: dADT_t = sum_{r>=t} u_r + m + sum_{r<t} w_r
                double su = 0;
                for (int k2 = 0; k2 < n_c; k2++) su += u[k2];
                double prefix_u = 0, prefix_w = 0;
                for (int t = t0; t < t1; t++) {
                    dA[t] = (su - prefix_u) + m + prefix_w;
                    prefix_u += u[t - t0]; prefix_w += w[t - t0];
                }
                // dH of the state entering this chunk: dH <- exp(A_c) dH + sum_i exp(Acs_i) dy_i q_i^T
                for (int p = 0; p < P; p++)
                    for (int n = 0; n < N; n++) {
                        double e = exp(Ac) * dH[(size_t)p * N + n];
                        for (int t = t0; t < t1; t++)
                            e += exp(acs[t - t0]) * dy[(size_t)t * P + p] * sh.qr[(size_t)t * N + n];
                        dHn[(size_t)p * N + n] = e;
                    }
                std::swap(dH, dHn);
            }
            // final V state = v_{T-1}
            if (df && dfin->v)
                for (int p = 0; p < P; p++) dvv[(size_t)(T - 1) * P + p] += dfin->v[bh * P + p];
            // ---- rotary / bias / angles (§5.4)
            std::fill(dphi.begin(), dphi.end(), 0.0);
            for (int t = 0; t < T; t++) {
                const double* cs = &sh.cs[(size_t)t * S];
                const double* sn = &sh.sn[(size_t)t * S];
                const double* qb = &sh.qb[(size_t)t * N];
                const double* kb = &sh.kb[(size_t)t * N];
                double qk = 0, ds = 0;
                for (int n = 0; n < N; n++) {
                    qk += qb[n] * kb[n];
                    ds += dks[(size_t)t * N + n] * sh.kr[(size_t)t * N + n];
                }
                dgam[t] = dqkd[t] * qk;   // qkd = gamma qbar.kbar
                dsc[t] = ds;              // ks = scale k
                // dk (unscaled, rotated) = scale dks (+ the final K state's gradient at T-1)
                std::vector<double>& dkr = tmp2;
                for (int n = 0; n < N; n++) dkr[n] = sh.scale[t] * dks[(size_t)t * N + n];
                if (t == T - 1 && df && dfin->k)
                    for (int n = 0; n < N; n++) dkr[n] += dfin->k[bh * N + n];
                const int64_t bt = (int64_t)b * T + t;
                rotate_T(tmp.data(), &dq[(size_t)t * N], cs, sn, N, S);
                for (int n = 0; n < N; n++) {
                    const double dqb = tmp[n] + dqkd[t] * sh.gamma[t] * kb[n];
                    dq_raw[(bt * G + g) * N + n] += (F)dqb;
                    dqb_acc[(size_t)h * N + n] += dqb;
                }
                rotate_dphi(&dphi[(size_t)t * S], &dq[(size_t)t * N], qb, cs, sn, S);
                rotate_T(tmp.data(), dkr.data(), cs, sn, N, S);
                for (int n = 0; n < N; n++) {
                    const double dkb = tmp[n] + dqkd[t] * sh.gamma[t] * qb[n];
                    dk_raw[(bt * G + g) * N + n] += (F)dkb;
                    dkb_acc[(size_t)h * N + n] += dkb;
                }
                rotate_dphi(&dphi[(size_t)t * S], dkr.data(), kb, cs, sn, S);
            }
            // ---- dt, trap, input states (§5.5): gamma = dt lam, scale_t = gamma_t + dt_{t+1}(1 - lam_{t+1})
            for (int t = 0; t < T; t++) {
                const double lam = sh.lam[t], delta = dt[bh * T + t];
                const double dsp = t > 0 ? dsc[t - 1] : 0.0;
                dDT[t] = (dgam[t] + dsc[t]) * lam + dsp * (1.0 - lam);
                const double dl = (dgam[t] + dsc[t]) * delta - dsp * delta;
                dTR[t] = dl * lam * (1.0 - lam);
            }
            if (has_init) {
                // H_init' = H_in + c0 v_{-1} k_{-1}^T, c0 = dt_0 (1 - lam_0); dH is now d(H_init')
                const double c0 = (double)dt[bh * T] * (1.0 - sh.lam[0]);
                double dc0 = 0;
                for (int p = 0; p < P; p++) {
                    double acc = 0;
                    for (int n = 0; n < N; n++) {
                        const double dh = dH[(size_t)p * N + n];
                        dinit->ssm[(bh * P + p) * N + n] = (F)dh;
                        acc += dh * init->k[bh * N + n];
                        dc0 += dh * init->v[bh * P + p] * init->k[bh * N + n];
                    }
                    dinit->v[bh * P + p] = (F)(c0 * acc);
                }
                for (int n = 0; n < N; n++) {
                    double acc = 0;
                    for (int p = 0; p < P; p++) acc += dH[(size_t)p * N + n] * init->v[bh * P + p];
                    dinit->k[bh * N + n] = (F)(c0 * acc);
                }
                dDT[0] += dc0 * (1.0 - sh.lam[0]);
                dTR[0] += -dc0 * (double)dt[bh * T] * sh.lam[0] * (1.0 - sh.lam[0]);
            }
            // ---- angles (§5.6): phi_t = phi_init + sum_{r<=t} pi tanh(theta_r) dt_r (mod 2pi: identity)
            for (int i = 0; i < S; i++) tmp[i] = (df && dfin->angle) ? (double)dfin->angle[bh * S + i] : 0.0;
            for (int t = T - 1; t >= 0; t--) {
                const int64_t bt = (int64_t)b * T + t;
                const double delta = dt[bh * T + t];
                for (int i = 0; i < S; i++) {
                    tmp[i] += dphi[(size_t)t * S + i];
                    const double th = tanh((double)theta[bt * S + i]);
                    dtheta[bt * S + i] += (F)(tmp[i] * delta * kPi * (1.0 - th * th));
                    dDT[t] += tmp[i] * kPi * th;
                }
            }
            if (has_init)
                for (int i = 0; i < S; i++) dinit->angle[bh * S + i] = (F)tmp[i];
            for (int t = 0; t < T; t++) {
                dadt[bh * T + t] = (F)dA[t];
                ddt[bh * T + t] = (F)dDT[t];
                dtrap[bh * T + t] = (F)dTR[t];
                for (int p = 0; p < P; p++) dv[((((int64_t)b * T + t) * H + h) * P) + p] = (F)dvv[(size_t)t * P + p];
            }
        }
    for (int k2 = 0; k2 < H * N; k2++) { dq_bias[k2] += (F)dqb_acc[k2]; dk_bias[k2] += (F)dkb_acc[k2]; }
    for (int h = 0; h < H; h++) dD[h] += (F)dD_acc[h];
}

// ==========================================================================================
// (c) the layer

// out (M, Nout) = a (M, K) . w(Nout, K)^T
template <typename F>
static void matmul_nt(F* out, const F* a, const F* w, int64_t M, int64_t K, int64_t Nout) {
#pragma omp parallel for
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < Nout; o++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)a[m * K + k] * w[o * K + k];
            out[m * Nout + o] = (F)s;
        }
}
// out (M, K) = dout (M, Nout) . w (Nout, K)         (input gradient, overwrite)
template <typename F>
static void matmul_nn(F* out, const F* dout, const F* w, int64_t M, int64_t Nout, int64_t K) {
#pragma omp parallel for
    for (int64_t m = 0; m < M; m++) {
        std::vector<double> acc(K, 0.0);
        for (int64_t o = 0; o < Nout; o++) {
            const double g = dout[m * Nout + o];
            for (int64_t k = 0; k < K; k++) acc[k] += g * w[o * K + k];
        }
        for (int64_t k = 0; k < K; k++) out[m * K + k] = (F)acc[k];
    }
}
// dw (Nout, K) += dout(M, Nout)^T . a (M, K)        (weight gradient, accumulate)
template <typename F>
static void matmul_tn_acc(F* dw, const F* dout, const F* a, int64_t M, int64_t Nout, int64_t K) {
#pragma omp parallel for
    for (int64_t o = 0; o < Nout; o++)
        for (int64_t k = 0; k < K; k++) {
            double s = 0;
            for (int64_t m = 0; m < M; m++) s += (double)dout[m * Nout + o] * a[m * K + k];
            dw[o * K + k] += (F)s;
        }
}

int64_t mamba3_acts_size(const Mamba3Dims& d) {
    const int64_t BT = (int64_t)d.B * d.T;
    return BT * d.R + 2 * BT * d.H * d.P + 2 * BT * d.G * d.N + 3 * (int64_t)d.B * d.H * d.T + BT * d.S +
           2 * BT * d.G + (int64_t)d.B * d.H * d.T * d.S + BT * d.H * d.P +
           (int64_t)d.B * d.H * d.nchunks() * d.P * d.N + BT * d.DI;
}

template <typename F>
void mamba3_acts_bind(Mamba3Acts<F>* a, F* base, const Mamba3Dims& d) {
    const int64_t BT = (int64_t)d.B * d.T, BHT = (int64_t)d.B * d.H * d.T;
    F* p = base;
    auto take = [&](int64_t n) { F* r = p; p += n; return r; };
    a->zxbcdt = take(BT * d.R);
    a->z = take(BT * d.H * d.P);
    a->x = take(BT * d.H * d.P);
    a->q_raw = take(BT * d.G * d.N);
    a->k_raw = take(BT * d.G * d.N);
    a->adt = take(BHT);
    a->dt = take(BHT);
    a->trap = take(BHT);
    a->theta = take(BT * d.S);
    a->rstd_q = take(BT * d.G);
    a->rstd_k = take(BT * d.G);
    a->phi = take(BHT * d.S);
    a->y = take(BT * d.H * d.P);
    a->states = take((int64_t)d.B * d.H * d.nchunks() * d.P * d.N);
    a->o = take(BT * d.DI);
}

template <typename F>
void mamba3_forward_cpu(F* out, const Mamba3States<F>* fin, const Mamba3Acts<F>& a, const F* inp,
                        const Mamba3Weights<F>& w, const Mamba3States<F>* init, const Mamba3Dims& d) {
    const int64_t BT = (int64_t)d.B * d.T;
    matmul_nt(a.zxbcdt, inp, w.in_proj, BT, d.C, d.R);
    mamba3_prep_forward_cpu(a.z, a.x, a.q_raw, a.k_raw, a.adt, a.dt, a.trap, a.theta, a.rstd_q, a.rstd_k,
                            (const F*)a.zxbcdt, w.dt_bias, w.B_norm_w, w.C_norm_w, d);
    // the scan's (B,T,H,P) output is the (B,T,DI) input of out_proj
    mamba3_scan_forward_cpu(a.o, fin, a.phi, a.y, a.states, (const F*)a.q_raw, (const F*)a.k_raw,
                            (const F*)a.x, (const F*)a.adt, (const F*)a.dt, (const F*)a.trap,
                            (const F*)a.theta, w.C_bias, w.B_bias, w.D, (const F*)a.z, init, d);
    matmul_nt(out, (const F*)a.o, w.out_proj, BT, d.DI, d.C);
}

int64_t mamba3_grad_scratch_size(const Mamba3Dims& d) {
    const int64_t BT = (int64_t)d.B * d.T;
    return 3 * BT * d.DI + 2 * BT * d.G * d.N + 3 * (int64_t)d.B * d.H * d.T + BT * d.S + BT * d.R;
}

template <typename F>
void mamba3_backward_cpu(F* dinp, const Mamba3Grads<F>& g, const Mamba3States<F>* dinit, const F* dout,
                         const Mamba3States<F>* dfin, const Mamba3Acts<F>& a, const F* inp,
                         const Mamba3Weights<F>& w, const Mamba3States<F>* init, F* scratch,
                         const Mamba3Dims& d) {
    const int64_t BT = (int64_t)d.B * d.T, BHT = (int64_t)d.B * d.H * d.T;
    F* p = scratch;
    auto take = [&](int64_t n) { F* r = p; p += n; return r; };
    F* d_o = take(BT * d.DI);
    F* dz = take(BT * d.DI);
    F* dx = take(BT * d.DI);
    F* dq = take(BT * d.G * d.N);
    F* dk = take(BT * d.G * d.N);
    F* dadt = take(BHT);
    F* ddt = take(BHT);
    F* dtrap = take(BHT);
    F* dtheta = take(BT * d.S);
    F* dzx = take(BT * d.R);
    // out = o out_proj^T
    matmul_tn_acc(g.out_proj, dout, (const F*)a.o, BT, d.C, d.DI);
    matmul_nn(d_o, dout, w.out_proj, BT, d.C, d.DI);
    mamba3_scan_backward_cpu(dq, dk, dx, dadt, ddt, dtrap, dtheta, g.C_bias, g.B_bias, g.D, dz, dinit,
                             (const F*)d_o, dfin, (const F*)a.phi, (const F*)a.y, (const F*)a.states,
                             (const F*)a.q_raw, (const F*)a.k_raw, (const F*)a.x, (const F*)a.adt,
                             (const F*)a.dt, (const F*)a.trap, (const F*)a.theta, w.C_bias, w.B_bias, w.D,
                             (const F*)a.z, init, d);
    mamba3_prep_backward_cpu(dzx, g.dt_bias, g.B_norm_w, g.C_norm_w, (const F*)dz, (const F*)dx,
                             (const F*)dq, (const F*)dk, (const F*)dadt, (const F*)ddt, (const F*)dtrap,
                             (const F*)dtheta, (const F*)a.zxbcdt, (const F*)a.rstd_q, (const F*)a.rstd_k,
                             w.dt_bias, w.B_norm_w, w.C_norm_w, d);
    // zxbcdt = inp in_proj^T
    matmul_tn_acc(g.in_proj, (const F*)dzx, inp, BT, d.R, d.C);
    matmul_nn(dinp, (const F*)dzx, w.in_proj, BT, d.R, d.C);
}

// ---- explicit instantiations: float (the reference) and double (finite differences)
#define MAMBA3_INSTANTIATE(F)                                                                                   \
    template void mamba3_prep_forward_cpu<F>(F*, F*, F*, F*, F*, F*, F*, F*, F*, F*, const F*, const F*,      \
                                             const F*, const F*, const Mamba3Dims&);                           \
    template void mamba3_prep_backward_cpu<F>(F*, F*, F*, F*, const F*, const F*, const F*, const F*,         \
                                              const F*, const F*, const F*, const F*, const F*, const F*,      \
                                              const F*, const F*, const F*, const F*, const Mamba3Dims&);      \
    template void mamba3_scan_recurrent_cpu<F>(F*, const Mamba3States<F>*, const F*, const F*, const F*,      \
                                               const F*, const F*, const F*, const F*, const F*, const F*,     \
                                               const F*, const F*, const Mamba3States<F>*, const Mamba3Dims&); \
    template void mamba3_scan_forward_cpu<F>(F*, const Mamba3States<F>*, F*, F*, F*, const F*, const F*,      \
                                             const F*, const F*, const F*, const F*, const F*, const F*,       \
                                             const F*, const F*, const F*, const Mamba3States<F>*,             \
                                             const Mamba3Dims&);                                               \
    template void mamba3_scan_backward_cpu<F>(F*, F*, F*, F*, F*, F*, F*, F*, F*, F*, F*,                     \
                                              const Mamba3States<F>*, const F*, const Mamba3States<F>*,        \
                                              const F*, const F*, const F*, const F*, const F*, const F*,      \
                                              const F*, const F*, const F*, const F*, const F*, const F*,      \
                                              const F*, const F*, const Mamba3States<F>*, const Mamba3Dims&);  \
    template void mamba3_acts_bind<F>(Mamba3Acts<F>*, F*, const Mamba3Dims&);                                 \
    template void mamba3_forward_cpu<F>(F*, const Mamba3States<F>*, const Mamba3Acts<F>&, const F*,           \
                                        const Mamba3Weights<F>&, const Mamba3States<F>*, const Mamba3Dims&);   \
    template void mamba3_backward_cpu<F>(F*, const Mamba3Grads<F>&, const Mamba3States<F>*, const F*,         \
                                         const Mamba3States<F>*, const Mamba3Acts<F>&, const F*,               \
                                         const Mamba3Weights<F>&, const Mamba3States<F>*, F*,                  \
                                         const Mamba3Dims&);
MAMBA3_INSTANTIATE(float)
MAMBA3_INSTANTIATE(double)
