#include "model/params.h"
#include "model/common.h"

std::vector<TensorSpec> param_specs(const Config& c) {
    std::vector<TensorSpec> specs;
    int64_t off = 0;
    auto add = [&](std::string name, int layer, int64_t rows, int64_t cols, Group g, int init) {
        specs.push_back({name, layer, rows, cols, g, init, off});
        off += (rows * cols + 63) / 64 * 64;  // 256-byte alignment for vector loads and cuBLAS
    };
#define PT_ADD_GLOBAL(name, rows, cols, group, init) add(#name, -1, rows, cols, Group::group, init);
    GLOBAL_TENSORS(PT_ADD_GLOBAL)
    for (int l = 0; l < c.num_layers; l++) {
        std::string pre = "blocks." + std::to_string(l) + ".";
#define PT_ADD(name, rows, cols, group, init) add(pre + #name, l, rows, cols, Group::group, init);
        BLOCK_TENSORS(PT_ADD)
        if (c.is_attn(l)) { ATTN_TENSORS(PT_ADD) }
        else { MAMBA_TENSORS(PT_ADD) }
#undef PT_ADD
    }
#undef PT_ADD_GLOBAL
    return specs;
}

int64_t param_count(const Config& c) {
    int64_t n = 0;
    for (auto& s : param_specs(c)) n += s.numel();
    return n;
}

int64_t param_arena_size(const Config& c) {
    auto specs = param_specs(c);
    auto& last = specs.back();
    return last.offset + (last.numel() + 63) / 64 * 64;
}

template <typename F>
void model_tensors_bind(const Config& c, F* base, ModelTensors<F>* p) {
    if (c.num_layers > kMaxLayers) fatal("config: num_layers %d > kMaxLayers %d", c.num_layers, kMaxLayers);
    *p = ModelTensors<F>();
    p->num_layers = c.num_layers;
    for (auto& s : param_specs(c)) {
        F* at = base + s.offset;
        std::string field = s.layer < 0 ? s.name : s.name.substr(s.name.rfind('.') + 1);
        bool found = false;
#define PT_BIND_G(name, rows, cols, group, init) if (s.layer < 0 && field == #name) { p->name = at; found = true; }
        GLOBAL_TENSORS(PT_BIND_G)
#undef PT_BIND_G
#define PT_BIND(name, rows, cols, group, init) if (s.layer >= 0 && field == #name) { p->blocks[s.layer].name = at; found = true; }
        BLOCK_TENSORS(PT_BIND) ATTN_TENSORS(PT_BIND) MAMBA_TENSORS(PT_BIND)
#undef PT_BIND
        if (!found) fatal("model_tensors_bind: no field for tensor %s", s.name.c_str());
    }
}
template void model_tensors_bind<float>(const Config&, float*, ModelTensors<float>*);
template void model_tensors_bind<double>(const Config&, double*, ModelTensors<double>*);

void param_init(const Config& c, float* base, uint64_t seed) {
    Rng rng(seed);
    for (auto& s : param_specs(c)) {
        float* w = base + s.offset;
        int64_t n = s.numel();
        switch (s.init) {
        case ZERO: for (int64_t i = 0; i < n; i++) w[i] = 0.f; break;
        case ONE: for (int64_t i = 0; i < n; i++) w[i] = 1.f; break;
        case NORMAL_EMBED: for (int64_t i = 0; i < n; i++) w[i] = (float)(c.tied_embed_init_std * rng.normal()); break;
        case UNIFORM_FANIN: {  // nn.Linear default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            double bound = 1.0 / sqrt((double)s.cols);
            for (int64_t i = 0; i < n; i++) w[i] = (float)((2.0 * rng.uniform() - 1.0) * bound);
            break;
        }
        case QGAIN: for (int64_t i = 0; i < n; i++) w[i] = (float)c.qk_gain_init; break;
        case RESID_MIX:  // mix0 = 1 (x), mix1 = 0 (x0)
            for (int64_t i = 0; i < s.cols; i++) { w[i] = 1.f; w[s.cols + i] = 0.f; }
            break;
        case DT_BIAS:  // dt log-uniform in [dt_min, dt_max], floored, then inverse softplus
            for (int64_t i = 0; i < n; i++) {
                double dt = exp(rng.uniform() * (log(c.dt_max) - log(c.dt_min)) + log(c.dt_min));
                if (dt < c.dt_init_floor) dt = c.dt_init_floor;
                w[i] = (float)(dt + log(-expm1(-dt)));
            }
            break;
        default: fatal("param_init: tensor %s has unknown init %d", s.name.c_str(), s.init);
        }
    }
}
