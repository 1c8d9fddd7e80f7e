// CPU reference of causal GQA attention: qkv prep and the core (see attention.h).
#include "model/attention.h"
#include <cmath>
#include <vector>

// cos/sin of angle(t, i) = t * base^(-2i/HD), i < HD/2, in double.
static void rope_table(std::vector<double>* cs, std::vector<double>* sn, const AttnDims& d) {
    int half = d.HD / 2;
    cs->resize((size_t)d.T * half);
    sn->resize((size_t)d.T * half);
    for (int t = 0; t < d.T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow(d.rope_base, -2.0 * i / d.HD);
            (*cs)[(size_t)t * half + i] = cos(ang);
            (*sn)[(size_t)t * half + i] = sin(ang);
        }
}

// One head vector x (HD) -> gain * rope(x * r), r = rms rstd. Returns r.
template <typename F>
static double norm_rope(F* out, const F* x, double gain, const double* cs, const double* sn, const AttnDims& d) {
    int half = d.HD / 2;
    double ss = 0;
    for (int i = 0; i < d.HD; i++) ss += (double)x[i] * x[i];
    double r = 1.0 / sqrt(ss / d.HD + d.eps);
    for (int i = 0; i < half; i++) {
        double x1 = x[i] * r, x2 = x[i + half] * r;
        out[i] = (F)(gain * (x1 * cs[i] + x2 * sn[i]));
        out[i + half] = (F)(gain * (-x1 * sn[i] + x2 * cs[i]));
    }
    return r;
}

template <typename F>
void attn_qkv_prep_forward_cpu(F* q, F* k, F* v, F* q_rstd, F* k_rstd, const F* qkv, const F* q_gain,
                               const AttnDims& d) {
    std::vector<double> cs, sn;
    rope_table(&cs, &sn, d);
    int half = d.HD / 2, cols = d.qkv_cols();
    for (int b = 0; b < d.B; b++)
        for (int t = 0; t < d.T; t++) {
            int64_t bt = (int64_t)b * d.T + t;
            const F* row = qkv + bt * cols;
            const double* c = &cs[(size_t)t * half];
            const double* s = &sn[(size_t)t * half];
            for (int h = 0; h < d.NH; h++)
                q_rstd[bt * d.NH + h] = (F)norm_rope(q + (bt * d.NH + h) * d.HD, row + h * d.HD, (double)q_gain[h], c, s, d);
            for (int h = 0; h < d.NKV; h++)
                k_rstd[bt * d.NKV + h] = (F)norm_rope(k + (bt * d.NKV + h) * d.HD, row + (d.NH + h) * d.HD, 1.0, c, s, d);
            const F* vr = row + (d.NH + d.NKV) * d.HD;
            for (int i = 0; i < d.NKV * d.HD; i++) {
                double u = vr[i];
                v[bt * d.NKV * d.HD + i] = (F)(u / (1.0 + exp(-u)));
            }
        }
}

// Backward of norm_rope for one head: dx (HD) from dout; adds d gain to *dgain when non-null.
template <typename F>
static void norm_rope_backward(F* dx, double* dgain, const F* dout, const F* x, double r, double gain,
                               const double* cs, const double* sn, const AttnDims& d) {
    int half = d.HD / 2;
    std::vector<double> dn(d.HD);
    double dot = 0;
    for (int i = 0; i < half; i++) {
        double x1 = x[i] * r, x2 = x[i + half] * r;
        double o1 = x1 * cs[i] + x2 * sn[i], o2 = -x1 * sn[i] + x2 * cs[i];
        double g1 = dout[i], g2 = dout[i + half];
        // out = gain * o  =>  dgain += dout . o,  do = gain * dout
        if (dgain) *dgain += g1 * o1 + g2 * o2;
        g1 *= gain;
        g2 *= gain;
        // o = R x_n, R a rotation  =>  dx_n = R^T do
        dn[i] = g1 * cs[i] - g2 * sn[i];
        dn[i + half] = g1 * sn[i] + g2 * cs[i];
        dot += dn[i] * x1 + dn[i + half] * x2;
    }
    // x_n = x r  =>  dx = r (dx_n - x_n mean(dx_n x_n))   (rmsnorm.h)
    double m = dot / d.HD;
    for (int i = 0; i < d.HD; i++) dx[i] = (F)(r * (dn[i] - x[i] * r * m));
}

template <typename F>
void attn_qkv_prep_backward_cpu(F* dqkv, F* dq_gain, const F* dq, const F* dk, const F* dv, const F* qkv,
                                const F* q_rstd, const F* k_rstd, const F* q_gain, const AttnDims& d) {
    std::vector<double> cs, sn;
    rope_table(&cs, &sn, d);
    std::vector<double> dgain(d.NH, 0.0);
    int half = d.HD / 2, cols = d.qkv_cols();
    for (int b = 0; b < d.B; b++)
        for (int t = 0; t < d.T; t++) {
            int64_t bt = (int64_t)b * d.T + t;
            const F* row = qkv + bt * cols;
            F* drow = dqkv + bt * cols;
            const double* c = &cs[(size_t)t * half];
            const double* s = &sn[(size_t)t * half];
            for (int h = 0; h < d.NH; h++)
                norm_rope_backward(drow + h * d.HD, &dgain[h], dq + (bt * d.NH + h) * d.HD, row + h * d.HD,
                                   (double)q_rstd[bt * d.NH + h], (double)q_gain[h], c, s, d);
            for (int h = 0; h < d.NKV; h++)
                norm_rope_backward(drow + (d.NH + h) * d.HD, (double*)nullptr, dk + (bt * d.NKV + h) * d.HD,
                                   row + (d.NH + h) * d.HD, (double)k_rstd[bt * d.NKV + h], 1.0, c, s, d);
            // v = u sigmoid(u)  =>  dv/du = sig (1 + u (1 - sig))
            int off = (d.NH + d.NKV) * d.HD;
            for (int i = 0; i < d.NKV * d.HD; i++) {
                double u = row[off + i];
                double sg = 1.0 / (1.0 + exp(-u));
                drow[off + i] = (F)(dv[bt * d.NKV * d.HD + i] * sg * (1.0 + u * (1.0 - sg)));
            }
        }
    for (int h = 0; h < d.NH; h++) dq_gain[h] = (F)(dq_gain[h] + dgain[h]);
}

