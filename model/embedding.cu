// Token embedding CUDA kernels and launchers; see model/embedding.cuh.
#include "model/embedding.cuh"
#include <cub/device/device_radix_sort.cuh>

namespace {
constexpr int kGroups = 4;         // thread groups per backward CTA, each a 4th of the positions
constexpr int kGroupThreads = 128; // channels per group per pass
constexpr int kPer = 4;            // channels per thread per pass: a pass covers 512 channels

// ---- CUDA kernels
__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte, int64_t N, int C, int V) {
    const int64_t n = blockIdx.x;
    const int tok = tokens[n];
    const bool ok = tok >= 0 && tok < V;
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = ok ? wte[(int64_t)tok * C + c] : NAN;
}

// sort keys: the token, or V (after every real row) for one outside [0, V); values: positions
__global__ void embedding_sort_keys_kernel(int32_t* keys, int32_t* pos, const int32_t* tokens, int64_t N, int V) {
    const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const int tok = tokens[n];
    keys[n] = (tok >= 0 && tok < V) ? tok : V;
    pos[n] = (int32_t)n;
}

__device__ int lower_bound(const int32_t* keys, int N, int v) {
    int lo = 0, hi = N;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (keys[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// one CTA per vocabulary row v: its positions are sorted[start, end); group g adds positions
// start + g, start + g + 4, ... in that order, then the 4 partials are added in group order
__global__ void __launch_bounds__(kGroups * kGroupThreads)
    embedding_backward_kernel(float* dwte, const float* dout, const int32_t* keys, const int32_t* pos, int N, int C) {
    __shared__ int range[2];
    __shared__ float part[kGroups][kGroupThreads * kPer];
    const int v = blockIdx.x;
    if (threadIdx.x < 2) range[threadIdx.x] = lower_bound(keys, N, v + threadIdx.x);
    __syncthreads();
    const int start = range[0], end = range[1];
    if (start == end) return;
    const int g = threadIdx.x / kGroupThreads, t = threadIdx.x % kGroupThreads;
    for (int c0 = 0; c0 < C; c0 += kGroupThreads * kPer) {
        float acc[kPer] = {};
        int i = start + g;
        for (; i + kGroups < end; i += 2 * kGroups) {  // two rows' loads in flight, added in order
            const float* r0 = dout + (int64_t)pos[i] * C + c0 + t;
            const float* r1 = dout + (int64_t)pos[i + kGroups] * C + c0 + t;
            float a0[kPer], a1[kPer];
#pragma unroll
            for (int j = 0; j < kPer; j++) {
                const bool in = c0 + t + j * kGroupThreads < C;
                a0[j] = in ? r0[j * kGroupThreads] : 0.f;
                a1[j] = in ? r1[j * kGroupThreads] : 0.f;
            }
#pragma unroll
            for (int j = 0; j < kPer; j++) acc[j] = acc[j] + a0[j] + a1[j];
        }
        if (i < end) {
            const float* r0 = dout + (int64_t)pos[i] * C + c0 + t;
#pragma unroll
            for (int j = 0; j < kPer; j++)
                if (c0 + t + j * kGroupThreads < C) acc[j] += r0[j * kGroupThreads];
        }
#pragma unroll
        for (int j = 0; j < kPer; j++) part[g][t + j * kGroupThreads] = acc[j];
        __syncthreads();
        for (int k = threadIdx.x; k < kGroupThreads * kPer && c0 + k < C; k += blockDim.x) {
            float sum = part[0][k];
            for (int q = 1; q < kGroups; q++) sum += part[q][k];
            dwte[(int64_t)v * C + c0 + k] += sum;
        }
        __syncthreads();
    }
}

// the scratch, carved: keys and positions, in and sorted, then CUB's temporary storage
struct SortScratch {
    int32_t *keys, *keys_sorted, *pos, *pos_sorted;
    void* temp;
    size_t temp_bytes;
    int end_bit;  // keys are in [0, V]
};
size_t align256(size_t n) { return (n + 255) / 256 * 256; }
SortScratch carve(void* scratch, int64_t N, int V) {
    SortScratch s;
    s.end_bit = 32 - __builtin_clz((unsigned)V);
    s.temp_bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(nullptr, s.temp_bytes, (int32_t*)nullptr, (int32_t*)nullptr,
                                              (int32_t*)nullptr, (int32_t*)nullptr, (int)N, 0, s.end_bit));
    char* p = (char*)scratch;
    const size_t ints = align256((size_t)N * sizeof(int32_t));
    s.keys = (int32_t*)p;
    s.keys_sorted = (int32_t*)(p + ints);
    s.pos = (int32_t*)(p + 2 * ints);
    s.pos_sorted = (int32_t*)(p + 3 * ints);
    s.temp = p + 4 * ints;
    return s;
}
}  // namespace

// ---- kernel launchers
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int64_t N, int C, int V,
                       cudaStream_t stream) {
    embedding_forward_kernel<<<(unsigned)N, 128, 0, stream>>>(out, tokens, wte, N, C, V);
    cudaCheckLaunch();
}

size_t embedding_backward_scratch_bytes(int64_t N, int V) {
    if (N < 1 || N > INT32_MAX || V < 1) fatal("embedding_backward: N %lld, V %d out of range", (long long)N, V);
    const SortScratch s = carve(nullptr, N, V);
    return 4 * align256((size_t)N * sizeof(int32_t)) + align256(s.temp_bytes);
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int64_t N, int C, int V, void* scratch,
                        cudaStream_t stream) {
    if (N < 1 || N > INT32_MAX) fatal("embedding_backward: N %lld out of range", (long long)N);
    SortScratch s = carve(scratch, N, V);
    embedding_sort_keys_kernel<<<(unsigned)ceil_div(N, (int64_t)256), 256, 0, stream>>>(s.keys, s.pos, tokens, N, V);
    cudaCheckLaunch();
    cudaCheck(cub::DeviceRadixSort::SortPairs(s.temp, s.temp_bytes, s.keys, s.keys_sorted, s.pos, s.pos_sorted,
                                              (int)N, 0, s.end_bit, stream));
    embedding_backward_kernel<<<V, kGroups * kGroupThreads, 0, stream>>>(dwte, dout, s.keys_sorted, s.pos_sorted,
                                                                         (int)N, C);
    cudaCheckLaunch();
}
