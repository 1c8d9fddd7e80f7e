// GPTQ Hessians on the GPU: H = Σ xᵀx (summed over tokens) of the input x of every quantized
// matrix, from forward passes of the trained model on training micro-batches (after training:
// golf.md counts them inside the 600 s, since they read training data). The inputs are the
// activations gpu_model_forward leaves in GpuActs:
//   attn_qkv, in_proj   n1 (N, C)            attn_proj   y (N, NH*HD) attention output
//   out_proj            o (N, DI) gated scan output
//   mlp_fc              n2 (N, C)            mlp_proj    a (N, F) leaky_relu(h, 0.5)^2
//   wte (the tied head) xf (N, C) final-norm output (PR #1890's embedding Hessian)
// One cuBLAS GEMM per matrix per micro-batch, bf16 operands, fp32 accumulation into an fp32
// (cols, cols) buffer with beta = 1; summed over ranks; float64 for GPTQ and the Hessians file.
#pragma once
#include "model/model.cuh"
#include "optim/dist.cuh"
#include <vector>

struct GpuHessians {
    std::vector<float*> h;     // per quant_plan entry: device (cols, cols) fp32, nullptr for scalars
    std::vector<int64_t> cols;
    int64_t tokens = 0;        // summed into each H (this rank, then all ranks after the reduce)
};

void hessians_create(GpuHessians* hs, const Config& c);  // zeroed
void hessians_destroy(GpuHessians* hs);
// H += xᵀx for every matrix, from the activations of the last gpu_model_forward(m, ...).
void hessians_accumulate(GpuHessians* hs, const GpuModel& m);
// Sums H (and tokens) over ranks; no-op on one GPU.
void hessians_all_reduce(GpuHessians* hs, const Dist& d, cudaStream_t stream);
// Device float64 copies (caller frees; nullptr where none), for gptq_quantize_gpu.
std::vector<const double*> hessians_to_device_f64(const GpuHessians& hs, cudaStream_t stream);
// Host float64 copies (empty where none), the layout hessians_write (quant/export.h) takes.
std::vector<std::vector<double>> hessians_to_host(const GpuHessians& hs, cudaStream_t stream);
