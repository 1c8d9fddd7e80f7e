// GPTQ Hessians from the forward's activations; see quant/hessian.cuh.
#include "quant/hessian.cuh"
#include "model/gemm.cuh"  // defines: gemm
#include "quant/plan.h"    // defines: quant_plan, TensorKind

namespace {

__global__ void f32_to_f64_kernel(double* out, const float* in, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = (double)in[i];
}

// The activation that multiplies plan tensor p (see the table in hessian.cuh).
const bf16* input_of(const TensorPlan& p, const GpuActs& a) {
    if (p.kind == TensorKind::embed) return a.xf;
    const GpuLayerActs& L = a.layers[p.spec.layer];
    switch (p.kind) {
    case TensorKind::attn_qkv: case TensorKind::in_proj: return L.n1;
    case TensorKind::attn_proj: return L.y;
    case TensorKind::out_proj: return L.o;
    case TensorKind::mlp_fc: return L.n2;
    case TensorKind::mlp_proj: return L.a;
    default: fatal("hessians: no input for %s", p.spec.name.c_str());
    }
}

}  // namespace

void hessians_create(GpuHessians* hs, const Config& c) {
    *hs = GpuHessians();
    for (auto& p : quant_plan(c)) {
        float* h = nullptr;
        const int64_t C = p.is_matrix() ? p.spec.cols : 0;
        if (C) {
            cudaCheck(cudaMalloc(&h, C * C * sizeof(float)));
            cudaCheck(cudaMemset(h, 0, C * C * sizeof(float)));
        }
        hs->h.push_back(h);
        hs->cols.push_back(C);
    }
}

void hessians_destroy(GpuHessians* hs) {
    for (float* h : hs->h)
        if (h) cudaCheck(cudaFree(h));
    *hs = GpuHessians();
}

void hessians_accumulate(GpuHessians* hs, const GpuModel& m) {
    auto plan = quant_plan(m.cfg);
    const int N = m.B * m.T;
    for (size_t k = 0; k < plan.size(); k++) {
        if (!hs->h[k]) continue;
        const int C = (int)hs->cols[k];
        // H (C, C) += xᵀ x, x (N, C) bf16
        gemm(hs->h[k], GemmOut::f32, input_of(plan[k], m.a), input_of(plan[k], m.a), C, C, N, true, false, true, m.stream);
    }
    hs->tokens += N;
}

void hessians_all_reduce(GpuHessians* hs, const Dist& d, cudaStream_t stream) {
    if (d.world == 1) return;
    for (size_t k = 0; k < hs->h.size(); k++)
        if (hs->h[k]) dist_all_reduce(d, hs->h[k], hs->cols[k] * hs->cols[k], ncclFloat, ncclSum, stream);
    hs->tokens *= d.world;  // every rank ran the same number of micro-batches
}

std::vector<const double*> hessians_to_device_f64(const GpuHessians& hs, cudaStream_t stream) {
    std::vector<const double*> out(hs.h.size(), nullptr);
    for (size_t k = 0; k < hs.h.size(); k++) {
        if (!hs.h[k]) continue;
        const int64_t n = hs.cols[k] * hs.cols[k];
        double* d;
        cudaCheck(cudaMalloc(&d, n * sizeof(double)));
        f32_to_f64_kernel<<<(int)std::min<int64_t>((n + 255) / 256, 2048), 256, 0, stream>>>(d, hs.h[k], n);
        cudaCheckLaunch();
        out[k] = d;
    }
    cudaCheck(cudaStreamSynchronize(stream));
    return out;
}

std::vector<std::vector<double>> hessians_to_host(const GpuHessians& hs, cudaStream_t stream) {
    std::vector<std::vector<double>> out(hs.h.size());
    cudaCheck(cudaStreamSynchronize(stream));
    for (size_t k = 0; k < hs.h.size(); k++) {
        if (!hs.h[k]) continue;
        std::vector<float> f((size_t)(hs.cols[k] * hs.cols[k]));
        cudaCheck(cudaMemcpy(f.data(), hs.h[k], f.size() * sizeof(float), cudaMemcpyDeviceToHost));
        out[k].assign(f.begin(), f.end());
    }
    return out;
}
