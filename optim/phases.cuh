// Where a training step's time goes (PROFILE_EVERY=N): CUDA events recorded on the trainer's
// stream between the step's phases; after the step's sync, the time between two marks is added
// to the phase the later mark names, so micro-batches sum up and the phases tile the step
// (gaps where the GPU waits for the host land in the phase whose mark follows them).
// Off (the default), phase_mark is a no-op: no event, no cost.
#pragma once
#include "model/config.h"
#include "model/cuda_common.cuh"
#include <cstdio>
#include <vector>

enum Phase { PH_FWD, PH_BWD, PH_ALLREDUCE, PH_MUON, PH_ADAM, PH_OTHER, PH_COUNT };
// other = batch upload, gradient scale + NaN/Inf check, EMA, bf16 refresh, loss copies

struct PhaseTimer {
    std::vector<cudaEvent_t> ev;  // (max marks + 1)
    std::vector<int> phase;       // (max marks) phase of the interval ending at mark i
    int used = 0;                 // events recorded this step (0 = off)
    cudaStream_t stream = 0;
};

void phase_timer_create(PhaseTimer* t, int max_marks, cudaStream_t stream);
void phase_timer_destroy(PhaseTimer* t);
// Starts timing one step (records the first event) when `on`; otherwise the step's marks are no-ops.
void phase_start(PhaseTimer* t, bool on);
// The time since the previous mark (or the start) goes to `phase`.
void phase_mark(PhaseTimer* t, int phase);
// After the stream has synchronized: ms[PH_COUNT] summed over the step's intervals; returns false
// when this step was not timed. Ends the step.
bool phase_sums(PhaseTimer* t, double* ms);

// Lower bounds of the phases for one step of `tokens` tokens per GPU on `world` GPUs, at the
// peak rates given (bf16 dense FLOP/s, HBM bytes/s): fwd and bwd from the matmul FLOPs (GEMMs,
// attention scores and values, the Mamba-3 chunked scan's products; bwd = 2x fwd), Muon from the
// Newton-Schulz FLOPs of this rank's share, Adam and other from the bytes they must move.
void phase_floors(const Config& c, int64_t tokens, int world, double flops_per_s, double bytes_per_s, double* ms);
void phase_print(FILE* f, const char* label, const double* ms);  // "fwd X bwd Y allreduce Z muon M adam A other O ms"
