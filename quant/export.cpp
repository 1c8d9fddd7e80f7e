// Checkpoint -> artifact; see quant/export.h.
#include "quant/export.h"
#include "model/common.h"     // defines: fatal, fopen_check, fread_check, fwrite_check
#include "model/params.h"     // defines: param_specs, param_arena_size
#include "optim/checkpoint.h" // defines: checkpoint_header, checkpoint_read
#include "quant/artifact.h"   // defines: artifact_write
#include "quant/report.h"     // defines: print_kind_table
#include <cmath>
#include <sys/stat.h>

void hessians_write(const char* path, const Config& cfg, const std::vector<std::vector<double>>& hs) {
    auto plan = quant_plan(cfg);
    if (hs.size() != plan.size()) fatal("hessians '%s': %zu slots for %zu tensors", path, hs.size(), plan.size());
    int32_t n = 0;
    for (auto& h : hs) n += !h.empty();
    FILE* f = fopen_check(path, "wb");
    int32_t head[3] = {kHessMagic, kHessVersion, n};
    fwrite_check(head, 4, 3, f, path);
    for (size_t k = 0; k < hs.size(); k++) {
        if (hs[k].empty()) continue;
        const int64_t C = plan[k].spec.cols;
        if ((int64_t)hs[k].size() != C * C) fatal("hessians '%s': %s needs %lld x %lld", path, plan[k].spec.name.c_str(), (long long)C, (long long)C);
        int32_t e[2] = {(int32_t)k, (int32_t)C};
        fwrite_check(e, 4, 2, f, path);
        fwrite_check(hs[k].data(), sizeof(double), hs[k].size(), f, path);
    }
    if (fclose(f) != 0) fatal("hessians '%s': close failed", path);
}

std::vector<std::vector<double>> hessians_read(const char* path, const Config& cfg) {
    auto plan = quant_plan(cfg);
    FILE* f = fopen_check(path, "rb");
    int32_t head[3];
    if (fread(head, 4, 3, f) != 3) fatal("hessians '%s': truncated header", path);
    if (head[0] != kHessMagic) fatal("hessians '%s': wrong magic %d (expected %d): not a Hessians file", path, head[0], kHessMagic);
    if (head[1] != kHessVersion) fatal("hessians '%s': version %d, this build reads version %d", path, head[1], kHessVersion);
    if (head[2] < 0 || head[2] > (int32_t)plan.size()) fatal("hessians '%s': %d entries for %zu tensors", path, head[2], plan.size());
    std::vector<std::vector<double>> hs(plan.size());
    for (int i = 0; i < head[2]; i++) {
        int32_t e[2];
        if (fread(e, 4, 2, f) != 2) fatal("hessians '%s': truncated at entry %d", path, i);
        if (e[0] < 0 || e[0] >= (int32_t)plan.size() || !plan[e[0]].is_matrix())
            fatal("hessians '%s': entry %d names tensor %d, not a matrix of this config", path, i, e[0]);
        const TensorPlan& p = plan[e[0]];
        if (!hs[e[0]].empty()) fatal("hessians '%s': %s appears twice", path, p.spec.name.c_str());
        if (e[1] != p.spec.cols)
            fatal("hessians '%s': size mismatch: %s has %d columns in the file, %lld in the config", path, p.spec.name.c_str(), e[1], (long long)p.spec.cols);
        hs[e[0]].resize((size_t)e[1] * e[1]);
        if (fread(hs[e[0]].data(), sizeof(double), hs[e[0]].size(), f) != hs[e[0]].size())
            fatal("hessians '%s': truncated in %s", path, p.spec.name.c_str());
    }
    if (fgetc(f) != EOF) fatal("hessians '%s': trailing bytes after the last entry", path);
    fclose(f);
    return hs;
}

