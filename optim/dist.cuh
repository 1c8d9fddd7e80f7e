// Multi-GPU: every NCCL call of the trainer lives in optim/dist.cu (style rule 11).
// Launch: one process per GPU with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
// environment (torchrun's names). Without WORLD_SIZE (or with WORLD_SIZE=1) there is no NCCL at
// all and every function here is a no-op, so single-GPU runs and tests need no rendezvous.
// A rank that never arrives or dies makes the others exit with a named error within timeout_s
// (the trainer's dist_timeout_s), never a hang:
// - rank 0 hands the NCCL unique id to the others over a TCP rendezvous bounded by timeout_s
//   (optim/rendezvous.h);
// - the communicator is non-blocking: its creation, and every call answering ncclInProgress, is
//   polled against timeout_s;
// - a watchdog thread (below) polls ncclCommGetAsyncError and checks that each collective
//   finishes on the GPU within timeout_s of being enqueued; if not, it aborts the communicator
//   (ncclCommAbort) and ends the process with status 1. A collective may legitimately wait as long
//   as the slowest rank takes to reach it: after a rank-0-only phase longer than timeout_s
//   (checkpoint writing, quantization), wait with dist_barrier(d, stream, longer timeout).
#pragma once
#include "model/cuda_common.cuh"
#include <functional>
#include <nccl.h>
#include <string>

struct Watchdog;

struct Dist {
    int rank = 0, world = 1, local_rank = 0;
    double timeout_s = 120.0;
    ncclComm_t comm = nullptr;   // nullptr when world == 1
    Watchdog* watch = nullptr;   // nullptr when world == 1
};

// Reads the environment, selects GPU local_rank, creates the communicator and its watchdog (world > 1).
void dist_init(Dist* d, double timeout_s = 120.0);
void dist_destroy(Dist* d);

// In-place all-reduce over all ranks (no-op when world == 1).
void dist_all_reduce(const Dist& d, void* buf, int64_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream);
// k in-place broadcasts in one NCCL group: buffer j is base + offsets[j] (elements of `type`),
// counts[j] long, sent by rank roots[j] (no-op when world == 1).
void dist_broadcast_many(const Dist& d, void* base, ncclDataType_t type, const int64_t* offsets, const int64_t* counts,
                         const int* roots, int k, cudaStream_t stream);
// All ranks reach this point (a 1-element all-reduce, then a stream sync). timeout_s > 0: how long
// the watchdog lets it wait (after a rank-0-only phase), else the Dist's timeout_s.
void dist_barrier(const Dist& d, cudaStream_t stream, double timeout_s = 0);

// The float bit patterns of x (n floats) summed as unsigned 64-bit integers: exact and order-free,
// so equal arrays give equal checksums on every rank (and one flipped bit changes it).
uint64_t weights_checksum(const float* x, int64_t n, cudaStream_t stream);
// Data parallel training keeps the weights identical on every rank; ranks whose weights differ
// (different lrs, updates or broadcasts: a bug that raises no error) end with a fatal() naming
// `what` and the step, on every rank. The checksum's min and max over ranks (2 x 8 bytes); no-op
// when world == 1.
void dist_check_same(const Dist& d, const float* x, int64_t n, const char* what, int64_t step, cudaStream_t stream);

// The watchdog, NCCL-free so a one-GPU test reaches it (tests/gpu/test_trainer.cu). A thread that
// every 50 ms calls poll() (an error message, or "" when all is well) and checks whether the
// work enqueued before the latest watchdog_arm has finished on the GPU. A message from poll(), or
// work still unfinished timeout_s after the oldest unfinished arm, calls fail(message) once, from
// the watchdog thread, which then stops watching.
Watchdog* watchdog_start(int device, double timeout_s, std::function<std::string()> poll,
                         std::function<void(const std::string&)> fail);
// After enqueueing a collective on `stream`: marks the stream's position (a CUDA event); it must
// finish within timeout_s (<= 0: the watchdog's own timeout_s).
void watchdog_arm(Watchdog* w, cudaStream_t stream, double timeout_s = 0);
void watchdog_stop(Watchdog* w);
