// CPU reference layers (model/*.h) against PyTorch float64 autograd fixtures
// (tools/ref/ref_layers.py) in float32, tolerance 1e-5 relative; and each backward against
// float64 central differences of loss = sum(out * w), tolerance 1e-6 relative.
#include "model/attention.h"  // defines: AttnDims, attn_qkv_prep_*_cpu, attention_*_cpu
#include "model/embedding.h"  // defines: embedding_forward_cpu, embedding_backward_cpu
#include "model/linear.h"     // defines: linear_forward_cpu, linear_backward_cpu
#include "model/loss.h"       // defines: softcap_ce_forward_backward_cpu
#include "model/mlp.h"        // defines: mlp_forward_cpu, mlp_backward_cpu, mlp_act_*_cpu
#include "model/model.h"      // defines: resid_mix_*_cpu, scale_add_*_cpu
#include "model/rmsnorm.h"    // defines: rmsnorm_forward_cpu, rmsnorm_backward_cpu
#include "tests/fd.h"
#include "tests/fixture.h"
#include <vector>

static const double kTol = 1e-5;    // fp32 reference vs float64 PyTorch
static const double kFdTol = 1e-6;  // float64 analytic vs central differences
static const double kEps = 1.1920929e-07;

using VF = std::vector<float>;
using VD = std::vector<double>;
#define CLOSE(fx, name, got) CHECK_CLOSE(fx.path << " " << name, (got).data(), fx.f(name), fx.get(name).numel(), kTol)

// ---------------------------------------------------------------- fixtures (float32)

TEST_CASE("layers: embedding vs PyTorch") {
    for (const char* name : {"layer_embedding_7x5x11", "layer_embedding_18x16x64"}) {
        Fixture fx = load_fixture(name);
        int V = (int)fx.get("wte").shape[0], C = (int)fx.get("wte").shape[1];
        int64_t N = fx.get("tokens").numel();
        VF out(N * C), dwte(V * C, 0.f);
        embedding_forward_cpu(out.data(), fx.i("tokens"), fx.f("wte"), N, C, V);
        embedding_backward_cpu(dwte.data(), fx.f("dout_out"), fx.i("tokens"), N, C, V);
        CLOSE(fx, "out", out);
        CLOSE(fx, "dwte", dwte);
    }
}

TEST_CASE("layers: rmsnorm vs PyTorch") {
    for (const char* name : {"layer_rmsnorm_5x7", "layer_rmsnorm_6x32", "layer_rmsnorm_1x3"}) {
        Fixture fx = load_fixture(name);
        int64_t N = fx.get("inp").shape[0];
        int C = (int)fx.get("inp").shape[1];
        VF out(N * C), rstd(N), dinp(N * C);
        rmsnorm_forward_cpu(out.data(), rstd.data(), fx.f("inp"), N, C, kEps);
        rmsnorm_backward_cpu(dinp.data(), fx.f("dout_out"), fx.f("inp"), rstd.data(), N, C);
        CLOSE(fx, "out", out);
        CLOSE(fx, "rstd", rstd);
        CLOSE(fx, "dinp", dinp);
    }
}

TEST_CASE("layers: linear vs PyTorch") {
    for (const char* name : {"layer_linear_5x7x3", "layer_linear_9x16x24"}) {
        Fixture fx = load_fixture(name);
        int64_t N = fx.get("inp").shape[0];
        int IC = (int)fx.get("inp").shape[1], OC = (int)fx.get("weight").shape[0];
        VF out(N * OC), dinp(N * IC), dw(OC * IC, 0.f);
        linear_forward_cpu(out.data(), fx.f("inp"), fx.f("weight"), N, IC, OC);
        linear_backward_cpu(dinp.data(), dw.data(), fx.f("dout_out"), fx.f("inp"), fx.f("weight"), N, IC, OC);
        CLOSE(fx, "out", out);
        CLOSE(fx, "dinp", dinp);
        CLOSE(fx, "dweight", dw);
    }
}

TEST_CASE("layers: mlp vs PyTorch") {
    for (const char* name : {"layer_mlp_5x6x18", "layer_mlp_7x8x24"}) {
        Fixture fx = load_fixture(name);
        int64_t N = fx.get("inp").shape[0];
        int C = (int)fx.get("inp").shape[1], FH = (int)fx.get("fc").shape[0];
        VF out(N * C), h(N * FH), a(N * FH), dinp(N * C), dfc(FH * C, 0.f), dproj(C * FH, 0.f), scratch(N * FH);
        mlp_forward_cpu(out.data(), h.data(), a.data(), fx.f("inp"), fx.f("fc"), fx.f("proj"), N, C, FH);
        mlp_backward_cpu(dinp.data(), dfc.data(), dproj.data(), fx.f("dout_out"), fx.f("inp"), h.data(), a.data(),
                         fx.f("fc"), fx.f("proj"), scratch.data(), N, C, FH);
        CLOSE(fx, "out", out);
        CLOSE(fx, "dinp", dinp);
        CLOSE(fx, "dfc", dfc);
        CLOSE(fx, "dproj", dproj);
    }
}