std::vector<float> checkpoint_weights(const char* ckpt, Config* cfg, bool ema, int64_t* step) {
    CkptHeader hd;
    checkpoint_header(ckpt, cfg, &hd);
    cfg->validate();
    const int64_t arena = param_arena_size(*cfg);
    const int na = (int)hd.arena_floats.size();
    if (na != kCkptArenasNoEma && na != kCkptArenasNoEma + 1)
        fatal("checkpoint '%s': %d arenas, a trainer checkpoint has %d (or %d with EMA)", ckpt, na, kCkptArenasNoEma, kCkptArenasNoEma + 1);
    if (ema && na != kCkptArenasNoEma + 1) fatal("checkpoint '%s': --ema asked for, but the run kept no EMA weights (ema_decay 0)", ckpt);
    static const char* names[] = {"params", "muon_momentum", "adam_m", "adam_v", "ema"};
    std::vector<std::vector<float>> bufs((size_t)na, std::vector<float>((size_t)arena));
    CkptState st;
    st.loader.assign((size_t)hd.loader_bytes, 0);
    for (int a = 0; a < na; a++) st.arenas.push_back({names[a], bufs[a].data(), arena});
    checkpoint_read(ckpt, *cfg, &st);  // sizes, length and checksum: named errors
    if (step) *step = hd.step;
    return std::move(bufs[ema ? kCkptEmaArena : 0]);
}

void quantize_checkpoint(const char* ckpt, const char* artifact, Config* cfg, const ExportOptions& opt, ExportResult* res,
                         FILE* out) {
    int64_t step = 0;
    const std::vector<float> w = checkpoint_weights(ckpt, cfg, opt.ema, &step);

    auto plan = quant_plan(*cfg);
    std::vector<std::vector<double>> hs;
    std::vector<const double*> hp(plan.size(), nullptr);
    int nh = 0;
    if (opt.hessians) {
        hs = hessians_read(opt.hessians, *cfg);
        for (size_t k = 0; k < plan.size(); k++)
            if (!hs[k].empty()) { hp[k] = hs[k].data(); nh++; }
    }
    QuantModel qm;
    quantize_model(&qm, *cfg, w.data(), opt.hessians ? &hp : nullptr, opt.gptq);
    ArtifactInfo info;
    artifact_write(artifact, *cfg, qm, opt.artifact, &info);
    std::vector<float> deq(w.size());
    dequantize_model(deq.data(), *cfg, qm);

    res->step = step;
    res->artifact_bytes = info.file_bytes;
    res->names.clear();
    res->rel_err.clear();
    if (out)
        fprintf(out, "checkpoint %s (step %lld), %s weights, %s: %d of %zu tensors with a Hessian\n", ckpt, (long long)step,
                opt.ema ? "EMA" : "live", nh ? "GPTQ" : "round-to-nearest", nh, plan.size());
    if (out) fprintf(out, "\n%-26s %-9s %11s %5s %12s\n", "tensor", "kind", "shape", "bits", "rel_err");
    for (auto& p : plan) {
        double num = 0, den = 0;
        for (int64_t i = p.spec.offset; i < p.spec.offset + p.spec.numel(); i++) {
            const double d = (double)w[i] - deq[i];
            num += d * d;
            den += (double)w[i] * w[i];
        }
        const double e = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
        res->names.push_back(p.spec.name);
        res->rel_err.push_back(e);
        if (out) {
            char shape[64], bits[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)p.spec.rows, (long long)p.spec.cols);
            if (p.groups.size() == 1) snprintf(bits, sizeof bits, "%d", p.groups[0].bits);
            else snprintf(bits, sizeof bits, "mixed");
            fprintf(out, "%-26s %-9s %11s %5s %12.4e\n", p.spec.name.c_str(), tensor_kind_name(p.kind), shape, bits, e);
        }
    }
    if (out) {
        fprintf(out, "\nartifact %s: %lld bytes\n", artifact, (long long)info.file_bytes);
        print_kind_table(info, qm, out);
    }
    res->has_size = !opt.code_root.empty();
    if (res->has_size) {
        res->size = size_report(opt.code_root, artifact);
        if (out) size_print(res->size, out);
    }
}
