// EMA of the weights on the GPU; the rule and the CPU twin are in optim/schedule.h.
#pragma once
#include "model/cuda_common.cuh"

// ema (n) = decay*ema + (1-decay)*w (n), rounded as the CPU twin rounds (bit-identical).
void ema_update(float* ema, const float* w, int64_t n, double decay, cudaStream_t stream);
