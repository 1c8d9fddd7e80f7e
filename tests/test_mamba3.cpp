// Mamba-3 SISO layer (CPU): recurrent == chunked (T not a multiple of L, T < L, T = 1), state
// passing (two halves == whole), every gradient of the scan, the prep and the whole layer against
// float64 central finite differences, extreme inputs, dt_bias init, and the layer against the
// PyTorch reference (tools/ref/ref_mamba3.py fixtures).
#include "model/mamba3.h"   // defines: Mamba3Dims, mamba3_{prep,scan,}_{forward,backward}_cpu, ...
#include "model/params.h"   // defines: param_specs, param_init, param_bind
#include "model/common.h"   // defines: Rng
#include "tests/fixture.h"
#include <functional>
#include <string>
#include <vector>

// A small config with GQA (H=4 heads over G=2 groups), S=2 angle pairs of N=8, chunk 4.
static Config small_config(int chunk = 4) {
    Config c;
    c.vocab_size = 64; c.model_dim = 16; c.num_layers = 3; c.num_attn_layers = 1;
    c.num_heads = 2; c.num_kv_heads = 1;
    c.d_state = 8; c.expand = 2; c.ssm_headdim = 8; c.ssm_ngroups = 2; c.chunk_size = chunk;
    c.validate();
    return c;
}

template <typename F>
static std::vector<F> randn(Rng& r, int64_t n, double s = 1.0, double mean = 0.0) {
    std::vector<F> v(n);
    for (auto& e : v) e = (F)(mean + s * r.normal());
    return v;
}

// Every input of the scan, in the layouts of model/mamba3.h.
template <typename F>
struct ScanInputs {
    Mamba3Dims d;
    std::vector<F> q, k, v, adt, dt, trap, theta, qb, kb, D, z;
    std::vector<F> a0, s0, k0, v0;  // initial states
    ScanInputs(const Mamba3Dims& dd, uint64_t seed, double theta_scale = 1.0) : d(dd) {
        Rng r(seed);
        const int64_t BT = (int64_t)d.B * d.T, BHT = (int64_t)d.B * d.H * d.T;
        q = randn<F>(r, BT * d.G * d.N); k = randn<F>(r, BT * d.G * d.N);
        v = randn<F>(r, BT * d.H * d.P); z = randn<F>(r, BT * d.H * d.P);
        dt.resize(BHT); adt.resize(BHT);
        for (int64_t i = 0; i < BHT; i++) {
            dt[i] = (F)exp(log(0.05) + r.uniform() * (log(0.5) - log(0.05)));
            adt[i] = (F)(-(0.5 + 2.5 * r.uniform()) * dt[i]);
        }
        trap = randn<F>(r, BHT); theta = randn<F>(r, BT * d.S, theta_scale);
        qb = randn<F>(r, (int64_t)d.H * d.N, 0.5, 1.0); kb = randn<F>(r, (int64_t)d.H * d.N, 0.5, 1.0);
        D = randn<F>(r, d.H, 0.3, 1.0);
        a0 = randn<F>(r, (int64_t)d.B * d.H * d.S, 2.0); s0 = randn<F>(r, (int64_t)d.B * d.H * d.P * d.N, 0.5);
        k0 = randn<F>(r, (int64_t)d.B * d.H * d.N); v0 = randn<F>(r, (int64_t)d.B * d.H * d.P);
    }
    Mamba3States<F> init() { return {a0.data(), s0.data(), k0.data(), v0.data()}; }
};

template <typename F>
struct StateBufs {
    std::vector<F> a, s, k, v;
    explicit StateBufs(const Mamba3Dims& d)
        : a((size_t)d.B * d.H * d.S), s((size_t)d.B * d.H * d.P * d.N), k((size_t)d.B * d.H * d.N), v((size_t)d.B * d.H * d.P) {}
    Mamba3States<F> st() { return {a.data(), s.data(), k.data(), v.data()}; }
};

static double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}
static double max_abs(const std::vector<double>& a) {
    double m = 0;
    for (double x : a) m = fmax(m, fabs(x));
    return m;
}

