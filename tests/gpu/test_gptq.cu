// GPTQ on the GPU (quant/gptq.cuh) against the CPU reference (quant/gptq.h), and the Hessian
// collection (quant/hessian.cuh) against XᵀX computed on the CPU.
// Bounds: both GPTQs are float64 on the same fp16 scales, so they differ only by rounding order
// (blocked GPU Cholesky and dgemm vs the CPU's loops): q codes >= 99.9% identical and the GPU's
// error tr((W-Q) H (W-Q)ᵀ) <= the CPU's x (1 + 1e-3); U itself within 1e-8 of its max.
// Hessians: against XᵀX of the GPU's own bf16 activations (fp32 GEMM vs float64 sums: 1e-5 of the
// max), and against the CPU reference model's fp32 activations (a bf16 forward: 3e-2).
#include "model/model.cuh"
#include "model/model.h"
#include "quant/gptq.cuh"
#include "quant/hessian.cuh"
#include "quant/plan.h"
#include "tests/gpu/gpu_util.h"
#include <cstring>

namespace {

// H = XᵀX of n random tokens whose columns have spread scales (diag(H) spans ~4 decades), a few
// correlated directions, and the columns in `dead` never active.
std::vector<double> random_hessian(int64_t C, int64_t n, uint64_t seed, const std::vector<int>& dead) {
    Rng r(seed);
    std::vector<double> colscale((size_t)C), X((size_t)(n * C));
    for (auto& s : colscale) s = exp(2.3 * (2 * r.uniform() - 1));
    std::vector<double> common(8 * (size_t)C);
    for (auto& v : common) v = r.normal();
    for (int64_t t = 0; t < n; t++) {
        double a[8];
        for (auto& v : a) v = r.normal();
        for (int64_t j = 0; j < C; j++) {
            double x = r.normal();
            for (int k = 0; k < 8; k++) x += 0.5 * a[k] * common[k * C + j];
            X[t * C + j] = colscale[j] * x;
        }
    }
    for (int j : dead)
        for (int64_t t = 0; t < n; t++) X[t * C + j] = 0;
    std::vector<double> H((size_t)(C * C), 0.0);
#pragma omp parallel for
    for (int64_t i = 0; i < C; i++)
        for (int64_t t = 0; t < n; t++) {
            const double xi = X[t * C + i];
            if (xi == 0) continue;
            for (int64_t j = 0; j < C; j++) H[i * C + j] += xi * X[t * C + j];
        }
    return H;
}

double* dev_f64(const std::vector<double>& h) {
    double* d;
    cudaCheck(cudaMalloc(&d, h.size() * sizeof(double)));
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(double), cudaMemcpyHostToDevice));
    return d;
}

struct Case {
    int64_t R, C;
    int block;
    bool act_order;
    double damp;
};

}  // namespace

TEST_CASE("gpu gptq: U of the damped inverse Hessian equals the CPU's") {
    for (int64_t C : {96, 200, 1100}) {
        CAPTURE(C);
        std::vector<double> H = random_hessian(C, 2 * C, 11 + C, {});
        double mean = 0;
        for (int64_t i = 0; i < C; i++) mean += H[i * C + i];
        for (int64_t i = 0; i < C; i++) H[i * C + i] += 0.01 * mean / C;
        const std::vector<double> want = gptq_inverse_upper_cpu(H, C);
        double* dH = dev_f64(H);
        double* dU;
        cudaCheck(cudaMalloc(&dU, C * C * sizeof(double)));
        cudaCheck(cudaMemset(dU, 0xFF, C * C * sizeof(double)));  // NaN
        gptq_inverse_upper_gpu(dU, dH, C);
        std::vector<double> got((size_t)(C * C));
        cudaCheck(cudaMemcpy(got.data(), dU, got.size() * sizeof(double), cudaMemcpyDeviceToHost));
        double md = 0, mx = 0;
        for (size_t i = 0; i < got.size(); i++) {
            const double d = fabs(got[i] - want[i]);
            if (!(d <= md)) md = d;
            mx = std::max(mx, fabs(want[i]));
        }
        MESSAGE("C " << C << ": U rel err " << md / mx << " (bound 1e-8)");
        CHECK(md / mx <= 1e-8);
        cudaCheck(cudaFree(dH));
        cudaCheck(cudaFree(dU));
    }
}

