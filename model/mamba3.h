// Mamba-3 SISO mixer (spec/mamba3.md): in_proj -> prep -> chunked scan -> out_proj.
//
// Three pieces, each with a forward and a hand-derived backward; the CUDA version
// (model/mamba3.cu) mirrors them one to one and is tested against these CPU references.
//  (a) prep:  in_proj output (B,T,R) + dt_bias, B/C norm weights -> the scan inputs
//             z, x (=v), normed B (=k_raw), normed C (=q_raw), ADT, DT, trap (pre-sigmoid), theta.
//  (b) scan:  the core op of spec §3 (upstream mamba3_siso_combined): biases, data-dependent
//             rotary angles, exponential-trapezoidal recurrence, D skip, silu(z) gate.
//             Two forward forms: recurrent (per step, §3.2) and chunked (chunk L, §3.4, the
//             kernel's order of work); the backward is that of the chunked form (§5).
//  (c) layer: in_proj GEMM -> prep -> chunked scan -> out_proj GEMM.
//
// Layouts (row-major, last index fastest):
//   zxbcdt  (B, T, R)      R = cfg.in_proj_rows(), split z|x|B|C|dd_dt|dd_A|trap|angles
//   z, x    (B, T, H, P)   x is the scan's v
//   q_raw   (B, T, G, N)   RMSNorm(C)*C_norm_w   (Q = C, K = B, V = x: the kernels' names)
//   k_raw   (B, T, G, N)   RMSNorm(B)*B_norm_w
//   adt, dt, trap (B, H, T)  per head contiguous in time: one kernel program walks one (b, h)
//   theta   (B, T, S)      raw angles, pre-tanh, shared by all heads
//   q_bias, k_bias (H, N)  = C_bias, B_bias;  D (H)
//   out     (B, T, H, P)   gated output o = y * silu(z)
//   states: angle (B, H, S), ssm (B, H, P, N), k (B, H, N), v (B, H, P)
// Head h uses B/C group g = h / (H/G).
//
// Precision: the cumulative angle phi is kept in the storage type (fp32 / f64; never bf16),
// reduced mod 2*pi per chunk like the kernel; sums inside the CPU references run in double.
//
// Gradient contract: parameter gradients (dt_bias, B/C norm weights, q/k biases, D, in_proj,
// out_proj) ACCUMULATE (+=); activation gradients (incl. initial states) OVERWRITE (=).
// Every function is a template over the element type, instantiated for float and double
// (the double one for finite-difference tests).
#pragma once
#include "model/config.h"
#include <cstdint>

constexpr double kMamba3NormEps = 1e-5;  // B/C RMSNorm eps (upstream RMSNorm default), not cfg.norm_eps

// Every shape the layer needs, taken from the config's methods once (no shape recomputed here).
struct Mamba3Dims {
    int B, T;                   // batch, time
    int C, DI, R;               // model_dim, d_inner, in_proj rows
    int H, P, N, G, S, L;       // heads, headdim, d_state, groups, angle pairs, chunk
    int ip_z, ip_x, ip_B, ip_C, ip_dd_dt, ip_dd_A, ip_trap, ip_angles;  // in_proj row offsets
    AAct act;                   // A = -max(act(dd_A), a_floor)
    double a_floor;
    int nchunks() const { return (T + L - 1) / L; }
};
Mamba3Dims mamba3_dims(const Config& c, int B, int T);

// Optional state pointers (all four or none: a struct whose `angle` is nullptr means "none").
template <typename F>
struct Mamba3States {
    F* angle = nullptr;  // (B, H, S)    phi before the first token (after the last one for final)
    F* ssm = nullptr;    // (B, H, P, N) H_{-1}
    F* k = nullptr;      // (B, H, N)    previous token's key: biased, rotated, unscaled
    F* v = nullptr;      // (B, H, P)    previous token's v
};

