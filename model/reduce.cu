// Deterministic column sums: see model/reduce.cuh.
#include "model/reduce.cuh"

namespace {
__global__ void reduce_partials_kernel(float* dst, const float* partials, int nparts, int ncols, bool accumulate) {
    const int c = blockIdx.x;
    float s = 0.f;
    for (int p = threadIdx.x; p < nparts; p += blockDim.x) s += partials[(int64_t)p * ncols + c];
    __shared__ float sh[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? sh[threadIdx.x] : 0.f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        if (threadIdx.x == 0) dst[c] = accumulate ? dst[c] + s : s;
    }
}
}  // namespace

float* reduce_scratch(int64_t n) {
    static float* buf = nullptr;
    static int64_t cap = 0;
    if (n > cap) {
        if (buf) cudaCheck(cudaFree(buf));  // cudaFree synchronizes: no launch still reads it
        cap = n;
        cudaCheck(cudaMalloc(&buf, cap * sizeof(float)));
    }
    return buf;
}

void reduce_partials(float* dst, const float* partials, int nparts, int ncols, bool accumulate, cudaStream_t stream) {
    reduce_partials_kernel<<<ncols, 256, 0, stream>>>(dst, partials, nparts, ncols, accumulate);
    cudaCheckLaunch();
}