TEST_CASE("gpu gptq vs cpu gptq: codes and error, mixed row bits, dead columns") {
    const Case cases[] = {{40, 160, 128, false, 0.01}, {64, 200, 32, true, 0.01}, {256, 512, 128, true, 0.01},
                          {130, 1100, 128, true, 0.1}, {2240, 512, 128, true, 0.01}};
    for (const Case& k : cases) {
        CAPTURE(k.R); CAPTURE(k.C); CAPTURE(k.block); CAPTURE(k.act_order);
        const int64_t R = k.R, C = k.C;
        std::vector<double> H = random_hessian(C, std::max<int64_t>(2 * C, 256), 5 + R + C, {3, (int)C / 2});
        std::vector<float> W = gt::randn(R * C, 7 + R);
        Rng r(R * 31 + C);
        for (int64_t i = 0; i < R; i++) {  // log-normal row scales, a few outliers
            const double s = exp(0.5 * r.normal());
            for (int64_t j = 0; j < C; j++) W[i * C + j] *= (float)(s * (r.uniform() < 0.001 ? 5.0 : 1.0));
        }
        std::vector<int> bits((size_t)R);
        const int widths[4] = {4, 6, 6, 8};
        for (auto& b : bits) b = widths[r.next() % 4];
        std::vector<uint16_t> scale((size_t)R);
        row_scales_cpu(scale.data(), W.data(), bits.data(), R, C, true);
        GptqOptions opt;
        opt.block_size = k.block;
        opt.act_order = k.act_order;
        opt.damp = k.damp;
        std::vector<int8_t> q_cpu((size_t)(R * C)), q_gpu((size_t)(R * C), (int8_t)0x7f);
        gptq_quantize_cpu(q_cpu.data(), W.data(), H.data(), scale.data(), bits.data(), R, C, opt);
        double* dH = dev_f64(H);
        gptq_quantize_gpu(q_gpu.data(), W.data(), dH, scale.data(), bits.data(), R, C, opt);
        cudaCheck(cudaFree(dH));
        int64_t same = 0, out_of_range = 0, dead_nonzero = 0;
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < C; j++) {
                const int8_t g = q_gpu[i * C + j];
                same += g == q_cpu[i * C + j];
                out_of_range += abs(g) > (1 << (bits[i] - 1)) - 1;
                dead_nonzero += (j == 3 || j == C / 2) && g != 0;
            }
        const double frac = (double)same / (double)(R * C);
        const double e_cpu = quant_error_cpu(W.data(), q_cpu.data(), scale.data(), H.data(), R, C);
        const double e_gpu = quant_error_cpu(W.data(), q_gpu.data(), scale.data(), H.data(), R, C);
        std::vector<int8_t> q_rtn((size_t)(R * C));
        rtn_quantize_cpu(q_rtn.data(), W.data(), scale.data(), bits.data(), R, C);
        const double e_rtn = quant_error_cpu(W.data(), q_rtn.data(), scale.data(), H.data(), R, C);
        MESSAGE(R << "x" << C << " block " << k.block << (k.act_order ? " act-order" : "") << ": identical q " << frac
                << ", error gpu " << e_gpu << " cpu " << e_cpu << " rtn " << e_rtn);
        CHECK(frac >= 0.999);
        CHECK(e_gpu <= e_cpu * (1 + 1e-3));
        CHECK(e_gpu < e_rtn);
        CHECK(out_of_range == 0);
        CHECK(dead_nonzero == 0);
    }
}