// ------------------------------------------------------------------------------------------
// (a) prep: zxbcdt -> scan inputs.
//   A = -max(act(dd_A), a_floor);  dt = softplus(dd_dt + dt_bias) (torch threshold 20);
//   adt = A*dt;  k_raw = rms(B)*B_norm_w;  q_raw = rms(C)*C_norm_w;  trap, theta copied.
// Saved for backward: zxbcdt itself and the two rstd vectors.
template <typename F>
void mamba3_prep_forward_cpu(F* z, F* x,                // (B,T,H,P) each
                             F* q_raw, F* k_raw,        // (B,T,G,N) each
                             F* adt, F* dt, F* trap,    // (B,H,T) each
                             F* theta,                  // (B,T,S)
                             F* rstd_q, F* rstd_k,      // (B,T,G) saved for backward
                             const F* zxbcdt,           // (B,T,R)
                             const F* dt_bias,          // (H)
                             const F* B_norm_w, const F* C_norm_w,  // (N) each
                             const Mamba3Dims& d);
// dzxbcdt OVERWRITES (every row of R gets a gradient); ddt_bias, dB_norm_w, dC_norm_w ACCUMULATE.
// dadt and ddt are the scan's gradients wrt its ADT and DT inputs (ddt excludes the ADT path;
// this function adds it: d dt_total = ddt + dadt*A).
template <typename F>
void mamba3_prep_backward_cpu(F* dzxbcdt,                          // (B,T,R)
                              F* ddt_bias,                         // (H)
                              F* dB_norm_w, F* dC_norm_w,          // (N) each
                              const F* dz, const F* dx,            // (B,T,H,P)
                              const F* dq_raw, const F* dk_raw,    // (B,T,G,N)
                              const F* dadt, const F* ddt, const F* dtrap,  // (B,H,T)
                              const F* dtheta,                     // (B,T,S)
                              const F* zxbcdt, const F* rstd_q, const F* rstd_k,  // saved
                              const F* dt_bias, const F* B_norm_w, const F* C_norm_w,
                              const Mamba3Dims& d);

// ------------------------------------------------------------------------------------------
// (b) scan. `init` may be nullptr (zero states); `fin` may be nullptr (not returned).
// Recurrent form, spec §3.2: one step at a time, the state H_t carried explicitly.
template <typename F>
void mamba3_scan_recurrent_cpu(F* out,                               // (B,T,H,P)
                               const Mamba3States<F>* fin,
                               const F* q_raw, const F* k_raw,       // (B,T,G,N)
                               const F* v,                           // (B,T,H,P)
                               const F* adt, const F* dt, const F* trap,  // (B,H,T)
                               const F* theta,                       // (B,T,S)
                               const F* q_bias, const F* k_bias,     // (H,N)
                               const F* D,                           // (H)
                               const F* z,                           // (B,T,H,P)
                               const Mamba3States<F>* init,
                               const Mamba3Dims& d);

// Chunked form, spec §3.4/§3.6, the kernel's order of work. Saved for backward (the forward
// writes them; the GPU forward stores the same three tensors):
//   phi    (B,H,T,S)           cumulative angle mod 2*pi (fp32 on the GPU, never bf16)
//   y      (B,T,H,P)           pre-gate output ("Out_v")
//   states (B,H,nchunks,P,N)   SSM state ENTERING each chunk (chunk 0: H_init' = H_in + c0 v k^T)
// Everything else the backward needs (q_rot, k_scaled, gamma, scale, qk_dot, exp cumsums) is
// recomputed from the inputs.
template <typename F>
void mamba3_scan_forward_cpu(F* out,                                 // (B,T,H,P)
                             const Mamba3States<F>* fin,
                             F* phi, F* y, F* states,                // saved, see above
                             const F* q_raw, const F* k_raw,         // (B,T,G,N)
                             const F* v,                             // (B,T,H,P)
                             const F* adt, const F* dt, const F* trap,  // (B,H,T)
                             const F* theta,                         // (B,T,S)
                             const F* q_bias, const F* k_bias,       // (H,N)
                             const F* D,                             // (H)
                             const F* z,                             // (B,T,H,P)
                             const Mamba3States<F>* init,
                             const Mamba3Dims& d);

