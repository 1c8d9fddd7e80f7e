// train: the Parameter Golf trainer (Mamba-3 + attention hybrid).
// Today it parses and prints the configuration, lays out the parameter arena and
// checks the data and tokenizer it was pointed at; the training loop lands with
// the GPU layers (issues 4-6).
#include "model/config.h"      // defines: Config, config_from_env_and_args, config_print
#include "model/params.h"      // defines: param_specs, param_count, param_bind, param_init
#include "model/cuda_common.cuh"  // defines: cudaCheck, cublasCheck

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
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) fatal("no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "count is 0");
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    return 0;
}
