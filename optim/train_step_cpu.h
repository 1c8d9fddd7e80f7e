// One training step of the whole model on the CPU: the step the GPU trainer must equal, and the
// twin of tools/ref/train_ref.py (PyTorch), tested against it (tests/test_trainstep.cpp).
//
//   grads = 0
//   for m < micro:  loss_m = model_forward_cpu(windows[m]); model_backward_cpu (accumulate)
//   grads /= micro                                  (gradient of the mean over all micro batches)
//   mult = lr_multiplier(cfg, step, elapsed_s); mom = muon_momentum_at(cfg, step)
//   Group::matrix: muon_step_cpu(lr = matrix_lr*mult, momentum mom, wd muon_wd, ...)
//   Group::embed:  adam_step_cpu(lr = tied_embed_lr*mult, wd adam_wd, t = step+1)
//   Group::scalar: adam_step_cpu(lr = scalar_lr*mult,     wd adam_wd, t = step+1)
//   step += 1; return mean(loss_m)
//
// Not here: EMA (ema_update_cpu after the step; it does not change training), late QAT, the
// warm-up-and-reset of the seed (a reset is a fresh TrainCpu), multi-rank reduction (a world of W
// ranks with `micro` micro steps each is this step with micro*W micro batches).
// All state lives in arenas of the param_specs layout (params, grads, Muon momentum, Adam m, v),
// so a TrainCpu can be compared with the GPU trainer's arenas element for element.
// F = float is the reference; F = double checks the wiring against PyTorch's float64 exactly.
#pragma once
#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include <cstdint>
#include <vector>

template <typename F>
struct TrainCpu {
    Config c;
    int B = 0, T = 0;
    std::vector<TensorSpec> specs;
    std::vector<F> params, grads, muon_buf, adam_m, adam_v;  // param_arena_size(c) each
    std::vector<F> acts;                                    // model_acts_size(c, B, T)
    std::vector<int32_t> tokens, targets;                   // (B, T) of the current micro batch
    ModelTensors<F> p, g;  // bound into params / grads: a TrainCpu must not be copied or moved
    ModelActs<F> a;
    int64_t step = 0;      // optimizer steps taken
};

// init_arena: param_arena_size(c) floats (param_init's output, or a fixture's).
template <typename F>
void train_cpu_init(TrainCpu<F>* s, const Config& c, int B, int T, const float* init_arena);
// windows (micro, B, T+1) token ids: inputs [..., :T], targets [..., 1:]. Returns the mean loss
// over the micro batches (each the mean over its B*T tokens), computed before the update.
template <typename F>
double train_step_cpu(TrainCpu<F>* s, const int32_t* windows, int micro, double elapsed_s);