// Backward of the chunked form (spec §5). dfin may be nullptr (final states unused) and so may
// any of its four pointers (zero gradient). dinit must be non-null iff init is non-null.
// dq_raw, dk_raw are group-reduced (summed over the H/G heads of a group).
// dq_bias, dk_bias, dD ACCUMULATE; everything else OVERWRITES.
template <typename F>
void mamba3_scan_backward_cpu(F* dq_raw, F* dk_raw,                  // (B,T,G,N)
                              F* dv,                                 // (B,T,H,P)
                              F* dadt, F* ddt, F* dtrap,             // (B,H,T)
                              F* dtheta,                             // (B,T,S)
                              F* dq_bias, F* dk_bias,                // (H,N)   accumulate
                              F* dD,                                 // (H)     accumulate
                              F* dz,                                 // (B,T,H,P)
                              const Mamba3States<F>* dinit,
                              const F* dout,                         // (B,T,H,P)
                              const Mamba3States<F>* dfin,
                              const F* phi, const F* y, const F* states,  // saved by the forward
                              const F* q_raw, const F* k_raw, const F* v,
                              const F* adt, const F* dt, const F* trap, const F* theta,
                              const F* q_bias, const F* k_bias, const F* D, const F* z,
                              const Mamba3States<F>* init,
                              const Mamba3Dims& d);

// ------------------------------------------------------------------------------------------
// (c) the layer. Weights and their gradients (names as in params.h MAMBA_TENSORS).
template <typename F>
struct Mamba3Weights {
    const F* in_proj;    // (R, C)
    const F* out_proj;   // (C, DI)
    const F* dt_bias;    // (H)
    const F* B_bias;     // (H, N)  = k_bias
    const F* C_bias;     // (H, N)  = q_bias
    const F* B_norm_w;   // (N)
    const F* C_norm_w;   // (N)
    const F* D;          // (H)
};
template <typename F>
struct Mamba3Grads {     // same shapes as Mamba3Weights; all ACCUMULATE
    F *in_proj, *out_proj, *dt_bias, *B_bias, *C_bias, *B_norm_w, *C_norm_w, *D;
};

// Activations the layer forward saves for its backward: pointers into one buffer of
// mamba3_acts_size(d) elements, laid out by mamba3_acts_bind.
template <typename F>
struct Mamba3Acts {
    F* zxbcdt;           // (B,T,R)
    F* z;                // (B,T,H,P)
    F* x;                // (B,T,H,P)
    F* q_raw;            // (B,T,G,N)
    F* k_raw;            // (B,T,G,N)
    F* adt;              // (B,H,T)
    F* dt;               // (B,H,T)
    F* trap;             // (B,H,T)
    F* theta;            // (B,T,S)
    F* rstd_q;           // (B,T,G)
    F* rstd_k;           // (B,T,G)
    F* phi;              // (B,H,T,S)
    F* y;                // (B,T,H,P)
    F* states;           // (B,H,nchunks,P,N)
    F* o;                // (B,T,DI)  gated scan output, out_proj's input
};
int64_t mamba3_acts_size(const Mamba3Dims& d);
template <typename F>
void mamba3_acts_bind(Mamba3Acts<F>* a, F* base, const Mamba3Dims& d);

// out (B,T,C) = out_proj(scan(prep(in_proj(inp)))). init/fin as for the scan (may be nullptr).
template <typename F>
void mamba3_forward_cpu(F* out, const Mamba3States<F>* fin, const Mamba3Acts<F>& acts,
                        const F* inp,                                // (B,T,C)
                        const Mamba3Weights<F>& w, const Mamba3States<F>* init,
                        const Mamba3Dims& d);
// dinp (B,T,C) OVERWRITES; weight gradients ACCUMULATE; dinit/dfin as for the scan.
// `scratch` holds mamba3_grad_scratch_size(d) elements.
template <typename F>
void mamba3_backward_cpu(F* dinp, const Mamba3Grads<F>& g, const Mamba3States<F>* dinit,
                         const F* dout,                              // (B,T,C)
                         const Mamba3States<F>* dfin,
                         const Mamba3Acts<F>& acts, const F* inp,
                         const Mamba3Weights<F>& w, const Mamba3States<F>* init,
                         F* scratch, const Mamba3Dims& d);
int64_t mamba3_grad_scratch_size(const Mamba3Dims& d);
