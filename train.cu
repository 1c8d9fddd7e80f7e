// train: the Parameter Golf trainer (Mamba-3 + attention hybrid).
// Today it parses and prints the configuration, lays out the parameter arena,
// loads and checks the data and tokenizer it was pointed at (token ids, byte
// tables of the validation split); the training loop lands with the GPU layers
// (issues 4-6).
#include "model/config.h"      // defines: Config, config_from_env_and_args, config_print
#include "model/params.h"      // defines: param_specs, param_count, param_bind, param_init
#include "model/cuda_common.cuh"  // defines: cudaCheck, cublasCheck
#include "data/loader.h"       // defines: train_loader_init, val_load, LoaderState
#include "data/tokenizer.h"    // defines: Tokenizer, tokenizer_load (byte tables)
#include "data/bpb.h"          // defines: bpb_count_bytes

int main(int argc, char** argv) {
    Config cfg;
    std::vector<std::string> rest;
    config_from_env_and_args(&cfg, argc, argv, &rest);
    for (auto& r : rest) {
        if (r == "--help" || r == "-h") {
            printf("usage: train [--name value ...]; every setting below is a flag (--model-dim 512)\n"
                   "and an environment variable (MODEL_DIM=512); flags win.\n");
            config_print(cfg, stdout);
            return 0;
        }
        fatal("unknown flag '%s' (train --help lists the settings)", r.c_str());
    }
    config_print(cfg, stdout);
    printf("parameters: %lld (arena %lld floats)\n", (long long)param_count(cfg), (long long)param_arena_size(cfg));

    // Data first: a bad path or tokenizer should fail before any GPU work.
    Tokenizer tok;
    tokenizer_load(&tok, cfg.tokenizer_path);
    if (tok.vocab_size() > cfg.vocab_size)
        fatal("tokenizer '%s' has %d pieces but vocab_size is %d", cfg.tokenizer_path.c_str(), tok.vocab_size(), cfg.vocab_size);
    int B = cfg.micro_batch_seqs, T = cfg.train_seq_len;
    TrainLoader train;
    train_loader_init(&train, cfg.data_path, B, T, /*rank=*/0, /*world=*/1, (uint64_t)cfg.seed, cfg.vocab_size);
    ValData val;
    val_load(&val, cfg.data_path, T, 0, 1, cfg.vocab_size);
    int64_t val_bytes = 0;
    std::vector<int32_t> seq((size_t)T + 1);
    for (int64_t s = 0; s < val.num_seqs; s++) {
        val_batch(val, seq.data(), s, 1);
        val_bytes += bpb_count_bytes(tok, seq.data(), T);
    }
    printf("data: %s: %lld train windows of %d+1, %lld val sequences (%lld bytes scored)\n",
           cfg.data_path.c_str(), (long long)train.num_windows(), T, (long long)val.num_seqs, (long long)val_bytes);
    printf("tokenizer: %s: %d pieces\n", cfg.tokenizer_path.c_str(), tok.vocab_size());
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) fatal("no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "count is 0");
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    return 0;
}
