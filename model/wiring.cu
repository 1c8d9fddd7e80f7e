// Block wiring CUDA kernels and launchers; see model/wiring.cuh.
#include "model/wiring.cuh"
#include "model/reduce.cuh"

namespace {
constexpr int kRowsPerCta = 64;  // backward: rows summed per partial
// fused kernels: one row at a time per CTA of ~C/4 threads, channel c = threadIdx.x + blockDim.x * k
// (k < kPer): few registers per thread, so many CTAs (rows in flight) per SM
constexpr int kPer = 4, kMaxThreads = 1024, kMaxC = kPer * kMaxThreads;
constexpr int kFwdRows = 16;  // rows per CTA in the forward kernels (no partials to keep)

__device__ __forceinline__ float load_y(const float* yf, const __nv_bfloat16* yb, int64_t i) {
    return yf ? yf[i] : __bfloat162float(yb[i]);
}
// x_mix, the one expression both directions use (no contraction: the same bits every time)
__device__ __forceinline__ float mixed(float m0, float m1, float x, float x0) {
    return __fadd_rn(__fmul_rn(m0, x), __fmul_rn(m1, x0));
}
// the sum over a row's channels: warp sums, then the warps in order; slot alternates by row
// parity so a warp that runs ahead to the next row cannot overwrite sums still being read
__device__ __forceinline__ float row_sum(float s, float (*red)[kMaxThreads / 32], int parity) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if ((threadIdx.x & 31) == 0) red[parity][threadIdx.x >> 5] = s;
    __syncthreads();
    float t = 0.f;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += red[parity][w];
    return t;
}
int row_threads(int C) { return std::min(kMaxThreads, (ceil_div(C, kPer) + 31) / 32 * 32); }

// ---- CUDA kernels
__global__ void scale_add_forward_kernel(float* out, const float* x, const float* yf, const __nv_bfloat16* yb,
                                         const float* scale, int64_t N, int C) {
    const int64_t total = N * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = x[i] + scale[i % C] * load_y(yf, yb, i);
}
__global__ void scale_add_backward_kernel(float* __restrict__ dyf, __nv_bfloat16* __restrict__ dyb, float* partials,
                                          const float* __restrict__ dout, const float* __restrict__ yf,
                                          const __nv_bfloat16* __restrict__ yb, const float* scale, int64_t N, int C) {
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

// with y == nullptr: mix_norm (out unused); else mix_add_norm
__global__ void __launch_bounds__(kMaxThreads) mix_norm_forward_kernel(float* out, __nv_bfloat16* n, float* rstd,
        const float* x, const float* x0, const float* mix, const __nv_bfloat16* y, const float* scale, int64_t N,
        int C, float eps) {
    __shared__ float red[2][kMaxThreads / 32];
    float m0[kPer], m1[kPer], sc[kPer];
#pragma unroll
    for (int k = 0; k < kPer; k++) {
        const int c = threadIdx.x + blockDim.x * k;
        m0[k] = c < C ? mix[c] : 0.f;
        m1[k] = c < C ? mix[C + c] : 0.f;
        sc[k] = c < C && y ? scale[c] : 0.f;
    }
    const int64_t r0 = (int64_t)blockIdx.x * kFwdRows, r1 = min(r0 + kFwdRows, N);
    for (int64_t r = r0; r < r1; r++) {
        float v[kPer], ss = 0.f;
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            v[k] = 0.f;
            if (c < C) {
                const int64_t i = r * C + c;
                v[k] = mixed(m0[k], m1[k], x[i], x0[i]);
                if (y) v[k] += sc[k] * __bfloat162float(y[i]);
            }
            ss += v[k] * v[k];
        }
        const float rs = rsqrtf(row_sum(ss, red, (int)(r & 1)) / C + eps);
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            if (c < C) {
                if (y) out[r * C + c] = v[k];
                n[r * C + c] = __float2bfloat16(v[k] * rs);
            }
        }
        if (threadIdx.x == 0) rstd[r] = rs;
    }
}

__global__ void __launch_bounds__(kMaxThreads) norm_scale_add_backward_kernel(float* dx, __nv_bfloat16* dy,
        float* partials, const float* dn, const float* inp, const float* rstd, const __nv_bfloat16* y,
        const float* scale, int64_t N, int C) {
    __shared__ float red[2][kMaxThreads / 32];
    float sc[kPer], acc[kPer];
#pragma unroll
    for (int k = 0; k < kPer; k++) {
        const int c = threadIdx.x + blockDim.x * k;
        sc[k] = c < C ? scale[c] : 0.f;
        acc[k] = 0.f;
    }
    const int64_t r0 = (int64_t)blockIdx.x * kRowsPerCta, r1 = min(r0 + kRowsPerCta, N);
    for (int64_t r = r0; r < r1; r++) {
        const float rs = rstd[r];
        float d[kPer], u[kPer], s = 0.f;  // d = dn, u = inp * rstd (the norm's output)
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            d[k] = c < C ? dn[r * C + c] : 0.f;
            u[k] = c < C ? inp[r * C + c] * rs : 0.f;
            s += d[k] * u[k];
        }
        float gin[kPer], yv[kPer];  // every load of the row before its first store
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            gin[k] = c < C ? dx[r * C + c] : 0.f;
            yv[k] = c < C ? __bfloat162float(y[r * C + c]) : 0.f;
        }
        const float mean = row_sum(s, red, (int)(r & 1)) / C;
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            if (c < C) {
                const int64_t i = r * C + c;
                const float g = gin[k] + rs * (d[k] - u[k] * mean);  // dx += r (dn - u mean(dn u))
                dx[i] = g;
                dy[i] = __float2bfloat16(sc[k] * g);
                acc[k] += g * yv[k];
            }
        }
    }
