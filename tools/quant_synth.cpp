// quant_synth: artifact size on a seed-shaped model with random weights drawn like trained ones
// (Gaussian rows with a log-normal spread of row scales and 0.1% outliers at 5x; scalars near
// their init), quantized by round-to-nearest with the percentile clip search (no Hessians here).
// Writes it twice and prints bytes/param by tensor kind for each:
//   rowgroup: every in_proj row group its own stream, each stream's layout picked by size,
//             LZMA2 lc/lp/pb/delta picked by size (the default artifact);
//   seedlike: one stream per tensor, one byte per value, LZMA2 9e defaults (lc 3 lp 0 pb 2).
// The real measurement needs trained weights (later); this one shows what the layout buys.
//   build/quant_synth [--out-dir DIR] [--absmax] [--rowgroup-only] [any config flag, e.g. --num-layers 7]
//   --gptq: CPU GPTQ with synthetic Hessians (timing of the CPU reference at full size)
//   --absmax: scales max|w|/qmax instead of the percentile clip search (smaller files, larger MSE)
#include "model/common.h"   // defines: fatal, Rng
#include "model/config.h"   // defines: Config, config_from_env_and_args
#include "model/params.h"   // defines: param_specs, param_arena_size, param_init
#include "quant/artifact.h" // defines: artifact_write, ArtifactOptions
#include "quant/plan.h"     // defines: quantize_model
#include "quant/report.h"   // defines: print_kind_table
#include <chrono>

int main(int argc, char** argv) {
    Config cfg;
    std::vector<std::string> rest;
    config_from_env_and_args(&cfg, argc, argv, &rest);
    std::string dir = "/tmp";
    GptqOptions gopt;
    bool only_rowgroup = false, use_gptq = false;
    for (size_t i = 0; i < rest.size(); i++) {
        if (rest[i] == "--out-dir" && i + 1 < rest.size()) dir = rest[++i];
        else if (rest[i] == "--absmax") gopt.clip_search = false;
        else if (rest[i] == "--rowgroup-only") only_rowgroup = true;
        else if (rest[i] == "--gptq") use_gptq = true;
        else fatal("unknown flag '%s' (quant_synth [--out-dir DIR] [--absmax] [--rowgroup-only] [--gptq] [config flags])", rest[i].c_str());
    }
    std::vector<float> arena((size_t)param_arena_size(cfg));
    param_init(cfg, arena.data(), (uint64_t)cfg.seed);
    Rng rng((uint64_t)cfg.seed + 1);
    for (auto& s : param_specs(cfg)) {
        float* w = arena.data() + s.offset;
        if (s.group == Group::scalar) {  // trained scalars drift from their init
            for (int64_t k = 0; k < s.numel(); k++) w[k] += (float)(0.05 * rng.normal());
            continue;
        }
        const double base = s.group == Group::embed ? 0.02 : 1.0 / sqrt((double)s.cols);
        for (int64_t r = 0; r < s.rows; r++) {
            const double rs = base * exp(0.5 * rng.normal());
            for (int64_t k = 0; k < s.cols; k++)
                w[r * s.cols + k] = (float)(rs * rng.normal() * (rng.uniform() < 0.001 ? 5.0 : 1.0));
        }
    }
    // --gptq: synthetic Hessians, diag spread plus a rank-32 correlated part, one per matrix
    auto plan = quant_plan(cfg);
    std::vector<std::vector<double>> hs(plan.size());
    std::vector<const double*> hp(plan.size(), nullptr);
    if (use_gptq) {
        for (size_t k = 0; k < plan.size(); k++) {
            if (!plan[k].is_matrix()) continue;
            const int64_t C = plan[k].spec.cols, K = 32;
            std::vector<double> U((size_t)(C * K)), d((size_t)C);
            for (auto& u : U) u = rng.normal();
            for (auto& x : d) x = exp(rng.normal());
            hs[k].assign((size_t)(C * C), 0.0);
            double* H = hs[k].data();
#pragma omp parallel for
            for (int64_t i = 0; i < C; i++)
                for (int64_t j = 0; j < C; j++) {
                    double a = i == j ? d[i] * K : 0.0;
                    for (int64_t r = 0; r < K; r++) a += U[i * K + r] * U[j * K + r];
                    H[i * C + j] = a;
                }
            hp[k] = H;
        }
    }
    QuantModel qm;
    auto tq = std::chrono::steady_clock::now();
    quantize_model(&qm, cfg, arena.data(), use_gptq ? &hp : nullptr, gopt);
    printf("quantized (%s, %s scales) in %.1f s\n", use_gptq ? "CPU GPTQ" : "round-to-nearest", gopt.clip_search ? "clip-searched" : "absmax",
           std::chrono::duration<double>(std::chrono::steady_clock::now() - tq).count());
    struct Variant { const char* name; ArtifactOptions opt; };
    ArtifactOptions seedlike;
    seedlike.split_groups = false;
    seedlike.int_layouts = {L_BYTES};
    seedlike.float_planes = {false};
    seedlike.filters = {{3, 0, 2, 0}};
    ArtifactOptions rowgroup;
    rowgroup.split_groups = true;
    Variant vs[] = {{"rowgroup", rowgroup}, {"seedlike", seedlike}};
    for (auto& v : vs) {
        if (only_rowgroup && v.opt.split_groups == false) continue;
        std::string path = dir + "/synth_" + v.name + (gopt.clip_search ? "" : "_absmax") + (use_gptq ? "_gptq" : "") + ".art";
        ArtifactInfo info;
        auto t0 = std::chrono::steady_clock::now();
        artifact_write(path.c_str(), cfg, qm, v.opt, &info);
        double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        printf("\n== %s: %s, %lld bytes (lc %d lp %d pb %d delta %d), written in %.1f s\n", v.name, path.c_str(),
               (long long)info.file_bytes, info.filter.lc, info.filter.lp, info.filter.pb, info.filter.delta, sec);
        int counts[8] = {0};
        for (auto& s : info.streams) counts[s.layout]++;
        printf("stream layouts:");
        for (int l = 0; l < 7; l++)
            if (counts[l]) printf(" %s %d", layout_name(l), counts[l]);
        printf("\n");
        print_kind_table(info, qm, stdout);
    }
    return 0;
}