TEST_CASE("layers: softcap cross-entropy vs PyTorch") {
    for (const char* name : {"layer_loss_5x11", "layer_loss_8x64"}) {
        Fixture fx = load_fixture(name);
        int64_t N = fx.get("logits").shape[0];
        int V = (int)fx.get("logits").shape[1];
        VF losses(N), dlogits(N * V);
        double loss = softcap_ce_forward_backward_cpu(losses.data(), dlogits.data(), fx.f("logits"), fx.i("targets"),
                                                      N, V, 30.0);
        VF lossv{(float)loss};
        CLOSE(fx, "loss", lossv);
        CLOSE(fx, "losses", losses);
        CLOSE(fx, "dlogits", dlogits);
    }
}

static AttnDims fixture_dims(const Fixture& fx) {
    const int32_t* d = fx.i("dims");
    return AttnDims{d[0], d[1], d[2], d[3], d[4], 10000.0, kEps};
}

TEST_CASE("layers: attention qkv prep vs PyTorch") {
    for (const char* name : {"layer_attn_prep_1x5x2x1x4", "layer_attn_prep_2x7x4x2x6", "layer_attn_prep_2x9x6x3x8"}) {
        Fixture fx = load_fixture(name);
        AttnDims d = fixture_dims(fx);
        int64_t BT = (int64_t)d.B * d.T;
        VF q(BT * d.NH * d.HD), k(BT * d.NKV * d.HD), v(BT * d.NKV * d.HD), qr(BT * d.NH), kr(BT * d.NKV);
        VF dqkv(BT * d.qkv_cols()), dgain(d.NH, 0.f);
        attn_qkv_prep_forward_cpu(q.data(), k.data(), v.data(), qr.data(), kr.data(), fx.f("qkv"), fx.f("q_gain"), d);
        attn_qkv_prep_backward_cpu(dqkv.data(), dgain.data(), fx.f("dout_q"), fx.f("dout_k"), fx.f("dout_v"),
                                   fx.f("qkv"), qr.data(), kr.data(), fx.f("q_gain"), d);
        CLOSE(fx, "q", q);
        CLOSE(fx, "k", k);
        CLOSE(fx, "v", v);
        CLOSE(fx, "dqkv", dqkv);
        CLOSE(fx, "dq_gain", dgain);
    }
}

TEST_CASE("layers: causal GQA attention vs PyTorch") {
    for (const char* name : {"layer_attention_1x5x2x1x4", "layer_attention_2x7x4x2x6", "layer_attention_2x9x6x3x8"}) {
        Fixture fx = load_fixture(name);
        AttnDims d = fixture_dims(fx);
        int64_t BT = (int64_t)d.B * d.T;
        VF y(BT * d.NH * d.HD), lse(BT * d.NH), dq(BT * d.NH * d.HD), dk(BT * d.NKV * d.HD), dv(BT * d.NKV * d.HD);
        attention_forward_cpu(y.data(), lse.data(), fx.f("q"), fx.f("k"), fx.f("v"), d);
        attention_backward_cpu(dq.data(), dk.data(), dv.data(), fx.f("dout_y"), fx.f("q"), fx.f("k"), fx.f("v"),
                               y.data(), lse.data(), d);
        CLOSE(fx, "y", y);
        CLOSE(fx, "lse", lse);
        CLOSE(fx, "dq", dq);
        CLOSE(fx, "dk", dk);
        CLOSE(fx, "dv", dv);
    }
}

