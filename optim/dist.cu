// NCCL setup, collectives and the watchdog; see optim/dist.cuh.
#include "optim/dist.cuh"
#include "optim/rendezvous.h"
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <unistd.h>

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Non-blocking communicators may answer ncclInProgress from any call: then wait, at most the
// timeout, for the call to finish being issued (not for the GPU work) by polling the async error.
static void nccl_settle(const Dist& d, ncclResult_t r, const char* what, const char* file, int line) {
    const Clock::time_point t0 = Clock::now();
    while (r == ncclInProgress) {
        if (ncclCommGetAsyncError(d.comm, &r) != ncclSuccess) r = ncclInternalError;
        if (r == ncclInProgress && seconds_since(t0) > d.timeout_s) {
            ncclCommAbort(d.comm);
            fatal("dist: rank %d of %d: %s still in progress after %g s at %s:%d: a rank died or hangs", d.rank,
                  d.world, what, d.timeout_s, file, line);
        }
    }
    if (r != ncclSuccess) fatal("NCCL %s at %s:%d (rank %d of %d): %s", ncclGetErrorString(r), file, line, d.rank, d.world, what);
}
#define ncclCheck(d, call) nccl_settle((d), (call), #call, __FILE__, __LINE__)

static int env_int(const char* name, int def) {
    const char* v = getenv(name);
    if (!v || !*v) return def;
    char* end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1 << 20) fatal("env %s: '%s' is not a non-negative integer", name, v);
    return (int)x;
}

// ---- watchdog

struct Watchdog {
    int device = 0;
    double timeout_s = 0;
    std::function<std::string()> poll;
    std::function<void(const std::string&)> fail;
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    bool armed = false;            // work marked by `ev` not yet seen finished
    Clock::time_point armed_at;    // enqueue time of the oldest collective not known to be finished
    double armed_timeout = 0;      // how long that work may take (the longest asked since armed_at)
    cudaEvent_t ev = nullptr;
    std::thread th;
};

static void watchdog_loop(Watchdog* w) {
    cudaCheck(cudaSetDevice(w->device));
    std::unique_lock<std::mutex> lk(w->mu);
    while (!w->stop) {
        w->cv.wait_for(lk, std::chrono::milliseconds(50));
        if (w->stop) break;
        std::string msg = w->poll ? w->poll() : std::string();
        if (msg.empty() && w->armed) {
            cudaError_t e = cudaEventQuery(w->ev);
            if (e == cudaSuccess) w->armed = false;
            else if (e != cudaErrorNotReady) msg = std::string("CUDA error while waiting for a collective: ") + cudaGetErrorString(e);
            else if (seconds_since(w->armed_at) > w->armed_timeout) {
                char buf[200];
                snprintf(buf, sizeof buf, "a collective enqueued %.1f s ago has not finished (timeout %g s): a rank died or hangs",
                         seconds_since(w->armed_at), w->armed_timeout);
                msg = buf;
            }
        }
        if (!msg.empty()) {
            lk.unlock();
            w->fail(msg);
            return;
        }
    }
}

Watchdog* watchdog_start(int device, double timeout_s, std::function<std::string()> poll,
                         std::function<void(const std::string&)> fail) {
    Watchdog* w = new Watchdog();
    w->device = device;
    w->timeout_s = timeout_s;
    w->poll = std::move(poll);
    w->fail = std::move(fail);
    cudaCheck(cudaEventCreateWithFlags(&w->ev, cudaEventDisableTiming));
    w->th = std::thread(watchdog_loop, w);
    return w;
}

void watchdog_arm(Watchdog* w, cudaStream_t stream, double timeout_s) {
    if (!w) return;
    std::lock_guard<std::mutex> lk(w->mu);
    const double t = timeout_s > 0 ? timeout_s : w->timeout_s;
    // the clock restarts only when everything marked before has finished: work that never
    // finishes keeps its first enqueue time however many collectives follow it
    if (!w->armed || cudaEventQuery(w->ev) == cudaSuccess) {
        w->armed_at = Clock::now();
        w->armed_timeout = t;
    } else {
        w->armed_timeout = std::max(w->armed_timeout, t);
    }
    cudaCheck(cudaEventRecord(w->ev, stream));
    w->armed = true;
}

void watchdog_stop(Watchdog* w) {
    if (!w) return;
    {
        std::lock_guard<std::mutex> lk(w->mu);
        w->stop = true;
    }
    w->cv.notify_all();
    w->th.join();
    cudaCheck(cudaEventDestroy(w->ev));
    delete w;
}

