// Every non-scan layer kernel against its CPU reference (model/*.h, run in float64 on the same
// inputs the kernel reads: bf16 inputs are rounded to bf16 first). Fresh seeded random inputs
// (never zeros), outputs NaN-poisoned before each run (gt::dev_alloc poisons), several shapes
// including odd sizes. Bounds, max-abs error over max |ref| per tensor:
//   fp32 outputs from fp32 math: < 1e-5;   bf16 outputs (or bf16 operands): < 1e-2.
#include "model/attention.cuh"
#include "model/attention.h"
#include "model/embedding.cuh"
#include "model/embedding.h"
#include "model/gemm.cuh"
#include "model/linear.h"
#include "model/loss.cuh"
#include "model/loss.h"
#include "model/mlp.cuh"
#include "model/mlp.h"
#include "model/model.h"
#include "model/rmsnorm.cuh"
#include "model/rmsnorm.h"
#include "model/wiring.cuh"
#include "tests/gpu/gpu_util.h"
#include <cstring>

using gt::to_d;
using gt::to_float;

TEST_CASE("gpu gemm: cuBLASLt bf16 forward / dinp / dweight (accumulate) vs linear_*_cpu") {
    struct S { int N, IC, OC; };
    for (S s : {S{37, 64, 48}, S{130, 512, 2240}, S{1000, 96, 520}}) {
        CAPTURE(s.N); CAPTURE(s.IC); CAPTURE(s.OC);
        auto x = gt::randn((int64_t)s.N * s.IC, 1), w = gt::randn((int64_t)s.OC * s.IC, 2, 0.1);
        auto dy = gt::randn((int64_t)s.N * s.OC, 3), dw0 = gt::randn((int64_t)s.OC * s.IC, 4);
        gt::round_bf16(x); gt::round_bf16(w); gt::round_bf16(dy);
        std::vector<double> y((size_t)s.N * s.OC), dx((size_t)s.N * s.IC), dw = to_d(dw0);
        linear_forward_cpu<double>(y.data(), to_d(x).data(), to_d(w).data(), s.N, s.IC, s.OC);
        linear_backward_cpu<double>(dx.data(), dw.data(), to_d(dy).data(), to_d(x).data(), to_d(w).data(), s.N, s.IC, s.OC);
        auto *gx = gt::to_dev_bf16(x), *gw = gt::to_dev_bf16(w), *gdy = gt::to_dev_bf16(dy);
        auto* gy = gt::dev_alloc<__nv_bfloat16>((int64_t)s.N * s.OC);
        auto* gyf = gt::dev_alloc<float>((int64_t)s.N * s.OC);
        auto* gdx = gt::dev_alloc<float>((int64_t)s.N * s.IC);
        float* gdw = gt::to_dev(dw0);
        gemm(gy, GemmOut::bf16, gx, gw, s.N, s.OC, s.IC, false, true, false, 0);
        gemm(gyf, GemmOut::f32, gx, gw, s.N, s.OC, s.IC, false, true, false, 0);
        gemm(gdx, GemmOut::f32, gdy, gw, s.N, s.IC, s.OC, false, false, false, 0);
        gemm(gdw, GemmOut::f32, gdy, gx, s.OC, s.IC, s.N, true, false, true, 0);
        CHECK_REL("y bf16", gt::to_host(gy, (int64_t)s.N * s.OC), to_float(y), 1e-2);
        CHECK_REL("y f32", gt::to_host(gyf, (int64_t)s.N * s.OC), to_float(y), 1e-5);
        CHECK_REL("dx f32", gt::to_host(gdx, (int64_t)s.N * s.IC), to_float(dx), 1e-5);
        CHECK_REL("dw f32 (accumulated)", gt::to_host(gdw, (int64_t)s.OC * s.IC), to_float(dw), 1e-5);
        for (void* p : {(void*)gx, (void*)gw, (void*)gdy, (void*)gy, (void*)gyf, (void*)gdx, (void*)gdw}) cudaCheck(cudaFree(p));
    }
}

