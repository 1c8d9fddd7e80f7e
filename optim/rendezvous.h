// The TCP rendezvous of a multi-GPU run, plain C++ so the CPU tests reach it (optim/dist.cu
// sends the NCCL unique id through it): rank 0 listens on MASTER_PORT and hands `n` bytes to
// each of the world-1 other ranks; they connect to MASTER_ADDR:MASTER_PORT (retrying every
// 100 ms while rank 0 is not up yet) and receive them. Everything happens before timeout_s
// seconds have passed, or the process ends with a named error: a rank that never arrives makes
// rank 0 fail ("only K of N ranks arrived"), a missing rank 0 makes the others fail ("could not
// reach rank 0"), never a hang.
#pragma once
#include <cstddef>

void rendezvous_exchange(int rank, int world, const char* addr, const char* port, void* blob, size_t n, double timeout_s);
