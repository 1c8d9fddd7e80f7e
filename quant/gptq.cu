// GPTQ on the GPU, float64; see quant/gptq.cuh (the algorithm is quant/gptq.h's).
#include "quant/gptq.cuh"
#include "model/cuda_common.cuh"
#include "quant/pack.h"  // defines: half_to_float
#include <vector>

namespace {

constexpr int kPanel = 64;  // Cholesky panel, factored by one CTA in shared memory
constexpr int kRows = 32;   // rows per CTA of the column kernel (one thread per row)

cublasHandle_t handle() {  // created on first use, lives for the process
    static cublasHandle_t h = nullptr;
    if (!h) cublasCheck(cublasCreate(&h));
    return h;
}

template <typename T>
T* upload(const T* h, int64_t n) {
    T* d;
    cudaCheck(cudaMalloc(&d, std::max<int64_t>(n, 1) * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// Unblocked Cholesky of one kb x kb diagonal block (column-major, ld), lower factor in place.
// The trailing updates of the previous panels were applied by dsyrk (right-looking).
__global__ void potf2_kernel(double* A, int ld, int kb, int* info) {
    __shared__ double s[kPanel][kPanel + 1];  // s[i][j] = A(i, j)
    for (int t = threadIdx.x; t < kb * kb; t += blockDim.x) s[t % kb][t / kb] = A[t % kb + (int64_t)(t / kb) * ld];
    __syncthreads();
    for (int j = 0; j < kb; j++) {
        const double d = s[j][j];
        if (!(d > 0)) {  // every thread read the same d: all leave together
            if (threadIdx.x == 0) *info = 1;
            return;
        }
        __syncthreads();
        const double r = sqrt(d);
        if (threadIdx.x == 0) s[j][j] = r;
        for (int i = j + 1 + threadIdx.x; i < kb; i += blockDim.x) s[i][j] /= r;
        __syncthreads();
        const int m = kb - j - 1;
        for (int t = threadIdx.x; t < m * m; t += blockDim.x) {
            const int i = j + 1 + t % m, l = j + 1 + t / m;
            if (l <= i) s[i][l] -= s[i][j] * s[l][j];
        }
        __syncthreads();
    }
    for (int t = threadIdx.x; t < kb * kb; t += blockDim.x)
        if (t % kb >= t / kb) A[t % kb + (int64_t)(t / kb) * ld] = s[t % kb][t / kb];
}

// out[i][j] = in[n-1-i][n-1-j] (the reversal J in J Hd J)
__global__ void reverse_kernel(double* out, const double* in, int n) {
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < (int64_t)n * n; t += (int64_t)gridDim.x * blockDim.x)
        out[t] = in[(int64_t)(n - 1 - t / n) * n + (n - 1 - t % n)];
}
__global__ void identity_kernel(double* X, int n) {
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < (int64_t)n * n; t += (int64_t)gridDim.x * blockDim.x)
        X[t] = t / n == t % n ? 1.0 : 0.0;
}
// U[i][j] = Linv(n-1-i, n-1-j) for j >= i (Linv column-major), 0 below the diagonal
__global__ void upper_from_inverse_kernel(double* U, const double* Linv, int n) {
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < (int64_t)n * n; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / n, j = t % n;
        U[t] = j >= i ? Linv[(n - 1 - i) + (int64_t)(n - 1 - j) * n] : 0.0;
    }
}
// Hd[i][j] = H[perm[i]][perm[j]]; diagonal: 1 for a dead input, then + lambda
__global__ void permute_damp_kernel(double* Hd, const double* H, const int* perm, const char* dead, int n, double lambda) {
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < (int64_t)n * n; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / n, j = t % n;
        double v = H[(int64_t)perm[i] * n + perm[j]];
        if (i == j) v = (dead[i] ? 1.0 : v) + lambda;
        Hd[t] = v;
    }
}
// Wt[k][r] = W[r][perm[k]] (0 for a dead input): column-major W in GPTQ's column order
__global__ void gather_kernel(double* Wt, const float* W, const int* perm, const char* dead, int64_t R, int C) {
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < R * C; t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t k = t / R, r = t % R;
        Wt[t] = dead[k] ? 0.0 : (double)W[r * C + perm[k]];
    }
}

