// Mamba-3 chunked scan kernels (model/mamba3_scan.cuh) against the CPU reference (model/mamba3.h,
// mamba3_scan_{forward,backward}_cpu<float>, sums in double) on the same inputs. The inputs that the
// kernels take in bf16 (q_raw, k_raw, v, z, dout) are drawn, rounded to bf16, and the CPU gets the
// rounded values, so the only differences are the kernels' own roundings: bf16 MMA operands
// (q, k~, v, S, the state copy used in the products), bf16 outputs (out, y, dv, dz), fp32 sums.
//
// Metrics, printed for every tensor (the report quotes them):
//   fro  = ||got - want|| / ||want||
//   p95  = 95th percentile over elements of |got - want| / rms(want)
//   phi is compared as an angle (difference wrapped to [-pi, pi]).
// Bounds (measured values in notes/scan.md):
//   fp32 outputs: phi, final angle and k < 1e-5; per-chunk and final SSM state < 1e-4 (the state update
//     takes k~ as hi + lo bf16 parts); fin.v exact.
//   bf16 outputs (out, y): fro < 5e-3. bf16 storage alone gives ~1.1e-3 and the bf16 MMA operands
//     (q, k~, S, the state copy in Q Hc^T) the rest; measured 2.3e-3, so the issue's 1e-3 is not met.
//   gradients: p95 < 1e-2 and fro < 3e-2 (measured <= 7e-3 / 3.5e-3), except
//   dtheta and dinit.angle: fro < 5e-2, p95 < 1e-1. They are reverse cumsums over the whole sequence
//     of d phi, whose exact sum cancels (q.k~ is rotation invariant); the intra-chunk pair terms
//     cancel in our sums too (d phi is taken with the bf16 operands), the cross-chunk ones (through
//     the bf16 copies of H and dH) leave bf16 noise that grows with T (measured 1.8e-2 / 4.1e-2 at
//     T 4096). Upstream's Triton kernels are ~20% off here (spec/mamba3.md).
#include "model/mamba3.h"
#include "model/mamba3_scan.cuh"
#include <doctest/doctest.h>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {
typedef __nv_bfloat16 bf16;

struct Err { double fro, p95; };
Err compare(const std::vector<float>& got, const std::vector<float>& want, bool angle = false) {
    double dd = 0, rr = 0;
    std::vector<double> diff(got.size());
    for (size_t i = 0; i < got.size(); i++) {
        double d = (double)got[i] - want[i];
        if (angle) d = remainder(d, 2 * M_PI);
        if (!std::isfinite((double)got[i])) d = INFINITY;
        diff[i] = fabs(d);
        dd += d * d;
        rr += (double)want[i] * want[i];
    }
    const double rms = sqrt(rr / std::max<size_t>(got.size(), 1));
    Err e;
    e.fro = rr > 0 ? sqrt(dd / rr) : sqrt(dd);
    if (!std::isfinite(dd)) e.fro = INFINITY;
    size_t k = (size_t)(0.95 * (diff.size() - 1));
    std::nth_element(diff.begin(), diff.begin() + k, diff.end());
    e.p95 = diff.empty() ? 0 : diff[k] / (rms > 0 ? rms : 1);
    return e;
}

std::vector<float> randn(size_t n, Rng& r, double sc = 1.0, double mean = 0.0) {
    std::vector<float> v(n);
    for (auto& x : v) x = (float)(mean + sc * r.normal());
    return v;
}
void round_bf16(std::vector<float>& v) { for (auto& x : v) x = __bfloat162float(__float2bfloat16(x)); }

