// Times each CUDA kernel of the model at the seed's production shape (65,536 tokens per step:
// B 16 x T 4096, d 512) and prints time, achieved rate and its floor. Floors use the peaks
// measured in the same run: a large bf16 cuBLASLt GEMM (FLOP/s) and a device-to-device copy
// (bytes read + written per second). bench/torch_ops.py times the same ops in PyTorch.
//   build/bench_gpu [op-filter]
#include "model/attention.cuh"
#include "model/embedding.cuh"
#include "model/gemm.cuh"
#include "model/loss.cuh"
#include "model/mamba3.cuh"
#include "model/config.h"
#include "model/mlp.cuh"
#include "model/rmsnorm.cuh"
#include "model/wiring.cuh"
#include "model/cuda_common.cuh"
#include "model/params.h"
#include "optim/finite.cuh"
#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

static float time_ms(const std::function<void()>& fn, int iters = 30) {
    for (int i = 0; i < 3; i++) fn();
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    std::vector<float> t(iters);
    for (int i = 0; i < iters; i++) {
        cudaCheck(cudaEventRecord(e0));
        fn();
        cudaCheck(cudaEventRecord(e1));
        cudaCheck(cudaEventSynchronize(e1));
        cudaCheck(cudaEventElapsedTime(&t[i], e0, e1));
    }
    cudaCheck(cudaEventDestroy(e0));
    cudaCheck(cudaEventDestroy(e1));
    std::sort(t.begin(), t.end());
    return t[iters / 2];
}