TEST_CASE("gpu rmsnorm: forward (fp32 + bf16 out) / backward") {
    struct S { int64_t N; int C; };
    for (S s : {S{1, 512}, S{333, 512}, S{129, 77}}) {
        CAPTURE(s.N); CAPTURE(s.C);
        const int64_t n = s.N * s.C;
        auto x = gt::randn(n, 10, 2.0), dy = gt::randn(n, 11);
        const double eps = 1.1920929e-07;
        std::vector<double> y(n), r(s.N), dx(n);
        rmsnorm_forward_cpu<double>(y.data(), r.data(), to_d(x).data(), s.N, s.C, eps);
        rmsnorm_backward_cpu<double>(dx.data(), to_d(dy).data(), to_d(x).data(), r.data(), s.N, s.C);
        float *gx = gt::to_dev(x), *gdy = gt::to_dev(dy), *gy = gt::dev_alloc<float>(n), *gr = gt::dev_alloc<float>(s.N);
        auto* gyb = gt::dev_alloc<__nv_bfloat16>(n);
        float* gdx = gt::dev_alloc<float>(n);
        rmsnorm_forward(gy, gyb, gr, gx, s.N, s.C, (float)eps, 0);
        CHECK_REL("y f32", gt::to_host(gy, n), to_float(y), 1e-5);
        CHECK_REL("y bf16", gt::to_host(gyb, n), to_float(y), 1e-2);
        CHECK_REL("rstd", gt::to_host(gr, s.N), to_float(r), 1e-5);
        rmsnorm_backward(gdx, gdy, gx, gr, s.N, s.C, 0);
        CHECK_REL("dx", gt::to_host(gdx, n), to_float(dx), 1e-5);
        for (void* p : {(void*)gx, (void*)gdy, (void*)gy, (void*)gr, (void*)gyb, (void*)gdx}) cudaCheck(cudaFree(p));
    }
}

TEST_CASE("gpu mlp activation: leaky_relu(0.5)^2 forward / backward") {
    for (int64_t n : {(int64_t)8, (int64_t)1001, (int64_t)96 * 1536}) {
        CAPTURE(n);
        auto h = gt::randn(n, 20, 2.0), da = gt::randn(n, 21);
        gt::round_bf16(h); gt::round_bf16(da);
        std::vector<double> a(n), dh(n);
        mlp_act_forward_cpu<double>(a.data(), to_d(h).data(), n);
        mlp_act_backward_cpu<double>(dh.data(), to_d(da).data(), to_d(h).data(), n);
        auto *gh = gt::to_dev_bf16(h), *gda = gt::to_dev_bf16(da);
        auto *ga = gt::dev_alloc<__nv_bfloat16>(n), *gdh = gt::dev_alloc<__nv_bfloat16>(n);
        mlp_act_forward(ga, gh, n, 0);
        mlp_act_backward(gdh, gda, gh, n, 0);
        CHECK_REL("a", gt::to_host(ga, n), to_float(a), 1e-2);
        CHECK_REL("dh", gt::to_host(gdh, n), to_float(dh), 1e-2);
        for (void* p : {(void*)gh, (void*)gda, (void*)ga, (void*)gdh}) cudaCheck(cudaFree(p));
    }
}

TEST_CASE("gpu softcap cross-entropy: losses, mean, dlogits (in place)") {
    struct S { int64_t N; int V; };
    for (S s : {S{5, 8192}, S{77, 1001}, S{300, 512}}) {
        CAPTURE(s.N); CAPTURE(s.V);
        const int64_t n = s.N * s.V;
        auto z = gt::randn(n, 30, 8.0);  // spread past the cap's linear range
        gt::round_bf16(z);
        std::vector<int32_t> y(s.N);
        Rng r(31);
        for (auto& t : y) t = (int32_t)(r.next() % s.V);
        std::vector<double> loss(s.N), dz(n);
        double mean = softcap_ce_forward_backward_cpu<double>(loss.data(), dz.data(), to_d(z).data(), y.data(), s.N, s.V, 30.0);
        auto* gz = gt::to_dev_bf16(z);
        auto* gy = gt::to_dev(y);
        float *gl = gt::dev_alloc<float>(s.N), *gm = gt::dev_alloc<float>(1);
        softcap_ce_forward_backward(gl, gz, gz, gy, s.N, s.V, 30.f, 0);
        loss_mean(gm, gl, s.N, 0);
        CHECK_REL("losses", gt::to_host(gl, s.N), to_float(loss), 1e-5);
        CHECK_REL("mean loss", gt::to_host(gm, 1), std::vector<float>{(float)mean}, 1e-5);
        CHECK_REL("dlogits", gt::to_host(gz, n), to_float(dz), 1e-2);
        for (void* p : {(void*)gz, (void*)gy, (void*)gl, (void*)gm}) cudaCheck(cudaFree(p));
    }
}

