// Late-QAT fake quantization, CUDA: see quant/fake_quant.cuh.
#include "quant/fake_quant.cuh"
#include <cuda_fp16.h>

void fake_quant_gpu_create(FakeQuantGpu* f, const Config& cfg) {
    FakeQuantRows r = fake_quant_rows(cfg);
    f->rows = (int64_t)r.offset.size();
    cudaCheck(cudaMalloc(&f->offset, f->rows * sizeof(int64_t)));
    cudaCheck(cudaMalloc(&f->cols, f->rows * sizeof(int32_t)));
    cudaCheck(cudaMalloc(&f->bits, f->rows * sizeof(int32_t)));
    cudaCheck(cudaMemcpy(f->offset, r.offset.data(), f->rows * sizeof(int64_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(f->cols, r.cols.data(), f->rows * sizeof(int32_t), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(f->bits, r.bits.data(), f->rows * sizeof(int32_t), cudaMemcpyHostToDevice));
    f->matrix_bits = cfg.quant_bits_matrix;
    f->step = cfg.quant_matrix_step;
}

void fake_quant_gpu_destroy(FakeQuantGpu* f) {
    cudaCheck(cudaFree(f->offset));
    cudaCheck(cudaFree(f->cols));
    cudaCheck(cudaFree(f->bits));
    *f = FakeQuantGpu{};
}

// One warp per row: absmax, the fp16 scale exactly as row_scales_cpu computes it
// (double amax / qmax, to float, to half with round-to-nearest-even; a positive scale that
// rounds to 0 becomes the smallest subnormal; rows at matrix_bits times step as apply_matrix_step,
// the same double product), then bf16(clamp(rint(w / s)) * s).
__global__ void fake_quant_kernel(__nv_bfloat16* out, const float* params, const int64_t* offset, const int32_t* cols,
                                  const int32_t* bits, int64_t rows, int matrix_bits, double step) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* w = params + offset[row];
    const int C = cols[row];
    float amax = 0.f;
    for (int c = lane; c < C; c += 32) amax = fmaxf(amax, fabsf(w[c]));
    for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const int qmax = (1 << (bits[row] - 1)) - 1;
    const double s_exact = (double)amax / qmax;
    __half h = __float2half_rn((float)s_exact);
    if (s_exact > 0 && __half2float(h) == 0.f) h = __ushort_as_half((unsigned short)1);
    if (step != 1.0 && bits[row] == matrix_bits && __half_as_ushort(h) != 0)
        h = __float2half_rn((float)((double)__half2float(h) * step));
    const double s = (double)__half2float(h);
    __nv_bfloat16* o = out + offset[row];
    for (int c = lane; c < C; c += 32) {
        double q = s > 0 ? rint((double)w[c] / s) : 0.0;
        q = fmin((double)qmax, fmax(-(double)qmax, q));
        o[c] = __float2bfloat16_rn((float)q * (float)s);  // q·s is exact in float (<= 8 + 11 bits)
    }
}

void fake_quant_bf16(__nv_bfloat16* params_bf16, const float* params, const FakeQuantGpu& f, cudaStream_t stream) {
    const int warps = 8;
    fake_quant_kernel<<<ceil_div(f.rows, warps), warps * 32, 0, stream>>>(params_bf16, params, f.offset, f.cols, f.bits,
                                                                           f.rows, f.matrix_bits, f.step);
    cudaCheckLaunch();
}
