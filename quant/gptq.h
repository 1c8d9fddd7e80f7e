// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", Algorithm 1), CPU reference, and the round-to-nearest fallback.
// A linear layer y = W x with W (R, C) and inputs x collected into H = sum x xᵀ (C, C) is
// quantized to Q minimizing tr((W−Q) H (W−Q)ᵀ): columns are quantized one at a time and the
// error of each is spread onto the not-yet-quantized columns through the upper Cholesky factor
// U of the damped inverse Hessian (H + λI)^-1 = Uᵀ U:
//     q_j = quant(w_j);  e = (w_j − q_j) / U[j][j];  w_k −= e · U[j][k]   for k > j.
// Lazy blocks of `block_size` columns apply the updates to the rest of the matrix once per
// block (one GEMM on the GPU). Every row is independent given U, which is what makes the
// per-row bit widths (INT8 rows inside an INT6 in_proj) free: a row's bits only change its grid.
// Quantization grid, per row r with b = row_bits[r]: symmetric, qmax = 2^(b-1) − 1,
// q ∈ [−qmax, qmax], value = q · scale[r], scale stored as fp16 (and used rounded, so the
// dequantized weights are exactly what the artifact reproduces).
// The CUDA version (later) mirrors this file: same scales, same column order, same blocks.
#pragma once
#include <cstdint>
#include <vector>

struct GptqOptions {
    double damp = 0.01;     // λ = damp · mean(diag H)
    int block_size = 128;   // lazy-batch width
    bool act_order = true;  // quantize columns in order of decreasing diag(H)
    bool clip_search = true;  // quantize_model's scales: percentile clip search (false: absmax)
};

// Per-row scales, fp16 bits. clip_search = false: scale = max|w_row| / qmax (absmax).
// clip_search = true: the percentile fallback: the clip ratio c in a fixed list
// (1.0 down to 0.80) minimizing the row's squared round-to-nearest error, scale = c·max|w|/qmax.
void row_scales_cpu(uint16_t* scale, const float* W, const int* row_bits, int64_t R, int64_t C, bool clip_search);

// Round to nearest (ties to even) on the given scales: the fallback when no Hessian exists.
void rtn_quantize_cpu(int8_t* q, const float* W, const uint16_t* scale, const int* row_bits, int64_t R, int64_t C);

// GPTQ on the given scales. W (R, C), H (C, C) symmetric positive semi-definite (not modified),
// q (R, C) out. Columns with H[j][j] == 0 (inputs never active) are quantized to 0.
// fatal() if the damped Hessian is not positive definite.
void gptq_quantize_cpu(int8_t* q, const float* W, const double* H, const uint16_t* scale, const int* row_bits,
                       int64_t R, int64_t C, const GptqOptions& opt);

// The column order and damping both versions use: perm (act-order: decreasing diag, stable),
// dead[i] for permuted column i with diag 0, λ = damp · mean of the diagonal (dead ones counted as 1).
void gptq_column_order(const double* diag, int64_t C, const GptqOptions& opt, std::vector<int64_t>* perm,
                       std::vector<char>* dead, double* lambda);

// U upper (row-major C x C) with UᵀU = Hd^-1 for the permuted, damped Hd (fatal if not positive definite).
std::vector<double> gptq_inverse_upper_cpu(std::vector<double> Hd, int64_t C);

// tr((W − Q) H (W − Q)ᵀ) with Q = q · scale (H = nullptr: the plain squared error).
double quant_error_cpu(const float* W, const int8_t* q, const uint16_t* scale, const double* H, int64_t R, int64_t C);

// Lower Cholesky factor in place (row-major n×n, lower triangle used); false if not positive definite.
bool cholesky_lower(double* A, int64_t n);
