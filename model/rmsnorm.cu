// RMSNorm CUDA kernels and launchers; see model/rmsnorm.cuh.
#include "model/rmsnorm.cuh"

namespace {
constexpr int kWarps = 8;  // rows per 256-thread block

__device__ __forceinline__ float warp_sum(float s) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    return s;
}

// ---- CUDA kernels

__global__ void rmsnorm_forward_kernel(float* out_f32, __nv_bfloat16* out_bf16, float* rstd, const float* inp,
                                       int64_t N, int C, float eps) {
    const int64_t n = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (n >= N) return;
    const float* x = inp + n * C;
    float ss = 0.f;
    for (int c = lane; c < C; c += 32) ss += x[c] * x[c];
    const float r = rsqrtf(warp_sum(ss) / C + eps);
    for (int c = lane; c < C; c += 32) {
        const float y = x[c] * r;
        if (out_f32) out_f32[n * C + c] = y;
        if (out_bf16) out_bf16[n * C + c] = __float2bfloat16(y);
    }
    if (lane == 0) rstd[n] = r;
}

__global__ void rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* rstd,
                                        int64_t N, int C) {
    const int64_t n = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (n >= N) return;
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    const float r = rstd[n];
    float s = 0.f;
    for (int c = lane; c < C; c += 32) s += dy[c] * x[c] * r;
    const float mean_dyy = warp_sum(s) / C;
    for (int c = lane; c < C; c += 32) {
        const float dx = r * (dy[c] - x[c] * r * mean_dyy);  // dx = r (dy - y mean(dy y))
        dinp[n * C + c] = dx;
    }
}
}  // namespace

// ---- kernel launchers

void rmsnorm_forward(float* out_f32, __nv_bfloat16* out_bf16, float* rstd, const float* inp, int64_t N, int C,
                     float eps, cudaStream_t stream) {
    rmsnorm_forward_kernel<<<ceil_div(N, kWarps), kWarps * 32, 0, stream>>>(out_f32, out_bf16, rstd, inp, N, C, eps);
    cudaCheckLaunch();
}

void rmsnorm_backward(float* dinp, const float* dout, const float* inp, const float* rstd, int64_t N, int C,
                      cudaStream_t stream) {
    rmsnorm_backward_kernel<<<ceil_div(N, kWarps), kWarps * 32, 0, stream>>>(dinp, dout, inp, rstd, N, C);
    cudaCheckLaunch();
}