// Chunked forward of `in` (optionally with initial states), outputs and final states.
template <typename F>
static void run_chunked(ScanInputs<F>& in, bool with_init, std::vector<F>& out, StateBufs<F>& fin) {
    const Mamba3Dims& d = in.d;
    out.assign((size_t)d.B * d.T * d.H * d.P, 0);
    std::vector<F> phi((size_t)d.B * d.H * d.T * d.S), y(out.size()), st((size_t)d.B * d.H * d.nchunks() * d.P * d.N);
    Mamba3States<F> ini = in.init(), fs = fin.st();
    mamba3_scan_forward_cpu(out.data(), &fs, phi.data(), y.data(), st.data(), in.q.data(), in.k.data(), in.v.data(),
                            in.adt.data(), in.dt.data(), in.trap.data(), in.theta.data(), in.qb.data(), in.kb.data(),
                            in.D.data(), in.z.data(), with_init ? &ini : nullptr, d);
}

TEST_CASE("mamba3: recurrent == chunked (T % L != 0, T < L, T = 1, T = L), with and without initial states") {
    Config c = small_config(4);
    for (int T : {11, 3, 1, 4, 8}) {
        for (int with_init = 0; with_init < 2; with_init++) {
            Mamba3Dims d = mamba3_dims(c, 2, T);
            ScanInputs<double> in(d, 100 + T);
            std::vector<double> oc, orc((size_t)d.B * d.T * d.H * d.P);
            StateBufs<double> fc(d), fr(d);
            run_chunked(in, with_init, oc, fc);
            Mamba3States<double> ini = in.init(), fs = fr.st();
            mamba3_scan_recurrent_cpu(orc.data(), &fs, in.q.data(), in.k.data(), in.v.data(), in.adt.data(),
                                      in.dt.data(), in.trap.data(), in.theta.data(), in.qb.data(), in.kb.data(),
                                      in.D.data(), in.z.data(), with_init ? &ini : nullptr, d);
            INFO("T=" << T << " init=" << with_init);
            CHECK(max_abs_diff(oc, orc) <= 1e-12 * fmax(1.0, max_abs(orc)));
            // angles are compared on the circle: both are reduced mod 2pi, at different places
            double da = 0;
            for (size_t i = 0; i < fc.a.size(); i++) da = fmax(da, fabs(sin((fc.a[i] - fr.a[i]) / 2)));
            CHECK(da <= 1e-12);
            CHECK(max_abs_diff(fc.s, fr.s) <= 1e-12 * fmax(1.0, max_abs(fr.s)));
            CHECK(max_abs_diff(fc.k, fr.k) <= 1e-12 * fmax(1.0, max_abs(fr.k)));
            CHECK(max_abs_diff(fc.v, fr.v) == 0.0);
        }
    }
}

// Copy time steps [t0, t0+n) of a (B, T, X) or (B, H, T) tensor.
template <typename F>
static std::vector<F> slice_bt(const std::vector<F>& a, int B, int T, int64_t X, int t0, int n) {
    std::vector<F> r((size_t)B * n * X);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < n; t++)
            for (int64_t x = 0; x < X; x++) r[((size_t)b * n + t) * X + x] = a[((size_t)b * T + t0 + t) * X + x];
    return r;
}
template <typename F>
static std::vector<F> slice_bht(const std::vector<F>& a, int BH, int T, int t0, int n) {
    std::vector<F> r((size_t)BH * n);
    for (int i = 0; i < BH; i++)
        for (int t = 0; t < n; t++) r[(size_t)i * n + t] = a[(size_t)i * T + t0 + t];
    return r;
}

