// Block wiring CUDA kernels and launchers; see model/wiring.cuh.
#include "model/wiring.cuh"
#include "model/reduce.cuh"

namespace {
constexpr int kRowsPerCta = 64;  // backward: rows summed per partial

__device__ __forceinline__ float load_y(const float* yf, const __nv_bfloat16* yb, int64_t i) {
    return yf ? yf[i] : __bfloat162float(yb[i]);
}

// ---- CUDA kernels
__global__ void resid_mix_forward_kernel(float* out, const float* x, const float* x0, const float* mix, int64_t N,
                                         int C) {
    const int64_t total = N * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        out[i] = mix[c] * x[i] + mix[C + c] * x0[i];
    }
}
// grid (ceil(N / kRowsPerCta), ceil(C / blockDim)): thread per channel walks its CTA's rows.
__global__ void resid_mix_backward_kernel(float* dx, float* dx0, float* partials, const float* dout, const float* x,
                                          const float* x0, const float* mix, int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const float m0 = mix[c], m1 = mix[C + c];
    float s0 = 0.f, s1 = 0.f;
    const int64_t r0 = (int64_t)blockIdx.x * kRowsPerCta, r1 = min(r0 + kRowsPerCta, N);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i = r * C + c;
        const float g = dout[i];
        s0 += g * x[i];
        s1 += g * x0[i];
        dx[i] = m0 * g;
        dx0[i] += m1 * g;
    }
    partials[(int64_t)blockIdx.x * 2 * C + c] = s0;
    partials[(int64_t)blockIdx.x * 2 * C + C + c] = s1;
}
__global__ void scale_add_forward_kernel(float* out, const float* x, const float* yf, const __nv_bfloat16* yb,
                                         const float* scale, int64_t N, int C) {
    const int64_t total = N * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = x[i] + scale[i % C] * load_y(yf, yb, i);
}
__global__ void scale_add_backward_kernel(float* dyf, __nv_bfloat16* dyb, float* partials, const float* dout, const float* yf,
                                          const __nv_bfloat16* yb, const float* scale, int64_t N, int C) {
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const float sc = scale[c];
    float s = 0.f;
    const int64_t r0 = (int64_t)blockIdx.x * kRowsPerCta, r1 = min(r0 + kRowsPerCta, N);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i = r * C + c;
        const float g = dout[i];
        s += g * load_y(yf, yb, i);
        if (dyf) dyf[i] = sc * g;
        else dyb[i] = __float2bfloat16(sc * g);
    }
    partials[(int64_t)blockIdx.x * C + c] = s;
}
int grid_for(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 132 * 16); }
}  // namespace

// ---- kernel launchers
void resid_mix_forward(float* out, const float* x, const float* x0, const float* mix, int64_t N, int C,
                       cudaStream_t stream) {
    resid_mix_forward_kernel<<<grid_for(N * C), 256, 0, stream>>>(out, x, x0, mix, N, C);
    cudaCheckLaunch();
}
void resid_mix_backward(float* dx, float* dx0, float* dmix, const float* dout, const float* x, const float* x0,
                        const float* mix, int64_t N, int C, cudaStream_t stream) {
    const int parts = ceil_div(N, kRowsPerCta);
    float* partials = reduce_scratch((int64_t)parts * 2 * C);
    dim3 grid(parts, ceil_div(C, 128));
    resid_mix_backward_kernel<<<grid, 128, 0, stream>>>(dx, dx0, partials, dout, x, x0, mix, N, C);
    cudaCheckLaunch();
    reduce_partials(dmix, partials, parts, 2 * C, true, stream);
}
void scale_add_forward(float* out, const float* x, const float* y_f32, const __nv_bfloat16* y_bf16, const float* scale,
                       int64_t N, int C, cudaStream_t stream) {
    if (!y_f32 == !y_bf16) fatal("scale_add_forward: give exactly one of y_f32, y_bf16");
    scale_add_forward_kernel<<<grid_for(N * C), 256, 0, stream>>>(out, x, y_f32, y_bf16, scale, N, C);
    cudaCheckLaunch();
}
void scale_add_backward(float* dy_f32, __nv_bfloat16* dy_bf16, float* dscale, const float* dout, const float* y_f32,
                        const __nv_bfloat16* y_bf16, const float* scale, int64_t N, int C, cudaStream_t stream) {
    if (!y_f32 == !y_bf16 || !dy_f32 == !dy_bf16) fatal("scale_add_backward: give exactly one of y_f32, y_bf16 and one of dy_f32, dy_bf16");
    const int parts = ceil_div(N, kRowsPerCta);
    float* partials = reduce_scratch((int64_t)parts * C);
    dim3 grid(parts, ceil_div(C, 128));
    scale_add_backward_kernel<<<grid, 128, 0, stream>>>(dy_f32, dy_bf16, partials, dout, y_f32, y_bf16, scale, N, C);
    cudaCheckLaunch();
    reduce_partials(dscale, partials, parts, C, true, stream);
}