// ---- setup

void dist_init(Dist* d, double timeout_s) {
    *d = Dist();
    if (!(timeout_s > 0)) fatal("dist: timeout %g s is not a positive number of seconds", timeout_s);
    d->timeout_s = timeout_s;
    d->world = env_int("WORLD_SIZE", 1);
    d->rank = env_int("RANK", 0);
    d->local_rank = env_int("LOCAL_RANK", d->rank);
    if (d->world < 1 || d->rank >= d->world) fatal("dist: RANK=%d is not below WORLD_SIZE=%d", d->rank, d->world);
    int ndev = 0;
    cudaCheck(cudaGetDeviceCount(&ndev));
    if (d->local_rank >= ndev) fatal("dist: LOCAL_RANK=%d but this machine has %d GPUs", d->local_rank, ndev);
    cudaCheck(cudaSetDevice(d->local_rank));
    if (d->world == 1) return;
    // NVLink multicast (NVLS) stays off whatever the environment or an nccl.conf says: on the lent
    // shared hosts it can put every GPU of the host out of service (device KINDS.md). tools/launch
    // sets it too; this covers the tests and hand-started ranks. NCCL reads it when it first
    // initializes (ncclGetUniqueId / the communicator below), and an nccl.conf never overrides a set
    // variable.
    const char* nvls = getenv("NCCL_NVLS_ENABLE");
    if (nvls && strcmp(nvls, "0") != 0 && d->rank == 0)
        fprintf(stderr, "warning: dist: NCCL_NVLS_ENABLE=%s ignored: NVLink multicast stays off\n", nvls);
    setenv("NCCL_NVLS_ENABLE", "0", 1);

    ncclUniqueId id;
    if (d->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) fatal("NCCL ncclGetUniqueId: %s", ncclGetErrorString(r));
    }
    const Clock::time_point t0 = Clock::now();
    rendezvous_exchange(d->rank, d->world, getenv("MASTER_ADDR"), getenv("MASTER_PORT"), &id, sizeof id, timeout_s);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&d->comm, d->world, id, d->rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) fatal("NCCL ncclCommInitRankConfig (rank %d of %d): %s", d->rank, d->world, ncclGetErrorString(r));
    while (true) {
        if (ncclCommGetAsyncError(d->comm, &r) != ncclSuccess) r = ncclInternalError;
        if (r != ncclInProgress) break;
        if (seconds_since(t0) > timeout_s) {
            ncclCommAbort(d->comm);
            fatal("dist: NCCL communicator not ready after %g s (rank %d of %d): a rank is missing or dead", timeout_s, d->rank, d->world);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (r != ncclSuccess) {
        ncclCommAbort(d->comm);
        fatal("NCCL communicator creation failed (rank %d of %d): %s", d->rank, d->world, ncclGetErrorString(r));
    }
    const ncclComm_t comm = d->comm;
    const int rank = d->rank, world = d->world;
    auto poll = [comm]() -> std::string {
        ncclResult_t e;
        if (ncclCommGetAsyncError(comm, &e) != ncclSuccess) return "ncclCommGetAsyncError failed";
        if (e == ncclSuccess || e == ncclInProgress) return "";
        return std::string("NCCL asynchronous error: ") + ncclGetErrorString(e);
    };
    // From the watchdog thread: name the problem, abort the communicator (its kernels stop
    // spinning on the dead peer), end the process. _exit, not exit: the main thread may still be
    // inside a CUDA or NCCL call. A guard ends the process should the abort itself block.
    auto fail = [comm, rank, world](const std::string& msg) {
        fprintf(stderr, "error: dist: rank %d of %d: %s: aborting\n", rank, world, msg.c_str());
        fflush(stderr);
        fflush(stdout);
        std::thread([] { std::this_thread::sleep_for(std::chrono::seconds(10)); _exit(1); }).detach();
        ncclCommAbort(comm);
        _exit(1);
    };
    d->watch = watchdog_start(d->local_rank, timeout_s, poll, fail);
}

// The run's results are written by now: a finalize that does not finish in time (a peer gone)
// is a warning, and the communicator is aborted instead of destroyed.
void dist_destroy(Dist* d) {
    if (d->comm) {
        const Clock::time_point t0 = Clock::now();
        ncclResult_t r = ncclCommFinalize(d->comm);
        while (r == ncclInProgress && seconds_since(t0) < d->timeout_s) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            if (ncclCommGetAsyncError(d->comm, &r) != ncclSuccess) r = ncclInternalError;
        }
        watchdog_stop(d->watch);
        if (r == ncclSuccess) ncclCommDestroy(d->comm);
        else {
            fprintf(stderr, "warning: dist: rank %d of %d: NCCL finalize: %s; aborting the communicator\n", d->rank, d->world,
                    r == ncclInProgress ? "timed out" : ncclGetErrorString(r));
            ncclCommAbort(d->comm);
        }
    }
    *d = Dist();
}

