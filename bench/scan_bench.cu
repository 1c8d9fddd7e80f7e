// Mamba-3 scan forward and forward+backward at the seed's shape (spec/targets.md): B 16, T 4096,
// H 16, P 64, N 64, G 1, S 16, L 64, z gate and final states on. Random inputs (never zeros), CUDA
// events, median of 30 after 5 warm-ups. Prints one line per measurement, in ms.
// Build: make build/bench/scan_bench (or make bench)
#include "model/mamba3_scan.cuh"
#include <algorithm>
#include <vector>

typedef __nv_bfloat16 bf16;
template <typename T>
static T* dev_rand(size_t n, Rng& r, float sc, float mean, bool positive = false) {
    std::vector<T> h(n);
    for (auto& x : h) {
        float v = (float)(mean + sc * r.normal());
        if (positive) v = fabsf(v);
        x = (T)v;
    }
    T* d;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T>
static T* dev_empty(size_t n) { T* d; cudaCheck(cudaMalloc(&d, std::max<size_t>(n, 1) * sizeof(T))); return d; }

int main(int argc, char** argv) {
    const int B = argc > 1 ? atoi(argv[1]) : 16, T = argc > 2 ? atoi(argv[2]) : 4096, H = 16, G = 1;
    Mamba3Dims d{};
    d.B = B; d.T = T; d.H = H; d.P = 64; d.N = 64; d.G = G; d.S = 16; d.L = 64; d.DI = H * 64;
    const size_t BT = (size_t)B * T, BH = (size_t)B * H, NC = d.nchunks();
    Rng r(1);
    bf16 *q = dev_rand<bf16>(BT * 64, r, 1, 0), *k = dev_rand<bf16>(BT * 64, r, 1, 0);
    bf16 *v = dev_rand<bf16>(BT * H * 64, r, 1, 0), *z = dev_rand<bf16>(BT * H * 64, r, 1, 0);
    bf16* dout = dev_rand<bf16>(BT * H * 64, r, 1, 0);
    float *adt = dev_rand<float>(BH * T, r, 0.05f, -0.1f), *dt = dev_rand<float>(BH * T, r, 0.05f, 0.1f, true);
    float *trap = dev_rand<float>(BH * T, r, 1, 0), *theta = dev_rand<float>(BT * 16, r, 1, 0);
    float *qb = dev_rand<float>(H * 64, r, 0.1f, 1), *kb = dev_rand<float>(H * 64, r, 0.1f, 1), *D = dev_rand<float>(H, r, 0.1f, 1);
    // adt must be negative
    { std::vector<float> h(BH * T); for (auto& x : h) x = -(float)(0.01 + 0.2 * r.uniform());
      cudaCheck(cudaMemcpy(adt, h.data(), h.size() * 4, cudaMemcpyHostToDevice)); }
    bf16 *out = dev_empty<bf16>(BT * H * 64), *y = dev_empty<bf16>(BT * H * 64), *dv = dev_empty<bf16>(BT * H * 64),
         *dz = dev_empty<bf16>(BT * H * 64);
    float* phi = dev_empty<float>(BH * T * 16);
    bf16* states = dev_empty<bf16>(BH * NC * 4096);
    float *dq = dev_empty<float>(BT * 64), *dk = dev_empty<float>(BT * 64), *dadt = dev_empty<float>(BH * T),
          *ddt = dev_empty<float>(BH * T), *dtrap = dev_empty<float>(BH * T), *dth = dev_empty<float>(BT * 16),
          *dqb = dev_empty<float>(H * 64), *dkb = dev_empty<float>(H * 64), *dD = dev_empty<float>(H);
    float *fa = dev_empty<float>(BH * 16), *fs = dev_empty<float>(BH * 4096), *fk = dev_empty<float>(BH * 64), *fv = dev_empty<float>(BH * 64);
    Mamba3States<float> fin{fa, fs, fk, fv};
    void* scratch = dev_empty<char>(mamba3_scan_backward_scratch_bytes(d));
    auto fwd = [&]() { mamba3_scan_forward(out, &fin, phi, y, states, q, k, v, adt, dt, trap, theta, qb, kb, D, z, nullptr, d, 0); };
    auto bwd = [&]() {
        mamba3_scan_backward(dq, dk, dv, dadt, ddt, dtrap, dth, dqb, dkb, dD, dz, nullptr, dout, nullptr, phi, y, states,
                             q, k, v, adt, dt, trap, theta, qb, kb, D, z, nullptr, scratch, d, 0);
    };
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0)); cudaCheck(cudaEventCreate(&e1));
    auto time = [&](auto fn) {
        for (int i = 0; i < 5; i++) fn();
        std::vector<float> ms;
        for (int i = 0; i < 30; i++) {
            cudaCheck(cudaEventRecord(e0)); fn(); cudaCheck(cudaEventRecord(e1));
            cudaCheck(cudaEventSynchronize(e1));
            float t; cudaCheck(cudaEventElapsedTime(&t, e0, e1)); ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        return ms[ms.size() / 2];
    };
    const float tf = time(fwd), tb = time(bwd), tfb = time([&]() { fwd(); bwd(); });
    printf("ours  B %d T %d H %d: forward %.3f ms  backward %.3f ms  forward+backward %.3f ms\n", B, T, H, tf, tb, tfb);
    return 0;
}
