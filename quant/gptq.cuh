// GPTQ on the GPU: the same algorithm, scales, column order and blocks as gptq_quantize_cpu
// (quant/gptq.h), in float64 (H100's FP64 tensor cores make that cheap, and it keeps the codes
// equal to the CPU reference's but for rounding ties).
//   1. Hd = H[perm][perm] with dead inputs' diagonal 1, + λI (λ = damp · mean diag) -- as the CPU.
//   2. U upper with UᵀU = Hd^-1 in one Cholesky and one triangular solve: with J the reversal,
//      J Hd J = L Lᵀ gives Hd^-1 = (J L^-1 J)ᵀ (J L^-1 J), and J L^-1 J is upper with a positive
//      diagonal, so it IS the Cholesky factor U (unique). Blocked Cholesky (64-column panels by
//      one CTA, then cuBLAS dtrsm + dsyrk), L^-1 by dtrsm against the identity.
//   3. Per lazy block of 128 columns: one kernel quantizes the block's columns, rows in parallel
//      (eager updates inside the block), then one dgemm applies W[:, i2:] -= Err · U[i1:i2, i2:].
// Scales and row bits come from the caller (row_scales_cpu), so CPU and GPU quantize on the
// same grid. The cols x cols work is O(cols^3), the rest O(rows · cols^2): all on the GPU.
#pragma once
#include "quant/gptq.h"
#include <cstdint>

// Same contract as gptq_quantize_cpu (q, W, scale, row_bits on the host) except that dH is a
// DEVICE pointer to the (C, C) float64 Hessian. Runs on the legacy default stream, synchronous.
void gptq_quantize_gpu(int8_t* q, const float* W, const double* dH, const uint16_t* scale, const int* row_bits,
                       int64_t R, int64_t C, const GptqOptions& opt);

// U (C, C) row-major upper, UᵀU = (Hd)^-1 for an already permuted and damped dHd (device, both
// float64); the step 2 above, exposed for the test against the CPU factorization.
void gptq_inverse_upper_gpu(double* dU, const double* dHd, int64_t C);