TEST_CASE("gpu embedding: forward / deterministic backward (accumulate)") {
    struct S { int64_t N; int C, V; };
    for (S s : {S{1000, 512, 8192}, S{65536, 512, 8192}, S{4099, 64, 50}, S{3, 77, 17}, S{300, 1100, 40}}) {
        CAPTURE(s.N); CAPTURE(s.C); CAPTURE(s.V);
        auto wte = gt::randn((int64_t)s.V * s.C, 40), dout = gt::randn(s.N * s.C, 41), dw0 = gt::randn((int64_t)s.V * s.C, 42);
        std::vector<int32_t> tok(s.N);
        Rng r(43);
        for (auto& t : tok) t = (int32_t)((r.next() % 4 == 0) ? 7 % s.V : r.next() % s.V);  // one frequent token
        std::vector<double> out(s.N * s.C), dw = to_d(dw0);
        embedding_forward_cpu<double>(out.data(), tok.data(), to_d(wte).data(), s.N, s.C, s.V);
        embedding_backward_cpu<double>(dw.data(), to_d(dout).data(), tok.data(), s.N, s.C, s.V);
        float *gw = gt::to_dev(wte), *gd = gt::to_dev(dout), *go = gt::dev_alloc<float>(s.N * s.C);
        float* gdw = gt::to_dev(dw0);
        auto* gt_ = gt::to_dev(tok);
        void* scratch = gt::dev_alloc<char>((int64_t)embedding_backward_scratch_bytes(s.N, s.V));
        embedding_forward(go, gt_, gw, s.N, s.C, s.V, 0);
        embedding_backward(gdw, gd, gt_, s.N, s.C, s.V, scratch, 0);
        CHECK_REL("out", gt::to_host(go, s.N * s.C), to_float(out), 0.0);
        auto first = gt::to_host(gdw, (int64_t)s.V * s.C);
        CHECK_REL("dwte", first, to_float(dw), 1e-5);
        cudaCheck(cudaMemcpy(gdw, dw0.data(), dw0.size() * 4, cudaMemcpyHostToDevice));
        embedding_backward(gdw, gd, gt_, s.N, s.C, s.V, scratch, 0);
        auto second = gt::to_host(gdw, (int64_t)s.V * s.C);
        CHECK(memcmp(first.data(), second.data(), first.size() * 4) == 0);
        for (void* p : {(void*)gw, (void*)gd, (void*)go, (void*)gdw, (void*)gt_, scratch}) cudaCheck(cudaFree(p));
    }
}

