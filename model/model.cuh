// The whole model on the GPU: one training step's forward (mean loss) and backward (every
// parameter gradient), wired exactly as model/model.h's CPU spec, over the layer launchers of this
// folder (gemm, embedding, rmsnorm, wiring, mlp, loss, attention, mamba3 prep, mamba3_scan).
//
// Arenas (llm.c style):
//   params       fp32 master weights, param_specs() layout (params.h), bound as ModelParams
//   params_bf16  the same layout in bf16: the GEMM operands (refreshed by gpu_model_refresh_bf16
//                after every optimizer step; only the matrices and wte are read from it)
//   grads        fp32, the param layout; the backward ACCUMULATES into it (zero it per step)
//   acts         one byte arena holding the forward's saved activations AND the backward's
//                scratch, 256-byte aligned entries, sized by gpu_acts_bytes(cfg, B, T) from the
//                same walk that binds it (no size written twice)
// Dtypes: the residual stream, norms' rstd, losses and per-(b,h,t) Mamba scalars are fp32; every
// GEMM operand and the big per-token tensors between GEMMs (n1, n2, qkv, q/k/v, y, zxbcdt, z, x,
// h, a, logits ...) are bf16 (fp32 accumulation inside the GEMMs).
// The logits' gradient is computed in the forward, in place over the bf16 logits (the fused
// softcap-CE kernel), when `grad` is set: the backward then starts from it.
// Deterministic: no float atomics anywhere in the step (every launcher used is atomic-free).
#pragma once
#include "model/config.h"
#include "model/cuda_common.cuh"
#include "model/model.h"  // ModelStates (Mamba-3 states per layer; device pointers here)
#include "model/params.h"
#include <cstdint>

typedef __nv_bfloat16 bf16;

struct GpuLayerActs {
    float* x_in;      // (N, C) block input after the U-Net skip add; aliases the previous output when no skip
    bf16* n1;         // (N, C) rmsnorm(x_mix), the mixer's input (x_mix itself is recomputed, not stored)
    float* n1_rstd;   // (N)
    // attention (nullptr on Mamba-3 layers), layouts of model/attention.cuh
    bf16 *qkv, *q, *k, *v, *y;
    float *q_rstd, *k_rstd, *lse;
    // Mamba-3 (nullptr on attention layers), layouts of model/mamba3.h
    bf16 *zxbcdt, *z, *xs, *q_raw, *k_raw, *ys, *o;  // xs = x (the scan's v), ys = pre-gate y, o = gated out
    float *adt, *dt, *trap, *theta, *rstd_q, *rstd_k, *phi;
    bf16* states;     // (B,H,nchunks,P,N) the scan's saved chunk states
    bf16* mix_out;    // (N, C) mixer output
    float* x_mid;     // (N, C)
    bf16* n2;         // (N, C)
    float* n2_rstd;   // (N)
    bf16 *h, *a;      // (N, F) fc output, activation
    bf16* mlp_out;    // (N, C)
    float* x_out;     // (N, C) the block's output
};

struct GpuActs {
    int32_t *tokens, *targets;  // (N) each
    float* emb;                 // (N, C)
    float* x0;                  // (N, C)
    float* x0_rstd;             // (N)
    GpuLayerActs layers[kMaxLayers];
    bf16* xf;                   // (N, C) final rmsnorm
    float* xf_rstd;             // (N)
    bf16* logits;               // (N, V) raw; after a grad forward: d(mean loss)/d(raw logits)
    float* losses;              // (N) per-token cross-entropy
    float* loss;                // (1) mean
    // backward scratch, shared by all layers
    float *dx, *dtmp, *dx0, *dn, *dxf;  // (N, C) fp32 each
    float* dskip[kMaxLayers];        // (N, C) gradient reaching encoder l's output through its skip
    bf16* dres;                      // (N, C) bf16 gradient of a mixer / MLP output
    bf16* dhid;                      // (N, F)
    bf16 *dy, *dq, *dk, *dv, *dqkv;  // attention
    float* delta;                    // (B, NH, T)
    bf16 *d_o, *dxs, *dz, *dzx;      // Mamba-3: (N, DI) x3, (N, R)
    float *dq_raw, *dk_raw, *dadt, *ddt, *dtrap, *dtheta;
    void* scan_scratch;
    void* emb_scratch;              // embedding_backward's sort (model/embedding.cuh)
};

