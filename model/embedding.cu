// Token embedding CUDA kernels and launchers; see model/embedding.cuh.
#include "model/embedding.cuh"

namespace {
constexpr int kRows = 16;      // vocabulary rows per backward CTA
constexpr int kThreads = 256;  // tokens scanned per step

// ---- CUDA kernels
__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte, int64_t N, int C, int V) {
    const int64_t n = blockIdx.x;
    const int tok = tokens[n];
    const bool ok = tok >= 0 && tok < V;
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = ok ? wte[(int64_t)tok * C + c] : NAN;
}

// Each step scans kStep tokens: 8 consecutive positions per thread, matches compacted into
// `list` in position order by a block-wide exclusive scan of the per-thread counts.
constexpr int kPer = 8, kStep = kThreads * kPer;
__global__ void __launch_bounds__(kThreads) embedding_backward_kernel(float* dwte, const float* dout,
                                                                      const int32_t* tokens, int64_t N, int C, int V) {
    extern __shared__ float acc[];  // (kRows, C)
    __shared__ int list[kStep];     // (position - base) * kRows + row, in position order
    __shared__ int warp_total[kThreads / 32];
    const int v0 = blockIdx.x * kRows;
    for (int i = threadIdx.x; i < kRows * C; i += blockDim.x) acc[i] = 0.f;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t base = 0; base < N; base += kStep) {
        int rows[kPer], cnt = 0;
#pragma unroll
        for (int e = 0; e < kPer; e++) {
            const int64_t n = base + (int64_t)threadIdx.x * kPer + e;
            const int tok = n < N ? tokens[n] : -1;
            rows[e] = (tok >= v0 && tok < v0 + kRows) ? tok - v0 : -1;
            cnt += rows[e] >= 0;
        }
        int incl = cnt;  // inclusive scan over the warp
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            int t = __shfl_up_sync(0xffffffff, incl, o);
            if (lane >= o) incl += t;
        }
        if (lane == 31) warp_total[warp] = incl;
        __syncthreads();
        int offset = incl - cnt, total = 0;
        for (int w = 0; w < kThreads / 32; w++) {
            if (w < warp) offset += warp_total[w];
            total += warp_total[w];
        }
#pragma unroll
        for (int e = 0; e < kPer; e++)
            if (rows[e] >= 0) list[offset++] = (threadIdx.x * kPer + e) * kRows + rows[e];
        __syncthreads();
        // each thread owns fixed channels and adds the matches in position order
        for (int e = 0; e < total; e++) {
            const int64_t m = base + list[e] / kRows;
            const int r = list[e] % kRows;
            for (int c = threadIdx.x; c < C; c += blockDim.x) acc[r * C + c] += dout[m * C + c];
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < kRows * C; i += blockDim.x) {
        const int r = i / C;
        if (v0 + r < V) dwte[(int64_t)(v0 + r) * C + (i % C)] += acc[i];
    }
}
}  // namespace

// ---- kernel launchers
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int C, int V,
                       cudaStream_t stream) {
    embedding_forward_kernel<<<(unsigned)N, 128, 0, stream>>>(out, tokens, wte, N, C, V);
    cudaCheckLaunch();
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int C, int V,
                        cudaStream_t stream) {
    const size_t smem = (size_t)kRows * C * sizeof(float);
    if (smem > 200 * 1024) fatal("embedding_backward: C = %d too large for the kernel", C);
    static size_t attr = 0;
    if (smem > 48 * 1024 && smem > attr) {
        cudaCheck(cudaFuncSetAttribute(embedding_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr = smem;
    }
    embedding_backward_kernel<<<ceil_div(V, kRows), kThreads, smem, stream>>>(dwte, dout, tokens, N, C, V);
    cudaCheckLaunch();
}