TEST_CASE("gpu wiring: scale_add forward / backward") {
    struct S { int64_t N; int C; };
    for (S s : {S{1000, 512}, S{67, 77}}) {
        CAPTURE(s.N); CAPTURE(s.C);
        const int64_t n = s.N * s.C;
        auto x = gt::randn(n, 50), y = gt::randn(n, 52), dout = gt::randn(n, 53);
        auto sc = gt::randn(s.C, 55);
        auto dsc0 = gt::randn(s.C, 57);
        gt::round_bf16(y);  // y read as bf16 in the bf16 variant
        std::vector<double> o2(n), dy(n), dsc = to_d(dsc0);
        scale_add_forward_cpu<double>(o2.data(), to_d(x).data(), to_d(y).data(), to_d(sc).data(), s.N, s.C);
        scale_add_backward_cpu<double>(dy.data(), dsc.data(), to_d(dout).data(), to_d(y).data(), to_d(sc).data(), s.N, s.C);
        float *gx = gt::to_dev(x), *gy = gt::to_dev(y), *gdo = gt::to_dev(dout);
        float *gsc = gt::to_dev(sc), *gdsc = gt::to_dev(dsc0), *go = gt::dev_alloc<float>(n);
        float* gdyf = gt::dev_alloc<float>(n);
        auto* gyb = gt::to_dev_bf16(y);
        auto* gdyb = gt::dev_alloc<__nv_bfloat16>(n);
        gt::poison(go, n * 4);
        scale_add_forward(go, gx, gy, nullptr, gsc, s.N, s.C, 0);
        CHECK_REL("scale_add out (f32 y)", gt::to_host(go, n), to_float(o2), 1e-5);
        gt::poison(go, n * 4);
        scale_add_forward(go, gx, nullptr, gyb, gsc, s.N, s.C, 0);
        CHECK_REL("scale_add out (bf16 y)", gt::to_host(go, n), to_float(o2), 1e-5);
        scale_add_backward(gdyf, nullptr, gdsc, gdo, gy, nullptr, gsc, s.N, s.C, 0);
        CHECK_REL("scale_add dy f32", gt::to_host(gdyf, n), to_float(dy), 1e-5);
        CHECK_REL("scale_add dscale (accumulated)", gt::to_host(gdsc, s.C), to_float(dsc), 1e-5);
        scale_add_backward(nullptr, gdyb, gdsc, gdo, nullptr, gyb, gsc, s.N, s.C, 0);
        CHECK_REL("scale_add dy bf16", gt::to_host(gdyb, n), to_float(dy), 1e-2);
        for (void* p : {(void*)gx, (void*)gy, (void*)gdo, (void*)gsc, (void*)gdsc, (void*)go, (void*)gdyf, (void*)gyb,
                        (void*)gdyb})
            cudaCheck(cudaFree(p));
    }
}