TEST_CASE("mamba3: state passing, two halves (split inside a chunk) == the whole sequence") {
    Config c = small_config(4);
    const int T = 13;
    for (int split : {6, 8, 1}) {
        Mamba3Dims d = mamba3_dims(c, 2, T);
        ScanInputs<double> in(d, 7);
        std::vector<double> ow;
        StateBufs<double> fw(d);
        run_chunked(in, true, ow, fw);
        std::vector<double> got;
        StateBufs<double> fh(d);
        int t0 = 0;
        for (int half = 0; half < 2; half++) {
            const int n = half ? T - split : split;
            ScanInputs<double> part(mamba3_dims(c, 2, n), 7);
            const Mamba3Dims& dp = part.d;
            const int BH = dp.B * dp.H;
            part.q = slice_bt(in.q, d.B, T, (int64_t)d.G * d.N, t0, n);
            part.k = slice_bt(in.k, d.B, T, (int64_t)d.G * d.N, t0, n);
            part.v = slice_bt(in.v, d.B, T, (int64_t)d.H * d.P, t0, n);
            part.z = slice_bt(in.z, d.B, T, (int64_t)d.H * d.P, t0, n);
            part.theta = slice_bt(in.theta, d.B, T, d.S, t0, n);
            part.adt = slice_bht(in.adt, BH, T, t0, n);
            part.dt = slice_bht(in.dt, BH, T, t0, n);
            part.trap = slice_bht(in.trap, BH, T, t0, n);
            part.qb = in.qb; part.kb = in.kb; part.D = in.D;
            if (half == 0) { part.a0 = in.a0; part.s0 = in.s0; part.k0 = in.k0; part.v0 = in.v0; }
            else { part.a0 = fh.a; part.s0 = fh.s; part.k0 = fh.k; part.v0 = fh.v; }
            std::vector<double> o;
            StateBufs<double> f2(dp);
            run_chunked(part, true, o, f2);
            fh = f2;
            // stitch (B, n, H, P) into (B, T, H, P)
            if (got.empty()) got.assign(ow.size(), 0.0);
            for (int b = 0; b < d.B; b++)
                for (int t = 0; t < n; t++)
                    for (int x = 0; x < d.H * d.P; x++)
                        got[((size_t)b * T + t0 + t) * d.H * d.P + x] = o[((size_t)b * n + t) * d.H * d.P + x];
            t0 += n;
        }
        INFO("split at " << split);
        CHECK(max_abs_diff(got, ow) <= 1e-12 * max_abs(ow));
        CHECK(max_abs_diff(fh.s, fw.s) <= 1e-12 * max_abs(fw.s));
        CHECK(max_abs_diff(fh.k, fw.k) <= 1e-12 * max_abs(fw.k));
        double da = 0;
        for (size_t i = 0; i < fw.a.size(); i++) da = fmax(da, fabs(sin((fh.a[i] - fw.a[i]) / 2)));
        CHECK(da <= 1e-12);
    }
}

// ---- finite differences ----------------------------------------------------------------------
static const double kFdTol = 1e-6;
static double g_fd_worst = 0;  // worst relative error seen, printed once per test case
// Relative error of the analytic gradient against central differences of `loss` on entries of
// `x` (all of them, or `max_entries` spread over the tensor): max|ana - num| / max|num|.
static double fd_check(const char* name, std::vector<double>& x, const std::vector<double>& ana,
                       const std::function<double()>& loss, int max_entries = 1 << 30, double eps = 1e-6) {
    const int64_t n = (int64_t)x.size();
    const int64_t step = n > max_entries ? (n + max_entries - 1) / max_entries : 1;
    double err = 0, mag = 0;
    for (int64_t i = 0; i < n; i += step) {
        const double x0 = x[i];
        x[i] = x0 + eps; const double lp = loss();
        x[i] = x0 - eps; const double lm = loss();
        x[i] = x0;
        const double num = (lp - lm) / (2 * eps);
        err = fmax(err, fabs(num - ana[i]));
        mag = fmax(mag, fabs(num));
    }
    const double rel = err / fmax(mag, 1e-300);
    CHECK_MESSAGE(rel < kFdTol, std::string(name) << ": FD rel err " << rel << " (max |grad| " << mag << ", tol " << kFdTol << ")");
    g_fd_worst = fmax(g_fd_worst, rel);
    return rel;
}

