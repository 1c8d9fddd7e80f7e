// The whole model on the CPU: forward (mean loss) and hand-derived backward (every parameter
// gradient), wiring the layer references of this folder. The reference the CUDA trainer's
// step is tested against, and the spec of the wiring (parameter-golf's GPT):
//
//   x = rmsnorm(wte[tokens]);  x0 = x
//   for l in blocks:                 encoders l < num_encoder_layers push their output;
//     if decoder j and skips left:   x = x + skip_weight[j] * skips.pop()
//     x = resid_mix[0] * x + resid_mix[1] * x0
//     x = x + mixer_scale * Mixer(rmsnorm(x))      Mixer: attention at cfg.is_attn(l), else Mamba-3
//     x = x + mlp_scale   * MLP(rmsnorm(x))
//   logits = rmsnorm(x) @ wte^T;  loss = mean CE(30 tanh(logits / 30), targets)
//
// Arenas (llm.c style): parameters and gradients share the layout of param_specs() (params.h),
// seen through ModelTensors<F> (params.h); activations live in one arena sized by
// model_acts_size(). F = float is the reference, F = double the finite-difference twin.
//
// Gradient contract: model_backward_cpu ACCUMULATES (+=) into the gradient arena (zero it
// first for a plain gradient); it is the gradient of the MEAN loss over the B*T tokens.
#pragma once
#include "model/config.h"
#include "model/mamba3.h"
#include "model/params.h"
#include <cstdint>

// ---- activations saved by the forward for the backward. N = B*T rows.
template <typename F>
struct LayerActs {
    F* x_in;     // (N, C)  residual stream entering the block (after the U-Net skip add)
    F* x_mix;    // (N, C)  after resid_mix: the residual and the norm's input
    F* n1;       // (N, C)  rmsnorm(x_mix), the mixer's input
    F* n1_rstd;  // (N)
    // attention layers (nullptr on Mamba-3 layers); shapes as in attention.h
    F* qkv;      // (N, (NH+2NKV)*HD)
    F* q;        // (N, NH, HD)
    F* k;        // (N, NKV, HD)
    F* v;        // (N, NKV, HD)
    F* q_rstd;   // (N, NH)
    F* k_rstd;   // (N, NKV)
    F* y;        // (N, NH*HD)  core attention output, attn_proj's input
    F* lse;      // (B, NH, T)
    // Mamba-3 layers (nullptr on attention layers): mamba3_block_act_size(c, B, T) elements
    F* mamba;
    F* mix_out;  // (N, C)  mixer output (after its output projection)
    F* x_mid;    // (N, C)  x_mix + mixer_scale * mix_out
    F* n2;       // (N, C)  rmsnorm(x_mid), the MLP's input
    F* n2_rstd;  // (N)
    F* h;        // (N, F)  mlp fc output (pre-activation)
    F* a;        // (N, F)  leaky_relu(h, 0.5)^2
    F* mlp_out;  // (N, C)
    F* x_out;    // (N, C)  x_mid + mlp_scale * mlp_out: the block's output
};
template <typename F>
struct ModelActs {
    F* emb;      // (N, C)  wte[tokens]
    F* x0;       // (N, C)  rmsnorm(emb)
    F* x0_rstd;  // (N)
    LayerActs<F> layers[kMaxLayers];
    F* xf;       // (N, C)  final rmsnorm
    F* xf_rstd;  // (N)
    F* logits;   // (N, V)  raw, before the softcap
    F* losses;   // (N)     per-token cross-entropy
};
int64_t model_acts_size(const Config& c, int B, int T);  // elements
template <typename F>
void model_acts_bind(const Config& c, int B, int T, F* base, ModelActs<F>* a);

// Forward: fills the activations, returns the mean loss over the B*T tokens.
template <typename F>
double model_forward_cpu(const ModelActs<F>& a,
                         const int32_t* tokens,   // (B, T)
                         const int32_t* targets,  // (B, T)
                         const ModelTensors<F>& p, const Config& c, int B, int T);

// Backward of the mean loss, after model_forward_cpu on the same inputs; grads ACCUMULATE.
template <typename F>
void model_backward_cpu(const ModelTensors<F>& g, const ModelActs<F>& a,
                        const int32_t* tokens, const int32_t* targets,
                        const ModelTensors<F>& p, const Config& c, int B, int T);

