// cuBLASLt GEMM wrapper and the dtype casts around it; see model/gemm.cuh.
#include "model/gemm.cuh"
#include <map>
#include <tuple>

namespace {

constexpr size_t kWorkspace = 32ull << 20;  // cuBLASLt's recommendation for Hopper

struct Lt {
    cublasLtHandle_t handle = nullptr;
    void* workspace = nullptr;
};
Lt& lt() {  // created on first use, lives for the process
    static Lt s;
    if (!s.handle) {
        cublasCheck(cublasLtCreate(&s.handle));
        cudaCheck(cudaMalloc(&s.workspace, kWorkspace));
    }
    return s;
}

struct Plan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};
using Key = std::tuple<int, int, int, bool, bool, bool, int>;

// Column-major view: out^T (N, M) = op(b)^T-ish * op(a): cuBLAS's first operand is our b.
Plan& plan_for(GemmOut out_type, int M, int N, int K, bool trans_a, bool trans_b, bool accumulate) {
    static std::map<Key, Plan> cache;
    Key key{M, N, K, trans_a, trans_b, accumulate, (int)out_type};
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    Plan p;
    cublasCheck(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ob, sizeof(ob)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &oa, sizeof(oa)));
    // b stored (K, N) row-major = (N, K) column-major, ld N; stored (N, K) = (K, N) col-major, ld K.
    cublasCheck(trans_b ? cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, K, N, K)
                        : cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, N, K, N));
    cublasCheck(trans_a ? cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, M, K, M)
                        : cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, K, M, K));
    const cudaDataType ct = out_type == GemmOut::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasCheck(cublasLtMatrixLayoutCreate(&p.lc, ct, N, M, N));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = kWorkspace;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(lt().handle, p.op, p.la, p.lb, p.lc, p.lc, pref, 1, &res, &n));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (n == 0) fatal("cuBLASLt: no algorithm for gemm M=%d N=%d K=%d trans_a=%d trans_b=%d", M, N, K, trans_a, trans_b);
    p.algo = res.algo;
    return cache.emplace(key, p).first->second;
}

__global__ void cast_f32_bf16_kernel(__nv_bfloat16* out, const float* in, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(in[i]);
}
__global__ void cast_bf16_f32_kernel(float* out, const __nv_bfloat16* in, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __bfloat162float(in[i]);
}
int grid_for(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 132 * 16); }

}  // namespace

void gemm(void* out, GemmOut out_type, const __nv_bfloat16* a, const __nv_bfloat16* b, int M, int N, int K,
          bool trans_a, bool trans_b, bool accumulate, cudaStream_t stream) {
    if (M <= 0 || N <= 0 || K <= 0) fatal("gemm: bad shape M=%d N=%d K=%d", M, N, K);
    Plan& p = plan_for(out_type, M, N, K, trans_a, trans_b, accumulate);
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    cublasCheck(cublasLtMatmul(lt().handle, p.op, &alpha, b, p.la, a, p.lb, &beta, out, p.lc, out, p.lc, &p.algo,
                               lt().workspace, kWorkspace, stream));
}

void cast_f32_to_bf16(__nv_bfloat16* out, const float* in, int64_t n, cudaStream_t stream) {
    cast_f32_bf16_kernel<<<grid_for(n), 256, 0, stream>>>(out, in, n);
    cudaCheckLaunch();
}
void cast_bf16_to_f32(float* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream) {
    cast_bf16_f32_kernel<<<grid_for(n), 256, 0, stream>>>(out, in, n);
    cudaCheckLaunch();
}
