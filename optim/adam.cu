// Adam CUDA kernel and launcher; see optim/adam.cuh.
#include "optim/adam.cuh"
#include "model/params.h"
#include <cmath>

constexpr int64_t kAdamChunk = 8192;  // elements per block: big tensors spread over many SMs

struct AdamGroupArgs {  // per group, derived on the host in float64 once per step
    float step_size[kAdamMaxGroups];   // lr / (1 - beta1^t)
    float inv_bc2_sqrt[kAdamMaxGroups];  // 1 / sqrt(1 - beta2^t)
    float decay[kAdamMaxGroups];       // 1 - lr*wd
    float beta1[kAdamMaxGroups], beta2[kAdamMaxGroups], eps[kAdamMaxGroups];
};

// ---- CUDA kernel

__global__ void adam_kernel(float* params, float* m, float* v, const float* grads, const AdamTensor* chunks, AdamGroupArgs a) {
    const AdamTensor ch = chunks[blockIdx.x];
    const int gi = ch.group;
    const float b1 = a.beta1[gi], b2 = a.beta2[gi];
    for (int64_t j = threadIdx.x; j < ch.count; j += blockDim.x) {
        const int64_t i = ch.offset + j;
        const float g = grads[i];
        const float mi = b1 * m[i] + (1.f - b1) * g;
        const float vi = b2 * v[i] + (1.f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float p = params[i] * a.decay[gi];
        params[i] = p - a.step_size[gi] * mi / (sqrtf(vi) * a.inv_bc2_sqrt[gi] + a.eps[gi]);
    }
}

// ---- kernel launcher and plan

std::vector<AdamTensor> adam_tensors(const Config& c) {
    std::vector<AdamTensor> ts;
    for (auto& s : param_specs(c)) {
        if (s.group == Group::embed) ts.push_back({s.offset, s.numel(), 0});
        else if (s.group == Group::scalar) ts.push_back({s.offset, s.numel(), 1});
    }
    return ts;
}

void adam_plan_create(AdamPlan* plan, const std::vector<AdamTensor>& tensors) {
    std::vector<AdamTensor> chunks;
    for (auto& t : tensors) {
        if (t.group < 0 || t.group >= kAdamMaxGroups) fatal("adam_plan_create: group %d out of range", t.group);
        for (int64_t o = 0; o < t.count; o += kAdamChunk) chunks.push_back({t.offset + o, std::min(kAdamChunk, t.count - o), t.group});
    }
    *plan = AdamPlan();
    plan->nchunks = (int)chunks.size();
    if (chunks.empty()) return;
    cudaCheck(cudaMalloc(&plan->chunks, chunks.size() * sizeof(AdamTensor)));
    cudaCheck(cudaMemcpy(plan->chunks, chunks.data(), chunks.size() * sizeof(AdamTensor), cudaMemcpyHostToDevice));
}

void adam_plan_destroy(AdamPlan* plan) {
    if (plan->chunks) cudaCheck(cudaFree(plan->chunks));
    *plan = AdamPlan();
}

void adam_step(float* params, float* m, float* v, const float* grads, const AdamPlan& plan, const AdamHyper* hyper,
               int ngroups, int64_t t, cudaStream_t stream) {
    if (ngroups > kAdamMaxGroups) fatal("adam_step: %d groups, at most %d", ngroups, kAdamMaxGroups);
    if (plan.nchunks == 0) return;
    AdamGroupArgs a = {};
    for (int g = 0; g < ngroups; g++) {
        const AdamHyper& h = hyper[g];
        a.step_size[g] = (float)(h.lr / (1.0 - std::pow(h.beta1, (double)t)));
        a.inv_bc2_sqrt[g] = (float)(1.0 / std::sqrt(1.0 - std::pow(h.beta2, (double)t)));
        a.decay[g] = (float)(1.0 - h.lr * h.wd);
        a.beta1[g] = (float)h.beta1;
        a.beta2[g] = (float)h.beta2;
        a.eps[g] = (float)h.eps;
    }
    adam_kernel<<<plan.nchunks, 256, 0, stream>>>(params, m, v, grads, plan.chunks, a);
    cudaCheckLaunch();
}
