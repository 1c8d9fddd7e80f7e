// Multi-GPU: every NCCL call of the trainer lives in optim/dist.cu (style rule 11).
// Launch: one process per GPU with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
// environment (torchrun's names). Without WORLD_SIZE (or with WORLD_SIZE=1) there is no NCCL at
// all and every function here is a no-op, so single-GPU runs and tests need no rendezvous.
// Rank 0 makes the NCCL unique id and hands it to the others over a small TCP rendezvous at
// MASTER_ADDR:MASTER_PORT; the communicator is created non-blocking and polled against a
// timeout, so a rank that never arrives (or died) makes the others exit with an error instead of
// hanging forever.
#pragma once
#include "model/cuda_common.cuh"
#include <nccl.h>

struct Dist {
    int rank = 0, world = 1, local_rank = 0;
    ncclComm_t comm = nullptr;  // nullptr when world == 1
};

// Reads the environment, selects GPU local_rank, creates the communicator (world > 1).
// timeout_s (env DIST_TIMEOUT overrides it) bounds the rendezvous and the communicator creation.
void dist_init(Dist* d, double timeout_s = 300.0);
void dist_destroy(Dist* d);

// In-place all-reduce over all ranks (no-op when world == 1).
void dist_all_reduce(const Dist& d, void* buf, int64_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream);
// k in-place broadcasts in one NCCL group: buffer j is base + offsets[j] (elements of `type`),
// counts[j] long, sent by rank roots[j] (no-op when world == 1).
void dist_broadcast_many(const Dist& d, void* base, ncclDataType_t type, const int64_t* offsets, const int64_t* counts,
                         const int* roots, int k, cudaStream_t stream);
// All ranks reach this point (a 1-element all-reduce, then a stream sync).
void dist_barrier(const Dist& d, cudaStream_t stream);
