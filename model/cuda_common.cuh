// CUDA-side helpers: every CUDA, cuBLAS and NCCL call goes through a check that
// names the file and line, and the failed call's own error string.
#pragma once
#include "model/common.h"
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>

#define cudaCheck(call)                                                                        \
    do {                                                                                       \
        cudaError_t _e = (call);                                                               \
        if (_e != cudaSuccess) fatal("CUDA %s at %s:%d: %s", cudaGetErrorString(_e), __FILE__, __LINE__, #call); \
    } while (0)

#define cublasCheck(call)                                                                      \
    do {                                                                                       \
        cublasStatus_t _s = (call);                                                            \
        if (_s != CUBLAS_STATUS_SUCCESS) fatal("cuBLAS %s (%d) at %s:%d: %s", cublasGetStatusString(_s), (int)_s, __FILE__, __LINE__, #call); \
    } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define cudaCheckLaunch() cudaCheck(cudaGetLastError())

inline int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }
