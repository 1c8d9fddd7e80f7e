// Muon on the GPU; the math and its CPU twin are in optim/muon.h. Per matrix W (R, C):
//   muon_momentum      fp32 kernel: buf = mu*buf + g; u = nesterov ? g + mu*buf : buf
//   muon_orthogonalize u -> (MuonEq-R row scale, 1/||.||_F) -> bf16 X (m, k), m = min(R, C), in
//                      fp32 kernels with deterministic reductions; then ns_steps Newton-Schulz
//                      iterations as three cuBLAS bf16 GEMMs each (fp32 accumulation, bf16 out):
//                        A = X X^T;  B = c A A + b A;  X = B X + a X
//                      and the bf16 update sqrt(max(1, R/C)) * X (transposed back).
//   muon_apply         fp32 kernel: W = W*(1 - lr*wd) - lr*update
// muon_step_sharded does a whole step over every matrix of the model. The momentum runs on every
// rank for every matrix (the gradients are already all-reduced, so all ranks hold the same buffers
// and any rank can write the checkpoint); the Newton-Schulz work, nearly all of the cost, is split:
// rank r orthogonalizes matrices i with i % world == r, then each update is broadcast from its
// owner (one NCCL group, bf16), and every rank applies all updates.
#pragma once
#include "model/config.h"
#include "model/cuda_common.cuh"
#include "optim/dist.cuh"
#include "optim/muon.h"
#include <vector>

struct MuonMatrix {
    int64_t offset;  // in elements from the arena base (params, grads, momentum and updates alike)
    int rows, cols;  // (R, C), row-major
};
// Every Group::matrix tensor of the parameter table, in table order (the order decides owners).
std::vector<MuonMatrix> muon_matrices(const Config& c);

struct MuonWorkspace {
    cublasHandle_t cublas = nullptr;
    float* u = nullptr;               // (max R*C) momentum direction
    float* row_scale = nullptr;       // (max R) MuonEq-R 1/||row|| (1 when off)
    float* row_sq = nullptr;          // (max R) squared norms of the scaled rows
    float* inv_norm = nullptr;        // [1] 1 / (||scaled u||_F + eps)
    __nv_bfloat16 *X = nullptr, *Xn = nullptr;  // (max m*k) iterate, ping-pong
    __nv_bfloat16 *A = nullptr, *B = nullptr;   // (max m*m)
    __nv_bfloat16* upd = nullptr;     // (arena) the bf16 updates, at the parameters' offsets
    int64_t arena = 0;
};
// Sized for the largest matrix in `mats`; `arena` = elements of the parameter arena.
void muon_workspace_create(MuonWorkspace* ws, const std::vector<MuonMatrix>& mats, int64_t arena);
void muon_workspace_destroy(MuonWorkspace* ws);

// u (n) and buf (n) from grad (n); u may be nullptr (only buf is advanced).
void muon_momentum(float* u, float* buf, const float* grad, int64_t n, float momentum, bool nesterov, cudaStream_t stream);
// upd (R, C) bf16 = orthogonalized u (R, C), scale included. Uses ws scratch (not ws->upd).
void muon_orthogonalize(__nv_bfloat16* upd, const float* u, int rows, int cols, int ns_steps, bool eq_r,
                        MuonWorkspace* ws, cudaStream_t stream);
// param (n) = param*(1 - lr*wd) - lr*upd (n)
void muon_apply(float* param, const __nv_bfloat16* upd, int64_t n, float lr, float wd, cudaStream_t stream);

// The three phases of a sharded step, exposed so a single-GPU test can play every rank.
// 1. momentum on all matrices; orthogonalize those with i % world == rank into ws->upd
void muon_compute_owned(float* bufs, const float* grads, const std::vector<MuonMatrix>& mats, const MuonHyper& h,
                        int rank, int world, MuonWorkspace* ws, cudaStream_t stream);
// 2. broadcast each matrix's update from its owner (no-op when world == 1)
void muon_exchange(const std::vector<MuonMatrix>& mats, MuonWorkspace* ws, const Dist& d, cudaStream_t stream);
// 3. apply every update to the parameters
void muon_apply_all(float* params, const std::vector<MuonMatrix>& mats, const MuonHyper& h, MuonWorkspace* ws, cudaStream_t stream);
// 1 + 2 + 3. params, bufs, grads are arena bases (device).
void muon_step_sharded(float* params, float* bufs, const float* grads, const std::vector<MuonMatrix>& mats,
                       const MuonHyper& h, MuonWorkspace* ws, const Dist& d, cudaStream_t stream);
