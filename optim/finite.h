// Non-finite check of a parameter-layout arena (the gradients after the all-reduce): one flag
// per tensor of param_specs, so a NaN/Inf stops the run naming the step and the tensor.
// The CUDA twin is optim/finite.cuh.
#pragma once
#include "model/params.h"
#include <cstdint>
#include <vector>

// flags (specs.size()): 1 where tensor i of x (arena layout of specs) holds a NaN or Inf, else 0.
void nonfinite_flags_cpu(int32_t* flags, const float* x, const std::vector<TensorSpec>& specs);
