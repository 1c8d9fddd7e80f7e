// The quantization plan and (de)quantization of a parameter arena; see quant/plan.h.
#include "quant/plan.h"
#include "model/common.h"
#include "quant/pack.h"
#include <algorithm>
#include <cmath>
#include <cstring>

const char* tensor_kind_name(TensorKind k) {
    switch (k) {
    case TensorKind::embed: return "embedding";
    case TensorKind::attn_qkv: return "attn_qkv";
    case TensorKind::attn_proj: return "attn_proj";
    case TensorKind::in_proj: return "in_proj";
    case TensorKind::out_proj: return "out_proj";
    case TensorKind::mlp_fc: return "mlp_fc";
    case TensorKind::mlp_proj: return "mlp_proj";
    case TensorKind::scalar: return "scalar";
    }
    return "?";
}

static TensorKind kind_of(const TensorSpec& s) {
    if (s.group == Group::embed) return TensorKind::embed;
    if (s.group == Group::scalar) return TensorKind::scalar;
    std::string field = s.name.substr(s.name.rfind('.') + 1);
    if (field == "attn_qkv") return TensorKind::attn_qkv;
    if (field == "attn_proj") return TensorKind::attn_proj;
    if (field == "in_proj") return TensorKind::in_proj;
    if (field == "out_proj") return TensorKind::out_proj;
    if (field == "mlp_fc") return TensorKind::mlp_fc;
    if (field == "mlp_proj") return TensorKind::mlp_proj;
    fatal("quant_plan: matrix %s has no quantization kind (add it to kind_of in quant/plan.cpp)", s.name.c_str());
}

std::vector<TensorPlan> quant_plan(const Config& c) {
    auto matrix_bits = [](int b, const char* knob) {
        if (b < 2 || b > 8) fatal("config: %s = %d, must be in 2..8", knob, b);
        return b;
    };
    const int bm = matrix_bits(c.quant_bits_matrix, "quant_bits_matrix");
    const int be = matrix_bits(c.quant_bits_embed, "quant_bits_embed");
    const int bd = matrix_bits(c.quant_bits_ssm_dyn, "quant_bits_ssm_dyn");
    if (c.quant_bits_scalar != 16 && c.quant_bits_scalar != 32)
        fatal("config: quant_bits_scalar = %d, must be 16 (fp16) or 32 (fp32)", c.quant_bits_scalar);
    std::vector<TensorPlan> plan;
    for (auto& s : param_specs(c)) {
        TensorPlan p{s, kind_of(s), {}};
        switch (p.kind) {
        case TensorKind::scalar: p.groups = {{"all", 0, s.rows, c.quant_bits_scalar}}; break;
        case TensorKind::embed: p.groups = {{"all", 0, s.rows, be}}; break;
        case TensorKind::in_proj:
            p.groups = {{"z", c.ip_z(), c.ip_x(), bm},           {"x", c.ip_x(), c.ip_B(), bm},
                        {"B", c.ip_B(), c.ip_C(), bm},           {"C", c.ip_C(), c.ip_dd_dt(), bm},
                        {"dd_dt", c.ip_dd_dt(), c.ip_dd_A(), bd}, {"dd_A", c.ip_dd_A(), c.ip_trap(), bd},
                        {"trap", c.ip_trap(), c.ip_angles(), bm}, {"angles", c.ip_angles(), c.in_proj_rows(), bm}};
            break;
        default: p.groups = {{"all", 0, s.rows, bm}}; break;
        }
        int64_t at = 0;
        for (auto& g : p.groups) {
            if (g.row0 != at || g.row1 < g.row0) fatal("quant_plan: %s row groups do not tile its rows", s.name.c_str());
            at = g.row1;
        }
        if (at != s.rows) fatal("quant_plan: %s row groups cover %lld of %lld rows", s.name.c_str(), (long long)at, (long long)s.rows);
        plan.push_back(p);
    }
    return plan;
}

bool quant_fit_next(QuantFitTry* t, int bits, int64_t over, int64_t model_bytes, int64_t matrix_values) {
    if (over <= 0) return false;
    if (t->clip_search && over * 100 <= model_bytes) {
        t->clip_search = false;
        return true;
    }
    const double coarsest = ((1 << (bits - 1)) - 1) / 7.0;  // the INT4 step
    const double per_doubling = std::max<double>(matrix_values / 8.0, 1.0);
    const double step = std::min(coarsest, t->step * std::exp2(over / per_doubling) * 1.005);
    if (step <= t->step && !t->clip_search) return false;
    t->step = std::max(step, t->step);
    t->clip_search = false;
    return true;
}

void apply_matrix_step(uint16_t* scale, const int* row_bits, int64_t R, const Config& cfg) {
    if (cfg.quant_matrix_step == 1.0) return;
    for (int64_t r = 0; r < R; r++)
        if (row_bits[r] == cfg.quant_bits_matrix && scale[r])
            scale[r] = float_to_half((float)((double)half_to_float(scale[r]) * cfg.quant_matrix_step));
}

// order-0 entropy in bits of the absmax RTN codes of a (R, C) matrix, per row bits and step
static double codes_entropy_bits(const float* W, const std::vector<int>& bits, int64_t R, int64_t C, const Config& cfg) {
    std::vector<uint16_t> scale(R);
    std::vector<int8_t> q(R * C);
    row_scales_cpu(scale.data(), W, bits.data(), R, C, /*clip_search=*/false);
    apply_matrix_step(scale.data(), bits.data(), R, cfg);
    rtn_quantize_cpu(q.data(), W, scale.data(), bits.data(), R, C);
    int64_t hist[256] = {0};
    for (int8_t v : q) hist[(uint8_t)v]++;
    double h = 0;
    for (int64_t c : hist)
        if (c) h -= (double)c * std::log2((double)c / (double)q.size());
    return h;
}