#pragma unroll
    for (int k = 0; k < kPer; k++) {
        const int c = threadIdx.x + blockDim.x * k;
        if (c < C) partials[(int64_t)blockIdx.x * C + c] = acc[k];
    }
}

__global__ void __launch_bounds__(kMaxThreads) mix_norm_backward_kernel(float* dx, float* dx0, float* partials,
        const float* dn, const float* dout, const float* x, const float* x0, const float* mix, const float* rstd,
        int64_t N, int C) {
    __shared__ float red[2][kMaxThreads / 32];
    float m0[kPer], m1[kPer], a0[kPer], a1[kPer];
#pragma unroll
    for (int k = 0; k < kPer; k++) {
        const int c = threadIdx.x + blockDim.x * k;
        m0[k] = c < C ? mix[c] : 0.f;
        m1[k] = c < C ? mix[C + c] : 0.f;
        a0[k] = a1[k] = 0.f;
    }
    const int64_t r0 = (int64_t)blockIdx.x * kRowsPerCta, r1 = min(r0 + kRowsPerCta, N);
    for (int64_t r = r0; r < r1; r++) {
        const float rs = rstd[r];
        // every load of the row before its first store (a store could alias a later load for the
        // compiler, which would then wait out one load round trip per channel)
        float d[kPer], u[kPer], xv[kPer], x0v[kPer], o[kPer], o0[kPer], s = 0.f;  // d = dn, u = x_mix * rstd
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            d[k] = u[k] = xv[k] = x0v[k] = o[k] = o0[k] = 0.f;
            if (c < C) {
                const int64_t i = r * C + c;
                d[k] = dn[i];
                xv[k] = x[i];
                x0v[k] = x0[i];
                o[k] = dout[i];
                o0[k] = dx0[i];
                u[k] = mixed(m0[k], m1[k], xv[k], x0v[k]) * rs;
            }
            s += d[k] * u[k];
        }
        const float mean = row_sum(s, red, (int)(r & 1)) / C;
#pragma unroll
        for (int k = 0; k < kPer; k++) {
            const int c = threadIdx.x + blockDim.x * k;
            if (c < C) {
                const int64_t i = r * C + c;
                const float g = o[k] + rs * (d[k] - u[k] * mean);  // d x_mix
                a0[k] += g * xv[k];
                a1[k] += g * x0v[k];
                dx[i] = m0[k] * g;
                dx0[i] = o0[k] + m1[k] * g;
            }
        }
    }
#pragma unroll
    for (int k = 0; k < kPer; k++) {
        const int c = threadIdx.x + blockDim.x * k;
        if (c < C) {
            partials[(int64_t)blockIdx.x * 2 * C + c] = a0[k];
            partials[(int64_t)blockIdx.x * 2 * C + C + c] = a1[k];
        }
    }
}
int grid_for(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 132 * 16); }
void check_c(const char* who, int C) {
    if (C < 1 || C > kMaxC) fatal("%s: model_dim %d outside [1, %d] (the fused wiring kernels' row layout)", who, C, kMaxC);
}
}  // namespace

// ---- kernel launchers
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
void mix_norm_forward(__nv_bfloat16* n, float* rstd, const float* x, const float* x0, const float* mix, int64_t N, int C,
                      float eps, cudaStream_t stream) {
    check_c("mix_norm_forward", C);
    mix_norm_forward_kernel<<<ceil_div(N, kFwdRows), row_threads(C), 0, stream>>>(nullptr, n, rstd, x, x0, mix, nullptr,
                                                                          nullptr, N, C, eps);
    cudaCheckLaunch();
}
void mix_add_norm_forward(float* out, __nv_bfloat16* n, float* rstd, const float* x, const float* x0, const float* mix,
                          const __nv_bfloat16* y, const float* scale, int64_t N, int C, float eps, cudaStream_t stream) {
    check_c("mix_add_norm_forward", C);
    mix_norm_forward_kernel<<<ceil_div(N, kFwdRows), row_threads(C), 0, stream>>>(out, n, rstd, x, x0, mix, y, scale, N, C,
                                                                          eps);
    cudaCheckLaunch();
}
void norm_scale_add_backward(float* dx, __nv_bfloat16* dy, float* dscale, const float* dn, const float* inp,
                             const float* rstd, const __nv_bfloat16* y, const float* scale, int64_t N, int C,
                             cudaStream_t stream) {
    check_c("norm_scale_add_backward", C);
    const int parts = ceil_div(N, kRowsPerCta);
    float* partials = reduce_scratch((int64_t)parts * C);
    norm_scale_add_backward_kernel<<<parts, row_threads(C), 0, stream>>>(dx, dy, partials, dn, inp, rstd, y, scale, N, C);
    cudaCheckLaunch();
    reduce_partials(dscale, partials, parts, C, true, stream);
}
void mix_norm_backward(float* dx, float* dx0, float* dmix, const float* dn, const float* dout, const float* x,
                       const float* x0, const float* mix, const float* rstd, int64_t N, int C, cudaStream_t stream) {
    check_c("mix_norm_backward", C);
    const int parts = ceil_div(N, kRowsPerCta);
    float* partials = reduce_scratch((int64_t)parts * 2 * C);
    mix_norm_backward_kernel<<<parts, row_threads(C), 0, stream>>>(dx, dx0, partials, dn, dout, x, x0, mix, rstd, N, C);
    cudaCheckLaunch();
    reduce_partials(dmix, partials, parts, 2 * C, true, stream);
}
