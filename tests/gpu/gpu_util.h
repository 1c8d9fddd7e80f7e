// Helpers shared by the GPU kernel tests: seeded random host data, device copies, bf16
// rounding, NaN poisoning and the relative error every test states its bound in.
#pragma once
#include "model/cuda_common.cuh"
#include "model/params.h"
#include <doctest/doctest.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace gt {

inline std::vector<float> randn(int64_t n, uint64_t seed, double scale = 1.0) {
    Rng r(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = (float)(scale * r.normal());
    return v;
}
inline std::vector<float> randu(int64_t n, uint64_t seed, double lo, double hi) {
    Rng r(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = (float)(lo + (hi - lo) * r.uniform());
    return v;
}
// Round to bf16 in place (so the CPU reference sees exactly the values the kernel reads).
inline void round_bf16(std::vector<float>& v) {
    for (auto& x : v) x = __bfloat162float(__float2bfloat16(x));
}
template <typename T>
T* dev_alloc(int64_t n) {
    T* d;
    cudaCheck(cudaMalloc(&d, std::max<int64_t>(n, 1) * sizeof(T)));
    cudaCheck(cudaMemset(d, 0xFF, std::max<int64_t>(n, 1) * sizeof(T)));  // NaN in fp32 and bf16
    return d;
}
inline void poison(void* d, size_t bytes) { cudaCheck(cudaMemset(d, 0xFF, bytes)); }
inline float* to_dev(const std::vector<float>& h) {
    float* d = dev_alloc<float>((int64_t)h.size());
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}
inline int32_t* to_dev(const std::vector<int32_t>& h) {
    int32_t* d = dev_alloc<int32_t>((int64_t)h.size());
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return d;
}
inline __nv_bfloat16* to_dev_bf16(const std::vector<float>& h) {
    std::vector<__nv_bfloat16> b(h.size());
    for (size_t i = 0; i < h.size(); i++) b[i] = __float2bfloat16(h[i]);
    __nv_bfloat16* d = dev_alloc<__nv_bfloat16>((int64_t)h.size());
    cudaCheck(cudaMemcpy(d, b.data(), b.size() * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice));
    return d;
}
inline std::vector<float> to_host(const float* d, int64_t n) {
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> h(n);
    cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
}
inline std::vector<float> to_host(const __nv_bfloat16* d, int64_t n) {
    cudaCheck(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> b(n);
    cudaCheck(cudaMemcpy(b.data(), d, n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost));
    std::vector<float> h(n);
    for (int64_t i = 0; i < n; i++) h[i] = __bfloat162float(b[i]);
    return h;
}
// max|got - want| / max|want|; NaN anywhere in got gives NaN (fails every bound).
inline double rel(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    double md = 0, mr = 0;
    for (size_t i = 0; i < got.size(); i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= md)) md = d;
        mr = std::max(mr, fabs((double)want[i]));
    }
    return mr > 0 ? md / mr : md;
}
inline std::vector<float> to_float(const std::vector<double>& d) { return std::vector<float>(d.begin(), d.end()); }

}  // namespace gt

#define CHECK_REL(name, got, want, tol)                                               \
    do {                                                                              \
        double _e = gt::rel((got), (want));                                           \
        INFO(name << ": rel err " << _e << " (bound " << (tol) << ")");               \
        CHECK(_e <= (tol));                                                           \
        MESSAGE(name << ": rel err " << _e << " (bound " << (tol) << ")");            \
    } while (0)

namespace gt {
inline std::vector<double> to_d(const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); }

// param_init, then every tensor moved off its init so no gradient path is trivially zero
// (mlp_proj, attn_proj start at 0; resid_mix's x0 row at 0; scales at 1).
inline std::vector<float> random_params(const Config& c, uint64_t seed) {
    std::vector<float> w(param_arena_size(c), 0.f);
    param_init(c, w.data(), seed);
    Rng r(seed * 7 + 1);
    for (auto& s : param_specs(c)) {
        float* t = w.data() + s.offset;
        for (int64_t i = 0; i < s.numel(); i++) {
            if (s.group == Group::matrix) t[i] = (float)((2 * r.uniform() - 1) / sqrt((double)s.cols));
            else if (s.group == Group::embed) t[i] = (float)(0.05 * r.normal());
            else t[i] += (float)(0.2 * r.normal());
        }
    }
    return w;
}
}  // namespace gt
