// hessians_cpu: GPTQ Hessians of a checkpoint's weights on the CPU, with the reference model
// (model/model.h), for measurements without a GPU. train collects them on the GPU after training
// (quant/hessian.cuh; the same inputs: n1, attention y, Mamba gated o, n2, MLP activation, xf).
//   build/hessians_cpu CKPT OUT.hess [--ema] [--seqs N] [--seq-len T] [config flags]
// The first N windows (default 2) of T+1 tokens (default 2048) of the training loader in the
// seed's order; H summed in float64; written with hessians_write (quant/export.h).
#include "data/loader.h"       // defines: TrainLoader, train_loader_init, train_loader_next
#include "model/common.h"      // defines: fatal
#include "model/config.h"      // defines: Config, config_from_env_and_args
#include "model/model.h"       // defines: ModelActs, model_acts_bind, model_forward_cpu
#include "quant/export.h"      // defines: hessians_write, checkpoint_weights
#include <chrono>
#include <string>

int main(int argc, char** argv) {
    Config cfg;
    std::vector<std::string> rest;
    config_from_env_and_args(&cfg, argc, argv, &rest);
    const char* usage = "usage: hessians_cpu CKPT OUT.hess [--ema] [--seqs N] [--seq-len T] [config flags]";
    bool ema = false;
    int seqs = 2, T = 2048;
    std::vector<std::string> pos;
    for (size_t i = 0; i < rest.size(); i++) {
        if (rest[i] == "--ema") ema = true;
        else if (rest[i] == "--seqs" && i + 1 < rest.size()) seqs = atoi(rest[++i].c_str());
        else if (rest[i] == "--seq-len" && i + 1 < rest.size()) T = atoi(rest[++i].c_str());
        else if (rest[i].rfind("--", 0) == 0) fatal("unknown flag '%s' (%s)", rest[i].c_str(), usage);
        else pos.push_back(rest[i]);
    }
    if (pos.size() != 2 || seqs < 1 || T < 1) fatal("%s", usage);
    const char* ckpt = pos[0].c_str();

    std::vector<float> w = checkpoint_weights(ckpt, &cfg, ema, nullptr);
    ModelTensors<float> P;
    model_tensors_bind(cfg, w.data(), &P);

    TrainLoader L;
    train_loader_init(&L, cfg.data_path, 1, T, 0, 1, (uint64_t)cfg.seed, cfg.vocab_size);
    std::vector<float> acts((size_t)model_acts_size(cfg, 1, T));
    ModelActs<float> A;
    model_acts_bind(cfg, 1, T, acts.data(), &A);
    const Mamba3Dims d = mamba3_dims(cfg, 1, T);
    auto plan = quant_plan(cfg);
    std::vector<std::vector<double>> hs(plan.size());
    std::vector<int32_t> win((size_t)T + 1);
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < seqs; s++) {
        train_loader_next(&L, win.data());
        model_forward_cpu(A, win.data(), win.data() + 1, P, cfg, 1, T);
        for (size_t k = 0; k < plan.size(); k++) {
            const TensorPlan& p = plan[k];
            if (!p.is_matrix()) continue;
            const float* x = A.xf;
            if (p.kind != TensorKind::embed) {
                const LayerActs<float>& La = A.layers[p.spec.layer];
                Mamba3Acts<float> ma;
                if (La.mamba) mamba3_acts_bind(&ma, La.mamba, d);
                switch (p.kind) {
                case TensorKind::attn_qkv: case TensorKind::in_proj: x = La.n1; break;
                case TensorKind::attn_proj: x = La.y; break;
                case TensorKind::out_proj: x = ma.o; break;
                case TensorKind::mlp_fc: x = La.n2; break;
                case TensorKind::mlp_proj: x = La.a; break;
                default: fatal("hessians_cpu: no input for %s", p.spec.name.c_str());
                }
            }
            const int64_t C = p.spec.cols;
            std::vector<double>& H = hs[k];
            H.resize((size_t)(C * C), 0.0);
#pragma omp parallel for schedule(dynamic, 8)
            for (int64_t i = 0; i < C; i++)  // lower triangle, mirrored below
                for (int64_t t = 0; t < T; t++) {
                    const double xi = x[t * C + i];
                    for (int64_t j = 0; j <= i; j++) H[i * C + j] += xi * x[t * C + j];
                }
        }
        printf("sequence %d/%d of %d tokens: %.1f s\n", s + 1, seqs, T,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        fflush(stdout);
    }
    for (auto& H : hs) {
        if (H.empty()) continue;
        const int64_t C = (int64_t)llround(sqrt((double)H.size()));
        for (int64_t i = 0; i < C; i++)
            for (int64_t j = i + 1; j < C; j++) H[i * C + j] = H[j * C + i];
    }
    hessians_write(pos[1].c_str(), cfg, hs);
    int nm = 0;
    for (auto& H : hs) nm += !H.empty();
    printf("hessians: %s, %s weights, %d x %d tokens, %d matrices\n", pos[1].c_str(), ema ? "EMA" : "live", seqs, T, nm);
    return 0;
}