template <typename T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t n_) : n(n_) { cudaCheck(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); poison(); }
    ~Dev() { cudaFree(p); }
    void poison() { cudaCheck(cudaMemset(p, 0xFF, std::max<size_t>(n, 1) * sizeof(T))); }  // NaN in fp32 and bf16
    void zero() { cudaCheck(cudaMemset(p, 0, std::max<size_t>(n, 1) * sizeof(T))); }
};
Dev<float>* up(const std::vector<float>& h) {
    auto* d = new Dev<float>(h.size());
    cudaCheck(cudaMemcpy(d->p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    return d;
}
Dev<bf16>* up_bf16(const std::vector<float>& h) {
    std::vector<bf16> b(h.size());
    for (size_t i = 0; i < h.size(); i++) b[i] = __float2bfloat16(h[i]);
    auto* d = new Dev<bf16>(h.size());
    cudaCheck(cudaMemcpy(d->p, b.data(), b.size() * 2, cudaMemcpyHostToDevice));
    return d;
}
std::vector<float> down(const Dev<float>& d) {
    std::vector<float> h(d.n);
    cudaCheck(cudaMemcpy(h.data(), d.p, d.n * 4, cudaMemcpyDeviceToHost));
    return h;
}
std::vector<float> down(const Dev<bf16>& d) {
    std::vector<bf16> b(d.n);
    cudaCheck(cudaMemcpy(b.data(), d.p, d.n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> h(d.n);
    for (size_t i = 0; i < d.n; i++) h[i] = __bfloat162float(b[i]);
    return h;
}

Mamba3Dims dims(int B, int T, int H, int G, int S = 16) {
    Mamba3Dims d{};
    d.B = B; d.T = T; d.H = H; d.P = 64; d.N = 64; d.G = G; d.S = S; d.L = 64;
    d.DI = H * d.P;
    return d;
}

// All inputs of one case, bf16-representable where the kernels take bf16.
struct Inputs {
    std::vector<float> q, k, v, z, adt, dt, trap, theta, qb, kb, D, dout;
    std::vector<float> a0, s0, k0, v0;       // initial states
    std::vector<float> da, dssm, dk, dv;     // final-state gradients
};
Inputs make_inputs(const Mamba3Dims& d, uint64_t seed) {
    Rng r(seed);
    const size_t BT = (size_t)d.B * d.T;
    Inputs in;
    in.q = randn(BT * d.G * d.N, r); in.k = randn(BT * d.G * d.N, r);
    in.v = randn(BT * d.H * d.P, r); in.z = randn(BT * d.H * d.P, r);
    in.dout = randn(BT * d.H * d.P, r);
    round_bf16(in.q); round_bf16(in.k); round_bf16(in.v); round_bf16(in.z); round_bf16(in.dout);
    const size_t BHT = (size_t)d.B * d.H * d.T;
    in.dt.resize(BHT); in.adt.resize(BHT);
    for (size_t i = 0; i < BHT; i++) {
        in.dt[i] = (float)exp(log(0.01) + r.uniform() * (log(0.5) - log(0.01)));
        in.adt[i] = (float)(-(0.3 + 2.7 * r.uniform()) * in.dt[i]);
    }
    in.trap = randn(BHT, r); in.theta = randn(BT * d.S, r);
    in.qb = randn((size_t)d.H * d.N, r, 0.3, 1.0); in.kb = randn((size_t)d.H * d.N, r, 0.3, 1.0);
    in.D = randn(d.H, r, 0.3, 1.0);
    in.a0 = randn((size_t)d.B * d.H * d.S, r, 2.0); in.s0 = randn((size_t)d.B * d.H * d.P * d.N, r, 0.5);
    in.k0 = randn((size_t)d.B * d.H * d.N, r); in.v0 = randn((size_t)d.B * d.H * d.P, r);
    in.da = randn((size_t)d.B * d.H * d.S, r); in.dssm = randn((size_t)d.B * d.H * d.P * d.N, r);
    in.dk = randn((size_t)d.B * d.H * d.N, r); in.dv = randn((size_t)d.B * d.H * d.P, r);
    return in;
}

struct Report {
    void out(const char* tag, const char* name, Err e, double fro_tol, double p95_tol) {
        const bool pass = e.fro <= fro_tol && e.p95 <= p95_tol;
        printf("  %-18s %-10s fro %.2e  p95 %.2e  %s\n", tag, name, e.fro, e.p95, pass ? "ok" : "FAIL");
        CHECK_MESSAGE(e.fro <= fro_tol, tag << " " << name << " fro " << e.fro);
        CHECK_MESSAGE(e.p95 <= p95_tol, tag << " " << name << " p95 " << e.p95);
    }
};

void run_case(int B, int T, int H, int G, bool with_init, uint64_t seed, int S = 16) {
    const Mamba3Dims d = dims(B, T, H, G, S);
    const Inputs in = make_inputs(d, seed);
    const int NC = d.nchunks();
    const size_t BT = (size_t)B * T, BH = (size_t)B * H;
    // ---- CPU reference
    std::vector<float> out(BT * H * 64), phi(BH * T * d.S), y(BT * H * 64), states(BH * NC * 64 * 64);
    std::vector<float> fa(BH * d.S), fs(BH * 64 * 64), fk(BH * 64), fv(BH * 64);
    Mamba3States<float> init_h{const_cast<float*>(in.a0.data()), const_cast<float*>(in.s0.data()),
                               const_cast<float*>(in.k0.data()), const_cast<float*>(in.v0.data())};
    Mamba3States<float> fin_h{fa.data(), fs.data(), fk.data(), fv.data()};
    mamba3_scan_forward_cpu<float>(out.data(), &fin_h, phi.data(), y.data(), states.data(), in.q.data(), in.k.data(),
                                   in.v.data(), in.adt.data(), in.dt.data(), in.trap.data(), in.theta.data(),
                                   in.qb.data(), in.kb.data(), in.D.data(), in.z.data(), with_init ? &init_h : nullptr, d);
    std::vector<float> dq(BT * G * 64), dk(BT * G * 64), dv(BT * H * 64), dadt(BH * T), ddt(BH * T), dtrap(BH * T),
        dth(BT * d.S), dqb(H * 64, 0.5f), dkb(H * 64, 0.5f), dD(H, 0.5f), dz(BT * H * 64);
    std::vector<float> ia(BH * d.S), is(BH * 64 * 64), ik(BH * 64), iv(BH * 64);
    Mamba3States<float> dinit_h{ia.data(), is.data(), ik.data(), iv.data()};
    Mamba3States<float> dfin_h{const_cast<float*>(in.da.data()), const_cast<float*>(in.dssm.data()),
                               const_cast<float*>(in.dk.data()), const_cast<float*>(in.dv.data())};
    mamba3_scan_backward_cpu<float>(dq.data(), dk.data(), dv.data(), dadt.data(), ddt.data(), dtrap.data(), dth.data(),
                                    dqb.data(), dkb.data(), dD.data(), dz.data(), with_init ? &dinit_h : nullptr,
                                    in.dout.data(), &dfin_h, phi.data(), y.data(), states.data(), in.q.data(),
                                    in.k.data(), in.v.data(), in.adt.data(), in.dt.data(), in.trap.data(),
                                    in.theta.data(), in.qb.data(), in.kb.data(), in.D.data(), in.z.data(),
                                    with_init ? &init_h : nullptr, d);
    // ---- GPU
    Dev<bf16> *gq = up_bf16(in.q), *gk = up_bf16(in.k), *gv = up_bf16(in.v), *gz = up_bf16(in.z), *gdo = up_bf16(in.dout);
    Dev<float> *gadt = up(in.adt), *gdt = up(in.dt), *gtr = up(in.trap), *gth = up(in.theta), *gqb = up(in.qb),
               *gkb = up(in.kb), *gD = up(in.D), *ga0 = up(in.a0), *gs0 = up(in.s0), *gk0 = up(in.k0), *gv0 = up(in.v0),
               *gda = up(in.da), *gds = up(in.dssm), *gdk = up(in.dk), *gdv = up(in.dv);
    Dev<bf16> o_out(BT * H * 64), o_y(BT * H * 64), o_dv(BT * H * 64), o_dz(BT * H * 64), o_st(BH * NC * 64 * 64);
    Dev<float> o_phi(BH * T * d.S), o_fa(BH * d.S), o_fs(BH * 64 * 64), o_fk(BH * 64),
        o_fv(BH * 64), o_dq(BT * G * 64), o_dk(BT * G * 64), o_dadt(BH * T), o_ddt(BH * T), o_dtrap(BH * T),
        o_dth(BT * d.S), o_ia(BH * d.S), o_is(BH * 64 * 64), o_ik(BH * 64), o_iv(BH * 64);
    std::vector<float> half(H * 64, 0.5f), halfD(H, 0.5f);
    Dev<float> *o_dqb = up(half), *o_dkb = up(half), *o_dD = up(halfD);  // accumulate onto 0.5, as the CPU did
    Dev<char> scratch(mamba3_scan_backward_scratch_bytes(d));
    scratch.poison();  // the backward must write every per-head entry the head sum reads
    Mamba3States<float> init_d{ga0->p, gs0->p, gk0->p, gv0->p}, fin_d{o_fa.p, o_fs.p, o_fk.p, o_fv.p};
    Mamba3States<float> dinit_d{o_ia.p, o_is.p, o_ik.p, o_iv.p}, dfin_d{gda->p, gds->p, gdk->p, gdv->p};
    mamba3_scan_forward(o_out.p, &fin_d, o_phi.p, o_y.p, o_st.p, gq->p, gk->p, gv->p, gadt->p, gdt->p, gtr->p, gth->p,
                        gqb->p, gkb->p, gD->p, gz->p, with_init ? &init_d : nullptr, d, 0);
    auto bwd = [&]() {
        mamba3_scan_backward(o_dq.p, o_dk.p, o_dv.p, o_dadt.p, o_ddt.p, o_dtrap.p, o_dth.p, o_dqb->p, o_dkb->p, o_dD->p,
                             o_dz.p, with_init ? &dinit_d : nullptr, gdo->p, &dfin_d, o_phi.p, o_y.p, o_st.p, gq->p,
                             gk->p, gv->p, gadt->p, gdt->p, gtr->p, gth->p, gqb->p, gkb->p, gD->p, gz->p,
                             with_init ? &init_d : nullptr, scratch.p, d, 0);
    };
    bwd();
    cudaCheck(cudaDeviceSynchronize());
    char tag[64];
    snprintf(tag, sizeof tag, "B%d T%d H%d G%d S%d%s", B, T, H, G, S, with_init ? " init" : "");
    printf("case %s\n", tag);
    Report rp;
    const double fo = 1e-5, fs4 = 1e-4, fb = 5e-3, gf = 3e-2, gp = 1e-2, af = 5e-2, ap = 1e-1, inf = 1e30;
    rp.out(tag, "out", compare(down(o_out), out), fb, inf);
    rp.out(tag, "y", compare(down(o_y), y), fb, inf);
    rp.out(tag, "phi", compare(down(o_phi), phi, true), fo, inf);
    // the saved states are the fp32 state rounded to bf16 (the backward's MMA operand): equal to the CPU
    // state rounded to bf16 except where the two fp32 states straddle a rounding boundary
    std::vector<float> states_bf = states;
    round_bf16(states_bf);
    rp.out(tag, "states", compare(down(o_st), states), fb, inf);
    rp.out(tag, "states=bf16", compare(down(o_st), states_bf), 1e-3, inf);
    rp.out(tag, "fin.angle", compare(down(o_fa), fa, true), fo, inf);
    rp.out(tag, "fin.ssm", compare(down(o_fs), fs), fs4, inf);
    rp.out(tag, "fin.k", compare(down(o_fk), fk), fo, inf);
    rp.out(tag, "fin.v", compare(down(o_fv), fv), 0, inf);
    rp.out(tag, "dq_raw", compare(down(o_dq), dq), gf, gp);
    rp.out(tag, "dk_raw", compare(down(o_dk), dk), gf, gp);
    rp.out(tag, "dv", compare(down(o_dv), dv), gf, gp);
    rp.out(tag, "dz", compare(down(o_dz), dz), gf, gp);
    rp.out(tag, "dadt", compare(down(o_dadt), dadt), gf, gp);
    rp.out(tag, "ddt", compare(down(o_ddt), ddt), gf, gp);
    rp.out(tag, "dtrap", compare(down(o_dtrap), dtrap), gf, gp);
    rp.out(tag, "dtheta", compare(down(o_dth), dth), af, ap);
    rp.out(tag, "dq_bias", compare(down(*o_dqb), dqb), gf, gp);
    rp.out(tag, "dk_bias", compare(down(*o_dkb), dkb), gf, gp);
    rp.out(tag, "dD", compare(down(*o_dD), dD), gf, gp);
    if (with_init) {
        rp.out(tag, "dinit.angle", compare(down(o_ia), ia), af, ap);
        rp.out(tag, "dinit.ssm", compare(down(o_is), is), gf, gp);
        rp.out(tag, "dinit.k", compare(down(o_ik), ik), gf, gp);
        rp.out(tag, "dinit.v", compare(down(o_iv), iv), gf, gp);
    }
    // determinism: a second backward gives the same bits
    {
        auto a = down(o_dq), b2 = down(o_dadt), c2 = down(o_dth);
        o_dq.poison(); o_dadt.poison(); o_dth.poison();
        bwd();
        cudaCheck(cudaDeviceSynchronize());
        auto a2 = down(o_dq), b3 = down(o_dadt), c3 = down(o_dth);
        const bool same = !memcmp(a.data(), a2.data(), a.size() * 4) && !memcmp(b2.data(), b3.data(), b2.size() * 4) &&
                          !memcmp(c2.data(), c3.data(), c2.size() * 4);
        printf("  %-18s backward rerun bit-identical: %s\n", tag, same ? "yes" : "NO");
        CHECK(same);
    }
    for (auto* p : {gq, gk, gv, gz, gdo}) delete p;
    for (auto* p : {gadt, gdt, gtr, gth, gqb, gkb, gD, ga0, gs0, gk0, gv0, gda, gds, gdk, gdv, o_dqb, o_dkb, o_dD}) delete p;
}
}  // namespace

TEST_CASE("gpu mamba3 scan: forward and backward vs CPU reference") {
    run_case(1, 1, 2, 1, false, 11);
    run_case(1, 1, 2, 1, true, 12);
    run_case(2, 63, 4, 1, true, 13);
    run_case(1, 64, 4, 2, false, 14);
    run_case(2, 65, 4, 2, true, 15);
    run_case(3, 200, 3, 1, true, 16);
    run_case(1, 4096, 2, 1, true, 17);
    run_case(2, 1024, 2, 2, false, 18);
    // the other angle-pair counts the kernels are built for (rope fraction 1.0 gives S 32 at d_state 64)
    run_case(2, 200, 2, 1, true, 19, 32);
    run_case(1, 130, 2, 1, true, 20, 8);
    // the seed's 16 heads: the head sums of dq, dk over groups of 8 and of 16, and of dtheta over 16
    run_case(2, 130, 16, 2, true, 21);
    run_case(1, 200, 16, 1, false, 22);
}

// State passing: running [0, T1) then [T1, T) with the final states of the first as the initial
// states of the second gives the whole-sequence result (up to bf16 rounding of the products).
TEST_CASE("gpu mamba3 scan: two halves == whole") {
    for (int T1 : {64, 100}) {
        const int B = 2, T = 300, H = 4, G = 1;
        const Mamba3Dims d = dims(B, T, H, G);
        Inputs in = make_inputs(d, 99 + T1);
        const size_t BH = (size_t)B * H;
        auto slice = [&](const std::vector<float>& x, int inner, int ta, int tb, bool head_major) {
            // (B, T, inner) or (B, H, T) -> the rows [ta, tb)
            std::vector<float> o;
            if (!head_major)
                for (int b = 0; b < B; b++) o.insert(o.end(), x.begin() + ((size_t)b * T + ta) * inner, x.begin() + ((size_t)b * T + tb) * inner);
            else
                for (size_t bh = 0; bh < BH; bh++) o.insert(o.end(), x.begin() + bh * T + ta, x.begin() + bh * T + tb);
            return o;
        };
        auto run = [&](int ta, int tb, const Mamba3States<float>* init, const Mamba3States<float>* fin, std::vector<float>* outv) {
            const Mamba3Dims dd = dims(B, tb - ta, H, G);
            Dev<bf16> *gq = up_bf16(slice(in.q, G * 64, ta, tb, false)), *gk = up_bf16(slice(in.k, G * 64, ta, tb, false)),
                      *gv = up_bf16(slice(in.v, H * 64, ta, tb, false)), *gz = up_bf16(slice(in.z, H * 64, ta, tb, false));
            Dev<float> *gadt = up(slice(in.adt, 1, ta, tb, true)), *gdt = up(slice(in.dt, 1, ta, tb, true)),
                       *gtr = up(slice(in.trap, 1, ta, tb, true)), *gth = up(slice(in.theta, d.S, ta, tb, false)),
                       *gqb = up(in.qb), *gkb = up(in.kb), *gD = up(in.D);
            const size_t n = (size_t)B * (tb - ta) * H * 64;
            Dev<bf16> o(n), y(n);
            Dev<float> phi(BH * (tb - ta) * d.S);
            Dev<bf16> st(BH * dd.nchunks() * 64 * 64);
            mamba3_scan_forward(o.p, fin, phi.p, y.p, st.p, gq->p, gk->p, gv->p, gadt->p, gdt->p, gtr->p, gth->p, gqb->p,
                                gkb->p, gD->p, gz->p, init, dd, 0);
            cudaCheck(cudaDeviceSynchronize());
            *outv = down(o);
            for (auto* p : {gq, gk, gv, gz}) delete p;
            for (auto* p : {gadt, gdt, gtr, gth, gqb, gkb, gD}) delete p;
        };
        Dev<float> fa(BH * d.S), fs(BH * 4096), fk(BH * 64), fv(BH * 64), ha(BH * d.S), hs(BH * 4096), hk(BH * 64), hv(BH * 64),
            ga(BH * d.S), gs(BH * 4096), gk(BH * 64), gv(BH * 64);
        Mamba3States<float> fin_whole{fa.p, fs.p, fk.p, fv.p}, mid{ha.p, hs.p, hk.p, hv.p}, fin2{ga.p, gs.p, gk.p, gv.p};
        std::vector<float> whole, first, second;
        run(0, T, nullptr, &fin_whole, &whole);
        run(0, T1, nullptr, &mid, &first);
        run(T1, T, &mid, &fin2, &second);
        std::vector<float> w1, w2;
        for (int b = 0; b < B; b++) {
            w1.insert(w1.end(), whole.begin() + (size_t)b * T * H * 64, whole.begin() + ((size_t)b * T + T1) * H * 64);
            w2.insert(w2.end(), whole.begin() + ((size_t)b * T + T1) * H * 64, whole.begin() + ((size_t)b * T + T) * H * 64);
        }
        const Err e1 = compare(first, w1), e2 = compare(second, w2), ea = compare(down(ga), down(fa), true),
                  es = compare(down(gs), down(fs)), ek = compare(down(gk), down(fk)), ev = compare(down(gv), down(fv));
        printf("halves split at %d: out[0,T1) fro %.2e, out[T1,T) fro %.2e, final angle %.2e ssm %.2e k %.2e v %.2e\n",
               T1, e1.fro, e2.fro, ea.fro, es.fro, ek.fro, ev.fro);
        CHECK(e1.fro < 1e-2);
        CHECK(e2.fro < 1e-2);
        CHECK(ea.fro < 1e-4);
        CHECK(es.fro < 1e-4);
        CHECK(ek.fro < 1e-4);
        CHECK(ev.fro == 0);
    }
}
