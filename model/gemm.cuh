// The model's matrix products through cuBLASLt: bf16 operands, fp32 accumulation, bf16 or fp32
// output, optional accumulation into the output (beta = 1, for parameter gradients).
// Row-major convention throughout: out (M, N) = op(a) (M, K) * op(b) (K, N), where op(a) = a if a
// is stored (M, K) and a^T if it is stored (K, M) (trans_a); likewise b stored (K, N) or (N, K).
// The usual three products of a linear layer y = x W^T (x (BT, in), W (out, in)):
//   forward   y  = x  W^T        gemm(y,  x,  W, BT, out, in,  false, true,  ...)
//   input     dx = dy W          gemm(dx, dy, W, BT, in,  out, false, false, ...)
//   weight    dW += dy^T x       gemm(dW, dy, x, out, in, BT,  true,  false, accumulate, fp32 out)
// cuBLASLt has no epilogue for our activations (leaky-ReLU(0.5)^2, softcap); none is used.
#pragma once
#include "model/cuda_common.cuh"

enum class GemmOut { bf16, f32 };

void gemm(void* out, GemmOut out_type, const __nv_bfloat16* a, const __nv_bfloat16* b, int M, int N, int K,
          bool trans_a, bool trans_b, bool accumulate, cudaStream_t stream);

// fp32 master weights -> bf16 GEMM operands (n elements).
void cast_f32_to_bf16(__nv_bfloat16* out, const float* in, int64_t n, cudaStream_t stream);
void cast_bf16_to_f32(float* out, const __nv_bfloat16* in, int64_t n, cudaStream_t stream);