// ---- evaluation forward (eval/eval.h): Mamba-3 states in and out, per-token losses at a
// logit temperature. Forward only: it may run a Mamba layer's scan in two pieces over the
// layer's activation region, so model_backward_cpu must not follow it.
//
// States: one Mamba3States per Mamba-3 layer (angle (B,H,S), ssm (B,H,P,N), k (B,H,N),
// v (B,H,P)); attention layers have none (angle == nullptr) and see only this call's tokens.
// init == nullptr: zero states. fin != nullptr: fin receives every Mamba layer's state after
// the first fin_at tokens of each row (1 <= fin_at <= T); fin_at < T is how stateful-overlap
// eval hands the next window the state entering its overlap, while this window's attention
// still sees all T tokens. fin may not alias init.
//
// Temperature tau (the seed's eval, `logits / temperature` after the softcap):
//   s = cap * tanh(z / cap) / tau;   losses[n] = logsumexp(s_n) - s_n[y_n]   (double)
// tau = 1 gives exactly model_forward_cpu's per-token losses and mean. Returns the mean; the
// float a.losses is not written (losses holds them, in double).
template <typename F>
struct ModelStates {
    Mamba3States<F> layers[kMaxLayers];
};
int64_t model_states_size(const Config& c, int B);  // elements
template <typename F>
void model_states_bind(const Config& c, int B, F* base, ModelStates<F>* s);
template <typename F>
double model_forward_states_cpu(double* losses,         // (B, T) may be nullptr
                                const ModelActs<F>& a,
                                const int32_t* tokens,  // (B, T)
                                const int32_t* targets, // (B, T)
                                const ModelTensors<F>& p, const Config& c, int B, int T,
                                double temperature,
                                const ModelStates<F>* init, const ModelStates<F>* fin, int fin_at);

// ---- the block's elementwise wiring (the GPU version fuses these into neighbours)
// out = mix[0] * x + mix[1] * x0   (per channel; mix is resid_mix (2, C))
template <typename F>
void resid_mix_forward_cpu(F* out, const F* x, const F* x0, const F* mix, int64_t N, int C);
// dx OVERWRITES; dx0 and dmix ACCUMULATE (x0 feeds every block).
template <typename F>
void resid_mix_backward_cpu(F* dx, F* dx0, F* dmix, const F* dout, const F* x, const F* x0,
                            const F* mix, int64_t N, int C);
// out = x + scale * y   (per channel: mixer_scale, mlp_scale, skip_weight[j])
template <typename F>
void scale_add_forward_cpu(F* out, const F* x, const F* y, const F* scale, int64_t N, int C);
// The residual's own gradient passes through unchanged (dx = dout, the caller keeps it);
// dy = scale * dout OVERWRITES; dscale ACCUMULATES.
template <typename F>
void scale_add_backward_cpu(F* dy, F* dscale, const F* dout, const F* y, const F* scale,
                            int64_t N, int C);

// ---- Mamba-3 mixer hook: the mixer of a non-attention block, between its rmsnorm and its
// mixer_scale (in_proj -> scan -> out_proj). Branch mamba3 provides these three functions
// (and deletes model/mamba3_block_stub.cpp, which stands in with fatal() until then).
// `acts` is the layer's own region of mamba3_block_act_size(c, B, T) elements (anything the
// backward needs: saved tensors and scratch); dw ACCUMULATES, dinp OVERWRITES.
int64_t mamba3_block_act_size(const Config& c, int B, int T);
template <typename F>
void mamba3_block_forward_cpu(F* out,        // (B, T, C)
                              F* acts,       // mamba3_block_act_size(c, B, T)
                              const F* inp,  // (B, T, C) rmsnorm'd residual
                              const BlockTensors<F>& w, const Config& c, int B, int T);
template <typename F>
void mamba3_block_backward_cpu(F* dinp,                   // (B, T, C) overwrite
                               const BlockTensors<F>& dw, // accumulate
                               const F* dout,             // (B, T, C)
                               F* acts, const F* inp,     // saved by the forward
                               const BlockTensors<F>& w, const Config& c, int B, int T);
