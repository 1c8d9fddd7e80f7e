// MLP activation CUDA kernels and launchers; see model/mlp.cuh.
// 8 bf16 (16 bytes) per thread and step when the size allows, one element otherwise.
#include "model/mlp.cuh"

namespace {
__device__ __forceinline__ float act(float h) { return h >= 0.f ? h * h : 0.25f * h * h; }
__device__ __forceinline__ float dact(float h) { return h >= 0.f ? 2.f * h : 0.5f * h; }

// ---- CUDA kernels
__global__ void mlp_act_forward_kernel(__nv_bfloat16* out, const __nv_bfloat16* inp, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (n % 8 == 0) {
        for (; i < n / 8; i += stride) {
            uint4 u = reinterpret_cast<const uint4*>(inp)[i], w;
            const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
            __nv_bfloat162* a = reinterpret_cast<__nv_bfloat162*>(&w);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float2 f = __bfloat1622float2(h[e]);
                a[e] = __floats2bfloat162_rn(act(f.x), act(f.y));
            }
            reinterpret_cast<uint4*>(out)[i] = w;
        }
    } else {
        for (; i < n; i += stride) out[i] = __float2bfloat16(act(__bfloat162float(inp[i])));
    }
}
__global__ void mlp_act_backward_kernel(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp,
                                        int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (n % 8 == 0) {
        for (; i < n / 8; i += stride) {
            uint4 u = reinterpret_cast<const uint4*>(inp)[i], g = reinterpret_cast<const uint4*>(dout)[i], w;
            const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
            const __nv_bfloat162* d = reinterpret_cast<const __nv_bfloat162*>(&g);
            __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(&w);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float2 f = __bfloat1622float2(h[e]), df = __bfloat1622float2(d[e]);
                o[e] = __floats2bfloat162_rn(df.x * dact(f.x), df.y * dact(f.y));
            }
            reinterpret_cast<uint4*>(dinp)[i] = w;
        }
    } else {
        for (; i < n; i += stride)
            dinp[i] = __float2bfloat16(__bfloat162float(dout[i]) * dact(__bfloat162float(inp[i])));
    }
}
int grid_for(int64_t n) { return (int)std::min<int64_t>((n / 8 + 255) / 256 + 1, 132 * 32); }
}  // namespace

// ---- kernel launchers
void mlp_act_forward(__nv_bfloat16* out, const __nv_bfloat16* inp, int64_t n, cudaStream_t stream) {
    mlp_act_forward_kernel<<<grid_for(n), 256, 0, stream>>>(out, inp, n);
    cudaCheckLaunch();
}
void mlp_act_backward(__nv_bfloat16* dinp, const __nv_bfloat16* dout, const __nv_bfloat16* inp, int64_t n,
                      cudaStream_t stream) {
    mlp_act_backward_kernel<<<grid_for(n), 256, 0, stream>>>(dinp, dout, inp, n);
    cudaCheckLaunch();
}