template <typename F>
void attention_forward_cpu(F* y, F* lse, const F* q, const F* k, const F* v, const AttnDims& d) {
    double scale = 1.0 / sqrt((double)d.HD);
    int rep = d.NH / d.NKV;
    std::vector<double> sc(d.T), acc(d.HD);
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.NH; h++) {
            int hk = h / rep;
            for (int i = 0; i < d.T; i++) {
                const F* qi = q + (((int64_t)b * d.T + i) * d.NH + h) * d.HD;
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    const F* kj = k + (((int64_t)b * d.T + j) * d.NKV + hk) * d.HD;
                    double s = 0;
                    for (int e = 0; e < d.HD; e++) s += (double)qi[e] * kj[e];
                    sc[j] = s * scale;
                    mx = fmax(mx, sc[j]);
                }
                double sum = 0;
                for (int j = 0; j <= i; j++) sum += exp(sc[j] - mx);
                double l = mx + log(sum);
                for (int e = 0; e < d.HD; e++) acc[e] = 0;
                for (int j = 0; j <= i; j++) {
                    double p = exp(sc[j] - l);
                    const F* vj = v + (((int64_t)b * d.T + j) * d.NKV + hk) * d.HD;
                    for (int e = 0; e < d.HD; e++) acc[e] += p * vj[e];
                }
                F* yi = y + (((int64_t)b * d.T + i) * d.NH + h) * d.HD;
                for (int e = 0; e < d.HD; e++) yi[e] = (F)acc[e];
                lse[((int64_t)b * d.NH + h) * d.T + i] = (F)l;
            }
        }
}

template <typename F>
void attention_backward_cpu(F* dq, F* dk, F* dv, const F* dy, const F* q, const F* k, const F* v,
                            const F* y, const F* lse, const AttnDims& d) {
    double scale = 1.0 / sqrt((double)d.HD);
    int rep = d.NH / d.NKV;
    int64_t nkv = (int64_t)d.B * d.T * d.NKV * d.HD;
    // dk, dv sum over the query rows and the GQA group: accumulate in double, write once
    std::vector<double> dkd(nkv, 0.0), dvd(nkv, 0.0), dqi(d.HD);
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.NH; h++) {
            int hk = h / rep;
            for (int i = 0; i < d.T; i++) {
                int64_t qo = (((int64_t)b * d.T + i) * d.NH + h) * d.HD;
                const F* qi = q + qo;
                const F* dyi = dy + qo;
                double l = lse[((int64_t)b * d.NH + h) * d.T + i];
                double D = 0;  // D_i = sum_j P_ij dP_ij = dY_i . Y_i
                for (int e = 0; e < d.HD; e++) D += (double)dyi[e] * y[qo + e];
                for (int e = 0; e < d.HD; e++) dqi[e] = 0;
                for (int j = 0; j <= i; j++) {
                    int64_t ko = (((int64_t)b * d.T + j) * d.NKV + hk) * d.HD;
                    double s = 0, dp = 0;
                    for (int e = 0; e < d.HD; e++) {
                        s += (double)qi[e] * k[ko + e];
                        dp += (double)dyi[e] * v[ko + e];
                    }
                    double p = exp(s * scale - l);   // P = softmax row, recomputed from lse
                    double ds = p * (dp - D);         // softmax backward
                    for (int e = 0; e < d.HD; e++) {
                        dvd[ko + e] += p * dyi[e];    // y = P v
                        dqi[e] += ds * scale * k[ko + e];
                        dkd[ko + e] += ds * scale * qi[e];
                    }
                }
                for (int e = 0; e < d.HD; e++) dq[qo + e] = (F)dqi[e];
            }
        }
    for (int64_t n = 0; n < nkv; n++) {
        dk[n] = (F)dkd[n];
        dv[n] = (F)dvd[n];
    }
}

#define ATTN_INST(F)                                                                                         \
    template void attn_qkv_prep_forward_cpu<F>(F*, F*, F*, F*, F*, const F*, const F*, const AttnDims&);      \
    template void attn_qkv_prep_backward_cpu<F>(F*, F*, const F*, const F*, const F*, const F*, const F*,    \
                                                const F*, const F*, const AttnDims&);                        \
    template void attention_forward_cpu<F>(F*, F*, const F*, const F*, const F*, const AttnDims&);           \
    template void attention_backward_cpu<F>(F*, F*, F*, const F*, const F*, const F*, const F*, const F*,    \
                                            const F*, const AttnDims&);
ATTN_INST(float)
ATTN_INST(double)
