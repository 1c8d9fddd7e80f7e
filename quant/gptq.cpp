// GPTQ and round-to-nearest, CPU reference (float64 arithmetic); see quant/gptq.h.
#include "quant/gptq.h"
#include "model/common.h"
#include "quant/pack.h"
#include <algorithm>
#include <numeric>
#include <vector>

static inline int qmax_of(int bits) { return (1 << (bits - 1)) - 1; }

static inline int quant_one(double w, double s, int qmax) {
    if (s <= 0) return 0;
    double v = std::nearbyint(w / s);  // default rounding mode: ties to even, as torch.round
    return (int)std::min<double>(qmax, std::max<double>(-qmax, v));
}

// fp16 scale from a float value; a zero row keeps scale 0 (all its q are 0).
static uint16_t scale_half(double s) {
    uint16_t h = float_to_half((float)s);
    if (!std::isfinite(half_to_float(h))) fatal("quant: a row scale of %g does not fit fp16 (weights this large are a bug)", s);
    if (s > 0 && half_to_float(h) == 0.f) h = 1;  // smallest subnormal rather than a zero scale
    return h;
}

void row_scales_cpu(uint16_t* scale, const float* W, const int* row_bits, int64_t R, int64_t C, bool clip_search) {
    static const double kClips[] = {1.0, 0.995, 0.99, 0.98, 0.97, 0.95, 0.93, 0.9, 0.87, 0.84, 0.8};
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t r = 0; r < R; r++) {
        const float* w = W + r * C;
        const int qmax = qmax_of(row_bits[r]);
        double amax = 0;
        for (int64_t c = 0; c < C; c++) amax = std::max(amax, (double)fabsf(w[c]));
        uint16_t best = scale_half(amax / qmax);
        if (clip_search && amax > 0) {
            double best_err = INFINITY;
            for (double clip : kClips) {
                uint16_t h = scale_half(clip * amax / qmax);
                double s = half_to_float(h), err = 0;
                for (int64_t c = 0; c < C; c++) {
                    double d = w[c] - quant_one(w[c], s, qmax) * s;
                    err += d * d;
                }
                if (err < best_err) { best_err = err; best = h; }
            }
        }
        scale[r] = best;
    }
}

void rtn_quantize_cpu(int8_t* q, const float* W, const uint16_t* scale, const int* row_bits, int64_t R, int64_t C) {
    for (int64_t r = 0; r < R; r++) {
        const double s = half_to_float(scale[r]);
        const int qmax = qmax_of(row_bits[r]);
        for (int64_t c = 0; c < C; c++) q[r * C + c] = (int8_t)quant_one(W[r * C + c], s, qmax);
    }
}

bool cholesky_lower(double* A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return false;
        d = sqrt(d);
        A[j * n + j] = d;
#pragma omp parallel for if (n - j > 256)
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / d;
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) A[i * n + j] = 0;
    return true;
}

// U upper with U ᵀU = (H + λI)^-1, in the permuted column order.
// From L Lᵀ = Hd: Hd^-1 = L^-ᵀ L^-1; then U = chol_lower(Hd^-1)ᵀ, as the reference
// implementation does (torch.cholesky_inverse then cholesky(upper=True)).
std::vector<double> gptq_inverse_upper_cpu(std::vector<double> Hd, int64_t C) {
    if (!cholesky_lower(Hd.data(), C)) fatal("gptq: the damped Hessian (%lld x %lld) is not positive definite", (long long)C, (long long)C);
    // Linv = L^-1 (lower), by forward substitution, one column of the identity at a time
    std::vector<double> Linv((size_t)(C * C), 0.0);
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t j = 0; j < C; j++) {
        for (int64_t i = j; i < C; i++) {
            double s = (i == j) ? 1.0 : 0.0;
            for (int64_t k = j; k < i; k++) s -= Hd[i * C + k] * Linv[k * C + j];
            Linv[i * C + j] = s / Hd[i * C + i];
        }
    }
    // Hinv = Linvᵀ Linv
    std::vector<double> Hinv((size_t)(C * C));
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t k = std::max(i, j); k < C; k++) s += Linv[k * C + i] * Linv[k * C + j];
            Hinv[i * C + j] = s;
            Hinv[j * C + i] = s;
        }
    if (!cholesky_lower(Hinv.data(), C)) fatal("gptq: the inverse Hessian (%lld x %lld) is not positive definite", (long long)C, (long long)C);
    std::vector<double> U((size_t)(C * C));
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = 0; j < C; j++) U[i * C + j] = Hinv[j * C + i];
    return U;
}

