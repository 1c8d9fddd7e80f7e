// quantize: trainer checkpoint -> model artifact, with the per-tensor quantization error,
// bytes/param by kind and the code + model size verdict (quant/export.h does the work).
//   build/quantize CKPT OUT.artifact [--ema] [--gptq-hessians FILE] [--code-root DIR] [--absmax] [--row-groups]
//                  [config flags: quant_bits_*, a_act, ... as for train; shapes come from CKPT]
//   --ema: the EMA weights (what train's final_ema evaluates) instead of the live ones
//   --row-groups: in_proj's row groups as separate streams (default: one integer stream per tensor)
//   --code-root: where the counted sources are (default: the current directory when it holds train.cu)
// Exit status 0 also when the total is over 16,000,000: the verdict line says OVER.
#include "model/common.h"   // defines: fatal
#include "model/config.h"   // defines: Config, config_from_env_and_args
#include "quant/export.h"   // defines: quantize_checkpoint
#include <sys/stat.h>

int main(int argc, char** argv) {
    Config cfg;
    std::vector<std::string> rest;
    config_from_env_and_args(&cfg, argc, argv, &rest);
    const char* usage = "usage: quantize CKPT OUT.artifact [--ema] [--gptq-hessians FILE] [--code-root DIR] [--absmax] [--row-groups] [config flags]";
    ExportOptions opt;
    opt.gptq.clip_search = cfg.quant_clip_search != 0;  // --absmax overrides
    opt.gptq.damp = cfg.quant_damp;
    opt.gptq.act_order = cfg.quant_act_order != 0;
    std::vector<std::string> pos;
    for (size_t i = 0; i < rest.size(); i++) {
        if (rest[i] == "--ema") opt.ema = true;
        else if (rest[i] == "--gptq-hessians" && i + 1 < rest.size()) opt.hessians = rest[++i].c_str();
        else if (rest[i] == "--code-root" && i + 1 < rest.size()) opt.code_root = rest[++i];
        else if (rest[i] == "--absmax") opt.gptq.clip_search = false;
        else if (rest[i] == "--row-groups") opt.artifact.split_groups = true;
        else if (rest[i].rfind("--", 0) == 0) fatal("unknown flag '%s' (%s)", rest[i].c_str(), usage);
        else pos.push_back(rest[i]);
    }
    if (pos.size() != 2) fatal("%s", usage);
    struct stat st;
    if (opt.code_root.empty() && stat("train.cu", &st) == 0) opt.code_root = ".";
    ExportResult res;
    quantize_checkpoint(pos[0].c_str(), pos[1].c_str(), &cfg, opt, &res, stdout);
    if (!res.has_size) printf("size: no --code-root (and no train.cu here): code not counted\n");
    return 0;
}
