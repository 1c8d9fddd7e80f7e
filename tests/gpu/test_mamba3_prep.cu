// Mamba-3 prep kernels against mamba3_prep_forward_cpu / mamba3_prep_backward_cpu (float64 on
// the same bf16-rounded in_proj output). Bounds, max-abs error over max |ref|: bf16 outputs
// (z, x, q_raw, k_raw, dzxbcdt) < 1e-2; fp32 outputs (adt, dt, trap, theta, rstd, parameter
// gradients) < 1e-5. Both A activations, odd T, fresh random inputs, NaN-poisoned outputs.
#include "model/config.h"
#include "model/mamba3.cuh"
#include "tests/gpu/gpu_util.h"

using gt::to_d;
using gt::to_float;

TEST_CASE("gpu mamba3 prep: forward / backward vs the CPU reference") {
    struct S { int B, T; const char* act; };
    for (S s : {S{2, 37, "softplus"}, S{1, 130, "heavytail"}}) {
        Config c;
        c.a_act = s.act;
        Mamba3Dims d = mamba3_dims(c, s.B, s.T);
        CAPTURE(s.B); CAPTURE(s.T); CAPTURE(s.act);
        const int64_t rows = (int64_t)s.B * s.T, nhp = rows * d.H * d.P, ngn = rows * d.G * d.N;
        const int64_t nbht = (int64_t)s.B * d.H * s.T, ns = rows * d.S, nr = rows * d.R;
        auto zx = gt::randn(nr, 70, 1.5);
        gt::round_bf16(zx);
        auto dtb = gt::randu(d.H, 71, -5.0, -2.0), bw = gt::randu(d.N, 72, 0.5, 1.5), cw = gt::randu(d.N, 73, 0.5, 1.5);
        auto dz = gt::randn(nhp, 74), dx = gt::randn(nhp, 75), dq = gt::randn(ngn, 76), dk = gt::randn(ngn, 77);
        gt::round_bf16(dz); gt::round_bf16(dx);
        auto dadt = gt::randn(nbht, 78), ddt = gt::randn(nbht, 79), dtrap = gt::randn(nbht, 80), dth = gt::randn(ns, 81);
        auto g_dtb0 = gt::randn(d.H, 82), g_bw0 = gt::randn(d.N, 83), g_cw0 = gt::randn(d.N, 84);

        std::vector<double> z(nhp), x(nhp), q(ngn), k(ngn), adt(nbht), dt(nbht), trap(nbht), th(ns), rq(rows * d.G),
            rk(rows * d.G), dzx(nr), g_dtb = to_d(g_dtb0), g_bw = to_d(g_bw0), g_cw = to_d(g_cw0);
        Mamba3Dims dd = d;
        mamba3_prep_forward_cpu<double>(z.data(), x.data(), q.data(), k.data(), adt.data(), dt.data(), trap.data(),
                                        th.data(), rq.data(), rk.data(), to_d(zx).data(), to_d(dtb).data(),
                                        to_d(bw).data(), to_d(cw).data(), dd);
        mamba3_prep_backward_cpu<double>(dzx.data(), g_dtb.data(), g_bw.data(), g_cw.data(), to_d(dz).data(),
                                         to_d(dx).data(), to_d(dq).data(), to_d(dk).data(), to_d(dadt).data(),
                                         to_d(ddt).data(), to_d(dtrap).data(), to_d(dth).data(), to_d(zx).data(),
                                         rq.data(), rk.data(), to_d(dtb).data(), to_d(bw).data(), to_d(cw).data(), dd);

        auto* gzx = gt::to_dev_bf16(zx);
        float *gdtb = gt::to_dev(dtb), *gbw = gt::to_dev(bw), *gcw = gt::to_dev(cw);
        auto *gz = gt::dev_alloc<__nv_bfloat16>(nhp), *gx = gt::dev_alloc<__nv_bfloat16>(nhp);
        auto *gq = gt::dev_alloc<__nv_bfloat16>(ngn), *gk = gt::dev_alloc<__nv_bfloat16>(ngn);
        float *gadt = gt::dev_alloc<float>(nbht), *gdt = gt::dev_alloc<float>(nbht), *gtrap = gt::dev_alloc<float>(nbht);
        float *gth = gt::dev_alloc<float>(ns), *grq = gt::dev_alloc<float>(rows * d.G), *grk = gt::dev_alloc<float>(rows * d.G);
        mamba3_prep_forward(gz, gx, gq, gk, gadt, gdt, gtrap, gth, grq, grk, gzx, gdtb, gbw, gcw, d, 0);
        CHECK_REL("z", gt::to_host(gz, nhp), to_float(z), 1e-2);
        CHECK_REL("x", gt::to_host(gx, nhp), to_float(x), 1e-2);
        CHECK_REL("q_raw", gt::to_host(gq, ngn), to_float(q), 1e-2);
        CHECK_REL("k_raw", gt::to_host(gk, ngn), to_float(k), 1e-2);
        CHECK_REL("adt", gt::to_host(gadt, nbht), to_float(adt), 1e-5);
        CHECK_REL("dt", gt::to_host(gdt, nbht), to_float(dt), 1e-5);
        CHECK_REL("trap", gt::to_host(gtrap, nbht), to_float(trap), 1e-5);
        CHECK_REL("theta", gt::to_host(gth, ns), to_float(th), 1e-5);
        CHECK_REL("rstd_q", gt::to_host(grq, rows * d.G), to_float(rq), 1e-5);
        CHECK_REL("rstd_k", gt::to_host(grk, rows * d.G), to_float(rk), 1e-5);

        auto *gdz = gt::to_dev_bf16(dz), *gdx = gt::to_dev_bf16(dx);
        float *gdq = gt::to_dev(dq), *gdk = gt::to_dev(dk), *gdadt = gt::to_dev(dadt), *gddt = gt::to_dev(ddt);
        float *gdtrap = gt::to_dev(dtrap), *gdth = gt::to_dev(dth);
        float *g_gdtb = gt::to_dev(g_dtb0), *g_gbw = gt::to_dev(g_bw0), *g_gcw = gt::to_dev(g_cw0);
        auto* gdzx = gt::dev_alloc<__nv_bfloat16>(nr);
        mamba3_prep_backward(gdzx, g_gdtb, g_gbw, g_gcw, gdz, gdx, gdq, gdk, gdadt, gddt, gdtrap, gdth, gzx, grq, grk,
                             gdtb, gbw, gcw, d, 0);
        CHECK_REL("dzxbcdt", gt::to_host(gdzx, nr), to_float(dzx), 1e-2);
        CHECK_REL("ddt_bias (accumulated)", gt::to_host(g_gdtb, d.H), to_float(g_dtb), 1e-5);
        CHECK_REL("dB_norm_w (accumulated)", gt::to_host(g_gbw, d.N), to_float(g_bw), 1e-5);
        CHECK_REL("dC_norm_w (accumulated)", gt::to_host(g_gcw, d.N), to_float(g_cw), 1e-5);
        for (void* p : {(void*)gzx, (void*)gdtb, (void*)gbw, (void*)gcw, (void*)gz, (void*)gx, (void*)gq, (void*)gk,
                        (void*)gadt, (void*)gdt, (void*)gtrap, (void*)gth, (void*)grq, (void*)grk, (void*)gdz,
                        (void*)gdx, (void*)gdq, (void*)gdk, (void*)gdadt, (void*)gddt, (void*)gdtrap, (void*)gdth,
                        (void*)g_gdtb, (void*)g_gbw, (void*)g_gcw, (void*)gdzx})
            cudaCheck(cudaFree(p));
    }
}