// loss = sum(out * wo) + sum(fin_state * wf): every output of the scan gets a gradient.
struct ScanFd {
    ScanInputs<double> in;
    bool with_init;
    std::vector<double> wo, wa, ws, wk, wv;
    ScanFd(const Mamba3Dims& d, uint64_t seed, bool init, double theta_scale = 1.0) : in(d, seed, theta_scale), with_init(init) {
        Rng r(seed + 999);
        wo = randn<double>(r, (int64_t)d.B * d.T * d.H * d.P);
        wa = randn<double>(r, (int64_t)d.B * d.H * d.S); ws = randn<double>(r, (int64_t)d.B * d.H * d.P * d.N);
        wk = randn<double>(r, (int64_t)d.B * d.H * d.N); wv = randn<double>(r, (int64_t)d.B * d.H * d.P);
    }
    double loss() {
        std::vector<double> out;
        StateBufs<double> f(in.d);
        run_chunked(in, with_init, out, f);
        double l = 0;
        for (size_t i = 0; i < out.size(); i++) l += out[i] * wo[i];
        for (size_t i = 0; i < f.a.size(); i++) l += f.a[i] * wa[i];
        for (size_t i = 0; i < f.s.size(); i++) l += f.s[i] * ws[i];
        for (size_t i = 0; i < f.k.size(); i++) l += f.k[i] * wk[i];
        for (size_t i = 0; i < f.v.size(); i++) l += f.v[i] * wv[i];
        return l;
    }
};

static void scan_fd_case(int T, int L, bool with_init, uint64_t seed, double theta_scale = 1.0) {
    Config c = small_config(L);
    Mamba3Dims d = mamba3_dims(c, 2, T);
    ScanFd fd(d, seed, with_init, theta_scale);
    ScanInputs<double>& in = fd.in;
    // forward with saved tensors, then the backward
    std::vector<double> out((size_t)d.B * d.T * d.H * d.P), phi((size_t)d.B * d.H * d.T * d.S), y(out.size()),
        st((size_t)d.B * d.H * d.nchunks() * d.P * d.N);
    StateBufs<double> fin(d), dini(d);
    Mamba3States<double> ini = in.init(), fs = fin.st(), di = dini.st();
    Mamba3States<double> dfs = {fd.wa.data(), fd.ws.data(), fd.wk.data(), fd.wv.data()};
    mamba3_scan_forward_cpu(out.data(), &fs, phi.data(), y.data(), st.data(), in.q.data(), in.k.data(), in.v.data(),
                            in.adt.data(), in.dt.data(), in.trap.data(), in.theta.data(), in.qb.data(), in.kb.data(),
                            in.D.data(), in.z.data(), with_init ? &ini : nullptr, d);
    std::vector<double> dq(in.q.size()), dk(in.k.size()), dv(in.v.size()), dadt(in.adt.size()), ddt(in.dt.size()),
        dtrap(in.trap.size()), dth(in.theta.size()), dqb(in.qb.size(), 0.0), dkb(in.kb.size(), 0.0), dD(in.D.size(), 0.0),
        dz(in.z.size());
    mamba3_scan_backward_cpu(dq.data(), dk.data(), dv.data(), dadt.data(), ddt.data(), dtrap.data(), dth.data(),
                             dqb.data(), dkb.data(), dD.data(), dz.data(), with_init ? &di : nullptr, fd.wo.data(), &dfs,
                             phi.data(), y.data(), st.data(), in.q.data(), in.k.data(), in.v.data(), in.adt.data(),
                             in.dt.data(), in.trap.data(), in.theta.data(), in.qb.data(), in.kb.data(), in.D.data(),
                             in.z.data(), with_init ? &ini : nullptr, d);
    auto L_ = [&]() { return fd.loss(); };
    INFO("T=" << T << " L=" << L << " init=" << with_init);
    fd_check("q_raw", in.q, dq, L_);
    fd_check("k_raw", in.k, dk, L_);
    fd_check("v", in.v, dv, L_);
    fd_check("adt", in.adt, dadt, L_);
    fd_check("dt", in.dt, ddt, L_);
    fd_check("trap", in.trap, dtrap, L_);
    fd_check("theta", in.theta, dth, L_);
    fd_check("q_bias", in.qb, dqb, L_);
    fd_check("k_bias", in.kb, dkb, L_);
    fd_check("D", in.D, dD, L_);
    fd_check("z", in.z, dz, L_);
    if (with_init) {
        fd_check("init angle", in.a0, dini.a, L_);
        fd_check("init ssm", in.s0, dini.s, L_);
        fd_check("init k", in.k0, dini.k, L_);
        fd_check("init v", in.v0, dini.v, L_);
    }
}

