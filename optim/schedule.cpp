// Schedules; the rules are in optim/schedule.h.
#include "optim/schedule.h"
#include <algorithm>

double lr_multiplier(const Config& c, int64_t step, double elapsed_s) {
    double warm = 1.0;
    if (c.lr_warmup_steps > 0 && step < c.lr_warmup_steps) warm = (double)(step + 1) / c.lr_warmup_steps;
    double down = 1.0;
    if (c.warmdown_iters > 0) {
        if (c.max_wallclock_seconds <= 0) {
            int64_t start = std::max<int64_t>(c.iterations - c.warmdown_iters, 0);
            if (step >= start && step < c.iterations) down = (double)(c.iterations - step) / c.warmdown_iters;
            if (step >= c.iterations) down = 0.0;
        } else {
            double step_s = elapsed_s / (double)std::max<int64_t>(step, 1);
            double warmdown_s = c.warmdown_iters * step_s;
            double remaining_s = std::max(c.max_wallclock_seconds - elapsed_s, 0.0);
            if (remaining_s <= warmdown_s) down = remaining_s / std::max(warmdown_s, 1e-12);
        }
    }
    return std::min(warm, down);
}

bool train_continues(const Config& c, int64_t step, int64_t stop_at, double elapsed_s, double reserve_s) {
    const double cap = c.max_wallclock_seconds;
    return step < c.iterations && !(cap > 0 && elapsed_s + reserve_s >= cap) && (stop_at < 0 || step < stop_at);
}

double muon_momentum_at(const Config& c, int64_t step) {
    double frac = c.muon_momentum_warmup_steps > 0 ? std::min((double)step / c.muon_momentum_warmup_steps, 1.0) : 1.0;
    return (1.0 - frac) * c.muon_momentum_warmup_start + frac * c.muon_momentum;
}

double ema_decay_at(const Config& c, int64_t step) {
    return c.ema_warmup ? std::min(c.ema_decay, (1.0 + step) / (10.0 + step)) : c.ema_decay;
}

void ema_update_cpu(float* ema, const float* w, int64_t n, double decay) {
    const float d = (float)decay, omd = (float)(1.0 - decay);
    for (int64_t i = 0; i < n; i++) ema[i] = d * ema[i] + omd * w[i];
}
