// Trainer pieces on one GPU: the gradient NaN/Inf flags (optim/finite.cuh) against the CPU twin
// with poison at chosen tensors, and the dist watchdog (optim/dist.cuh) on a kernel that hangs
// like a collective whose peer died, with no NCCL involved.
#include "gpu_util.h"
#include "model/params.h"
#include "optim/dist.cuh"
#include "optim/finite.cuh"
#include "optim/finite.h"
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

TEST_CASE("gpu trainer: per-tensor NaN/Inf flags of the seed's gradient arena") {
    Config c;  // the seed's shapes: ~21 M floats, wte cut in 256 chunks
    const auto specs = param_specs(c);
    const int64_t n = param_arena_size(c);
    const int nt = (int)specs.size();
    auto host = gt::randn(n, 7);
    float* d = gt::to_dev(host);
    FiniteCheck fc;
    finite_check_create(&fc, specs);
    REQUIRE(fc.ntensors == nt);
    auto find = [&](const char* name) {
        for (int i = 0; i < nt; i++)
            if (specs[i].name == name) return i;
        FAIL("no tensor " << name);
        return -1;
    };
    const int wte = find("wte"), D3 = find("blocks.3.D"), last = nt - 1, q6 = find("blocks.5.q_gain");
    int64_t gap = -1;  // the first padding element of the arena
    for (int i = 0; i + 1 < nt && gap < 0; i++)
        if (specs[i + 1].offset > specs[i].offset + specs[i].numel()) gap = specs[i].offset + specs[i].numel();
    REQUIRE(gap >= 0);
    struct Poison { int tensor; int64_t at; float v; };
    const float nan = NAN, inf = INFINITY;
    // each case: the poisoned elements (tensor, index in it, value); the expected flags follow from the tensors
    const std::vector<std::vector<Poison>> cases = {
        {},
        {{wte, 0, nan}},
        {{last, specs[last].numel() - 1, inf}},
        {{wte, 16384, -inf}, {D3, 1, nan}},                // a chunk's first element; a small scalar tensor
        {{wte, 16383, nan}, {q6, specs[q6].numel() - 1, -inf}, {last, 0, nan}},
    };
    for (size_t k = 0; k < cases.size(); k++) {
        std::vector<float> x = host;
        std::vector<int32_t> want(nt, 0);
        for (auto& p : cases[k]) {
            x[specs[p.tensor].offset + p.at] = p.v;
            want[p.tensor] = 1;
        }
        x[gap] = nan;  // padding between two tensors is not a tensor: NaN there flags nothing
        cudaCheck(cudaMemcpy(d, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        finite_check_launch(&fc, d, 0);
        cudaCheck(cudaStreamSynchronize(0));
        std::vector<int32_t> cpu(nt), gpu(fc.host_flags, fc.host_flags + nt);
        nonfinite_flags_cpu(cpu.data(), x.data(), specs);
        INFO("case " << k);
        CHECK(gpu == want);
        CHECK(cpu == want);
        int first = -1;
        for (int i = 0; i < nt && first < 0; i++)
            if (want[i]) first = i;
        CHECK(finite_check_first(fc) == first);
        if (first >= 0) MESSAGE("case " << k << ": first flagged tensor " << fc.names[first]);
    }
    finite_check_destroy(&fc);
    cudaCheck(cudaFree(d));
}

// Spins until *release is set (host-mapped memory), at most ~10 s so a broken test cannot hang.
__global__ void hang_kernel(volatile int* release) {
    const long long t0 = clock64();
    while (*release == 0 && clock64() - t0 < 20000000000ll) {}
}

TEST_CASE("gpu trainer: the dist watchdog fails a hung collective after the timeout, and only then") {
    int* release;
    cudaCheck(cudaHostAlloc(&release, sizeof(int), cudaHostAllocMapped));
    *release = 0;
    cudaStream_t s;
    cudaCheck(cudaStreamCreate(&s));
    int dev;
    cudaCheck(cudaGetDevice(&dev));
    std::atomic<int> fails{0};
    std::atomic<double> fail_at{0};
    std::string msg;
    auto t0 = std::chrono::steady_clock::now();
    auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    auto fail = [&](const std::string& m) {
        msg = m;
        fail_at = since();
        fails++;
        *(volatile int*)release = 1;  // the "abort": lets the hung kernel end
    };

    // finished work, armed again and again, never fails (the clock restarts once work is done)
    Watchdog* w = watchdog_start(dev, 0.3, nullptr, fail);
    for (int i = 0; i < 12; i++) {
        *release = 1;
        hang_kernel<<<1, 1, 0, s>>>(release);
        cudaCheckLaunch();
        watchdog_arm(w, s);
        cudaCheck(cudaStreamSynchronize(s));
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
    CHECK(fails == 0);
    watchdog_stop(w);

    // a kernel that never ends: the watchdog fails it after ~0.3 s, not before
    *release = 0;
    w = watchdog_start(dev, 0.3, nullptr, fail);
    t0 = std::chrono::steady_clock::now();
    hang_kernel<<<1, 1, 0, s>>>(release);
    cudaCheckLaunch();
    watchdog_arm(w, s);
    cudaCheck(cudaStreamSynchronize(s));  // returns once fail() released the kernel
    const double back = since();
    watchdog_stop(w);
    MESSAGE("hung kernel: fail after " << fail_at.load() << " s (timeout 0.3 s), stream back after " << back << " s: " << msg);
    CHECK(fails == 1);
    CHECK(fail_at >= 0.3);
    CHECK(fail_at < 1.5);
    CHECK(msg.find("has not finished (timeout 0.3 s): a rank died or hangs") != std::string::npos);

    // an asynchronous error reported by poll() fails at once, with poll's message
    std::atomic<int> polls{0};
    w = watchdog_start(dev, 100.0, [&]() -> std::string { return ++polls >= 3 ? "NCCL asynchronous error: remote process exited" : ""; }, fail);
    t0 = std::chrono::steady_clock::now();
    while (fails < 2 && since() < 5.0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    watchdog_stop(w);
    CHECK(fails == 2);
    CHECK(msg == "NCCL asynchronous error: remote process exited");
    cudaCheck(cudaStreamDestroy(s));
    cudaCheck(cudaFreeHost(release));
}

TEST_CASE("gpu trainer: weights checksum (dist_check_same's) = the bit patterns' sum; one ulp changes it") {
    for (int64_t n : {(int64_t)1, (int64_t)1000003, (int64_t)25160576}) {
        CAPTURE(n);
        auto x = gt::randn(n, 90 + n % 7);
        uint64_t want = 0;
        for (float f : x) {
            uint32_t u;
            memcpy(&u, &f, 4);
            want += u;
        }
        float* d = gt::to_dev(x);
        CHECK(weights_checksum(d, n, 0) == want);
        CHECK(weights_checksum(d, n, 0) == want);  // no state left behind
        x[n / 2] = nextafterf(x[n / 2], INFINITY);
        cudaCheck(cudaMemcpy(d + n / 2, &x[n / 2], 4, cudaMemcpyHostToDevice));
        CHECK(weights_checksum(d, n, 0) != want);
        Dist one;  // world 1: nothing to compare, returns
        dist_check_same(one, d, n, "parameters", 0, 0);
        cudaCheck(cudaFree(d));
    }
}
