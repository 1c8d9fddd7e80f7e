// Muon CUDA kernels, cuBLAS Newton-Schulz and the sharded step; see optim/muon.cuh.
#include "optim/muon.cuh"
#include "model/params.h"
#include <algorithm>
#include <cmath>

// ---- CUDA kernels

__global__ void muon_momentum_kernel(float* u, float* buf, const float* grad, int64_t n, float momentum, bool nesterov) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float g = grad[i];
        float b = fmaf(momentum, buf[i], g);
        buf[i] = b;
        if (u) u[i] = nesterov ? fmaf(momentum, b, g) : b;
    }
}

// Fixed-shape tree reduction in shared memory: the same inputs give the same bits every run.
template <int NT>
__device__ float block_sum(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = NT / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

// One block per row r of u (R, C): row_scale[r] = eq_r ? 1/max(||u_r||, eps) : 1 and
// row_sq[r] = ||row_scale[r] * u_r||^2 (what the Frobenius norm sums).
constexpr int kRowThreads = 256;
__global__ void muon_row_stats_kernel(float* row_scale, float* row_sq, const float* u, int cols, bool eq_r, float eps) {
    __shared__ float sh[kRowThreads];
    const float* ur = u + (int64_t)blockIdx.x * cols;
    float ss = 0.f;
    for (int c = threadIdx.x; c < cols; c += kRowThreads) ss = fmaf(ur[c], ur[c], ss);
    ss = block_sum<kRowThreads>(ss, sh);
    if (threadIdx.x == 0) {
        float s = eq_r ? 1.f / fmaxf(sqrtf(ss), eps) : 1.f;
        row_scale[blockIdx.x] = s;
        row_sq[blockIdx.x] = ss * s * s;
    }
}

// One block: inv_norm = 1 / (sqrt(sum_r row_sq[r]) + eps).
constexpr int kNormThreads = 1024;
__global__ void muon_inv_norm_kernel(float* inv_norm, const float* row_sq, int rows, float eps) {
    __shared__ float sh[kNormThreads];
    float s = 0.f;
    for (int r = threadIdx.x; r < rows; r += kNormThreads) s += row_sq[r];
    s = block_sum<kNormThreads>(s, sh);
    if (threadIdx.x == 0) inv_norm[0] = 1.f / (sqrtf(s) + eps);
}

// X (m, k) bf16 = u (R, C) * row_scale * inv_norm, transposed when R > C so that m <= k.
__global__ void muon_to_bf16_kernel(__nv_bfloat16* X, const float* u, const float* row_scale, const float* inv_norm,
                                    int rows, int cols, bool transposed) {
    const int64_t n = (int64_t)rows * cols;
    const float inv = inv_norm[0];
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        __nv_bfloat16 v = __float2bfloat16(u[i] * row_scale[r] * inv);
        X[transposed ? c * rows + r : i] = v;
    }
}

// upd (R, C) = scale * X, reading X (m, k) transposed back when R > C.
__global__ void muon_from_ns_kernel(__nv_bfloat16* upd, const __nv_bfloat16* X, int rows, int cols, bool transposed, float scale) {
    const int64_t n = (int64_t)rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        float x = __bfloat162float(X[transposed ? c * rows + r : i]);
        upd[i] = __float2bfloat16(scale * x);
    }
}

__global__ void muon_apply_kernel(float* param, const __nv_bfloat16* upd, int64_t n, float lr, float decay) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float p = param[i] * decay;
        param[i] = p - lr * __bfloat162float(upd[i]);
    }
}

// ---- kernel launchers

static int grid_for(int64_t n, int threads) { return (int)std::min<int64_t>((n + threads - 1) / threads, 65536); }

void muon_momentum(float* u, float* buf, const float* grad, int64_t n, float momentum, bool nesterov, cudaStream_t stream) {
    if (n == 0) return;
    muon_momentum_kernel<<<grid_for(n, 256), 256, 0, stream>>>(u, buf, grad, n, momentum, nesterov);
    cudaCheckLaunch();
}