// The fused wiring kernels against the CPU twins composed: resid_mix, rmsnorm, scale_add.
TEST_CASE("gpu wiring: mix_norm / mix_add_norm forward, norm_scale_add / mix_norm backward") {
    struct S { int64_t N; int C; };
    for (S s : {S{1000, 512}, S{67, 77}, S{130, 1024}, S{3, 200}, S{7, 3000}}) {
        CAPTURE(s.N); CAPTURE(s.C);
        const int64_t n = s.N * s.C;
        const double eps = 1.1920929e-07;
        auto x = gt::randn(n, 70, 2.0), x0 = gt::randn(n, 71), y = gt::randn(n, 72), dn = gt::randn(n, 73);
        auto dres = gt::randn(n, 74), mix = gt::randn(2 * s.C, 75), sc = gt::randn(s.C, 76);
        auto dmix0 = gt::randn(2 * s.C, 77), dsc0 = gt::randn(s.C, 78), dx00 = gt::randn(n, 79);
        gt::round_bf16(y);  // the mixer output is bf16
        // CPU: xm = resid_mix(x, x0); n1 = rmsnorm(xm); xo = xm + sc * y; n2 = rmsnorm(xo)
        std::vector<double> xm(n), n1(n), r1(s.N), xo(n), n2(n), r2(s.N);
        resid_mix_forward_cpu<double>(xm.data(), to_d(x).data(), to_d(x0).data(), to_d(mix).data(), s.N, s.C);
        rmsnorm_forward_cpu<double>(n1.data(), r1.data(), xm.data(), s.N, s.C, eps);
        scale_add_forward_cpu<double>(xo.data(), xm.data(), to_d(y).data(), to_d(sc).data(), s.N, s.C);
        rmsnorm_forward_cpu<double>(n2.data(), r2.data(), xo.data(), s.N, s.C, eps);
        // backward 1: g = dres + rmsnorm_bwd(dn; xo); dy = sc * g; dsc += sum g y
        std::vector<double> g(n), dy(n), dsc = to_d(dsc0);
        rmsnorm_backward_cpu<double>(g.data(), to_d(dn).data(), xo.data(), r2.data(), s.N, s.C);
        for (int64_t i = 0; i < n; i++) g[i] += dres[i];
        scale_add_backward_cpu<double>(dy.data(), dsc.data(), g.data(), to_d(y).data(), to_d(sc).data(), s.N, s.C);
        // backward 2: h = dres + rmsnorm_bwd(dn; xm); dx = mix0 h; dx0 += mix1 h; dmix += ...
        std::vector<double> h(n), dx(n), dx0 = to_d(dx00), dmix = to_d(dmix0);
        rmsnorm_backward_cpu<double>(h.data(), to_d(dn).data(), xm.data(), r1.data(), s.N, s.C);
        for (int64_t i = 0; i < n; i++) h[i] += dres[i];
        resid_mix_backward_cpu<double>(dx.data(), dx0.data(), dmix.data(), h.data(), to_d(x).data(), to_d(x0).data(),
                                       to_d(mix).data(), s.N, s.C);

        float *gx = gt::to_dev(x), *gx0 = gt::to_dev(x0), *gdn = gt::to_dev(dn), *gmix = gt::to_dev(mix);
        float *gsc = gt::to_dev(sc), *gr = gt::dev_alloc<float>(s.N), *gxo = gt::dev_alloc<float>(n);
        auto *gy = gt::to_dev_bf16(y), *gn = gt::dev_alloc<__nv_bfloat16>(n), *gdy = gt::dev_alloc<__nv_bfloat16>(n);
        gt::poison(gn, n * 2); gt::poison(gr, s.N * 4);
        mix_norm_forward(gn, gr, gx, gx0, gmix, s.N, s.C, (float)eps, 0);
        CHECK_REL("mix_norm n", gt::to_host(gn, n), to_float(n1), 1e-2);
        CHECK_REL("mix_norm rstd", gt::to_host(gr, s.N), to_float(r1), 1e-5);
        // backward 2 reads rstd of x_mix: the one just written
        float *gg = gt::to_dev(dres), *gdx = gt::dev_alloc<float>(n), *gdx0 = gt::to_dev(dx00), *gdmix = gt::to_dev(dmix0);
        gt::poison(gdx, n * 4);
        mix_norm_backward(gdx, gdx0, gdmix, gdn, gg, gx, gx0, gmix, gr, s.N, s.C, 0);
        CHECK_REL("mix_norm dx", gt::to_host(gdx, n), to_float(dx), 1e-5);
        CHECK_REL("mix_norm dx0 (accumulated)", gt::to_host(gdx0, n), to_float(dx0), 1e-5);
        CHECK_REL("mix_norm dmix (accumulated)", gt::to_host(gdmix, 2 * s.C), to_float(dmix), 1e-5);
        gt::poison(gn, n * 2); gt::poison(gr, s.N * 4); gt::poison(gxo, n * 4);
        mix_add_norm_forward(gxo, gn, gr, gx, gx0, gmix, gy, gsc, s.N, s.C, (float)eps, 0);
        CHECK_REL("mix_add_norm out", gt::to_host(gxo, n), to_float(xo), 1e-5);
        CHECK_REL("mix_add_norm n", gt::to_host(gn, n), to_float(n2), 1e-2);
        CHECK_REL("mix_add_norm rstd", gt::to_host(gr, s.N), to_float(r2), 1e-5);
        float* gdsc = gt::to_dev(dsc0);
        gt::poison(gdy, n * 2);
        norm_scale_add_backward(gg, gdy, gdsc, gdn, gxo, gr, gy, gsc, s.N, s.C, 0);
        CHECK_REL("norm_scale_add dx (accumulated)", gt::to_host(gg, n), to_float(g), 1e-5);
        CHECK_REL("norm_scale_add dy (bf16)", gt::to_host(gdy, n), to_float(dy), 1e-2);
        CHECK_REL("norm_scale_add dscale (accumulated)", gt::to_host(gdsc, s.C), to_float(dsc), 1e-5);
        // deterministic: the parameter sums again from the same inputs, bit for bit
        auto first = gt::to_host(gdmix, 2 * s.C);
        cudaCheck(cudaMemcpy(gdmix, dmix0.data(), dmix0.size() * 4, cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(gg, dres.data(), n * 4, cudaMemcpyHostToDevice));
        mix_norm_forward(gn, gr, gx, gx0, gmix, s.N, s.C, (float)eps, 0);
        mix_norm_backward(gdx, gdx0, gdmix, gdn, gg, gx, gx0, gmix, gr, s.N, s.C, 0);
        auto second = gt::to_host(gdmix, 2 * s.C);
        CHECK(memcmp(first.data(), second.data(), first.size() * 4) == 0);
        for (void* p : {(void*)gx, (void*)gx0, (void*)gdn, (void*)gmix, (void*)gsc, (void*)gr, (void*)gxo, (void*)gy,
                        (void*)gn, (void*)gdy, (void*)gg, (void*)gdx, (void*)gdx0, (void*)gdmix, (void*)gdsc})
            cudaCheck(cudaFree(p));
    }
}

TEST_CASE("gpu attention qkv prep: silu(v), qk-norm, RoPE, q gain forward / backward") {
    struct S { int B, T, NH, NKV; };
    for (S s : {S{2, 37, 8, 4}, S{1, 300, 4, 1}}) {
        const int HD = 64;
        CAPTURE(s.B); CAPTURE(s.T); CAPTURE(s.NH); CAPTURE(s.NKV);
        AttnDims d{s.B, s.T, s.NH, s.NKV, HD, 10000.0, 1.1920929e-07};
        const int64_t rows = (int64_t)s.B * s.T, cols = d.qkv_cols();
        const int64_t nq = rows * s.NH * HD, nk = rows * s.NKV * HD;
        auto qkv = gt::randn(rows * cols, 60, 2.0), gain = gt::randu(s.NH, 61, 0.5, 2.0), dg0 = gt::randn(s.NH, 62);
        auto dq = gt::randn(nq, 63), dk = gt::randn(nk, 64), dv = gt::randn(nk, 65);
        gt::round_bf16(qkv); gt::round_bf16(dq); gt::round_bf16(dk); gt::round_bf16(dv);
        std::vector<double> q(nq), k(nk), v(nk), qr(rows * s.NH), kr(rows * s.NKV), dqkv(rows * cols), dg = to_d(dg0);
        attn_qkv_prep_forward_cpu<double>(q.data(), k.data(), v.data(), qr.data(), kr.data(), to_d(qkv).data(),
                                          to_d(gain).data(), d);
        attn_qkv_prep_backward_cpu<double>(dqkv.data(), dg.data(), to_d(dq).data(), to_d(dk).data(), to_d(dv).data(),
                                           to_d(qkv).data(), qr.data(), kr.data(), to_d(gain).data(), d);
        auto* gqkv = gt::to_dev_bf16(qkv);
        float *ggain = gt::to_dev(gain), *gdg = gt::to_dev(dg0);
        auto *gq = gt::dev_alloc<__nv_bfloat16>(nq), *gk = gt::dev_alloc<__nv_bfloat16>(nk), *gv = gt::dev_alloc<__nv_bfloat16>(nk);
        float *gqr = gt::dev_alloc<float>(rows * s.NH), *gkr = gt::dev_alloc<float>(rows * s.NKV);
        auto *gdq = gt::to_dev_bf16(dq), *gdk = gt::to_dev_bf16(dk), *gdv = gt::to_dev_bf16(dv);
        auto* gdqkv = gt::dev_alloc<__nv_bfloat16>(rows * cols);
        attn_qkv_prep_forward(gq, gk, gv, gqr, gkr, gqkv, ggain, s.B, s.T, s.NH, s.NKV, HD, 10000.f, (float)d.eps, 0);
        CHECK_REL("q", gt::to_host(gq, nq), to_float(q), 1e-2);
        CHECK_REL("k", gt::to_host(gk, nk), to_float(k), 1e-2);
        CHECK_REL("v", gt::to_host(gv, nk), to_float(v), 1e-2);
        CHECK_REL("q_rstd", gt::to_host(gqr, rows * s.NH), to_float(qr), 1e-5);
        CHECK_REL("k_rstd", gt::to_host(gkr, rows * s.NKV), to_float(kr), 1e-5);
        attn_qkv_prep_backward(gdqkv, gdg, gdq, gdk, gdv, gqkv, gqr, gkr, ggain, s.B, s.T, s.NH, s.NKV, HD, 10000.f, 0);
        CHECK_REL("dqkv", gt::to_host(gdqkv, rows * cols), to_float(dqkv), 1e-2);
        CHECK_REL("dq_gain (accumulated)", gt::to_host(gdg, s.NH), to_float(dg), 1e-5);
        for (void* p : {(void*)gqkv, (void*)ggain, (void*)gdg, (void*)gq, (void*)gk, (void*)gv, (void*)gqr, (void*)gkr,
                        (void*)gdq, (void*)gdk, (void*)gdv, (void*)gdqkv})
            cudaCheck(cudaFree(p));
    }
}
