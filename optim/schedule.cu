// EMA kernel; see optim/schedule.cuh.
#include "optim/schedule.cuh"
#include <algorithm>

// ---- CUDA kernel

// Explicit round-to-nearest products and sum: no FMA contraction, so the result is the CPU
// reference's bit for bit.
__global__ void ema_update_kernel(float* ema, const float* w, int64_t n, float d, float omd) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        ema[i] = __fadd_rn(__fmul_rn(d, ema[i]), __fmul_rn(omd, w[i]));
}

// ---- kernel launcher

void ema_update(float* ema, const float* w, int64_t n, double decay, cudaStream_t stream) {
    if (n == 0) return;
    int grid = (int)std::min<int64_t>((n + 255) / 256, 65536);
    ema_update_kernel<<<grid, 256, 0, stream>>>(ema, w, n, (float)decay, (float)(1.0 - decay));  // as ema_update_cpu
    cudaCheckLaunch();
}
