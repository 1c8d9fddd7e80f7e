// NCCL setup and collectives; see optim/dist.cuh.
#include "optim/dist.cuh"
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

// Non-blocking communicators may answer ncclInProgress from any call: then wait for the call to
// finish being issued (not for the GPU work) by polling the communicator's async error.
static void nccl_settle(ncclComm_t comm, ncclResult_t r, const char* what, const char* file, int line) {
    if (r == ncclInProgress) {
        do {
            if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) break;
        } while (r == ncclInProgress);
    }
    if (r != ncclSuccess) fatal("NCCL %s at %s:%d: %s", ncclGetErrorString(r), file, line, what);
}
#define ncclCheck(comm, call) nccl_settle((comm), (call), #call, __FILE__, __LINE__)

static int env_int(const char* name, int def) {
    const char* v = getenv(name);
    if (!v || !*v) return def;
    char* end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1 << 20) fatal("env %s: '%s' is not a non-negative integer", name, v);
    return (int)x;
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Sends or receives exactly n bytes, giving up when the deadline passes.
static void sock_io(int fd, void* buf, size_t n, bool send_, std::chrono::steady_clock::time_point t0, double timeout_s, const char* peer) {
    char* p = (char*)buf;
    while (n > 0) {
        pollfd pfd{fd, (short)(send_ ? POLLOUT : POLLIN), 0};
        int left_ms = (int)((timeout_s - seconds_since(t0)) * 1000);
        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0) fatal("dist: rendezvous with %s timed out after %g s", peer, timeout_s);
        ssize_t k = send_ ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k <= 0) fatal("dist: rendezvous with %s: connection lost (%s)", peer, k == 0 ? "closed" : strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

// Rank 0 accepts world-1 connections and sends each the id; the others connect (retrying while
// rank 0 is not up yet) and receive it.
static void rendezvous(const Dist& d, ncclUniqueId* id, double timeout_s) {
    const char* addr = getenv("MASTER_ADDR");
    const char* port = getenv("MASTER_PORT");
    if (!addr || !port) fatal("dist: WORLD_SIZE=%d needs MASTER_ADDR and MASTER_PORT in the environment", d.world);
    auto t0 = std::chrono::steady_clock::now();
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (d.rank == 0) hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(d.rank == 0 ? nullptr : addr, port, &hints, &res);
    if (gai != 0) fatal("dist: cannot resolve MASTER_ADDR=%s MASTER_PORT=%s: %s", addr, port, gai_strerror(gai));
    std::string peer = std::string(addr) + ":" + port;
    if (d.rank == 0) {
        int ls = socket(res->ai_family, res->ai_socktype, 0);
        int one = 1;
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ls < 0 || bind(ls, res->ai_addr, res->ai_addrlen) != 0 || listen(ls, d.world) != 0)
            fatal("dist: rank 0 cannot listen on port %s: %s", port, strerror(errno));
        for (int k = 1; k < d.world; k++) {
            pollfd pfd{ls, POLLIN, 0};
            int left_ms = (int)((timeout_s - seconds_since(t0)) * 1000);
            if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0)
                fatal("dist: rank 0 waited %g s and only %d of %d ranks arrived", timeout_s, k, d.world);
            int fd = accept(ls, nullptr, nullptr);
            if (fd < 0) fatal("dist: accept failed: %s", strerror(errno));
            sock_io(fd, id, sizeof *id, true, t0, timeout_s, "a rank");
            close(fd);
        }
        close(ls);
    } else {
        int fd = -1;
        while (true) {
            fd = socket(res->ai_family, res->ai_socktype, 0);
            if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) break;
            if (fd >= 0) close(fd);
            if (seconds_since(t0) > timeout_s) fatal("dist: rank %d could not reach rank 0 at %s within %g s", d.rank, peer.c_str(), timeout_s);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        sock_io(fd, id, sizeof *id, false, t0, timeout_s, peer.c_str());
        close(fd);
    }
    freeaddrinfo(res);
}

void dist_init(Dist* d, double timeout_s) {
    *d = Dist();
    if (const char* t = getenv("DIST_TIMEOUT")) {  // seconds; tests use a short one
        char* end;
        timeout_s = strtod(t, &end);
        if (*end || !(timeout_s > 0)) fatal("env DIST_TIMEOUT: '%s' is not a positive number of seconds", t);
    }
    d->world = env_int("WORLD_SIZE", 1);
    d->rank = env_int("RANK", 0);
    d->local_rank = env_int("LOCAL_RANK", d->rank);
    if (d->world < 1 || d->rank >= d->world) fatal("dist: RANK=%d is not below WORLD_SIZE=%d", d->rank, d->world);
    int ndev = 0;
    cudaCheck(cudaGetDeviceCount(&ndev));
    if (d->local_rank >= ndev) fatal("dist: LOCAL_RANK=%d but this machine has %d GPUs", d->local_rank, ndev);
    cudaCheck(cudaSetDevice(d->local_rank));
    if (d->world == 1) return;

    ncclUniqueId id;
    if (d->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) fatal("NCCL ncclGetUniqueId: %s", ncclGetErrorString(r));
    }
    auto t0 = std::chrono::steady_clock::now();
    rendezvous(*d, &id, timeout_s);
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
}

void dist_destroy(Dist* d) {
    if (d->comm) {
        ncclCheck(d->comm, ncclCommFinalize(d->comm));
        ncclCommDestroy(d->comm);
    }
    d->comm = nullptr;
}

void dist_all_reduce(const Dist& d, void* buf, int64_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream) {
    if (d.world == 1) return;
    ncclCheck(d.comm, ncclAllReduce(buf, buf, (size_t)count, type, op, d.comm, stream));
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
    ncclCheck(d.comm, ncclGroupStart());
    for (int j = 0; j < k; j++) {
        void* p = (char*)base + (size_t)offsets[j] * esize;
        ncclCheck(d.comm, ncclBroadcast(p, p, (size_t)counts[j], type, roots[j], d.comm, stream));
    }
    ncclCheck(d.comm, ncclGroupEnd());
}

void dist_barrier(const Dist& d, cudaStream_t stream) {
    if (d.world == 1) return;
    int* flag;
    cudaCheck(cudaMallocAsync((void**)&flag, sizeof(int), stream));
    cudaCheck(cudaMemsetAsync(flag, 0, sizeof(int), stream));
    dist_all_reduce(d, flag, 1, ncclInt32, ncclSum, stream);
    cudaCheck(cudaFreeAsync(flag, stream));
    cudaCheck(cudaStreamSynchronize(stream));
}
