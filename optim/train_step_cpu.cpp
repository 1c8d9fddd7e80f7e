// CPU training step; the recipe is in optim/train_step_cpu.h.
#include "optim/train_step_cpu.h"
#include "model/common.h"     // defines: fatal
#include "optim/adam.h"       // defines: adam_step_cpu, AdamHyper
#include "optim/muon.h"       // defines: muon_step_cpu, MuonHyper
#include "optim/schedule.h"   // defines: lr_multiplier, muon_momentum_at
#include <algorithm>

template <typename F>
void train_cpu_init(TrainCpu<F>* s, const Config& c, int B, int T, const float* init_arena) {
    s->c = c;
    s->B = B;
    s->T = T;
    s->specs = param_specs(c);
    int64_t n = param_arena_size(c);
    s->params.assign(init_arena, init_arena + n);
    s->grads.assign(n, F(0));
    s->muon_buf.assign(n, F(0));
    s->adam_m.assign(n, F(0));
    s->adam_v.assign(n, F(0));
    s->acts.assign(model_acts_size(c, B, T), F(0));
    s->tokens.resize((size_t)B * T);
    s->targets.resize((size_t)B * T);
    model_tensors_bind(c, s->params.data(), &s->p);
    model_tensors_bind(c, s->grads.data(), &s->g);
    model_acts_bind(c, B, T, s->acts.data(), &s->a);
    s->step = 0;
}

template <typename F>
double train_step_cpu(TrainCpu<F>* s, const int32_t* windows, int micro, double elapsed_s) {
    const Config& c = s->c;
    const int B = s->B, T = s->T;
    if (micro <= 0) fatal("train_step_cpu: micro = %d, need at least one micro batch", micro);
    std::fill(s->grads.begin(), s->grads.end(), F(0));
    double loss_sum = 0;
    for (int m = 0; m < micro; m++) {
        const int32_t* w = windows + (int64_t)m * B * (T + 1);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                s->tokens[(size_t)b * T + t] = w[(int64_t)b * (T + 1) + t];
                s->targets[(size_t)b * T + t] = w[(int64_t)b * (T + 1) + t + 1];
            }
        loss_sum += model_forward_cpu(s->a, s->tokens.data(), s->targets.data(), s->p, c, B, T);
        model_backward_cpu(s->g, s->a, s->tokens.data(), s->targets.data(), s->p, c, B, T);
    }
    // each backward gave the gradient of its micro batch's mean: average them
    if (micro > 1)
        for (auto& x : s->grads) x = (F)(x / (double)micro);

    const double mult = lr_multiplier(c, s->step, elapsed_s);
    MuonHyper mh{c.matrix_lr * mult, muon_momentum_at(c, s->step), c.muon_wd, c.muon_backend_steps,
                 c.muon_nesterov != 0, c.muoneq_r != 0};
    AdamHyper embed{c.tied_embed_lr * mult, c.beta1, c.beta2, c.adam_eps, c.adam_wd};
    AdamHyper scalar{c.scalar_lr * mult, c.beta1, c.beta2, c.adam_eps, c.adam_wd};
    for (const TensorSpec& t : s->specs) {
        if (t.numel() == 0) continue;  // skip_weight of a model without skips
        F* p = s->params.data() + t.offset;
        const F* g = s->grads.data() + t.offset;
        if (t.group == Group::matrix)
            muon_step_cpu(p, s->muon_buf.data() + t.offset, g, t.rows, t.cols, mh);
        else
            adam_step_cpu(p, s->adam_m.data() + t.offset, s->adam_v.data() + t.offset, g, t.numel(),
                          t.group == Group::embed ? embed : scalar, s->step + 1);
    }
    s->step++;
    return loss_sum / micro;
}

template void train_cpu_init<float>(TrainCpu<float>*, const Config&, int, int, const float*);
template void train_cpu_init<double>(TrainCpu<double>*, const Config&, int, int, const float*);
template double train_step_cpu<float>(TrainCpu<float>*, const int32_t*, int, double);
template double train_step_cpu<double>(TrainCpu<double>*, const int32_t*, int, double);