TEST_CASE("mamba3: scan backward == float64 finite differences (every input and initial state)") {
    g_fd_worst = 0;
    scan_fd_case(11, 4, true, 1);   // partial last chunk
    scan_fd_case(8, 4, false, 2);   // whole chunks, no states
    scan_fd_case(3, 4, true, 3);    // T < L
    scan_fd_case(1, 4, true, 4);    // T = 1
    scan_fd_case(7, 4, true, 5, 6.0);  // large theta: tanh saturated, angles wrap many times
    MESSAGE("scan FD: worst relative error " << g_fd_worst << " (tol " << kFdTol << ")");
}

// ---- the whole layer ------------------------------------------------------------------------
template <typename F>
struct LayerParams {
    std::vector<F> in_proj, out_proj, dt_bias, B_bias, C_bias, B_norm_w, C_norm_w, D;
    Mamba3Weights<F> w() const {
        return {in_proj.data(), out_proj.data(), dt_bias.data(), B_bias.data(), C_bias.data(), B_norm_w.data(),
                C_norm_w.data(), D.data()};
    }
    Mamba3Grads<F> g() {
        return {in_proj.data(), out_proj.data(), dt_bias.data(), B_bias.data(), C_bias.data(), B_norm_w.data(),
                C_norm_w.data(), D.data()};
    }
    void resize_like(const LayerParams& o) {
        in_proj.assign(o.in_proj.size(), 0); out_proj.assign(o.out_proj.size(), 0); dt_bias.assign(o.dt_bias.size(), 0);
        B_bias.assign(o.B_bias.size(), 0); C_bias.assign(o.C_bias.size(), 0); B_norm_w.assign(o.B_norm_w.size(), 0);
        C_norm_w.assign(o.C_norm_w.size(), 0); D.assign(o.D.size(), 0);
    }
};

// Random (not init-like) parameters so every path carries a gradient.
template <typename F>
static LayerParams<F> random_params(const Mamba3Dims& d, Rng& r) {
    LayerParams<F> p;
    p.in_proj = randn<F>(r, (int64_t)d.R * d.C, 1.0 / sqrt((double)d.C));
    p.out_proj = randn<F>(r, (int64_t)d.C * d.DI, 1.0 / sqrt((double)d.DI));
    p.dt_bias = randn<F>(r, d.H, 0.5, -2.0);
    p.B_bias = randn<F>(r, (int64_t)d.H * d.N, 0.3, 1.0); p.C_bias = randn<F>(r, (int64_t)d.H * d.N, 0.3, 1.0);
    p.B_norm_w = randn<F>(r, d.N, 0.3, 1.0); p.C_norm_w = randn<F>(r, d.N, 0.3, 1.0);
    p.D = randn<F>(r, d.H, 0.3, 1.0);
    return p;
}

struct LayerFd {
    Mamba3Dims d;
    LayerParams<double> p;
    std::vector<double> inp, wo;
    ScanInputs<double> st;  // only its initial states and the final-state loss weights are used
    ScanFd wts;
    LayerFd(const Mamba3Dims& dd, uint64_t seed) : d(dd), st(dd, seed + 1), wts(dd, seed + 2, true) {
        Rng r(seed);
        p = random_params<double>(d, r);
        inp = randn<double>(r, (int64_t)d.B * d.T * d.C);
        wo = randn<double>(r, (int64_t)d.B * d.T * d.C);
    }
    double loss() {
        std::vector<double> acts(mamba3_acts_size(d)), out((size_t)d.B * d.T * d.C);
        Mamba3Acts<double> a;
        mamba3_acts_bind(&a, acts.data(), d);
        StateBufs<double> f(d);
        Mamba3States<double> ini = st.init(), fs = f.st();
        mamba3_forward_cpu(out.data(), &fs, a, inp.data(), p.w(), &ini, d);
        double l = 0;
        for (size_t i = 0; i < out.size(); i++) l += out[i] * wo[i];
        for (size_t i = 0; i < f.a.size(); i++) l += f.a[i] * wts.wa[i];
        for (size_t i = 0; i < f.s.size(); i++) l += f.s[i] * wts.ws[i];
        for (size_t i = 0; i < f.k.size(); i++) l += f.k[i] * wts.wk[i];
        for (size_t i = 0; i < f.v.size(); i++) l += f.v[i] * wts.wv[i];
        return l;
    }
};

