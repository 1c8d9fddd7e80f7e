// Flash attention core against the CPU reference (model/attention.h, float64 instantiation) on
// the same bf16-rounded inputs.
// Bounds (max-abs error over max |ref|): bf16 outputs and gradients < 1e-2; lse (fp32) < 1e-5
// relative per row would be too tight for bf16 MMA scores, so lse is held to 1e-3 absolute.
// Backward is also run twice and must be bit-identical (no atomics anywhere).
#include "model/attention.cuh"
#include "model/attention.h"
#include "tests/gpu/gpu_util.h"
#include <cstring>

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
        AttnDims dims{B, T, NH, NKV, HD, 10000.0, 1e-6};
        std::vector<double> ro(nq), rl((size_t)B * NH * T), rdq(nq), rdk(nk), rdv(nk);
        std::vector<double> q64(q.begin(), q.end()), k64(k.begin(), k.end()), v64(v.begin(), v.end());
        std::vector<double> do64(dout.begin(), dout.end());
        attention_forward_cpu<double>(ro.data(), rl.data(), q64.data(), k64.data(), v64.data(), dims);
        // the backward gets the reference's own y: the kernel's bf16 y differs by rounding only
        attention_backward_cpu<double>(rdq.data(), rdk.data(), rdv.data(), do64.data(), q64.data(), k64.data(),
                                       v64.data(), ro.data(), rl.data(), dims);

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

        {
            gt::poison(gq, nq * 2); gt::poison(gk, nk * 2); gt::poison(gv, nk * 2);
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
        }
        for (void* p : {(void*)dq_, (void*)dk_, (void*)dv_, (void*)ddo, (void*)dout_o, (void*)dlse, (void*)ddelta,
                        (void*)gq, (void*)gk, (void*)gv})
            cudaCheck(cudaFree(p));
    }
}