TEST_CASE("gpu hessians: xᵀx of every matrix's input, vs the CPU") {
    Config c;  // 4 layers: Mamba, Mamba | attention, Mamba (the kernels' fixed sizes HD = N = P = L = 64)
    c.vocab_size = 512; c.model_dim = 128; c.num_heads = 2; c.num_kv_heads = 1;
    c.num_layers = 4; c.num_attn_layers = 1; c.mlp_mult = 2; c.expand = 2;
    c.d_state = 64; c.ssm_headdim = 64; c.chunk_size = 64;
    c.validate();
    const int B = 2, T = 64;
    const int64_t N = (int64_t)B * T;
    std::vector<float> w(param_arena_size(c));
    param_init(c, w.data(), 5);
    Rng r(17);
    for (auto& s : param_specs(c))  // off the init: mlp_proj and attn_proj start at zero
        for (int64_t i = 0; i < s.numel(); i++)
            if (s.group == Group::matrix) w[s.offset + i] = (float)((2 * r.uniform() - 1) / sqrt((double)s.cols));
    GpuModel m;
    gpu_model_create(&m, c, B, T, 0);
    gt::poison(m.acts_mem, m.acts_bytes);
    gpu_model_upload_params(&m, w.data());
    GpuHessians hs;
    hessians_create(&hs, c);
    auto plan = quant_plan(c);
    // two micro-batches: H sums both; the CPU side sums XᵀX of each batch's activations
    std::vector<std::vector<double>> want_gpu_acts(plan.size()), want_cpu(plan.size());
    std::vector<float> acts(model_acts_size(c, B, T));
    ModelActs<float> A;
    model_acts_bind(c, B, T, acts.data(), &A);
    ModelTensors<float> P;
    model_tensors_bind(c, w.data(), &P);
    const Mamba3Dims d = mamba3_dims(c, B, T);
    for (int batch = 0; batch < 2; batch++) {
        std::vector<int32_t> win((size_t)B * (T + 1)), tok(N), tgt(N);
        for (auto& t : win) t = (int32_t)(r.next() % (uint64_t)c.vocab_size);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                tok[b * T + t] = win[b * (T + 1) + t];
                tgt[b * T + t] = win[b * (T + 1) + t + 1];
            }
        gpu_model_load_batch(&m, win.data());
        gpu_model_forward(&m, false);
        hessians_accumulate(&hs, m);
        model_forward_cpu(A, tok.data(), tgt.data(), P, c, B, T);
        for (size_t k = 0; k < plan.size(); k++) {
            if (!plan[k].is_matrix()) continue;
            const TensorPlan& p = plan[k];
            const int64_t C = p.spec.cols;
            const bf16* xg = nullptr;
            const float* xc = nullptr;
            Mamba3Acts<float> ma;
            if (p.kind == TensorKind::embed) { xg = m.a.xf; xc = A.xf; }
            else {
                const GpuLayerActs& L = m.a.layers[p.spec.layer];
                const LayerActs<float>& LC = A.layers[p.spec.layer];
                if (LC.mamba) mamba3_acts_bind(&ma, LC.mamba, d);
                switch (p.kind) {
                case TensorKind::attn_qkv: case TensorKind::in_proj: xg = L.n1; xc = LC.n1; break;
                case TensorKind::attn_proj: xg = L.y; xc = LC.y; break;
                case TensorKind::out_proj: xg = L.o; xc = ma.o; break;
                case TensorKind::mlp_fc: xg = L.n2; xc = LC.n2; break;
                case TensorKind::mlp_proj: xg = L.a; xc = LC.a; break;
                default: FAIL("no input for " << p.spec.name);
                }
            }
            const std::vector<float> x = gt::to_host(xg, N * C);
            auto add_xtx = [&](std::vector<double>& Hk, const float* X) {
                Hk.resize((size_t)(C * C), 0.0);
                for (int64_t t = 0; t < N; t++)
                    for (int64_t i = 0; i < C; i++)
                        for (int64_t j = 0; j < C; j++) Hk[i * C + j] += (double)X[t * C + i] * X[t * C + j];
            };
            add_xtx(want_gpu_acts[k], x.data());
            add_xtx(want_cpu[k], xc);
        }
    }
    CHECK(hs.tokens == 2 * N);
    const std::vector<std::vector<double>> got = hessians_to_host(hs, 0);
    int checked = 0;
    for (size_t k = 0; k < plan.size(); k++) {
        CAPTURE(plan[k].spec.name);
        if (!plan[k].is_matrix()) { CHECK(got[k].empty()); continue; }
        auto rel = [](const std::vector<double>& a, const std::vector<double>& b) {
            double md = 0, mx = 0;
            for (size_t i = 0; i < a.size(); i++) {
                const double dd = fabs(a[i] - b[i]);
                if (!(dd <= md)) md = dd;
                mx = std::max(mx, fabs(b[i]));
            }
            return mx > 0 ? md / mx : md;
        };
        REQUIRE(got[k].size() == want_cpu[k].size());
        const double e_own = rel(got[k], want_gpu_acts[k]), e_cpu = rel(got[k], want_cpu[k]);
        MESSAGE(plan[k].spec.name << ": rel err vs own bf16 acts " << e_own << " (bound 1e-5), vs CPU model " << e_cpu
                                  << " (bound 3e-2)");
        CHECK(e_own <= 1e-5);
        CHECK(e_cpu <= 3e-2);
        checked++;
    }
    CHECK(checked == 4 * 4 + 1);  // per layer: mixer in (qkv | in_proj), mixer out, mlp fc, mlp proj; + wte
    hessians_destroy(&hs);
    gpu_model_destroy(&m);
}