static void layer_fd_case(Config c, int T, uint64_t seed) {
    Mamba3Dims d = mamba3_dims(c, 2, T);
    LayerFd fd(d, seed);
    std::vector<double> acts(mamba3_acts_size(d)), out((size_t)d.B * d.T * d.C), dinp(fd.inp.size()),
        scratch(mamba3_grad_scratch_size(d));
    Mamba3Acts<double> a;
    mamba3_acts_bind(&a, acts.data(), d);
    StateBufs<double> f(d), dini(d);
    Mamba3States<double> ini = fd.st.init(), fs = f.st(), di = dini.st();
    Mamba3States<double> dfs = {fd.wts.wa.data(), fd.wts.ws.data(), fd.wts.wk.data(), fd.wts.wv.data()};
    mamba3_forward_cpu(out.data(), &fs, a, fd.inp.data(), fd.p.w(), &ini, d);
    LayerParams<double> g;
    g.resize_like(fd.p);
    mamba3_backward_cpu(dinp.data(), g.g(), &di, fd.wo.data(), &dfs, a, fd.inp.data(), fd.p.w(), &ini, scratch.data(), d);
    auto L_ = [&]() { return fd.loss(); };
    INFO("layer T=" << T << " act=" << c.a_act);
    fd_check("inp", fd.inp, dinp, L_, 200);
    fd_check("in_proj", fd.p.in_proj, g.in_proj, L_, 300);
    fd_check("out_proj", fd.p.out_proj, g.out_proj, L_, 100);
    fd_check("dt_bias", fd.p.dt_bias, g.dt_bias, L_);
    fd_check("B_bias", fd.p.B_bias, g.B_bias, L_);
    fd_check("C_bias", fd.p.C_bias, g.C_bias, L_);
    fd_check("B_norm_w", fd.p.B_norm_w, g.B_norm_w, L_);
    fd_check("C_norm_w", fd.p.C_norm_w, g.C_norm_w, L_);
    fd_check("D", fd.p.D, g.D, L_);
    fd_check("init angle", fd.st.a0, dini.a, L_);
    fd_check("init ssm", fd.st.s0, dini.s, L_, 100);
    fd_check("init k", fd.st.k0, dini.k, L_);
    fd_check("init v", fd.st.v0, dini.v, L_);
}

TEST_CASE("mamba3: layer backward == float64 finite differences (in_proj .. out_proj, both A activations)") {
    g_fd_worst = 0;
    Config c = small_config(4);
    layer_fd_case(c, 6, 11);
    c.a_act = "heavytail";
    layer_fd_case(c, 5, 12);
    MESSAGE("layer FD: worst relative error " << g_fd_worst << " (tol " << kFdTol << ")");
}

TEST_CASE("mamba3: dt_bias init is inverse softplus of log-uniform [dt_min, dt_max]; biases and D are ones") {
    Config c = small_config(4);
    std::vector<float> arena(param_arena_size(c));
    param_init(c, arena.data(), 5);
    ModelParams mp;
    param_bind(c, arena.data(), &mp);
    int checked = 0;
    for (int l = 0; l < c.num_layers; l++) {
        if (c.is_attn(l)) continue;
        const BlockParams& bp = mp.blocks[l];
        double lo = 1e9, hi = -1e9;
        for (int h = 0; h < c.ssm_heads(); h++) {
            double dt = log1p(exp((double)bp.dt_bias[h]));  // softplus
            CHECK(dt >= c.dt_min * (1 - 1e-5));
            CHECK(dt <= c.dt_max * (1 + 1e-5));
            lo = fmin(lo, dt); hi = fmax(hi, dt);
            CHECK(bp.D[h] == 1.f);
        }
        CHECK(hi > lo);  // not all equal
        for (int k = 0; k < c.ssm_heads() * c.d_state; k++) { CHECK(bp.B_bias[k] == 1.f); CHECK(bp.C_bias[k] == 1.f); }
        for (int k = 0; k < c.d_state; k++) { CHECK(bp.B_norm_w[k] == 1.f); CHECK(bp.C_norm_w[k] == 1.f); }
        checked++;
    }
    CHECK(checked == 2);
}