struct GpuModel {
    Config cfg;
    int B = 0, T = 0;       // the current micro-batch shape (gpu_model_reshape changes it)
    int64_t max_tokens = 0; // B * T at creation: the staging buffers' capacity
    int64_t arena = 0;  // floats in the parameter arena
    float* params = nullptr;
    bf16* params_bf16 = nullptr;
    float* grads = nullptr;
    ModelParams p, g;   // device pointers into params / grads
    void* acts_mem = nullptr;
    size_t acts_bytes = 0;
    GpuActs a;
    // pinned (2, N) staging for tokens/targets, two of them: the next batch is staged while the
    // GPU still runs on the previous one; copy_done[i] marks buffer i free again
    int32_t* host_io[2] = {nullptr, nullptr};
    cudaEvent_t copy_done[2] = {nullptr, nullptr};
    int io_next = 0;
    cudaStream_t stream = 0;
    // the bf16 copy of a tensor of `params`
    const bf16* w16(const float* w) const { return params_bf16 + (w - params); }
};

// Bytes of the activation + scratch arena for micro-batches of (B, T).
size_t gpu_acts_bytes(const Config& c, int B, int T);

// Allocates every arena (grads zeroed, params uninitialized).
void gpu_model_create(GpuModel* m, const Config& c, int B, int T, cudaStream_t stream);
void gpu_model_destroy(GpuModel* m);
// Rebinds the activation arena for micro-batches of (B, T), which must fit the arena and staging
// buffers made by gpu_model_create (fatal otherwise): evaluation runs windows of other shapes in it.
void gpu_model_reshape(GpuModel* m, int B, int T);
// params (arena floats, host) -> device, then the bf16 copy.
void gpu_model_upload_params(GpuModel* m, const float* host_params);
// bf16 GEMM operands from the fp32 master weights (after every optimizer step).
void gpu_model_refresh_bf16(GpuModel* m);
void gpu_model_zero_grads(GpuModel* m);
// windows (B, T+1) host token ids -> device inputs [:, :T] and targets [:, 1:].
void gpu_model_load_batch(GpuModel* m, const int32_t* windows);
// Forward of the loaded batch: per-token losses in m->a.losses, their mean in m->a.loss (device).
// grad: also leave d(mean loss)/d(raw logits) in m->a.logits for gpu_model_backward.
void gpu_model_forward(GpuModel* m, bool grad);
// Evaluation forward of the loaded batch (the twin of model_forward_states_cpu, model/model.h):
// per-token losses at temperature tau in m->a.losses (m->a.loss not written); Mamba-3 states in
// (init, device pointers, nullptr = zero) and out (fin: the states after the first fin_at tokens
// of each row, 1 <= fin_at <= T; fin may not alias init). fin_at < T runs each Mamba layer's scan
// in two pieces ([0, fin_at) ending in fin, [fin_at, T) starting from it) through the backward's
// scratch, so no gpu_model_backward may follow this forward.
void gpu_model_forward_states(GpuModel* m, double temperature, const ModelStates<float>* init,
                              const ModelStates<float>* fin, int fin_at);
// Backward after a grad forward on the same batch; parameter grads ACCUMULATE into m->grads.
void gpu_model_backward(GpuModel* m);
// Synchronizes the stream and returns m->a.loss.
float gpu_model_read_loss(GpuModel* m);

// Small elementwise helpers the trainer needs on whole arenas.
void gpu_scale(float* x, int64_t n, float s, cudaStream_t stream);  // x *= s