TEST_CASE("layers: block wiring (resid_mix, scale_add) vs PyTorch") {
    for (const char* shape : {"5x7", "4x16"}) {
        Fixture fx = load_fixture(std::string("layer_resid_mix_") + shape);
        int64_t N = fx.get("x").shape[0];
        int C = (int)fx.get("x").shape[1];
        VF out(N * C), dx(N * C), dx0(N * C, 0.f), dmix(2 * C, 0.f);
        resid_mix_forward_cpu(out.data(), fx.f("x"), fx.f("x0"), fx.f("mix"), N, C);
        resid_mix_backward_cpu(dx.data(), dx0.data(), dmix.data(), fx.f("dout_out"), fx.f("x"), fx.f("x0"),
                               fx.f("mix"), N, C);
        CLOSE(fx, "out", out);
        CLOSE(fx, "dx", dx);
        CLOSE(fx, "dx0", dx0);
        CLOSE(fx, "dmix", dmix);

        Fixture fs = load_fixture(std::string("layer_scale_add_") + shape);
        VF sout(N * C), dy(N * C), dscale(C, 0.f);
        scale_add_forward_cpu(sout.data(), fs.f("x"), fs.f("y"), fs.f("scale"), N, C);
        scale_add_backward_cpu(dy.data(), dscale.data(), fs.f("dout_out"), fs.f("y"), fs.f("scale"), N, C);
        CLOSE(fs, "out", sout);
        CLOSE(fs, "dy", dy);
        CLOSE(fs, "dscale", dscale);
        CLOSE(fs, "dx", VF(fs.f("dout_out"), fs.f("dout_out") + N * C));  // the residual passes through
    }
}

// ---------------------------------------------------------------- finite differences (float64)

TEST_CASE("layers: embedding backward vs finite differences") {
    const int64_t N = 9;
    const int C = 4, V = 5;
    std::vector<int32_t> tok = {0, 3, 3, 1, 4, 0, 3, 2, 1};
    VD wte = fd_randn(1, V * C), w = fd_randn(2, N * C), out(N * C), dwte(V * C, 0.0);
    auto loss = [&] { embedding_forward_cpu(out.data(), tok.data(), wte.data(), N, C, V); return dot(out, w); };
    embedding_backward_cpu(dwte.data(), w.data(), tok.data(), N, C, V);
    CHECK_FD("dwte", wte.data(), V * C, dwte.data(), loss, kFdTol);
}

TEST_CASE("layers: rmsnorm backward vs finite differences") {
    const int64_t N = 3;
    const int C = 7;
    VD x = fd_randn(3, N * C, 1.5, 0.2), w = fd_randn(4, N * C), out(N * C), rstd(N), dx(N * C);
    auto loss = [&] { rmsnorm_forward_cpu(out.data(), rstd.data(), x.data(), N, C, kEps); return dot(out, w); };
    loss();
    rmsnorm_backward_cpu(dx.data(), w.data(), x.data(), rstd.data(), N, C);
    CHECK_FD("dinp", x.data(), N * C, dx.data(), loss, kFdTol);
}

TEST_CASE("layers: linear backward vs finite differences") {
    const int64_t N = 4;
    const int IC = 5, OC = 3;
    VD x = fd_randn(5, N * IC), W = fd_randn(6, OC * IC), w = fd_randn(7, N * OC), out(N * OC);
    VD dx(N * IC), dW(OC * IC, 0.0);
    auto loss = [&] { linear_forward_cpu(out.data(), x.data(), W.data(), N, IC, OC); return dot(out, w); };
    linear_backward_cpu(dx.data(), dW.data(), w.data(), x.data(), W.data(), N, IC, OC);
    CHECK_FD("dinp", x.data(), N * IC, dx.data(), loss, kFdTol);
    CHECK_FD("dweight", W.data(), OC * IC, dW.data(), loss, kFdTol);
}

TEST_CASE("layers: mlp backward vs finite differences") {
    const int64_t N = 3;
    const int C = 4, FH = 10;
    VD x = fd_randn(8, N * C), fc = fd_randn(9, FH * C, 0.5), proj = fd_randn(10, C * FH, 0.5), w = fd_randn(11, N * C);
    VD out(N * C), h(N * FH), a(N * FH), dx(N * C), dfc(FH * C, 0.0), dproj(C * FH, 0.0), scratch(N * FH);
    auto loss = [&] {
        mlp_forward_cpu(out.data(), h.data(), a.data(), x.data(), fc.data(), proj.data(), N, C, FH);
        return dot(out, w);
    };
    loss();
    mlp_backward_cpu(dx.data(), dfc.data(), dproj.data(), w.data(), x.data(), h.data(), a.data(), fc.data(),
                     proj.data(), scratch.data(), N, C, FH);
    CHECK_FD("dinp", x.data(), N * C, dx.data(), loss, kFdTol);
    CHECK_FD("dfc", fc.data(), FH * C, dfc.data(), loss, kFdTol);
    CHECK_FD("dproj", proj.data(), C * FH, dproj.data(), loss, kFdTol);
}

