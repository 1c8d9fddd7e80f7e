// Attention kernels against a float64 reference on the same bf16-rounded inputs.
// Bounds (max-abs error over max |ref|): bf16 outputs and gradients < 1e-2; lse (fp32) < 1e-5
// relative per row would be too tight for bf16 MMA scores, so lse is held to 1e-3 absolute.
// Backward is also run twice and must be bit-identical (no atomics anywhere).
#include "model/attention.cuh"
#include "tests/gpu/gpu_util.h"
#include <cstring>

// Naive causal GQA attention in float64: the math of the flash core, written as loops.
static void attn_core_ref(std::vector<double>& out, std::vector<double>& lse, std::vector<double>& dq,
                          std::vector<double>& dk, std::vector<double>& dv, const std::vector<float>& q,
                          const std::vector<float>& k, const std::vector<float>& v, const std::vector<float>& dout,
                          int B, int T, int NH, int NKV, int HD) {
    const double scale = 1.0 / sqrt((double)HD);
    out.assign((size_t)B * T * NH * HD, 0);
    lse.assign((size_t)B * NH * T, 0);
    dq.assign(out.size(), 0);
    dk.assign((size_t)B * T * NKV * HD, 0);
    dv.assign(dk.size(), 0);
    std::vector<double> p(T), dp(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int hk = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                const float* qr = &q[(((int64_t)b * T + t) * NH + h) * HD];
                const float* gr = &dout[(((int64_t)b * T + t) * NH + h) * HD];
                double mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const float* kr = &k[(((int64_t)b * T + s) * NKV + hk) * HD];
                    double acc = 0;
                    for (int d = 0; d < HD; d++) acc += (double)qr[d] * kr[d];
                    p[s] = acc * scale;
                    mx = std::max(mx, p[s]);
                }
                double sum = 0;
                for (int s = 0; s <= t; s++) sum += exp(p[s] - mx);
                lse[((int64_t)b * NH + h) * T + t] = mx + log(sum);
                for (int s = 0; s <= t; s++) p[s] = exp(p[s] - mx) / sum;
                double* o = &out[(((int64_t)b * T + t) * NH + h) * HD];
                double pdp = 0;
                for (int s = 0; s <= t; s++) {
                    const float* vr = &v[(((int64_t)b * T + s) * NKV + hk) * HD];
                    double g = 0;
                    for (int d = 0; d < HD; d++) {
                        o[d] += p[s] * vr[d];
                        g += (double)gr[d] * vr[d];
                    }
                    dp[s] = g;
                    pdp += p[s] * g;
                }
                double* dqr = &dq[(((int64_t)b * T + t) * NH + h) * HD];
                for (int s = 0; s <= t; s++) {
                    const double ds = p[s] * (dp[s] - pdp) * scale;
                    const float* kr = &k[(((int64_t)b * T + s) * NKV + hk) * HD];
                    double* dkr = &dk[(((int64_t)b * T + s) * NKV + hk) * HD];
                    double* dvr = &dv[(((int64_t)b * T + s) * NKV + hk) * HD];
                    for (int d = 0; d < HD; d++) {
                        dqr[d] += ds * kr[d];
                        dkr[d] += ds * qr[d];
                        dvr[d] += p[s] * gr[d];
                    }
                }
            }
        }
}

TEST_CASE("gpu attention core: flash forward/backward vs float64, GQA, odd T") {
    struct Shape { int B, T, NH, NKV; };
    const Shape shapes[] = {{2, 67, 8, 4}, {1, 200, 4, 1}, {2, 128, 8, 8}, {1, 1, 8, 4}, {1, 333, 8, 4}};
    const int HD = 64;
    uint64_t seed = 100;
    for (auto sh : shapes) {
        const int B = sh.B, T = sh.T, NH = sh.NH, NKV = sh.NKV;
        CAPTURE(B); CAPTURE(T); CAPTURE(NH); CAPTURE(NKV);
        const int64_t nq = (int64_t)B * T * NH * HD, nk = (int64_t)B * T * NKV * HD;
        // Scores of a few units, as after QK-norm and gain: a peaked but not one-hot softmax.
        auto q = gt::randn(nq, seed++, 1.5), k = gt::randn(nk, seed++, 1.5), v = gt::randn(nk, seed++);
        auto dout = gt::randn(nq, seed++);
        gt::round_bf16(q); gt::round_bf16(k); gt::round_bf16(v); gt::round_bf16(dout);
        std::vector<double> ro, rl, rdq, rdk, rdv;
        attn_core_ref(ro, rl, rdq, rdk, rdv, q, k, v, dout, B, T, NH, NKV, HD);

        auto *dq_ = gt::to_dev_bf16(q), *dk_ = gt::to_dev_bf16(k), *dv_ = gt::to_dev_bf16(v), *ddo = gt::to_dev_bf16(dout);
        auto* dout_o = gt::dev_alloc<__nv_bfloat16>(nq);
        auto* dlse = gt::dev_alloc<float>((int64_t)B * NH * T);
        auto* ddelta = gt::dev_alloc<float>((int64_t)B * NH * T);
        auto* gq = gt::dev_alloc<__nv_bfloat16>(nq);
        auto* gk = gt::dev_alloc<__nv_bfloat16>(nk);
        auto* gv = gt::dev_alloc<__nv_bfloat16>(nk);
        attention_core_forward(dout_o, dlse, dq_, dk_, dv_, B, T, NH, NKV, HD, 0);
        auto o = gt::to_host(dout_o, nq);
        auto l = gt::to_host(dlse, (int64_t)B * NH * T);
        CHECK_REL("out", o, gt::to_float(ro), 1e-2);
        double lerr = 0;
        for (size_t i = 0; i < l.size(); i++) {
            double d = fabs(l[i] - rl[i]);
            if (!(d <= lerr)) lerr = d;
        }
        INFO("lse abs err " << lerr);
        CHECK(lerr < 1e-3);

        attention_core_backward(gq, gk, gv, ddelta, ddo, dq_, dk_, dv_, dout_o, dlse, B, T, NH, NKV, HD, 0);
        auto a_q = gt::to_host(gq, nq), a_k = gt::to_host(gk, nk), a_v = gt::to_host(gv, nk);
        CHECK_REL("dq", a_q, gt::to_float(rdq), 1e-2);
        CHECK_REL("dk", a_k, gt::to_float(rdk), 1e-2);
        CHECK_REL("dv", a_v, gt::to_float(rdv), 1e-2);
        // Determinism: a second run over poisoned outputs gives the same bits.
        gt::poison(gq, nq * 2); gt::poison(gk, nk * 2); gt::poison(gv, nk * 2);
        attention_core_backward(gq, gk, gv, ddelta, ddo, dq_, dk_, dv_, dout_o, dlse, B, T, NH, NKV, HD, 0);
        auto b_q = gt::to_host(gq, nq), b_k = gt::to_host(gk, nk), b_v = gt::to_host(gv, nk);
        CHECK(memcmp(a_q.data(), b_q.data(), nq * 4) == 0);
        CHECK(memcmp(a_k.data(), b_k.data(), nk * 4) == 0);
        CHECK(memcmp(a_v.data(), b_v.data(), nk * 4) == 0);
        for (void* p : {(void*)dq_, (void*)dk_, (void*)dv_, (void*)ddo, (void*)dout_o, (void*)dlse, (void*)ddelta,
                        (void*)gq, (void*)gk, (void*)gv})
            cudaCheck(cudaFree(p));
    }
}
