// Non-finite check of a parameter-layout arena on the GPU (CPU twin: optim/finite.h).
// One launch over a chunk table (16384 elements per block, every tensor of param_specs cut in
// chunks) reads the whole arena once (~21 M floats: ~0.03 ms of HBM at the seed's size); a block
// that sees a NaN/Inf stores 1 into its tensor's flag. Several blocks may store the same 1 into
// one flag: the result is the same whatever the order (no atomics needed).
// The flags are copied into pinned host memory on the same stream: read them after the stream's
// next synchronization (the trainer's per-step loss sync), no extra sync.
#pragma once
#include "model/cuda_common.cuh"
#include "model/params.h"
#include <string>
#include <vector>

struct FiniteChunk {
    int64_t offset, count;  // elements of the arena
    int32_t tensor;         // index into param_specs
};

struct FiniteCheck {
    std::vector<std::string> names;  // (ntensors) for the error message
    int ntensors = 0, nchunks = 0;
    FiniteChunk* chunks = nullptr;   // device (nchunks)
    int32_t* flags = nullptr;        // device (ntensors)
    int32_t* host_flags = nullptr;   // pinned (ntensors)
};

void finite_check_create(FiniteCheck* fc, const std::vector<TensorSpec>& specs);
void finite_check_destroy(FiniteCheck* fc);
// Enqueues: flags = 0, the check of x (specs' arena layout), flags -> host_flags.
void finite_check_launch(FiniteCheck* fc, const float* x, cudaStream_t stream);
// After the stream has synchronized: the first flagged tensor (param_specs order), -1 if none.
int finite_check_first(const FiniteCheck& fc);