TEST_CASE("layers: softcap cross-entropy backward vs finite differences") {
    const int64_t N = 4;
    const int V = 9;
    VD z = fd_randn(12, N * V, 25.0), dz(N * V);
    std::vector<int32_t> y = {0, 8, 3, 3};
    auto loss = [&] { return softcap_ce_forward_backward_cpu((double*)nullptr, (double*)nullptr, z.data(), y.data(), N, V, 30.0); };
    softcap_ce_forward_backward_cpu((double*)nullptr, dz.data(), z.data(), y.data(), N, V, 30.0);
    CHECK_FD("dlogits", z.data(), N * V, dz.data(), loss, kFdTol);
}

TEST_CASE("layers: attention qkv prep and core backward vs finite differences") {
    AttnDims d{2, 5, 4, 2, 6, 10000.0, kEps};
    int64_t BT = (int64_t)d.B * d.T, nq = BT * d.NH * d.HD, nkv = BT * d.NKV * d.HD;
    SUBCASE("qkv prep") {
        VD qkv = fd_randn(13, BT * d.qkv_cols(), 1.5), gain = fd_randn(14, d.NH, 0.3, 1.5);
        VD wq = fd_randn(15, nq), wk = fd_randn(16, nkv), wv = fd_randn(17, nkv);
        VD q(nq), k(nkv), v(nkv), qr(BT * d.NH), kr(BT * d.NKV), dqkv(BT * d.qkv_cols()), dgain(d.NH, 0.0);
        auto loss = [&] {
            attn_qkv_prep_forward_cpu(q.data(), k.data(), v.data(), qr.data(), kr.data(), qkv.data(), gain.data(), d);
            return dot(q, wq) + dot(k, wk) + dot(v, wv);
        };
        loss();
        attn_qkv_prep_backward_cpu(dqkv.data(), dgain.data(), wq.data(), wk.data(), wv.data(), qkv.data(), qr.data(),
                                   kr.data(), gain.data(), d);
        CHECK_FD("dqkv", qkv.data(), BT * d.qkv_cols(), dqkv.data(), loss, kFdTol);
        CHECK_FD("dq_gain", gain.data(), d.NH, dgain.data(), loss, kFdTol);
    }
    SUBCASE("core") {
        VD q = fd_randn(18, nq, 1.5), k = fd_randn(19, nkv, 1.5), v = fd_randn(20, nkv), w = fd_randn(21, nq);
        VD y(nq), lse(BT * d.NH), dq(nq), dk(nkv), dv(nkv);
        auto loss = [&] { attention_forward_cpu(y.data(), lse.data(), q.data(), k.data(), v.data(), d); return dot(y, w); };
        loss();
        attention_backward_cpu(dq.data(), dk.data(), dv.data(), w.data(), q.data(), k.data(), v.data(), y.data(),
                               lse.data(), d);
        CHECK_FD("dq", q.data(), nq, dq.data(), loss, kFdTol);
        CHECK_FD("dk", k.data(), nkv, dk.data(), loss, kFdTol);
        CHECK_FD("dv", v.data(), nkv, dv.data(), loss, kFdTol);
    }
}

TEST_CASE("layers: block wiring backward vs finite differences") {
    const int64_t N = 3;
    const int C = 5;
    VD x = fd_randn(22, N * C), x0 = fd_randn(23, N * C), mix = fd_randn(24, 2 * C, 1.0, 0.5), w = fd_randn(25, N * C);
    VD out(N * C), dx(N * C), dx0(N * C, 0.0), dmix(2 * C, 0.0);
    auto loss = [&] { resid_mix_forward_cpu(out.data(), x.data(), x0.data(), mix.data(), N, C); return dot(out, w); };
    resid_mix_backward_cpu(dx.data(), dx0.data(), dmix.data(), w.data(), x.data(), x0.data(), mix.data(), N, C);
    CHECK_FD("resid_mix dx", x.data(), N * C, dx.data(), loss, kFdTol);
    CHECK_FD("resid_mix dx0", x0.data(), N * C, dx0.data(), loss, kFdTol);
    CHECK_FD("resid_mix dmix", mix.data(), 2 * C, dmix.data(), loss, kFdTol);

    VD y = fd_randn(26, N * C), scale = fd_randn(27, C, 1.0, 1.0), dy(N * C), dscale(C, 0.0);
    auto loss2 = [&] { scale_add_forward_cpu(out.data(), x.data(), y.data(), scale.data(), N, C); return dot(out, w); };
    scale_add_backward_cpu(dy.data(), dscale.data(), w.data(), y.data(), scale.data(), N, C);
    CHECK_FD("scale_add dx", x.data(), N * C, w.data(), loss2, kFdTol);  // dx = dout
    CHECK_FD("scale_add dy", y.data(), N * C, dy.data(), loss2, kFdTol);
    CHECK_FD("scale_add dscale", scale.data(), C, dscale.data(), loss2, kFdTol);
}
