// Deterministic column sums for parameter gradients (no float atomics): a layer's kernel writes
// one partial row per CTA into a scratch (nparts, ncols); reduce_partials sums each column over
// the parts in a fixed order and adds (or writes) the result.
#pragma once
#include "model/cuda_common.cuh"

// Scratch of at least n floats, grown on demand, shared by every launcher on the one stream the
// trainer uses (a launch may overwrite what an earlier one left there).
float* reduce_scratch(int64_t n);

// dst[c] (+)= sum_p partials[p * ncols + c], p = 0..nparts-1 in a fixed tree order.
void reduce_partials(float* dst, const float* partials, int nparts, int ncols, bool accumulate, cudaStream_t stream);