int64_t quant_bytes_estimate(const Config& cfg, const float* arena) {
    double bytes = 1024;  // header and stream table
    for (const TensorPlan& p : quant_plan(cfg)) {
        const float* w = arena + p.spec.offset;
        if (!p.is_matrix()) {
            bytes += (double)p.spec.numel() * p.groups[0].bits / 8;
            continue;
        }
        bytes += kLzmaOverOrder0 * codes_entropy_bits(w, plan_row_bits(p), p.spec.rows, p.spec.cols, cfg) / 8;
        bytes += 2.0 * p.spec.rows;
    }
    return (int64_t)bytes;
}

double quant_step_for_budget(const Config& cfg, const float* arena, int64_t budget, int64_t* estimate) {
    const int64_t est = quant_bytes_estimate(cfg, arena);
    if (estimate) *estimate = est;
    if (est <= budget) return cfg.quant_matrix_step;
    const double per_doubling = kLzmaOverOrder0 * std::max<double>(matrix_values(cfg), 1.0) / 8;
    const double coarsest = ((1 << (cfg.quant_bits_matrix - 1)) - 1) / 7.0;
    return std::min(coarsest, cfg.quant_matrix_step * std::exp2((double)(est - budget) / per_doubling));
}

int64_t matrix_values(const Config& cfg) {
    int64_t n = 0;
    for (const TensorPlan& p : quant_plan(cfg))
        if (p.is_matrix())
            for (const RowGroup& g : p.groups)
                if (g.bits == cfg.quant_bits_matrix) n += (g.row1 - g.row0) * p.spec.cols;
    return n;
}

std::vector<int> plan_row_bits(const TensorPlan& p) {
    std::vector<int> bits((size_t)p.spec.rows);
    for (auto& g : p.groups)
        for (int64_t r = g.row0; r < g.row1; r++) bits[r] = g.bits;
    return bits;
}

void quantize_model(QuantModel* qm, const Config& cfg, const float* arena, const std::vector<const double*>* hessians,
                    const GptqOptions& opt, GptqFn gptq) {
    auto plan = quant_plan(cfg);
    if (!(cfg.quant_matrix_step >= 1.0) || cfg.quant_matrix_step > 64)
        fatal("quantize_model: quant_matrix_step %g outside [1, 64] (below 1 the grid would clip the rows)",
              cfg.quant_matrix_step);
    if (hessians && hessians->size() != plan.size())
        fatal("quantize_model: %zu Hessian slots for %zu tensors", hessians->size(), plan.size());
    qm->tensors.clear();
    for (size_t k = 0; k < plan.size(); k++) {
        QTensor t;
        t.plan = plan[k];
        const TensorSpec& s = t.plan.spec;
        const float* w = arena + s.offset;
        if (!t.plan.is_matrix()) {
            t.values.assign(w, w + s.numel());
            if (t.plan.groups[0].bits == 16)
                for (auto& v : t.values) v = half_to_float(float_to_half(v));
        } else {
            auto bits = plan_row_bits(t.plan);
            t.q.resize((size_t)s.numel());
            t.scale.resize((size_t)s.rows);
            row_scales_cpu(t.scale.data(), w, bits.data(), s.rows, s.cols, opt.clip_search);
            apply_matrix_step(t.scale.data(), bits.data(), s.rows, cfg);  // a coarser grid (quant_fit)
            const double* H = hessians ? (*hessians)[k] : nullptr;
            if (H) gptq(t.q.data(), w, H, t.scale.data(), bits.data(), s.rows, s.cols, opt);
            else rtn_quantize_cpu(t.q.data(), w, t.scale.data(), bits.data(), s.rows, s.cols);
        }
        qm->tensors.push_back(std::move(t));
    }
}

void dequantize_model(float* arena, const Config& cfg, const QuantModel& qm) {
    memset(arena, 0, sizeof(float) * (size_t)param_arena_size(cfg));
    auto specs = param_specs(cfg);
    if (specs.size() != qm.tensors.size()) fatal("dequantize_model: %zu tensors for a config of %zu", qm.tensors.size(), specs.size());
    for (size_t k = 0; k < specs.size(); k++) {
        const QTensor& t = qm.tensors[k];
        const TensorSpec& s = specs[k];
        if (t.plan.spec.name != s.name || t.plan.spec.rows != s.rows || t.plan.spec.cols != s.cols)
            fatal("dequantize_model: tensor %zu is %s (%lld x %lld), the config wants %s (%lld x %lld)", k,
                  t.plan.spec.name.c_str(), (long long)t.plan.spec.rows, (long long)t.plan.spec.cols, s.name.c_str(),
                  (long long)s.rows, (long long)s.cols);
        float* w = arena + s.offset;
        if (!t.plan.is_matrix()) {
            memcpy(w, t.values.data(), sizeof(float) * (size_t)s.numel());
            continue;
        }
        for (int64_t r = 0; r < s.rows; r++) {
            const float sc = half_to_float(t.scale[r]);
            for (int64_t c = 0; c < s.cols; c++) w[r * s.cols + c] = (float)t.q[r * s.cols + c] * sc;
        }
    }
}
