// eval_cpu: val bpb of a checkpoint or an artifact on the CPU reference model (eval/eval.h, plain
// windows), over the first N sequences of the val split: to compare quantization variants of one
// model without a GPU (train and train --eval-artifact score the whole split on the GPU).
//   build/eval_cpu (CKPT [--ema] | --artifact FILE) [--seqs N] [--seq-len T] [config flags]
#include "data/loader.h"       // defines: ValData, val_load
#include "data/tokenizer.h"    // defines: Tokenizer, tokenizer_load
#include "eval/eval.h"         // defines: eval_cpu, EvalOpts
#include "model/common.h"      // defines: fatal
#include "quant/artifact.h"    // defines: artifact_read
#include "quant/export.h"      // defines: checkpoint_weights
#include <string>

int main(int argc, char** argv) {
    Config cfg;
    std::vector<std::string> rest;
    config_from_env_and_args(&cfg, argc, argv, &rest);
    const char* usage = "usage: eval_cpu (CKPT [--ema] | --artifact FILE) [--seqs N] [--seq-len T] [config flags]";
    bool ema = false;
    int seqs = 2, T = 2048;
    std::string art, ckpt;
    for (size_t i = 0; i < rest.size(); i++) {
        if (rest[i] == "--ema") ema = true;
        else if (rest[i] == "--artifact" && i + 1 < rest.size()) art = rest[++i];
        else if (rest[i] == "--seqs" && i + 1 < rest.size()) seqs = atoi(rest[++i].c_str());
        else if (rest[i] == "--seq-len" && i + 1 < rest.size()) T = atoi(rest[++i].c_str());
        else if (rest[i].rfind("--", 0) == 0 || !ckpt.empty()) fatal("bad argument '%s' (%s)", rest[i].c_str(), usage);
        else ckpt = rest[i];
    }
    if (art.empty() == ckpt.empty() || seqs < 1 || T < 1) fatal("%s", usage);
    std::vector<float> w;
    if (!art.empty()) {
        QuantModel qm;
        artifact_read(art.c_str(), &cfg, &qm, nullptr);
        w.assign((size_t)param_arena_size(cfg), 0.f);
        dequantize_model(w.data(), cfg, qm);
    } else {
        w = checkpoint_weights(ckpt.c_str(), &cfg, ema, nullptr);
    }
    Tokenizer tok;
    tokenizer_load(&tok, cfg.tokenizer_path);
    ValData val;
    val_load(&val, cfg.data_path, T, 0, 1, cfg.vocab_size);
    if (seqs > val.num_seqs) fatal("--seqs %d: the val split has %lld sequences of %d", seqs, (long long)val.num_seqs, T);
    ModelTensors<float> P;
    model_tensors_bind(cfg, w.data(), &P);
    EvalOpts o;
    o.mode = EvalMode::plain;
    o.T = T;
    const EvalOut r = eval_cpu(P, cfg, tok, val.tokens.data(), (int64_t)val.tokens.size(), EvalSpan{0, (int64_t)seqs * T}, o);
    const BpbResult b = bpb_result(r.sum);
    printf("eval_cpu %s: %d x %d val tokens: val_loss %.6f val_bpb %.6f (%.1f s)\n", art.empty() ? ckpt.c_str() : art.c_str(),
           seqs, T, b.val_loss, b.val_bpb, r.seconds);
    return 0;
}