template <typename T>
static T* dalloc_rand(int64_t n, uint64_t seed, float scale = 1.f) {
    std::vector<T> h(n);
    Rng r(seed);
    for (auto& x : h) x = (T)(scale * (float)r.normal());
    T* d;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

static double g_peak_flops = 0, g_peak_bw = 0;
static void row(const char* name, float ms, double flops, double bytes) {
    double fl_floor = g_peak_flops > 0 ? flops / g_peak_flops * 1e3 : 0;
    double by_floor = g_peak_bw > 0 ? bytes / g_peak_bw * 1e3 : 0;
    printf("%-34s %9.3f ms %8.1f TFLOP/s %8.0f GB/s   floor %.3f ms (%s)\n", name, ms, flops / ms * 1e-9,
           bytes / ms * 1e-6, std::max(fl_floor, by_floor), fl_floor > by_floor ? "flops" : "bytes");
}

int main(int argc, char** argv) {
    const char* filter = argc > 1 ? argv[1] : "";
    auto want = [&](const char* n) { return strstr(n, filter) != nullptr; };
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

    {  // bandwidth: 1 GiB device-to-device copy
        const size_t n = 1ull << 30;
        void *a, *b;
        cudaCheck(cudaMalloc(&a, n));
        cudaCheck(cudaMalloc(&b, n));
        cudaCheck(cudaMemset(a, 1, n));
        float ms = time_ms([&] { cudaCheck(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice)); }, 10);
        g_peak_bw = 2.0 * n / (ms * 1e-3);
        printf("peak copy bandwidth: %.0f GB/s (read + write)\n", g_peak_bw * 1e-9);
        cudaCheck(cudaFree(a));
        cudaCheck(cudaFree(b));
    }
    {  // matrix peak: 8192^3 bf16 through our cuBLASLt wrapper
        const int n = 8192;
        auto* a = dalloc_rand<__nv_bfloat16>((int64_t)n * n, 7);
        auto* b = dalloc_rand<__nv_bfloat16>((int64_t)n * n, 8);
        __nv_bfloat16* c;
        cudaCheck(cudaMalloc(&c, (int64_t)n * n * 2));
        float ms = time_ms([&] { gemm(c, GemmOut::bf16, a, b, n, n, n, false, true, false, 0); }, 10);
        g_peak_flops = 2.0 * n * n * n / (ms * 1e-3);
        printf("peak bf16 GEMM (cuBLASLt 8192^3): %.0f TFLOP/s\n", g_peak_flops * 1e-12);
        cudaCheck(cudaFree(a));
        cudaCheck(cudaFree(b));
        cudaCheck(cudaFree(c));
    }

    const int B = 16, T = 4096, NH = 8, NKV = 4, HD = 64;
    if (want("attention")) {
        const int64_t nq = (int64_t)B * T * NH * HD, nk = (int64_t)B * T * NKV * HD;
        auto* q = dalloc_rand<__nv_bfloat16>(nq, 1, 1.5f);
        auto* k = dalloc_rand<__nv_bfloat16>(nk, 2, 1.5f);
        auto* v = dalloc_rand<__nv_bfloat16>(nk, 3);
        auto* dout = dalloc_rand<__nv_bfloat16>(nq, 4);
        __nv_bfloat16 *out, *dq, *dk, *dv;
        float *lse, *delta;
        cudaCheck(cudaMalloc(&out, nq * 2));
        cudaCheck(cudaMalloc(&dq, nq * 2));
        cudaCheck(cudaMalloc(&dk, nk * 2));
        cudaCheck(cudaMalloc(&dv, nk * 2));
        cudaCheck(cudaMalloc(&lse, (int64_t)B * NH * T * 4));
        cudaCheck(cudaMalloc(&delta, (int64_t)B * NH * T * 4));
        // causal: half of the T x T scores; fwd 2 GEMMs, bwd 5 (FA2 count; our dQ pass recomputes 2 more)
        const double fwd_flops = 4.0 * B * NH * (double)T * T * HD / 2;
        const double io = 2.0 * (2 * nq + 2 * nk);
        float f = time_ms([&] { attention_core_forward(out, lse, q, k, v, B, T, NH, NKV, HD, 0); });
        row("attention fwd (flash, ours)", f, fwd_flops, io);
        {
            float fb = time_ms([&] {
                attention_core_forward(out, lse, q, k, v, B, T, NH, NKV, HD, 0);
                attention_core_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, B, T, NH, NKV, HD, 0);
            });
            row("attention fwd+bwd (flash, ours)", fb, 3.5 * fwd_flops, 2 * io);
            row("attention bwd (flash, ours)", time_ms([&] {
                    attention_core_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, B, T, NH, NKV, HD, 0);
                }), 2.5 * fwd_flops, io);
        }
    }
    const int64_t N = (int64_t)B * T;
    const int C = 512, V = 8192, FH = 1536;
    if (want("gemm")) {
        struct G { const char* name; int M, N, K; bool ta, tb, acc; GemmOut o; };
        const G gs[] = {
            {"gemm attn_qkv fwd 65536x1024x512", (int)N, 1024, C, false, true, false, GemmOut::bf16},
            {"gemm mlp_fc fwd 65536x1536x512", (int)N, FH, C, false, true, false, GemmOut::bf16},
            {"gemm mlp_proj fwd 65536x512x1536", (int)N, C, FH, false, true, false, GemmOut::f32},
            {"gemm mlp_proj dW 512x1536x65536", C, FH, (int)N, true, false, true, GemmOut::f32},
            {"gemm in_proj fwd 65536x2240x512", (int)N, 2240, C, false, true, false, GemmOut::bf16},
            {"gemm head fwd 65536x8192x512", (int)N, V, C, false, true, false, GemmOut::bf16},
            {"gemm head dx 65536x512x8192", (int)N, C, V, false, false, false, GemmOut::f32},
            {"gemm head dW 8192x512x65536", V, C, (int)N, true, false, true, GemmOut::f32},
        };
        auto* a = dalloc_rand<__nv_bfloat16>(N * V, 9);
        auto* b = dalloc_rand<__nv_bfloat16>(N * V, 10);
        float* c;
        cudaCheck(cudaMalloc(&c, N * V * 4));
        for (auto& g : gs) {
            float ms = time_ms([&] { gemm(c, g.o, a, b, g.M, g.N, g.K, g.ta, g.tb, g.acc, 0); });
            const double out_b = (double)g.M * g.N * (g.o == GemmOut::f32 ? 4 : 2) * (g.acc ? 2 : 1);
            row(g.name, ms, 2.0 * g.M * g.N * g.K, 2.0 * ((double)g.M * g.K + (double)g.K * g.N) + out_b);
        }
        cudaCheck(cudaFree(a));
        cudaCheck(cudaFree(b));
        cudaCheck(cudaFree(c));
    }
    if (want("elementwise")) {
        auto* xf = dalloc_rand<float>(N * C, 11);
        auto* x0 = dalloc_rand<float>(N * C, 12);
        auto* dof = dalloc_rand<float>(N * C, 13);
        float *of, *rs, *mix, *dmix;
        cudaCheck(cudaMalloc(&of, N * C * 4));
        cudaCheck(cudaMalloc(&rs, N * 4));
        __nv_bfloat16* ob;
        cudaCheck(cudaMalloc(&ob, N * C * 2));
        mix = dalloc_rand<float>(2 * C, 14);
        dmix = dalloc_rand<float>(2 * C, 15);
        const double nc4 = (double)N * C * 4;
        row("rmsnorm fwd (f32 in, bf16 out)", time_ms([&] { rmsnorm_forward(nullptr, ob, rs, xf, N, C, 1e-6f, 0); }), 0, nc4 + nc4 / 2);
        row("rmsnorm bwd", time_ms([&] { rmsnorm_backward(of, dof, xf, rs, N, C, 0); }), 0, 3 * nc4);
        row("scale_add fwd (bf16 y)", time_ms([&] { scale_add_forward(of, xf, nullptr, ob, mix, N, C, 0); }), 0, 2.5 * nc4);
        __nv_bfloat16* ob2;
        cudaCheck(cudaMalloc(&ob2, N * C * 2));
        cudaCheck(cudaMemcpy(ob2, ob, N * C * 2, cudaMemcpyDeviceToDevice));
        row("scale_add bwd (bf16 y, bf16 dy)", time_ms([&] { scale_add_backward(nullptr, ob2, dmix, dof, nullptr, ob, mix, N, C, 0); }), 0, 2 * nc4);
        // the fused block wiring (model/wiring.cuh); bytes: fp32 (N, C) = 1 nc4, bf16 = 1/2
        row("mix_norm fwd (x, x0 -> bf16 n)", time_ms([&] { mix_norm_forward(ob2, rs, xf, x0, mix, N, C, 1e-6f, 0); }), 0, 2.5 * nc4);
        row("mix_add_norm fwd (x, x0, y -> out, n)", time_ms([&] { mix_add_norm_forward(of, ob2, rs, xf, x0, mix, ob, dmix, N, C, 1e-6f, 0); }), 0, 4 * nc4);
        row("norm_scale_add bwd", time_ms([&] { norm_scale_add_backward(of, ob2, dmix, dof, xf, rs, ob, mix, N, C, 0); }), 0, 5 * nc4);
        row("mix_norm bwd", time_ms([&] { mix_norm_backward(of, x0, dmix, dof, xf, xf, x0, mix, rs, N, C, 0); }), 0, 7 * nc4);
        // MLP activation on (N, 1536)
        const int64_t nh = N * FH;
        auto* h = dalloc_rand<__nv_bfloat16>(nh, 16);
        auto* da = dalloc_rand<__nv_bfloat16>(nh, 17);
        __nv_bfloat16* a;
        cudaCheck(cudaMalloc(&a, nh * 2));
        row("mlp act fwd (N x 1536 bf16)", time_ms([&] { mlp_act_forward(a, h, nh, 0); }), 0, 4.0 * nh);
        row("mlp act bwd", time_ms([&] { mlp_act_backward(a, da, h, nh, 0); }), 0, 6.0 * nh);
        // embedding
        auto* wte = dalloc_rand<float>((int64_t)V * C, 18);
        auto* dwte = dalloc_rand<float>((int64_t)V * C, 19);
        std::vector<int32_t> tok(N);
        Rng r(20);
        for (auto& t : tok) t = (int32_t)(r.next() % V);
        int32_t* dt;
        cudaCheck(cudaMalloc(&dt, N * 4));
        cudaCheck(cudaMemcpy(dt, tok.data(), N * 4, cudaMemcpyHostToDevice));
        row("embedding fwd", time_ms([&] { embedding_forward(of, dt, wte, N, C, V, 0); }), 0, 2 * nc4);
        void* sort_scratch;
        cudaCheck(cudaMalloc(&sort_scratch, embedding_backward_scratch_bytes(N, V)));
        row("embedding bwd (sort + per-row sums)", time_ms([&] { embedding_backward(dwte, dof, dt, N, C, V, sort_scratch, 0); }), 0,
            nc4 + 2.0 * V * C * 4);
        // softcap + CE over (N, V) bf16 logits, gradient in place
        auto* logits = dalloc_rand<__nv_bfloat16>(N * V, 21, 5.f);
        float *losses, *mean;
        cudaCheck(cudaMalloc(&losses, N * 4));
        cudaCheck(cudaMalloc(&mean, 4));
        row("softcap CE fwd+bwd (N x 8192 bf16)", time_ms([&] {
                softcap_ce_forward_backward(losses, logits, logits, dt, N, V, 30.f, 0);
                loss_mean(mean, losses, N, 0);
            }), 0, 4.0 * N * V);
        // attention prep on (N, 1024) bf16
        const int cols = (NH + 2 * NKV) * HD;
        auto* qkv = dalloc_rand<__nv_bfloat16>(N * cols, 22);
        auto* gq = dalloc_rand<__nv_bfloat16>(N * cols, 23);
        auto* gain = dalloc_rand<float>(NH, 24);
        auto* dgain = dalloc_rand<float>(NH, 25);
        __nv_bfloat16 *q, *k, *v, *dqkv;
        float *qr, *kr;
        cudaCheck(cudaMalloc(&q, N * NH * HD * 2));
        cudaCheck(cudaMalloc(&k, N * NKV * HD * 2));
        cudaCheck(cudaMalloc(&v, N * NKV * HD * 2));
        cudaCheck(cudaMalloc(&dqkv, N * cols * 2));
        cudaCheck(cudaMalloc(&qr, N * NH * 4));
        cudaCheck(cudaMalloc(&kr, N * NKV * 4));
        row("attn qkv prep fwd", time_ms([&] {
                attn_qkv_prep_forward(q, k, v, qr, kr, qkv, gain, B, T, NH, NKV, HD, 10000.f, 1e-6f, 0);
            }), 0, 4.0 * N * cols);
        row("attn qkv prep bwd", time_ms([&] {
                attn_qkv_prep_backward(dqkv, dgain, gq, gq + N * NH * HD, gq + N * (NH + NKV) * HD, qkv, qr, kr, gain,
                                       B, T, NH, NKV, HD, 10000.f, 0);
            }), 0, 6.0 * N * cols);
    }
    if (want("mamba3")) {  // prep around the scan, seed shape: R 2240, H 16, P 64, N 64, S 16
        Config cfg;
        Mamba3Dims d = mamba3_dims(cfg, B, T);
        const int64_t nhp = N * d.H * d.P, ngn = N * d.G * d.N, nbht = N * d.H, ns = N * d.S;
        auto* zx = dalloc_rand<__nv_bfloat16>(N * d.R, 30);
        auto* dtb = dalloc_rand<float>(d.H, 31);
        auto* w = dalloc_rand<float>(d.N, 32);
        __nv_bfloat16 *z, *x, *q, *k, *dzx;
        float *adt, *dt, *trap, *th, *rq, *rk, *gacc;
        cudaCheck(cudaMalloc(&z, nhp * 2));
        cudaCheck(cudaMalloc(&x, nhp * 2));
        cudaCheck(cudaMalloc(&q, ngn * 2));
        cudaCheck(cudaMalloc(&k, ngn * 2));
        cudaCheck(cudaMalloc(&dzx, N * d.R * 2));
        cudaCheck(cudaMalloc(&adt, nbht * 4));
        cudaCheck(cudaMalloc(&dt, nbht * 4));
        cudaCheck(cudaMalloc(&trap, nbht * 4));
        cudaCheck(cudaMalloc(&th, ns * 4));
        cudaCheck(cudaMalloc(&rq, N * 4));
        cudaCheck(cudaMalloc(&rk, N * 4));
        cudaCheck(cudaMalloc(&gacc, 1024 * 4));
        auto* gf = dalloc_rand<float>(ngn * 2 + nbht * 3 + ns, 33);
        const double io = 2.0 * N * d.R + 2.0 * (2 * nhp + 2 * ngn) + 4.0 * (3 * nbht + ns);
        row("mamba3 prep fwd", time_ms([&] {
                mamba3_prep_forward(z, x, q, k, adt, dt, trap, th, rq, rk, zx, dtb, w, w, d, 0);
            }), 0, io);
        row("mamba3 prep bwd", time_ms([&] {
                mamba3_prep_backward(dzx, gacc, gacc + 64, gacc + 128, z, x, gf, gf + ngn, gf + 2 * ngn,
                                     gf + 2 * ngn + nbht, gf + 2 * ngn + 2 * nbht, gf + 2 * ngn + 3 * nbht, zx, rq, rk,
                                     dtb, w, w, d, 0);
            }), 0, io + 2.0 * N * d.R + 2.0 * ngn);
    }
    if (want("finite")) {  // the trainer's per-step gradient NaN/Inf check over the seed's arena
        Config cfg;
        const int64_t n = param_arena_size(cfg);
        auto* g = dalloc_rand<float>(n, 40);
        FiniteCheck fc;
        finite_check_create(&fc, param_specs(cfg));
        row("finite check (seed grads arena)", time_ms([&] { finite_check_launch(&fc, g, 0); }), 0, 4.0 * n);
        finite_check_destroy(&fc);
        cudaCheck(cudaFree(g));
    }
    cudaCheck(cudaDeviceSynchronize());
    return 0;
}
