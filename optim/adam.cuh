// Adam on the GPU: one fused kernel (moments, decoupled decay, bias-corrected update) over a
// table of chunks, so every Adam tensor of the model (the tied embedding and ~60 small vectors,
// each with its group's lr) is updated by one launch. The math and its CPU twin: optim/adam.h.
#pragma once
#include "model/config.h"
#include "model/cuda_common.cuh"
#include "optim/adam.h"
#include <vector>

constexpr int kAdamMaxGroups = 4;

struct AdamTensor {
    int64_t offset, count;  // elements into the arena (params, grads, m, v share the layout)
    int group;              // index into the hyper array given to adam_step
};
// The model's Adam tensors: group 0 the tied embedding (tied_embed_lr), group 1 every
// Group::scalar tensor (scalar_lr).
std::vector<AdamTensor> adam_tensors(const Config& c);

struct AdamPlan {
    AdamTensor* chunks = nullptr;  // device: the tensors cut into pieces of at most kAdamChunk
    int nchunks = 0;
};
void adam_plan_create(AdamPlan* plan, const std::vector<AdamTensor>& tensors);
void adam_plan_destroy(AdamPlan* plan);

// One step t (1-based) over every tensor of the plan; hyper[g] for group g (ngroups <= 4).
void adam_step(float* params, float* m, float* v, const float* grads, const AdamPlan& plan, const AdamHyper* hyper,
               int ngroups, int64_t t, cudaStream_t stream);
