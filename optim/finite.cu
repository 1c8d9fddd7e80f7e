// Non-finite check kernel and launcher; see optim/finite.cuh.
#include "optim/finite.cuh"
#include <algorithm>
#include <cstring>

constexpr int64_t kFiniteChunk = 16384;  // elements per block: ~1300 blocks at the seed's size

// ---- CUDA kernel

__global__ void nonfinite_flags_kernel(int32_t* flags, const float* x, const FiniteChunk* chunks) {
    const FiniteChunk ch = chunks[blockIdx.x];
    int bad = 0;
    for (int64_t j = threadIdx.x; j < ch.count; j += blockDim.x) bad |= !isfinite(x[ch.offset + j]);
    if (__syncthreads_or(bad) && threadIdx.x == 0) flags[ch.tensor] = 1;
}

// ---- launcher

void finite_check_create(FiniteCheck* fc, const std::vector<TensorSpec>& specs) {
    *fc = FiniteCheck();
    std::vector<FiniteChunk> chunks;
    for (size_t i = 0; i < specs.size(); i++) {
        fc->names.push_back(specs[i].name);
        for (int64_t o = 0; o < specs[i].numel(); o += kFiniteChunk)
            chunks.push_back({specs[i].offset + o, std::min(kFiniteChunk, specs[i].numel() - o), (int32_t)i});
    }
    fc->ntensors = (int)specs.size();
    fc->nchunks = (int)chunks.size();
    if (fc->ntensors == 0) return;
    cudaCheck(cudaMalloc(&fc->flags, fc->ntensors * sizeof(int32_t)));
    cudaCheck(cudaMallocHost(&fc->host_flags, fc->ntensors * sizeof(int32_t)));
    memset(fc->host_flags, 0, fc->ntensors * sizeof(int32_t));
    if (fc->nchunks == 0) return;
    cudaCheck(cudaMalloc(&fc->chunks, chunks.size() * sizeof(FiniteChunk)));
    cudaCheck(cudaMemcpy(fc->chunks, chunks.data(), chunks.size() * sizeof(FiniteChunk), cudaMemcpyHostToDevice));
}

void finite_check_destroy(FiniteCheck* fc) {
    if (fc->chunks) cudaCheck(cudaFree(fc->chunks));
    if (fc->flags) cudaCheck(cudaFree(fc->flags));
    if (fc->host_flags) cudaCheck(cudaFreeHost(fc->host_flags));
    *fc = FiniteCheck();
}

void finite_check_launch(FiniteCheck* fc, const float* x, cudaStream_t stream) {
    if (fc->ntensors == 0) return;
    cudaCheck(cudaMemsetAsync(fc->flags, 0, fc->ntensors * sizeof(int32_t), stream));
    if (fc->nchunks > 0) {
        nonfinite_flags_kernel<<<fc->nchunks, 256, 0, stream>>>(fc->flags, x, fc->chunks);
        cudaCheckLaunch();
    }
    cudaCheck(cudaMemcpyAsync(fc->host_flags, fc->flags, fc->ntensors * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
}

int finite_check_first(const FiniteCheck& fc) {
    for (int i = 0; i < fc.ntensors; i++)
        if (fc.host_flags[i]) return i;
    return -1;
}