// One lazy block [i1, i2): thread = row; quantize each column, eager updates inside the block,
// the scaled errors to E (i2-i1, R) for the dgemm that updates the columns after i2.
__global__ void gptq_block_kernel(int8_t* q, double* Wt, double* E, const double* U, const double* scale, const int* qmax,
                                  const int* perm, int64_t R, int C, int i1, int i2) {
    extern __shared__ double w[];  // (i2 - i1, kRows): this CTA's rows of the block's columns
    const int t = threadIdx.x;
    const int64_t r = (int64_t)blockIdx.x * kRows + t;
    if (r >= R) return;  // each thread only touches its own smem column: no barrier needed
    for (int i = i1; i < i2; i++) w[(i - i1) * kRows + t] = Wt[(int64_t)i * R + r];
    const double s = scale[r];
    const int qm = qmax[r];
    for (int i = i1; i < i2; i++) {
        const double wi = w[(i - i1) * kRows + t];
        const int qi = s > 0 ? (int)fmin((double)qm, fmax((double)-qm, rint(wi / s))) : 0;  // rint: ties to even
        q[r * C + perm[i]] = (int8_t)qi;
        const double e = (wi - qi * s) / U[(int64_t)i * C + i];
        E[(int64_t)(i - i1) * R + r] = e;
        for (int k = i + 1; k < i2; k++) w[(k - i1) * kRows + t] -= e * U[(int64_t)i * C + k];
    }
}

int grid_for(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 132 * 16); }

}  // namespace

void gptq_inverse_upper_gpu(double* dU, const double* dHd, int64_t C) {
    const int n = (int)C;
    cublasHandle_t h = handle();
    cublasCheck(cublasSetStream(h, 0));
    double *P, *X;
    int* info;
    cudaCheck(cudaMalloc(&P, C * C * sizeof(double)));
    cudaCheck(cudaMalloc(&X, C * C * sizeof(double)));
    cudaCheck(cudaMalloc(&info, sizeof(int)));
    cudaCheck(cudaMemset(info, 0, sizeof(int)));
    reverse_kernel<<<grid_for(C * C), 256>>>(P, dHd, n);  // P = J Hd J (symmetric: layout-free)
    cudaCheckLaunch();
    // blocked right-looking Cholesky, column-major: P = L Lᵀ, L in the lower triangle
    const double one = 1.0, minus_one = -1.0;
    for (int k = 0; k < n; k += kPanel) {
        const int kb = std::min(kPanel, n - k), m = n - k - kb;
        double* A11 = P + k + (int64_t)k * n;
        potf2_kernel<<<1, 256>>>(A11, n, kb, info);
        cudaCheckLaunch();
        if (m == 0) continue;
        double* A21 = A11 + kb;
        cublasCheck(cublasDtrsm(h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, m, kb, &one,
                                A11, n, A21, n));  // A21 = A21 L11^-T
        cublasCheck(cublasDsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, kb, &minus_one, A21, n, &one,
                                A21 + (int64_t)kb * n, n));  // A22 -= A21 A21ᵀ
    }
    identity_kernel<<<grid_for(C * C), 256>>>(X, n);
    cudaCheckLaunch();
    cublasCheck(cublasDtrsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, n, n, &one, P, n,
                            X, n));  // X = L^-1
    upper_from_inverse_kernel<<<grid_for(C * C), 256>>>(dU, X, n);
    cudaCheckLaunch();
    int bad = 0;
    cudaCheck(cudaMemcpy(&bad, info, sizeof(int), cudaMemcpyDeviceToHost));
    if (bad) fatal("gptq: the damped Hessian (%lld x %lld) is not positive definite", (long long)C, (long long)C);
    cudaCheck(cudaFree(P));
    cudaCheck(cudaFree(X));
    cudaCheck(cudaFree(info));
}