// ---- collectives

namespace {
__global__ void checksum_kernel(unsigned long long* out, const uint32_t* x, int64_t n) {
    unsigned long long s = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s += x[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(out, s);  // integer sums: the same total in any order
}
}  // namespace

uint64_t weights_checksum(const float* x, int64_t n, cudaStream_t stream) {
    unsigned long long* d;
    cudaCheck(cudaMallocAsync((void**)&d, sizeof(*d), stream));
    cudaCheck(cudaMemsetAsync(d, 0, sizeof(*d), stream));
    checksum_kernel<<<132 * 4, 256, 0, stream>>>(d, (const uint32_t*)x, n);
    cudaCheckLaunch();
    unsigned long long h;
    cudaCheck(cudaMemcpyAsync(&h, d, sizeof(h), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaFreeAsync(d, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    return h;
}

void dist_check_same(const Dist& d, const float* x, int64_t n, const char* what, int64_t step, cudaStream_t stream) {
    if (d.world == 1) return;
    const uint64_t mine = weights_checksum(x, n, stream);
    uint64_t h[2] = {mine, mine};  // min, max over ranks
    uint64_t* buf;
    cudaCheck(cudaMallocAsync((void**)&buf, sizeof(h), stream));
    cudaCheck(cudaMemcpyAsync(buf, h, sizeof(h), cudaMemcpyHostToDevice, stream));
    dist_all_reduce(d, buf, 1, ncclUint64, ncclMin, stream);
    dist_all_reduce(d, buf + 1, 1, ncclUint64, ncclMax, stream);
    cudaCheck(cudaMemcpyAsync(h, buf, sizeof(h), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaFreeAsync(buf, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    if (h[0] != h[1])
        fatal("dist: rank %d of %d: the ranks' %s differ after step %lld (checksums %016llx .. %016llx, this rank "
              "%016llx): data parallel training must keep them identical", d.rank, d.world, what, (long long)step,
              (unsigned long long)h[0], (unsigned long long)h[1], (unsigned long long)mine);
}

void dist_all_reduce(const Dist& d, void* buf, int64_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream) {
    if (d.world == 1) return;
    ncclCheck(d, ncclAllReduce(buf, buf, (size_t)count, type, op, d.comm, stream));
    watchdog_arm(d.watch, stream);
}

void dist_broadcast_many(const Dist& d, void* base, ncclDataType_t type, const int64_t* offsets, const int64_t* counts,
                         const int* roots, int k, cudaStream_t stream) {
    if (d.world == 1) return;
    size_t esize = 0;
    switch (type) {
    case ncclFloat32: case ncclInt32: esize = 4; break;
    case ncclBfloat16: case ncclFloat16: esize = 2; break;
    case ncclFloat64: case ncclInt64: esize = 8; break;
    default: fatal("dist_broadcast_many: unsupported NCCL type %d", (int)type);
    }
    ncclCheck(d, ncclGroupStart());
    for (int j = 0; j < k; j++) {
        void* p = (char*)base + (size_t)offsets[j] * esize;
        ncclCheck(d, ncclBroadcast(p, p, (size_t)counts[j], type, roots[j], d.comm, stream));
    }
    ncclCheck(d, ncclGroupEnd());
    watchdog_arm(d.watch, stream);
}

void dist_barrier(const Dist& d, cudaStream_t stream, double timeout_s) {
    if (d.world == 1) return;
    int* flag;
    cudaCheck(cudaMallocAsync((void**)&flag, sizeof(int), stream));
    cudaCheck(cudaMemsetAsync(flag, 0, sizeof(int), stream));
    ncclCheck(d, ncclAllReduce(flag, flag, 1, ncclInt32, ncclSum, d.comm, stream));
    watchdog_arm(d.watch, stream, timeout_s);
    cudaCheck(cudaFreeAsync(flag, stream));
    cudaCheck(cudaStreamSynchronize(stream));
}