void gptq_column_order(const double* diag, int64_t C, const GptqOptions& opt, std::vector<int64_t>* perm,
                       std::vector<char>* dead, double* lambda) {
    perm->resize((size_t)C);
    std::iota(perm->begin(), perm->end(), 0);
    if (opt.act_order)
        std::stable_sort(perm->begin(), perm->end(), [&](int64_t a, int64_t b) { return diag[a] > diag[b]; });
    dead->resize((size_t)C);
    double mean_diag = 0;
    for (int64_t i = 0; i < C; i++) {
        (*dead)[i] = diag[(*perm)[i]] == 0;
        mean_diag += (*dead)[i] ? 1.0 : diag[(*perm)[i]];  // a dead input's diagonal becomes 1
    }
    *lambda = opt.damp * (mean_diag / (double)C);
}

void gptq_quantize_cpu(int8_t* q, const float* W, const double* H, const uint16_t* scale, const int* row_bits,
                       int64_t R, int64_t C, const GptqOptions& opt) {
    std::vector<double> diag((size_t)C);
    for (int64_t i = 0; i < C; i++) diag[i] = H[i * C + i];
    std::vector<int64_t> perm;
    std::vector<char> dead;
    double lambda;
    gptq_column_order(diag.data(), C, opt, &perm, &dead, &lambda);
    std::vector<double> Hd((size_t)(C * C));
    for (int64_t i = 0; i < C; i++) {
        for (int64_t j = 0; j < C; j++) Hd[i * C + j] = H[perm[i] * C + perm[j]];
        if (dead[i]) Hd[i * C + i] = 1;  // a never-active input: its weights do not matter, its q is 0
        Hd[i * C + i] += lambda;
    }
    const std::vector<double> U = gptq_inverse_upper_cpu(std::move(Hd), C);

    const int64_t bs = std::max(1, opt.block_size);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t r = 0; r < R; r++) {
        const double s = half_to_float(scale[r]);
        const int qmax = qmax_of(row_bits[r]);
        std::vector<double> w((size_t)C), err((size_t)bs);
        for (int64_t c = 0; c < C; c++) w[c] = dead[c] ? 0.0 : (double)W[r * C + perm[c]];
        for (int64_t i1 = 0; i1 < C; i1 += bs) {
            const int64_t i2 = std::min(C, i1 + bs);
            for (int64_t i = i1; i < i2; i++) {  // inside the block: eager updates
                const int qi = quant_one(w[i], s, qmax);
                q[r * C + perm[i]] = (int8_t)qi;
                const double e = (w[i] - qi * s) / U[i * C + i];
                err[i - i1] = e;
                for (int64_t k = i + 1; k < i2; k++) w[k] -= e * U[i * C + k];
            }
            for (int64_t k = i2; k < C; k++) {  // the block's error onto the rest, once: W[:, i2:] -= Err1 · U[i1:i2, i2:]
                double acc = 0;
                for (int64_t i = i1; i < i2; i++) acc += err[i - i1] * U[i * C + k];
                w[k] -= acc;
            }
        }
    }
}

double quant_error_cpu(const float* W, const int8_t* q, const uint16_t* scale, const double* H, int64_t R, int64_t C) {
    double total = 0;
#pragma omp parallel for reduction(+ : total)
    for (int64_t r = 0; r < R; r++) {
        const double s = half_to_float(scale[r]);
        std::vector<double> d((size_t)C);
        for (int64_t c = 0; c < C; c++) d[c] = (double)W[r * C + c] - q[r * C + c] * s;
        if (!H) {
            for (int64_t c = 0; c < C; c++) total += d[c] * d[c];
            continue;
        }
        for (int64_t i = 0; i < C; i++) {
            double a = 0;
            for (int64_t j = 0; j < C; j++) a += H[i * C + j] * d[j];
            total += d[i] * a;
        }
    }
    return total;
}
