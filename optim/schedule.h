// Schedules of the training run, keyed to the wall-clock cap (spec/model.md, Training):
// - lr multiplier: optional linear warmup from 0 (lr_warmup_steps; the seed has none), constant 1,
//   then a linear warmdown to 0 over the last warmdown_iters steps. With a wall-clock cap the run
//   ends at the cap, not at a step count, so the warmdown is placed by time: the mean step time so
//   far (elapsed / max(step, 1)) turns warmdown_iters into a duration, and the multiplier is
//   remaining_time / warmdown_duration once that is below 1 (parameter-golf's lr_mul). Without a
//   cap it is (iterations - step) / warmdown_iters over the last warmdown_iters steps.
// - Muon momentum: linear from muon_momentum_warmup_start to muon_momentum over
//   muon_momentum_warmup_steps steps, then constant.
// - EMA of the weights: ema = d*ema + (1-d)*w after every optimizer step (d = ema_decay, 0 = off),
//   started from the initial weights; the CUDA twin is ema_update in optim/schedule.cuh. With
//   ema_warmup the decay of the update after step t is min(ema_decay, (1+t)/(10+t)): at a constant
//   0.997 the initialization keeps a weight of 0.997^t (25% after 463 steps, which made a 120 s
//   run's EMA 0.12 bpb worse than its live weights); warmed up it is gone after a few dozen steps,
//   and from t = 2990 on the decay is the seed's 0.997, so long runs are unchanged.
#pragma once
#include "model/config.h"
#include <cstdint>

// step: optimizer steps taken so far (0 for the first); elapsed_s: training seconds so far.
double lr_multiplier(const Config& c, int64_t step, double elapsed_s);
// Whether the training loop takes step `step` (0-based count of steps done): below c.iterations,
// below stop_at (--stop-at; < 0: none) and, with a wall-clock cap, while elapsed_s + reserve_s (the
// room kept for the GPTQ Hessians' forward passes) is below it. Multi-GPU: every rank must get the
// same answer at the same step, or one rank leaves the loop for validation (a 1-int barrier, then
// 4-double sums) while the others all-reduce the gradients (arena floats): mismatched collectives,
// a hang until the watchdog kills the run. The inputs must therefore be identical on every rank:
// train.cu gives every rank rank 0's step time (dist_broadcast_many), never its own clock.
bool train_continues(const Config& c, int64_t step, int64_t stop_at, double elapsed_s, double reserve_s);
double muon_momentum_at(const Config& c, int64_t step);
double ema_decay_at(const Config& c, int64_t step);
// ema (n) = decay*ema + (1-decay)*w (n)
void ema_update_cpu(float* ema, const float* w, int64_t n, double decay);