void gptq_quantize_gpu(int8_t* q, const float* W, const double* dH, const uint16_t* scale, const int* row_bits,
                       int64_t R, int64_t C, const GptqOptions& opt) {
    const int bs = std::max(1, opt.block_size);
    if ((size_t)bs * kRows * sizeof(double) > 48 * 1024) fatal("gptq_quantize_gpu: block_size %d > %d", bs, 48 * 1024 / (kRows * 8));
    // column order and damping from the diagonal, exactly as the CPU version
    std::vector<double> diag((size_t)C);
    cudaCheck(cudaMemcpy2D(diag.data(), sizeof(double), dH, (C + 1) * sizeof(double), sizeof(double), C, cudaMemcpyDeviceToHost));
    std::vector<int64_t> perm64;
    std::vector<char> dead;
    double lambda;
    gptq_column_order(diag.data(), C, opt, &perm64, &dead, &lambda);
    std::vector<int> perm(perm64.begin(), perm64.end()), qmax((size_t)R);
    std::vector<double> s((size_t)R);
    for (int64_t r = 0; r < R; r++) {
        s[r] = half_to_float(scale[r]);
        qmax[r] = (1 << (row_bits[r] - 1)) - 1;
    }
    int* d_perm = upload(perm.data(), C);
    char* d_dead = upload(dead.data(), C);
    double* d_s = upload(s.data(), R);
    int* d_qmax = upload(qmax.data(), R);
    float* d_W = upload(W, R * C);
    double *Hd, *U, *Wt, *E;
    int8_t* d_q;
    cudaCheck(cudaMalloc(&Hd, C * C * sizeof(double)));
    cudaCheck(cudaMalloc(&U, C * C * sizeof(double)));
    cudaCheck(cudaMalloc(&Wt, R * C * sizeof(double)));
    cudaCheck(cudaMalloc(&E, R * bs * sizeof(double)));
    cudaCheck(cudaMalloc(&d_q, R * C));
    cublasCheck(cublasSetStream(handle(), 0));
    permute_damp_kernel<<<grid_for(C * C), 256>>>(Hd, dH, d_perm, d_dead, (int)C, lambda);
    cudaCheckLaunch();
    gptq_inverse_upper_gpu(U, Hd, C);
    gather_kernel<<<grid_for(R * C), 256>>>(Wt, d_W, d_perm, d_dead, R, (int)C);
    cudaCheckLaunch();
    const double one = 1.0, minus_one = -1.0;
    for (int i1 = 0; i1 < C; i1 += bs) {
        const int i2 = (int)std::min<int64_t>(C, i1 + bs);
        gptq_block_kernel<<<ceil_div(R, kRows), kRows, (size_t)(i2 - i1) * kRows * sizeof(double)>>>(
            d_q, Wt, E, U, d_s, d_qmax, d_perm, R, (int)C, i1, i2);
        cudaCheckLaunch();
        if (i2 == C) break;
        // W[:, i2:] -= E · U[i1:i2, i2:]   (column-major: Wt is W (R, C) with ld R; U row-major = Uᵀ column-major)
        cublasCheck(cublasDgemm(handle(), CUBLAS_OP_N, CUBLAS_OP_T, (int)R, (int)(C - i2), i2 - i1, &minus_one, E, (int)R,
                                U + (int64_t)i1 * C + i2, (int)C, &one, Wt + (int64_t)i2 * R, (int)R));
    }
    cudaCheck(cudaMemcpy(q, d_q, R * C, cudaMemcpyDeviceToHost));
    for (void* p : {(void*)d_perm, (void*)d_dead, (void*)d_s, (void*)d_qmax, (void*)d_W, (void*)Hd, (void*)U, (void*)Wt,
                    (void*)E, (void*)d_q})
        cudaCheck(cudaFree(p));
}