void muon_apply(float* param, const __nv_bfloat16* upd, int64_t n, float lr, float wd, cudaStream_t stream) {
    if (n == 0) return;
    muon_apply_kernel<<<grid_for(n, 256), 256, 0, stream>>>(param, upd, n, lr, 1.f - lr * wd);
    cudaCheckLaunch();
}

// Row-major (m, k) X is column-major (k, m) with leading dimension k; every GEMM below is the
// row-major formula rewritten for column-major operands. A and B are read back transposed, which
// is the same matrix: both are symmetric (up to the rounding of the GEMM that made them).
void muon_orthogonalize(__nv_bfloat16* upd, const float* u, int rows, int cols, int ns_steps, bool eq_r,
                        MuonWorkspace* ws, cudaStream_t stream) {
    const bool transposed = rows > cols;
    const int m = transposed ? cols : rows, k = transposed ? rows : cols;
    const int64_t n = (int64_t)rows * cols;
    muon_row_stats_kernel<<<rows, kRowThreads, 0, stream>>>(ws->row_scale, ws->row_sq, u, cols, eq_r, (float)kMuonEps);
    cudaCheckLaunch();
    muon_inv_norm_kernel<<<1, kNormThreads, 0, stream>>>(ws->inv_norm, ws->row_sq, rows, (float)kMuonEps);
    cudaCheckLaunch();
    muon_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(ws->X, u, ws->row_scale, ws->inv_norm, rows, cols, transposed);
    cudaCheckLaunch();

    cublasCheck(cublasSetStream(ws->cublas, stream));
    const float one = 1.f, zero = 0.f, a = (float)kMuonNsA, b = (float)kMuonNsB, c = (float)kMuonNsC;
    __nv_bfloat16 *X = ws->X, *Xn = ws->Xn;
    for (int s = 0; s < ns_steps; s++) {
        // A (m, m) = X X^T: column-major A = X_cm^T X_cm with X_cm (k, m)
        cublasCheck(cublasGemmEx(ws->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, m, k, &one, X, CUDA_R_16BF, k, X, CUDA_R_16BF, k,
                                 &zero, ws->A, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        // B = c A A + b A (one rounding to bf16); B starts as a copy of A
        cudaCheck(cudaMemcpyAsync(ws->B, ws->A, (size_t)m * m * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice, stream));
        cublasCheck(cublasGemmEx(ws->cublas, CUBLAS_OP_N, CUBLAS_OP_N, m, m, m, &c, ws->A, CUDA_R_16BF, m, ws->A, CUDA_R_16BF, m,
                                 &b, ws->B, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        // Xn (m, k) = B X + a X: column-major Xn_cm (k, m) = X_cm B_cm + a X_cm; Xn starts as X
        cudaCheck(cudaMemcpyAsync(Xn, X, (size_t)m * k * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice, stream));
        cublasCheck(cublasGemmEx(ws->cublas, CUBLAS_OP_N, CUBLAS_OP_N, k, m, m, &one, X, CUDA_R_16BF, k, ws->B, CUDA_R_16BF, m,
                                 &a, Xn, CUDA_R_16BF, k, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        std::swap(X, Xn);
    }
    const float scale = (float)std::sqrt(std::max(1.0, (double)rows / cols));
    muon_from_ns_kernel<<<grid_for(n, 256), 256, 0, stream>>>(upd, X, rows, cols, transposed, scale);
    cudaCheckLaunch();
}

// ---- the sharded step

std::vector<MuonMatrix> muon_matrices(const Config& c) {
    std::vector<MuonMatrix> mats;
    for (auto& s : param_specs(c))
        if (s.group == Group::matrix) mats.push_back({s.offset, (int)s.rows, (int)s.cols});
    return mats;
}

void muon_workspace_create(MuonWorkspace* ws, const std::vector<MuonMatrix>& mats, int64_t arena) {
    *ws = MuonWorkspace();
    int64_t max_n = 1, max_rows = 1, max_mm = 1;
    for (auto& mt : mats) {
        int64_t m = std::min(mt.rows, mt.cols);
        max_n = std::max<int64_t>(max_n, (int64_t)mt.rows * mt.cols);
        max_rows = std::max<int64_t>(max_rows, mt.rows);
        max_mm = std::max<int64_t>(max_mm, m * m);
        if (mt.offset + (int64_t)mt.rows * mt.cols > arena) fatal("muon_workspace_create: matrix at %lld runs past the arena", (long long)mt.offset);
    }
    cublasCheck(cublasCreate(&ws->cublas));
    // keep split-K partial sums in fp32: bf16 reductions would add error Newton-Schulz amplifies
    cublasCheck(cublasSetMathMode(ws->cublas, (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    cudaCheck(cudaMalloc(&ws->u, max_n * sizeof(float)));
    cudaCheck(cudaMalloc(&ws->row_scale, max_rows * sizeof(float)));
    cudaCheck(cudaMalloc(&ws->row_sq, max_rows * sizeof(float)));
    cudaCheck(cudaMalloc(&ws->inv_norm, sizeof(float)));
    cudaCheck(cudaMalloc(&ws->X, max_n * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMalloc(&ws->Xn, max_n * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMalloc(&ws->A, max_mm * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMalloc(&ws->B, max_mm * sizeof(__nv_bfloat16)));
    cudaCheck(cudaMalloc(&ws->upd, std::max<int64_t>(arena, 1) * sizeof(__nv_bfloat16)));
    ws->arena = arena;
}

void muon_workspace_destroy(MuonWorkspace* ws) {
    if (ws->cublas) cublasCheck(cublasDestroy(ws->cublas));
    for (void* p : {(void*)ws->u, (void*)ws->row_scale, (void*)ws->row_sq, (void*)ws->inv_norm, (void*)ws->X, (void*)ws->Xn,
                    (void*)ws->A, (void*)ws->B, (void*)ws->upd})
        if (p) cudaCheck(cudaFree(p));
    *ws = MuonWorkspace();
}

void muon_compute_owned(float* bufs, const float* grads, const std::vector<MuonMatrix>& mats, const MuonHyper& h,
                        int rank, int world, MuonWorkspace* ws, cudaStream_t stream) {
    for (size_t i = 0; i < mats.size(); i++) {
        const MuonMatrix& mt = mats[i];
        const int64_t n = (int64_t)mt.rows * mt.cols;
        const bool mine = (int)(i % world) == rank;
        muon_momentum(mine ? ws->u : nullptr, bufs + mt.offset, grads + mt.offset, n, (float)h.momentum, h.nesterov, stream);
        if (mine) muon_orthogonalize(ws->upd + mt.offset, ws->u, mt.rows, mt.cols, h.ns_steps, h.eq_r, ws, stream);
    }
}

void muon_exchange(const std::vector<MuonMatrix>& mats, MuonWorkspace* ws, const Dist& d, cudaStream_t stream) {
    if (d.world == 1) return;
    std::vector<int64_t> offsets, counts;
    std::vector<int> roots;
    for (size_t i = 0; i < mats.size(); i++) {
        offsets.push_back(mats[i].offset);
        counts.push_back((int64_t)mats[i].rows * mats[i].cols);
        roots.push_back((int)(i % d.world));
    }
    dist_broadcast_many(d, ws->upd, ncclBfloat16, offsets.data(), counts.data(), roots.data(), (int)mats.size(), stream);
}

void muon_apply_all(float* params, const std::vector<MuonMatrix>& mats, const MuonHyper& h, MuonWorkspace* ws, cudaStream_t stream) {
    for (auto& mt : mats)
        muon_apply(params + mt.offset, ws->upd + mt.offset, (int64_t)mt.rows * mt.cols, (float)h.lr, (float)h.wd, stream);
}

void muon_step_sharded(float* params, float* bufs, const float* grads, const std::vector<MuonMatrix>& mats,
                       const MuonHyper& h, MuonWorkspace* ws, const Dist& d, cudaStream_t stream) {
    muon_compute_owned(bufs, grads, mats, h, d.rank, d.world, ws, stream);
    muon_exchange(mats, ws, d, stream);
    muon_apply_all(params, mats, h, ws, stream);
}
