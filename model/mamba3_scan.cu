// Mamba-3 SISO chunked scan, CUDA forward and backward (see model/mamba3_scan.cuh for the contract,
// spec/mamba3.md §3.4 and §5 for the math, model/mamba3.cpp for the CPU twin).
//
// Work split: one CTA of 8 warps per (b, h) walks the chunks (forward: in order, backward: in
// reverse), so the state H (P x N) and its gradient dH stay in registers in fp32: warp w owns rows
// [16(w%4), +16) and columns [32(w/4), +32) of H (dH) and of every 64 x 64 product (the backward's
// dq, dk products interleave the halves by 16, see icol). Per-row sums over columns are combined
// across the two column halves in shared memory.
// The walk's time is the warps' instruction streams (~1.1 k forward, ~3.1 k backward per warp and
// chunk; 16 warps per SM, one issued every ~2.1-2.5 cycles per scheduler: notes/scan.md), so every
// cut instruction counts; a chunk-parallel split (SSD style) measured slower: at N = P = L = 64 a
// chunk's fp32 state is twice the chunk's v, so passing states through memory costs more than
// walking. What needs no state runs outside the walk: the forward's angles (phi) in their own kernel.
// All 64 x 64 x 64 products are mma.sync m16n8k16 with bf16 operands from padded shared tiles.
// Per-position scalars (cumsums, exp weights, gates) are fp32 in shared memory; phi is fp32.
// The backward writes per-head dq/dk/dtheta (GQA needs a sum over the heads of a group) to scratch,
// then a second kernel sums them in fixed head order: deterministic, no atomics.
#include "model/mamba3_scan.cuh"
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

namespace {
constexpr int L = 64, NN = 64, PP = 64, SMAX = 32, LD = 72;  // LD: tile row pitch (bf16), 144 B
constexpr int NT = 256;                                       // threads per CTA (8 warps)
constexpr float kPi = 3.14159265358979323846f, kTwoPi = 6.28318530717958647692f;
typedef __nv_bfloat16 bf16;
typedef bf16 Tile[L][LD];

// The kernels issue ~4 k instructions per warp per chunk (notes/scan.md), so the hot elementwise math
// uses the SFU forms: e^x as ex2.approx and 1/x as rcp.approx (~2 ulp), denormals flushed (the
// non-ftz forms, __expf and __fdividef, add a range test and a rescale per call), and __sincosf on
// angles reduced to [-pi, pi) (absolute error ~5e-7): all well under the bf16 rounding of the MMA operands.
__device__ __forceinline__ float fexp(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.44269504088896341f));
    return y;
}
__device__ __forceinline__ float frcp(float x) {
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float sigmoidf_(float x) { return frcp(1.f + fexp(-x)); }
// tanh(x) = 1 - 2 / (1 + e^{2x}), absolute error ~3e-7: for the backward's d theta and dDT (bf16-noise
// gradients). The forward keeps tanhf: phi is an fp32 output summed over the whole sequence.
__device__ __forceinline__ float ftanh(float x) { return 1.f - 2.f * frcp(1.f + fexp(2.f * x)); }
__device__ __forceinline__ void sincos_angle(float phi, float* sn, float* cs) {
    __sincosf(phi > kPi ? phi - kTwoPi : phi, sn, cs);
}
// a mod 2 pi (multiplying by 1 / (2 pi): a division here was an IEEE division per angle and position)
__device__ __forceinline__ float reduce_2pi(float a) { return a - kTwoPi * floorf(a * (1.f / kTwoPi)); }
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}
// x (two bf16) times (e.x, e.y), rounded back to bf16
__device__ __forceinline__ uint32_t scale_bf16x2(uint32_t x, float2 e) {
    const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(&x);
    return pack_bf16(__low2float(v) * e.x, __high2float(v) * e.y);
}
// The elementwise row passes use thread = (row, quarter qt of the row), and quarter qt holds columns
// [8qt, 8qt + 8) and [32 + 8qt, +8): the rotated pairs (the first 2S columns) then spread evenly over
// the quarters (for S = 16 each thread rotates 4 pairs; with contiguous quarters half of the lanes
// rotated 8 and half none). Element k of a quarter sits at column qcol(qt, k).
__device__ __forceinline__ int qcol(int qt, int k) { return k < 8 ? 8 * qt + k : 24 + 8 * qt + k; }
// a quarter of a tile row <-> 16 floats, as two 128-bit accesses (element-wise 16-bit accesses were
// 4-way bank-conflicted and 8x the instructions)
__device__ __forceinline__ void load_quarter(float* f, const bf16* row, int qt) {
    const uint4 u[2] = {*reinterpret_cast<const uint4*>(row + 8 * qt), *reinterpret_cast<const uint4*>(row + 32 + 8 * qt)};
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(u);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const float2 v = __bfloat1622float2(h[k]);
        f[2 * k] = v.x; f[2 * k + 1] = v.y;
    }
}
__device__ __forceinline__ void store_quarter(bf16* row, const float* f, float sc, int qt) {
    uint4 u[2];
    uint32_t* w = reinterpret_cast<uint32_t*>(u);
#pragma unroll
    for (int k = 0; k < 8; k++) w[k] = pack_bf16(sc * f[2 * k], sc * f[2 * k + 1]);
    *reinterpret_cast<uint4*>(row + 8 * qt) = u[0];
    *reinterpret_cast<uint4*>(row + 32 + 8 * qt) = u[1];
}
// Bias, rotation (§3.1) of one position's q, k in the row passes (forward, and the backward's recompute).
// qv, kv <- quarter qt of the q_raw, k_raw rows plus their biases; returns the quarter's part of
// qbar.kbar. Padded rows (past the sequence end) get the bias too and are not masked: their scale,
// gamma, v, dy are zero, so every product they enter either contributes exact zeros or lands in a
// row that is never stored.
__device__ __forceinline__ float qk_bias_quarter(float* qv, float* kv, const bf16* q_row, const bf16* k_row,
                                                 const float* q_bias, const float* k_bias, int qt) {
    load_quarter(qv, q_row, qt);
    load_quarter(kv, k_row, qt);
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < 16; k += 4) {
        const float4 b = *reinterpret_cast<const float4*>(q_bias + qcol(qt, k));  // 4 contiguous columns
        qv[k] += b.x; qv[k + 1] += b.y; qv[k + 2] += b.z; qv[k + 3] += b.w;
    }
#pragma unroll
    for (int k = 0; k < 16; k += 4) {
        const float4 b = *reinterpret_cast<const float4*>(k_bias + qcol(qt, k));
        kv[k] += b.x; kv[k + 1] += b.y; kv[k + 2] += b.z; kv[k + 3] += b.w;
    }
#pragma unroll
    for (int k = 0; k < 16; k++) dot += qv[k] * kv[k];
    return dot;
}
// the quarter's rotated pairs (those of the first S) of qv and kv by the position's angles phi_row[0, S)
template <int S>
__device__ __forceinline__ void rotate_quarter(float* qv, float* kv, const float* phi_row, int qt) {
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int i = qcol(qt, 2 * j) / 2;  // rotation pair
        if (i < S) {
            float sn, cs;
            sincos_angle(phi_row[i], &sn, &cs);
            const float q0 = qv[2 * j], q1 = qv[2 * j + 1], k0 = kv[2 * j], k1 = kv[2 * j + 1];
            qv[2 * j] = q0 * cs - q1 * sn; qv[2 * j + 1] = q0 * sn + q1 * cs;
            kv[2 * j] = k0 * cs - k1 * sn; kv[2 * j + 1] = k0 * sn + k1 * cs;
        }
    }
}
__device__ __forceinline__ float2 bf2f(const bf16* p) {  // two bf16 at an even column
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16* p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldsm4t(uint32_t r[4], const bf16* p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// acc (16 x 8NJ, rows r0..r0+15 of the warp, cols n0..n0+8NJ-1) += A (rows r0.., k in [k0,k1)) * B (k x cols).
// AT: A is stored transposed ([k][m]); BT: B is stored [k][n] (else [n][k], the mma "col" layout).
// Accumulator element e of n-tile j sits at row r0 + lane/4 + 8*(e>=2), col n0 + 8j + 2*(lane%4) + (e&1).
// NS: column step between the warp's 16-column pairs of n-tiles (16: contiguous; 32: interleaved, see icol).
template <bool AT, bool BT, int NJ = 8, int NS = 16>
__device__ __forceinline__ void warp_gemm(float (*acc)[4], const Tile& A, const Tile& B, int r0, int k0, int k1,
                                          int n0 = 0) {
    const int l = threadIdx.x & 31;
    for (int kk = k0; kk < k1; kk += 16) {
        uint32_t a[4];
        if (!AT) ldsm4(a, &A[r0 + (l & 15)][kk + (l >> 4) * 8]);
        else ldsm4t(a, &A[kk + (l & 7) + ((l >> 4) << 3)][r0 + ((l >> 3) & 1) * 8]);
#pragma unroll
        for (int nn = 0; nn < NJ / 2; nn++) {
            uint32_t b[4];
            if (!BT) ldsm4(b, &B[n0 + nn * NS + (l & 7) + ((l >> 4) << 3)][kk + ((l >> 3) & 1) * 8]);
            else ldsm4t(b, &B[kk + (l & 7) + (((l >> 3) & 1) << 3)][n0 + nn * NS + (l >> 4) * 8]);
            mma16816(acc[2 * nn], a, b[0], b[1]);
            mma16816(acc[2 * nn + 1], a, b[2], b[3]);
        }
    }
}
template <int NJ = 8>
__device__ __forceinline__ void zero_acc(float (*acc)[4]) {
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = 0.f;
}
__device__ __forceinline__ int acc_row(int r0, int e) { return r0 + ((threadIdx.x & 31) >> 2) + ((e >> 1) << 3); }
__device__ __forceinline__ int acc_col(int j, int e) { return 8 * j + 2 * (threadIdx.x & 3) + (e & 1); }
// The backward's dq, dk accumulators interleave the column halves by 16 (warp_gemm NS = 32, n0 = 16 ch):
// column half ch holds [16ch, +16) and [32 + 16ch, +16), so the rotated pairs (the first 2S columns)
// and their epilogue spread over both halves for S = 16 (contiguous halves gave them all to ch 0).
__device__ __forceinline__ int icol(int ch, int j, int e) { return 16 * ch + 32 * (j >> 1) + acc_col(j & 1, e); }

// Global -> shared copies that do not wait (cp.async, 16 B each, zero-filled past the end): the walks
// issue a chunk's loads one chunk ahead as commit groups and wait for them by group count.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    const uint32_t sa = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(src), "r"(valid ? 16 : 0));
}
// 64 rows x 64 bf16 (row stride `ld` elements) into a tile; rows >= nrows are zero.
// Thread t copies rows t/8 + 32 it, 16-byte piece t%8. Loops over `it` with compile-time trip counts
// (a loop `k = tid; k < n; k += NT` stays a generic loop: ~40 instructions per tile).
__device__ __forceinline__ void load_tile(Tile& dst, const bf16* src, int ld, int nrows) {
    const int r = threadIdx.x >> 3, c8 = (threadIdx.x & 7) * 8;
#pragma unroll
    for (int it = 0; it < L * 8 / NT; it++) {
        const int rr = r + it * (NT / 8);
        cp_async16(&dst[rr][c8], src + (rr < nrows ? rr * ld + c8 : 0), rr < nrows);
    }
}
// n16 16-byte pieces of contiguous floats, the first nvalid16 real, the rest zero.
__device__ __forceinline__ void load_floats(float* dst, const float* src, int n16, int nvalid16) {
#pragma unroll
    for (int it = 0; it < (n16 + NT - 1) / NT; it++) {
        const int k = threadIdx.x + it * NT;
        if (k < n16) cp_async16(dst + 4 * k, src + (k < nvalid16 ? 4 * k : 0), k < nvalid16);
    }
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Wait until at most N of the committed groups are still in flight (the newest ones).
template <int N>
__device__ __forceinline__ void cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// Per-chunk scalars shared by both directions, lane l for positions 2l and 2l+1, so the cumsum is one
// warp scan with no barrier; padded rows get adt = dt = trap = 0, so gamma = scale = 0 and they add
// nothing (lam = sigmoid(0) = 0.5 there). One warp computes the next chunk's scalars (double-buffered)
// in the score phase, which it skips (row block 0, column half 1: its columns lie above the diagonal);
// computed at the chunk's top, they held the whole CTA at the first barrier.
// Their inputs come by cp.async (ScalarRaw), each lane copying what it reads itself, so after that
// warp's own cp.async wait no barrier is needed.
struct alignas(16) ChunkScalars {
    float acs[L], eacs[L], erev[L], lam[L], gam[L], scale[L], dtv[L];
};
struct ScalarRaw {
    float v[32][9];  // lane l: adt, dt, trap at positions 2l, 2l+1 and dt, trap at 2l+2 (look-ahead); padded
};
__device__ __forceinline__ void cp_async4(float* dst, const float* src, bool valid) {
    const uint32_t sa = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(sa), "l"(src), "r"(valid ? 4 : 0));
}
constexpr int kScalarWarp = 4;  // row block 0, column half 1
__device__ __forceinline__ void load_scalars(ScalarRaw& r, const float* adt, const float* dt, const float* trap,
                                             int bh, int T, int t0) {
    if ((int)(threadIdx.x >> 5) != kScalarWarp) return;
    const int lane = threadIdx.x & 31, t = t0 + 2 * lane;
    const float *pa = adt + bh * T, *pd = dt + bh * T, *pt = trap + bh * T;
    float* v = r.v[lane];
#pragma unroll
    for (int k = 0; k < 3; k++) {
        const bool ok = t + k < T;
        if (k < 2) cp_async4(v + k, pa + (ok ? t + k : 0), ok);
        cp_async4(v + 2 + k, pd + (ok ? t + k : 0), ok);
        cp_async4(v + 5 + k, pt + (ok ? t + k : 0), ok);
    }
}
__device__ void chunk_scalars(ChunkScalars& s, const ScalarRaw& raw) {
    if ((int)(threadIdx.x >> 5) != kScalarWarp) return;
    const int lane = threadIdx.x & 31, i = 2 * lane;
    const float* v = raw.v[lane];
    const float a0 = v[0], a1 = v[1], dt0 = v[2], dt1 = v[3], dt2 = v[4];
    const float lam0 = sigmoidf_(v[5]), lam1 = sigmoidf_(v[6]);
    // look-ahead (§3.1): sigma~_t = dt_{t+1} (1 - lam_{t+1}), zero at the sequence end (dt = 0 there)
    const float sg0 = dt1 * (1.f - lam1), sg1 = dt2 * (1.f - sigmoidf_(v[7]));
    s.lam[i] = lam0; s.lam[i + 1] = lam1;
    s.dtv[i] = dt0; s.dtv[i + 1] = dt1;
    s.gam[i] = dt0 * lam0; s.gam[i + 1] = dt1 * lam1;
    s.scale[i] = dt0 * lam0 + sg0; s.scale[i + 1] = dt1 * lam1 + sg1;
    float x = a0 + a1;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    const float c1 = x, c0 = x - a1, tot = __shfl_sync(0xffffffffu, x, 31);
    s.acs[i] = c0; s.acs[i + 1] = c1;
    s.eacs[i] = fexp(c0); s.eacs[i + 1] = fexp(c1);
    s.erev[i] = fexp(tot - c0); s.erev[i + 1] = fexp(tot - c1);
}

// theta rows of a chunk for the backward's angle pass, into rows of S + 1 floats (no bank conflicts down a
// column): warp w, lane l copy exactly the entries they read there (columns w, w + 8, ..; rows l,
// l + 32), so the angles need only their own wait, no barrier.
__device__ __forceinline__ void load_theta_cols(float* dst, const float* src, int S, int nrows) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int it = 0; it < S / (NT / 32); it++) {
        const int i = (threadIdx.x >> 5) + it * (NT / 32);
        cp_async4(dst + lane * (S + 1) + i, src + (lane < nrows ? lane * S + i : 0), lane < nrows);
        cp_async4(dst + (lane + 32) * (S + 1) + i, src + (lane + 32 < nrows ? (lane + 32) * S + i : 0), lane + 32 < nrows);
    }
}
// ================================================================ forward angles
// phi (§3.6) for the whole sequence, before the forward walk, which then only loads it (the angle
// pass inside the walk was ~20 % of its instructions and a quarter of its time: notes/scan.md).
// First pi tanh(theta), once for all heads (B,T,S); then one CTA per (b, h), thread = (angle pair i,
// chunk slot), w = pi tanh(theta) dt. A round takes NTA / S chunks: each thread sums its chunk's w
// (the prefix sums kept in registers), S threads carry mod 2 pi across the round's chunks in order,
// then phi = (carry + chunk-local prefix) mod 2 pi, with the carry reduced per chunk, as in the CPU twin.
__global__ void mamba3_scan_pitanh_kernel(float* pth, const float* theta, int n) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n) pth[k] = kPi * tanhf(theta[k]);
}
constexpr int NTA = 512;
template <int S>
__global__ void __launch_bounds__(NTA) mamba3_scan_angle_kernel(float* phi_g, float* fin_angle, const float* __restrict__ pth,
                                                              const float* __restrict__ dt, const float* init_angle, int T, int H) {
    constexpr int RS = NTA / S;         // chunks per round
    __shared__ float carry_in[RS][S];  // a chunk's w sum, then the carry entering it
    __shared__ float carry[S];
    const int h = blockIdx.x, b = blockIdx.y, bh = b * H + h;
    const int tid = threadIdx.x, i = tid % S, slot = tid / S;
    const int NC = (T + L - 1) / L;
    if (tid < S) carry[tid] = init_angle ? init_angle[bh * S + tid] : 0.f;
    for (int cr0 = 0; cr0 < NC; cr0 += RS) {
        const int c = cr0 + slot, t0 = c * L, n = c < NC ? min(L, T - t0) : 0;
        float w[L], acc = 0.f;
#pragma unroll
        for (int k0 = 0; k0 < L; k0 += 16) {
            // 16 rows' loads at once, unconditional (rows past the end read row T - 1 and add nothing):
            // one row at a time under `k < n` put a memory latency on every step of the sum
            float th[16], d[16];
#pragma unroll
            for (int k = 0; k < 16; k++) {
                const int t = min(t0 + k0 + k, T - 1);
                th[k] = pth[(b * T + t) * S + i];
                d[k] = dt[bh * T + t];
            }
#pragma unroll
            for (int k = 0; k < 16; k++) {
                if (k0 + k < n) acc += th[k] * d[k];
                w[k0 + k] = acc;
            }
        }
        carry_in[slot][i] = acc;
        __syncthreads();
        if (tid < S) {
            float cr = carry[tid];
            for (int k = 0; k < RS && cr0 + k < NC; k++) {
                const float sum = carry_in[k][tid];
                carry_in[k][tid] = cr;
                cr = reduce_2pi(cr + sum);
            }
            carry[tid] = cr;
        }
        __syncthreads();
        const float cr = carry_in[slot][i];
#pragma unroll
        for (int k = 0; k < L; k++)
            if (k < n) phi_g[(bh * T + t0 + k) * S + i] = reduce_2pi(cr + w[k]);
        __syncthreads();  // carry_in is rewritten by the next round
    }
    if (fin_angle && tid < S) fin_angle[bh * S + tid] = carry[tid];
}

// ================================================================ forward
struct FwdSmem {
    Tile Q, K, Kd, Kl, V, Hc, Y, Z;  // q rot; k~ = s k rot; exp(A_c - Acs) k~ as bf16 hi + lo; v; H entering
                                     // (bf16); y; z -> o
    Tile Qr, Kr;                     // q_raw, k_raw (Qr holds the masked scores once q is rotated)
    float phi[L * SMAX];             // this chunk's phi rows (L x S)
    float qkd[L];
    alignas(16) float qb[NN], kb[NN];
    ChunkScalars cs[2];  // chunk c's in cs[c % 2]
    ScalarRaw raw;
};

// S (angle pairs) is a template parameter: the rotation's pair tests resolve at compile time
// (instantiated for S = 8, 16, 32 by the launchers).
template <int S>
__global__ void __launch_bounds__(NT, 2) mamba3_scan_fwd_kernel(
    bf16* out, Mamba3States<float> fin, const float* phi_g, bf16* y_g, bf16* states,
    const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt, const float* dt,
    const float* trap, const float* q_bias, const float* k_bias, const float* Dp,
    const bf16* z, Mamba3States<float> init, int T, int H, int G) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    static_assert(S <= SMAX, "phi rows hold SMAX angles");
    FwdSmem& s = *reinterpret_cast<FwdSmem*>(smem_raw);
    const int h = blockIdx.x, b = blockIdx.y, g = h / (H / G);
    const int bh = b * H + h;
    const int tid = threadIdx.x, warp = tid >> 5, r0 = (warp & 3) * 16, c0 = (warp >> 2) * 32;
    const int NC = (T + L - 1) / L;
    const float Dh = Dp[h];
    if (tid < NN) { s.qb[tid] = q_bias[h * NN + tid]; s.kb[tid] = k_bias[h * NN + tid]; }

    // H_init' = H_in + dt_0 (1 - lam_0) v_{-1} k_{-1}^T (no alpha_0: exp(Acs) applies it), in registers
    float accH[4][4];
    zero_acc<4>(accH);
    if (init.ssm) {
        const float c0v = dt[bh * T] * (1.f - sigmoidf_(trap[bh * T]));
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int p = acc_row(r0, e), n = c0 + acc_col(j, e);
                accH[j][e] = init.ssm[(bh * PP + p) * NN + n] + c0v * init.v[bh * PP + p] * init.k[bh * NN + n];
            }
    }
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e += 2)
            *reinterpret_cast<uint32_t*>(&s.Hc[acc_row(r0, e)][c0 + acc_col(j, e)]) = pack_bf16(accH[j][e], accH[j][e + 1]);

    // Loads run a chunk ahead where the tile is dead early: k_raw, phi after the rotation, q_raw (the
    // score tile) after S.V; v, z and the next chunk's scalar inputs are issued at the chunk's top and
    // first waited for in the score phase (by the scalar warp) or before S.V. cp.async groups in flight
    // at a chunk's top: {k_raw, phi}, {q_raw}.
    const int ldv = H * PP, ldq = G * NN;
    load_tile(s.Kr, k_raw + b * T * ldq + g * NN, ldq, min(L, T));
    load_floats(s.phi, phi_g + bh * T * S, L * S / 4, min(L, T) * S / 4);
    load_scalars(s.raw, adt, dt, trap, bh, T, 0);
    cp_async_commit();
    load_tile(s.Qr, q_raw + b * T * ldq + g * NN, ldq, min(L, T));
    cp_async_commit();
    if (warp == kScalarWarp) {
        cp_async_wait_group<1>();
        chunk_scalars(s.cs[0], s.raw);
    }

    for (int c = 0; c < NC; c++) {
        const int t0 = c * L, nrows = min(L, T - t0), t1 = t0 + L, nrows1 = min(L, T - t1);
        const ChunkScalars& cs = s.cs[c & 1];
        cp_async_wait_group<0>();  // this chunk's k_raw, phi, q_raw
        __syncthreads();           // previous chunk's readers of every tile are done; copies, scalars visible
        load_tile(s.V, v + (b * T + t0) * ldv + h * PP, ldv, nrows);
        load_tile(s.Z, z + (b * T + t0) * ldv + h * PP, ldv, nrows);
        if (c + 1 < NC) load_scalars(s.raw, adt, dt, trap, bh, T, t1);  // chunk c read them in chunk c - 1
        cp_async_commit();
        // ---- bias, rotation, scale (§3.1): thread = (row, quarter qt of N; see qcol)
        {
            const int r = tid >> 2, qt = tid & 3, t = t0 + r;
            float qv[16], kv[16];
            float dot = qk_bias_quarter(qv, kv, s.Qr[r], s.Kr[r], s.qb, s.kb, qt);
            dot += __shfl_xor_sync(0xffffffffu, dot, 1);
            dot += __shfl_xor_sync(0xffffffffu, dot, 2);
            if (qt == 0) s.qkd[r] = cs.gam[r] * dot;  // diagonal uses gamma, not scale
            rotate_quarter<S>(qv, kv, s.phi + r * S, qt);
            if (fin.k && t == T - 1)
#pragma unroll
                for (int k = 0; k < 16; k++) fin.k[bh * NN + qcol(qt, k)] = kv[k];
            const float sc = cs.scale[r], kd = sc * cs.erev[r];
            store_quarter(s.Q[r], qv, 1.f, qt);
            store_quarter(s.K[r], kv, sc, qt);
            // the state update takes k~ as hi + lo bf16 parts: the state stays fp32-accurate
            uint4 hi4[2], lo4[2];
            uint32_t *hw = reinterpret_cast<uint32_t*>(hi4), *lw = reinterpret_cast<uint32_t*>(lo4);
#pragma unroll
            for (int k = 0; k < 16; k += 2) {
                const float a0 = kd * kv[k], a1 = kd * kv[k + 1];
                const __nv_bfloat162 hi = __floats2bfloat162_rn(a0, a1);
                hw[k / 2] = *reinterpret_cast<const uint32_t*>(&hi);
                lw[k / 2] = pack_bf16(a0 - __bfloat162float(hi.x), a1 - __bfloat162float(hi.y));
            }
            *reinterpret_cast<uint4*>(&s.Kd[r][8 * qt]) = hi4[0]; *reinterpret_cast<uint4*>(&s.Kd[r][32 + 8 * qt]) = hi4[1];
            *reinterpret_cast<uint4*>(&s.Kl[r][8 * qt]) = lo4[0]; *reinterpret_cast<uint4*>(&s.Kl[r][32 + 8 * qt]) = lo4[1];
        }
        if (fin.v && c == NC - 1 && tid < PP)
            fin.v[bh * PP + tid] = __bfloat162float(v[(b * T + T - 1) * ldv + h * PP + tid]);
        __syncthreads();  // k_raw and phi are dead: the next chunk's go in now
        if (c + 1 < NC) {
            load_tile(s.Kr, k_raw + (b * T + t1) * ldq + g * NN, ldq, nrows1);
            load_floats(s.phi, phi_g + (bh * T + t1) * S, L * S / 4, nrows1 * S / 4);
        }
        cp_async_commit();
        // ---- y_i = exp(Acs_i) Hc q_i + sum_{j<i} (q_i.k~_j) exp(Acs_i - Acs_j) v_j + (D + d_i) v_i
        // The masked scores go to the (now dead) q_raw tile: S.V needs whole rows of them.
        Tile& Sc = s.Qr;
        if (c0 < r0 + 16) {  // else every column of this warp is at or above the diagonal
            float accS[4][4];
            zero_acc<4>(accS);
            warp_gemm<false, false, 4>(accS, s.Q, s.K, r0, 0, NN, c0);
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e), jj = c0 + acc_col(j, e);
                    // branch-free mask: e^-inf = 0 on and above the diagonal (acs_i - acs_j > 0 there could overflow)
                    const float2 aj = *reinterpret_cast<const float2*>(&cs.acs[jj]);
                    const float ai = cs.acs[i];
                    const float s0 = accS[j][e] * fexp(i > jj ? ai - aj.x : -INFINITY);
                    const float s1 = accS[j][e + 1] * fexp(i > jj + 1 ? ai - aj.y : -INFINITY);
                    *reinterpret_cast<uint32_t*>(&Sc[i][jj]) = pack_bf16(s0, s1);
                }
        } else if (warp == kScalarWarp && c + 1 < NC) {  // the next chunk's scalars (inputs from this chunk's top)
            cp_async_wait_group<1>();
            chunk_scalars(s.cs[(c + 1) & 1], s.raw);
        }
        float accY[4][4];
        zero_acc<4>(accY);
        warp_gemm<false, false, 4>(accY, s.Q, s.Hc, r0, 0, NN, c0);
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) accY[j][e] *= cs.eacs[acc_row(r0, e)];
        cp_async_wait_group<1>();  // v, z (the next chunk's k_raw, phi may still be in flight)
        __syncthreads();           // every score row is complete; v, z visible
        warp_gemm<false, true, 4>(accY, Sc, s.V, r0, 0, r0 + 16, c0);
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e += 2) {
                const int i = acc_row(r0, e), p = c0 + acc_col(j, e);
                const float dg = Dh + s.qkd[i];
                const float2 vv = bf2f(&s.V[i][p]), zz = bf2f(&s.Z[i][p]);
                const float y0 = accY[j][e] + dg * vv.x, y1 = accY[j][e + 1] + dg * vv.y;
                const float z0 = zz.x, z1 = zz.y;
                *reinterpret_cast<uint32_t*>(&s.Y[i][p]) = pack_bf16(y0, y1);
                *reinterpret_cast<uint32_t*>(&s.Z[i][p]) = pack_bf16(y0 * z0 * sigmoidf_(z0), y1 * z1 * sigmoidf_(z1));
            }
        const float eAc = expf(cs.acs[L - 1]);
        __syncthreads();  // the score tile is dead: the next chunk's q_raw goes in
        if (c + 1 < NC) load_tile(s.Qr, q_raw + (b * T + t1) * ldq + g * NN, ldq, nrows1);
        cp_async_commit();
        // ---- write y, out (coalesced); save the state entering this chunk (bf16); update the state
#pragma unroll
        for (int it = 0; it < L * 8 / NT; it++) {
            const int r = (tid >> 3) + it * (NT / 8), c8 = (tid & 7) * 8;
            if (r < nrows) {
                const int o = (b * T + t0 + r) * ldv + h * PP + c8;
                *reinterpret_cast<uint4*>(y_g + o) = *reinterpret_cast<const uint4*>(&s.Y[r][c8]);
                *reinterpret_cast<uint4*>(out + o) = *reinterpret_cast<const uint4*>(&s.Z[r][c8]);
            }
        }
        // The saved state is the Hc tile itself (bf16: the backward's only use of it is this very MMA
        // operand). Each warp stores the 16 x 32 block of Hc it rewrites below, 16 bytes a lane.
        bf16* st = states + (bh * NC + c) * PP * NN;
#pragma unroll
        for (int it = 0; it < 2; it++) {
            const int k = (tid & 31) + 32 * it, p = r0 + (k >> 2), n = c0 + 8 * (k & 3);
            *reinterpret_cast<uint4*>(st + p * NN + n) = *reinterpret_cast<const uint4*>(&s.Hc[p][n]);
        }
        __syncwarp();  // the lanes' reads of the block come before its rewrite
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) accH[j][e] *= eAc;
        // Hc <- exp(A_c) Hc + sum_j v_j (exp(A_c - Acs_j) k~_j)^T
        warp_gemm<true, true, 4>(accH, s.V, s.Kd, r0, 0, L, c0);
        warp_gemm<true, true, 4>(accH, s.V, s.Kl, r0, 0, L, c0);
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e += 2)
                *reinterpret_cast<uint32_t*>(&s.Hc[acc_row(r0, e)][c0 + acc_col(j, e)]) = pack_bf16(accH[j][e], accH[j][e + 1]);
    }
    __syncthreads();
    if (fin.ssm) {
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) fin.ssm[(bh * PP + acc_row(r0, e)) * NN + c0 + acc_col(j, e)] = accH[j][e];
    }
}

// ================================================================ backward
struct BwdSmem {
    Tile Q, K, V, dY, Hc, dH, P1, P2, Qr, Kr;  // q rot; k~; v; dy; H entering; dH leaving; M.G'; M.SK;
                                               // q_raw; k_raw. In the tail K, P2, P1 take the next
                                               // chunk's dout, z, y.
    float colpart[4][L];                       // per-row-block column sums of G (dADT part 1)
    float urow[2][L], u2[2][L], wv[2][L];      // dADT pieces per position and column half (then summed in [0])
    float qkdot[L], ds[2][L], dd[L];           // qbar.kbar, d scale (per column half), dy.v per position
    float mpart[8], carry[SMAX], dDpart[2];
    float pend[2][4];                          // row 0 of a chunk waits for ds of the previous position
    alignas(16) float qb[NN], kb[NN];
    ChunkScalars cs[2];                        // chunk c's in cs[c % 2]
    ScalarRaw raw;
    // after the struct, sized by S: phi (L x S), theta, dphi (L x (S+1) each)
};
size_t bwd_smem_bytes(int S) { return sizeof(BwdSmem) + (size_t)(3 * L * S + 2 * L) * sizeof(float); }
static_assert(sizeof(BwdSmem) % 16 == 0, "the phi table after BwdSmem takes 16-byte copies");

// Chunk c's saved phi and state (bf16, into Hc), its v, q_raw, k_raw tiles, dout, z, y for the gate
// backward into the K, P2, P1 tiles (dead in the previous chunk's tail); cp.async, not committed. The
// gate backward reads exactly the 16-byte pieces its thread copied (load_tile's thread mapping), so it
// needs only the thread's own wait, no barrier.
__device__ __forceinline__ void load_bwd_tiles(BwdSmem& s, float* phi, const float* phi_g, const bf16* states, const bf16* q_raw,
                                               const bf16* k_raw, const bf16* v, const bf16* dout, const bf16* z,
                                               const bf16* y_g, int b, int bh, int h, int g, int T, int H, int G, int S, int c) {
    const int t0 = c * L, nrows = min(L, T - t0);
    const int ldv = H * PP, ldq = G * NN, ov = (b * T + t0) * ldv + h * PP;
    load_floats(phi, phi_g + (bh * T + t0) * S, L * S / 4, nrows * S / 4);
    load_tile(s.Hc, states + (bh * ((T + L - 1) / L) + c) * PP * NN, NN, PP);
    load_tile(s.V, v + ov, ldv, nrows);
    load_tile(s.Qr, q_raw + (b * T + t0) * ldq + g * NN, ldq, nrows);
    load_tile(s.Kr, k_raw + (b * T + t0) * ldq + g * NN, ldq, nrows);
    load_tile(s.K, dout + ov, ldv, nrows);
    load_tile(s.P2, z + ov, ldv, nrows);
    load_tile(s.P1, y_g + ov, ldv, nrows);
}

template <int S>
__global__ void __launch_bounds__(NT, 2) mamba3_scan_bwd_kernel(
    bf16* dq_h, bf16* dk_h, bf16* dth_h,                     // scratch: (B,T,H,N) (B,T,H,N) (B,T,H,S)
    float* bq_part, float* bk_part, float* dD_part,          // scratch: (B,H,N) (B,H,N) (B,H)
    bf16* dv, float* dadt, float* ddt, float* dtrap, bf16* dz, Mamba3States<float> dinit,
    const bf16* dout, Mamba3States<float> dfin, const float* phi_g, const bf16* y_g, const bf16* states,
    const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt, const float* dt,
    const float* trap, const float* theta, const float* q_bias, const float* k_bias, const float* Dp,
    const bf16* z, Mamba3States<float> init, int T, int H, int G) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    static_assert(S % (NT / 32) == 0 && S <= SMAX, "the angle passes give each warp S / 8 columns");
    BwdSmem& s = *reinterpret_cast<BwdSmem*>(smem_raw);
    constexpr int SP = S + 1;
    float* phi = reinterpret_cast<float*>(smem_raw + sizeof(BwdSmem));  // [L][S]
    float* th_s = phi + L * S;          // [L][SP]: rows padded, the angle pass reads columns
    float* dphi = th_s + L * SP;        // [L][SP]
    const int h = blockIdx.x, b = blockIdx.y, g = h / (H / G);
    const int bh = b * H + h;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t4 = lane & 3;
    // ch masked to one bit: the compiler then knows the rotated-pair tests below for S 16, 32
    const int rb = warp & 3, ch = (warp >> 2) & 1, r0 = rb * 16, c0 = ch * 32;  // row block, column half
    const int NC = (T + L - 1) / L;
    const float Dh = Dp[h];
    const int ldv = H * PP;
    if (tid < NN) { s.qb[tid] = q_bias[h * NN + tid]; s.kb[tid] = k_bias[h * NN + tid]; }
    if (tid < SMAX) s.carry[tid] = (dfin.angle && tid < S) ? dfin.angle[bh * S + tid] : 0.f;

    float dHacc[4][4];  // d(state leaving the chunk), rows p of this warp
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dHacc[j][e] = dfin.ssm ? dfin.ssm[(bh * PP + acc_row(r0, e)) * NN + c0 + acc_col(j, e)] : 0.f;
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e += 2)
            *reinterpret_cast<uint32_t*>(&s.dH[acc_row(r0, e)][c0 + acc_col(j, e)]) = pack_bf16(dHacc[j][e], dHacc[j][e + 1]);
    float bq_acc[4][2], bk_acc[4][2], dD_acc = 0.f;  // bias partials for this thread's column pairs
#pragma unroll
    for (int j = 0; j < 4; j++) bq_acc[j][0] = bq_acc[j][1] = bk_acc[j][0] = bk_acc[j][1] = 0.f;

    // Loads run a chunk ahead, each as soon as its tile is dead in the chunk before: phi, the state, v,
    // q_raw, k_raw, dout, z, y after dv (the one cp.async group in flight at a chunk's top); theta, read
    // late by the angle pass, and the previous chunk's scalar inputs, read in the score phase by the
    // scalar warp, at the chunk's first barrier.
    load_bwd_tiles(s, phi, phi_g, states, q_raw, k_raw, v, dout, z, y_g, b, bh, h, g, T, H, G, S, NC - 1);
    load_scalars(s.raw, adt, dt, trap, bh, T, (NC - 1) * L);
    cp_async_commit();
    if (warp == kScalarWarp) {
        cp_async_wait_group<0>();
        chunk_scalars(s.cs[(NC - 1) & 1], s.raw);
    }

    for (int c = NC - 1; c >= 0; c--) {
        const int t0 = c * L, nrows = min(L, T - t0);
        const ChunkScalars& cs = s.cs[c & 1];
        // No barrier here: nothing below touches what the previous chunk's tail still reads (its dADT
        // pass took the scalars into registers before its last barrier).
        cp_async_wait_group<0>();  // phi, Hc, v, q_raw, k_raw, dout, z, y
        // gate backward (§5.2) from dout, z, y in the K, P2, P1 tiles (the thread's own copies) -> dy tile, dz.
        // (vrow / hrow, the chunk's global row offsets, are recomputed in each phase that stores: kept
        // live across the chunk they cost registers under the cap and the backward spilled 88 bytes)
        const int vrow = (b * T + t0) * ldv + h * PP;
#pragma unroll
        for (int it = 0; it < L * 8 / NT; it++) {
            const int k = tid + it * NT, r = k >> 3, c8 = (k & 7) * 8;
            const uint4 go4 = *reinterpret_cast<const uint4*>(&s.K[r][c8]), z4 = *reinterpret_cast<const uint4*>(&s.P2[r][c8]),
                        y4 = *reinterpret_cast<const uint4*>(&s.P1[r][c8]);
            const uint32_t *go = reinterpret_cast<const uint32_t*>(&go4), *zz = reinterpret_cast<const uint32_t*>(&z4),
                           *yy = reinterpret_cast<const uint32_t*>(&y4);
            uint4 dz4, dyv;
            uint32_t *dzz = reinterpret_cast<uint32_t*>(&dz4), *dyy = reinterpret_cast<uint32_t*>(&dyv);
#pragma unroll
            for (int j = 0; j < 4; j++) {  // padded rows hold zeros: dy = 0 there
                // dy = go z sg; dz = go y sg (1 + z (1 - sg)) = a y + a y (z - z sg) with a = go sg
                const float2 zf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&zz[j])),
                             gof = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&go[j])),
                             yf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&yy[j]));
                const float sg0 = sigmoidf_(zf.x), sg1 = sigmoidf_(zf.y), a0 = gof.x * sg0, a1 = gof.y * sg1;
                const float ay0 = a0 * yf.x, ay1 = a1 * yf.y;
                dyy[j] = pack_bf16(a0 * zf.x, a1 * zf.y);
                dzz[j] = pack_bf16(fmaf(ay0, fmaf(-zf.x, sg0, zf.x), ay0), fmaf(ay1, fmaf(-zf.y, sg1, zf.y), ay1));
            }
            if (r < nrows) *reinterpret_cast<uint4*>(dz + vrow + (r * ldv + c8)) = dz4;
            *reinterpret_cast<uint4*>(&s.dY[r][c8]) = dyv;
        }
        __syncthreads();  // Hc, dy, scalars, and the other threads' copies are visible
        // theta rows: th_s held the previous chunk's dtheta until its copy-out, which this barrier ends;
        // the raw scalars were read by this chunk's chunk_scalars in the chunk before
        load_theta_cols(th_s, theta + (b * T + t0) * S, S, nrows);
        if (c > 0) load_scalars(s.raw, adt, dt, trap, bh, T, t0 - L);
        cp_async_commit();
        // ---- recompute q, k~; qbar.kbar and dd = dy.v per position. Thread = (row, quarter qt; see qcol).
        {
            const int r = tid >> 2, qt = tid & 3;
            float qv[16], kv[16], ddp = 0.f;
            load_quarter(qv, s.dY[r], qt);  // dy and v first, through the q and k registers
            load_quarter(kv, s.V[r], qt);
#pragma unroll
            for (int k = 0; k < 16; k++) ddp += qv[k] * kv[k];
            float dot = qk_bias_quarter(qv, kv, s.Qr[r], s.Kr[r], s.qb, s.kb, qt);
#pragma unroll
            for (int o = 1; o < 4; o <<= 1) {
                dot += __shfl_xor_sync(0xffffffffu, dot, o);
                ddp += __shfl_xor_sync(0xffffffffu, ddp, o);
            }
            if (qt == 0) { s.qkdot[r] = dot; s.dd[r] = ddp; }
            rotate_quarter<S>(qv, kv, phi + r * S, qt);
            store_quarter(s.Q[r], qv, 1.f, qt);
            store_quarter(s.K[r], kv, cs.scale[r], qt);
        }
        __syncthreads();
        // ---- intra-chunk score matrices: SK = Q K~^T, G' = dY V^T, M = exp(Acs_i - Acs_j)[i>j]
        // Warps whose 32 columns all lie above the diagonal (rows 0..31, columns 32..63) skip the
        // products: M is zero there and the P1, P2 tiles are never read there (every later product
        // stops its k range at the diagonal block).
        {
            float rs[2] = {0.f, 0.f}, csum[4][2] = {};
            if (c0 < r0 + 16) {
                float accA[4][4], accB[4][4];
                zero_acc<4>(accA); zero_acc<4>(accB);
                warp_gemm<false, false, 4>(accA, s.Q, s.K, r0, 0, NN, c0);
                warp_gemm<false, false, 4>(accB, s.dY, s.V, r0, 0, PP, c0);
#pragma unroll
                for (int j = 0; j < 4; j++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int i = acc_row(r0, e), jj = c0 + acc_col(j, e);
                        const float M = fexp(i > jj ? cs.acs[i] - cs.acs[jj] : -INFINITY);  // branch free
                        const float p1 = M * accB[j][e], p2 = M * accA[j][e], gg = p1 * accA[j][e];
                        rs[e >> 1] += gg; csum[j][e & 1] += gg;
                        accB[j][e] = p1; accA[j][e] = p2;
                    }
                    *reinterpret_cast<uint32_t*>(&s.P1[acc_row(r0, 0)][c0 + acc_col(j, 0)]) = pack_bf16(accB[j][0], accB[j][1]);
                    *reinterpret_cast<uint32_t*>(&s.P1[acc_row(r0, 2)][c0 + acc_col(j, 2)]) = pack_bf16(accB[j][2], accB[j][3]);
                    *reinterpret_cast<uint32_t*>(&s.P2[acc_row(r0, 0)][c0 + acc_col(j, 0)]) = pack_bf16(accA[j][0], accA[j][1]);
                    *reinterpret_cast<uint32_t*>(&s.P2[acc_row(r0, 2)][c0 + acc_col(j, 2)]) = pack_bf16(accA[j][2], accA[j][3]);
                }
            } else if (warp == kScalarWarp && c > 0) {  // the next chunk's scalars (inputs from this chunk's top)
                cp_async_wait_group<0>();
                chunk_scalars(s.cs[(c - 1) & 1], s.raw);
            }
            // row sums over the 4 lanes of a row; column sums over the 8 row-groups of the warp
#pragma unroll
            for (int q = 0; q < 2; q++) {
                rs[q] += __shfl_xor_sync(0xffffffffu, rs[q], 1);
                rs[q] += __shfl_xor_sync(0xffffffffu, rs[q], 2);
            }
            if (t4 == 0) { s.urow[ch][acc_row(r0, 0)] = rs[0]; s.urow[ch][acc_row(r0, 2)] = rs[1]; }
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    float x = csum[j][q];
                    x += __shfl_xor_sync(0xffffffffu, x, 4);
                    x += __shfl_xor_sync(0xffffffffu, x, 8);
                    x += __shfl_xor_sync(0xffffffffu, x, 16);
                    if (lane < 4) s.colpart[rb][c0 + acc_col(j, q)] = x;
                }
            // dADT part 3: exp(A_c) sum(Hc . dH) (Hc from the bf16 tile: a sum of 4096 products)
            float m = 0.f;
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const float2 hv = bf2f(&s.Hc[acc_row(r0, e)][c0 + acc_col(j, e)]);
                    m += hv.x * dHacc[j][e];
                    m += hv.y * dHacc[j][e + 1];
                }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) m += __shfl_xor_sync(0xffffffffu, m, o);
            if (lane == 0) s.mpart[warp] = m;
        }
        __syncthreads();
        {
            float accQ[4][4], accK[4][4];
            // dq_i = exp(Acs_i) Hc^T dy_i + sum_{j<i} P1_ij k~_j;  u2_i = q_i . (exp(Acs_i) Hc^T dy_i)
            zero_acc<4>(accQ);
            warp_gemm<false, true, 4, 32>(accQ, s.dY, s.Hc, r0, 0, PP, 16 * ch);
            float u2[2] = {0.f, 0.f};
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e);
                    const float2 qq = bf2f(&s.Q[i][icol(ch, j, e)]);
                    accQ[j][e] *= cs.eacs[i]; accQ[j][e + 1] *= cs.eacs[i];
                    u2[e >> 1] += accQ[j][e] * qq.x;
                    u2[e >> 1] += accQ[j][e + 1] * qq.y;
                }
#pragma unroll
            for (int q = 0; q < 2; q++) {
                u2[q] += __shfl_xor_sync(0xffffffffu, u2[q], 1);
                u2[q] += __shfl_xor_sync(0xffffffffu, u2[q], 2);
            }
            if (t4 == 0) { s.u2[ch][acc_row(r0, 0)] = u2[0]; s.u2[ch][acc_row(r0, 2)] = u2[1]; }
            warp_gemm<false, true, 4, 32>(accQ, s.P1, s.K, r0, 0, r0 + 16, 16 * ch);
            // dk~_j = exp(A_c - Acs_j) dH^T v_j + sum_{i>j} P1_ij q_i
            zero_acc<4>(accK);
            warp_gemm<false, true, 4, 32>(accK, s.V, s.dH, r0, 0, PP, 16 * ch);
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) accK[j][e] *= cs.erev[acc_row(r0, e)];
            warp_gemm<true, true, 4, 32>(accK, s.P1, s.Q, r0, r0, L, 16 * ch);
            // ---- per position and rotation pair (§5.4), in the accumulator layout: element pair
            // (row i, cols 2m, 2m+1) with 2m = icol(ch, j, 0) is one rotation pair of one position.
            // Padded rows (i >= nrows) need no selects: their q_raw, k_raw rows are zero-filled and their
            // dq, dk, dd are exact zeros, so everything below is zero there except what is not stored.
            // Two instances: LASTC, the sequence's last chunk (rows past T are not stored; dfin.k adds at
            // position T - 1), and every other chunk, without those per-pair tests and predicated loads.
            float dsr[2] = {0.f, 0.f};
            const int hrow = (b * T + t0) * H + h;
            auto rotation_backward = [&](auto last_chunk) {
                constexpr bool LASTC = decltype(last_chunk)::value;
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e);
                    const float sc = cs.scale[i], ga = cs.gam[i], ddg = s.dd[i] * ga;
                    const bool last = LASTC && dfin.k && t0 + i == T - 1;
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        const int n0 = icol(ch, j, 0), m = n0 / 2;
                        const bool rot = 8 * ch + 16 * (j >> 1) + 4 * (j & 1) < S;  // m < S, warp-uniform (S % 4 == 0)
                        const float2 qr = bf2f(&s.Qr[i][n0]), kr = bf2f(&s.Kr[i][n0]);
                        const float2 bq = *reinterpret_cast<const float2*>(&s.qb[n0]), bk = *reinterpret_cast<const float2*>(&s.kb[n0]);
                        const float qb0 = qr.x + bq.x, qb1 = qr.y + bq.y, kb0 = kr.x + bk.x, kb1 = kr.y + bk.y;
                        float sn = 0.f, cn = 1.f;
                        if (rot) sincos_angle(phi[i * S + m], &sn, &cn);
                        const float dq0 = accQ[j][e], dq1 = accQ[j][e + 1], dk0 = accK[j][e], dk1 = accK[j][e + 1];
                        dsr[e >> 1] += dk0 * (kb0 * cn - kb1 * sn) + dk1 * (kb0 * sn + kb1 * cn);
                        float gk0 = sc * dk0, gk1 = sc * dk1;
                        if (last) { gk0 += dfin.k[bh * NN + n0]; gk1 += dfin.k[bh * NN + n0 + 1]; }
                        const float dqb0 = dq0 * cn + dq1 * sn + ddg * kb0, dqb1 = -dq0 * sn + dq1 * cn + ddg * kb1;
                        const float dkb0 = gk0 * cn + gk1 * sn + ddg * qb0, dkb1 = -gk0 * sn + gk1 * cn + ddg * qb1;
                        // d phi = dq . J q + dk~ . J k~ (J = d/dphi of the rotation), taken with the very bf16
                        // q and k~ the products used: then the intra-chunk pair terms, which cancel in the
                        // reverse cumsum of d phi (q.k~ is rotation invariant), cancel in our sums too.
                        if (rot) {
                            const float2 qq = bf2f(&s.Q[i][n0]), kk = bf2f(&s.K[i][n0]);
                            const float q0 = qq.x, q1 = qq.y, k0 = kk.x, k1 = kk.y;
                            float dp = -dq0 * q1 + dq1 * q0 - dk0 * k1 + dk1 * k0;
                            if (last) {
                                const float fk0 = dfin.k[bh * NN + n0], fk1 = dfin.k[bh * NN + n0 + 1];
                                dp += fk0 * (-kb0 * sn - kb1 * cn) + fk1 * (kb0 * cn - kb1 * sn);
                            }
                            dphi[i * SP + m] = dp;
                        }
                        bq_acc[j][0] += dqb0; bq_acc[j][1] += dqb1; bk_acc[j][0] += dkb0; bk_acc[j][1] += dkb1;
                        if (!LASTC || i < nrows) {
                            const int ho = i * H * NN + n0;
                            *reinterpret_cast<uint32_t*>(dq_h + hrow * NN + ho) = pack_bf16(dqb0, dqb1);
                            *reinterpret_cast<uint32_t*>(dk_h + hrow * NN + ho) = pack_bf16(dkb0, dkb1);
                        }
                    }
                }
            };
            if (c == NC - 1) rotation_backward(std::true_type{});
            else rotation_backward(std::false_type{});
#pragma unroll
            for (int q = 0; q < 2; q++) {
                dsr[q] += __shfl_xor_sync(0xffffffffu, dsr[q], 1);
                dsr[q] += __shfl_xor_sync(0xffffffffu, dsr[q], 2);
            }
            if (t4 == 0) { s.ds[ch][acc_row(r0, 0)] = dsr[0]; s.ds[ch][acc_row(r0, 2)] = dsr[1]; }
        }
        {
            // dv_j = exp(A_c - Acs_j) dH k~_j + sum_{i>j} P2_ij dy_i + (D + d_j) dy_j;  w_j = v_j . (first term)
            float acc[4][4];
            zero_acc<4>(acc);
            warp_gemm<false, false, 4>(acc, s.K, s.dH, r0, 0, NN, c0);
            float wv[2] = {0.f, 0.f};
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e);
                    const float2 vv = bf2f(&s.V[i][c0 + acc_col(j, e)]);
                    acc[j][e] *= cs.erev[i]; acc[j][e + 1] *= cs.erev[i];
                    wv[e >> 1] += acc[j][e] * vv.x;
                    wv[e >> 1] += acc[j][e + 1] * vv.y;
                }
#pragma unroll
            for (int q = 0; q < 2; q++) {
                wv[q] += __shfl_xor_sync(0xffffffffu, wv[q], 1);
                wv[q] += __shfl_xor_sync(0xffffffffu, wv[q], 2);
            }
            if (t4 == 0) { s.wv[ch][acc_row(r0, 0)] = wv[0]; s.wv[ch][acc_row(r0, 2)] = wv[1]; }
            warp_gemm<true, true, 4>(acc, s.P2, s.dY, r0, r0, L, c0);
            const int vrow = (b * T + t0) * ldv + h * PP;
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e), p = c0 + acc_col(j, e);
                    if (i < nrows) {
                        const float dg = Dh + cs.gam[i] * s.qkdot[i];
                        const float2 dy = bf2f(&s.dY[i][p]);
                        float v0 = acc[j][e] + dg * dy.x, v1 = acc[j][e + 1] + dg * dy.y;
                        if (dfin.v && t0 + i == T - 1) { v0 += dfin.v[bh * PP + p]; v1 += dfin.v[bh * PP + p + 1]; }
                        *reinterpret_cast<uint32_t*>(dv + vrow + (i * ldv + p)) = pack_bf16(v0, v1);
                    }
                }
        }
        __syncthreads();  // every reader of the dH, P1, P2 tiles is done; phi, v, q_raw, k_raw, K, Hc are dead
        if (c > 0) {
            load_bwd_tiles(s, phi, phi_g, states, q_raw, k_raw, v, dout, z, y_g, b, bh, h, g, T, H, G, S, c - 1);
        }
        cp_async_commit();
        {
            // dH <- exp(A_c) dH + sum_i dy_i (exp(Acs_i) q_i)^T. The row weight exp(Acs_i) goes onto dy's
            // fragments (i is the reduced index), so Q is used as it is: no scaled copy, no barrier for one.
            const float eAc = expf(cs.acs[L - 1]);
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) dHacc[j][e] *= eAc;
#pragma unroll
            for (int kk = 0; kk < L; kk += 16) {
                uint32_t a[4];
                ldsm4t(a, &s.dY[kk + (lane & 7) + ((lane >> 4) << 3)][r0 + ((lane >> 3) & 1) * 8]);
                // a[0], a[1] hold k = kk + 2(lane%4) + {0,1}; a[2], a[3] the same + 8
                const float2 e0 = *reinterpret_cast<const float2*>(&cs.eacs[kk + 2 * t4]);
                const float2 e1 = *reinterpret_cast<const float2*>(&cs.eacs[kk + 8 + 2 * t4]);
                a[0] = scale_bf16x2(a[0], e0); a[1] = scale_bf16x2(a[1], e0);
                a[2] = scale_bf16x2(a[2], e1); a[3] = scale_bf16x2(a[3], e1);
#pragma unroll
                for (int nn = 0; nn < 2; nn++) {
                    uint32_t bb[4];
                    ldsm4t(bb, &s.Q[kk + (lane & 7) + (((lane >> 3) & 1) << 3)][c0 + nn * 16 + (lane >> 4) * 8]);
                    mma16816(dHacc[2 * nn], a, bb[0], bb[1]);
                    mma16816(dHacc[2 * nn + 1], a, bb[2], bb[3]);
                }
            }
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2)
                    *reinterpret_cast<uint32_t*>(&s.dH[acc_row(r0, e)][c0 + acc_col(j, e)]) = pack_bf16(dHacc[j][e], dHacc[j][e + 1]);
        }
        cp_async_wait_group<1>();  // this chunk's theta, copied by the threads that read it below
        // ---- angles (§5.6): g_t = carry + sum_{r>=t} dphi_r; dtheta = g dt pi sech^2; dDT += g pi tanh.
        // dtheta replaces theta in th_s (each thread its own entries) and leaves in whole rows below:
        // stored from here, a lane's entries are H S floats apart (8 sectors per useful one).
#pragma unroll
        for (int it = 0; it < S / (NT / 32); it++) {  // unrolled: the columns' shuffle scans interleave
            const int i = warp + it * (NT / 32);
            float x0 = dphi[lane * SP + i], x1 = dphi[(lane + 32) * SP + i];
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {  // suffix sums
                float y0 = __shfl_down_sync(0xffffffffu, x0, o), y1 = __shfl_down_sync(0xffffffffu, x1, o);
                if (lane + o < 32) { x0 += y0; x1 += y1; }
            }
            const float carry = s.carry[i], tot1 = __shfl_sync(0xffffffffu, x1, 0);
            const float g1 = carry + x1, g0 = carry + tot1 + x0;
            float a0 = 0.f, a1 = 0.f;
            if (lane < nrows) {
                const float th = ftanh(th_s[lane * SP + i]);
                th_s[lane * SP + i] = g0 * cs.dtv[lane] * kPi * (1.f - th * th);
                a0 = g0 * kPi * th;
            }
            if (lane + 32 < nrows) {
                const float th = ftanh(th_s[(lane + 32) * SP + i]);
                th_s[(lane + 32) * SP + i] = g1 * cs.dtv[lane + 32] * kPi * (1.f - th * th);
                a1 = g1 * kPi * th;
            }
            __syncwarp();
            dphi[lane * SP + i] = a0; dphi[(lane + 32) * SP + i] = a1;
            const float tot0 = __shfl_sync(0xffffffffu, x0, 0);
            if (lane == 0) s.carry[i] = carry + tot0 + tot1;
        }
        // ---- dADT (§5.3) scans within each half of the chunk (threads 0..63); the scalars the last pass
        // needs go to registers here, before the barrier after which the next chunk rewrites them
        float lam = 0.f, dtt = 0.f, eAcL = 0.f;
        if (tid < L) {
            const int r = tid;
            lam = cs.lam[r]; dtt = cs.dtv[r]; eAcL = expf(cs.acs[L - 1]);
            float su = s.urow[0][r] + s.urow[1][r] - (s.colpart[0][r] + s.colpart[1][r] + s.colpart[2][r] + s.colpart[3][r]) +
                       s.u2[0][r] + s.u2[1][r];
            const float w = s.wv[0][r] + s.wv[1][r];
            float pw = w;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                float a = __shfl_down_sync(0xffffffffu, su, o), bb = __shfl_up_sync(0xffffffffu, pw, o);
                if (lane + o < 32) su += a;
                if (lane >= o) pw += bb;
            }
            __syncwarp();
            // suffix sums of u, inclusive prefix sums of w (per 32-row half); w and ds summed over column halves
            s.urow[0][r] = su; s.u2[0][r] = pw; s.wv[0][r] = w; s.ds[0][r] += s.ds[1][r];
        }
        __syncthreads();
        // dtheta rows to the per-head scratch (B,T,H,S) bf16, 16 bytes a thread, by the warps that the dADT
        // pass below leaves idle
        for (int k = tid - L; k >= 0 && k < nrows * (S / 8); k += NT - L) {
            const int r = k / (S / 8), p = 8 * (k % (S / 8));
            const float* src = th_s + r * SP + p;
            const uint4 u = make_uint4(pack_bf16(src[0], src[1]), pack_bf16(src[2], src[3]), pack_bf16(src[4], src[5]),
                                       pack_bf16(src[6], src[7]));
            *reinterpret_cast<uint4*>(dth_h + (((b * T + t0 + r) * H + h) * S + p)) = u;
        }
        // ---- dADT_t = sum_{r>=t} u_r + m + sum_{r<t} w_r; dDT, dTrap (§5.5) per position
        if (tid < L) {
            const int r = tid, t = t0 + r;
            float su = s.urow[0][r], pw = s.u2[0][r] - s.wv[0][r];
            if (r < 32) su += s.urow[0][32];
            else pw += s.u2[0][31];
            const float m = (s.mpart[0] + s.mpart[1] + s.mpart[2] + s.mpart[3] + s.mpart[4] + s.mpart[5] + s.mpart[6] + s.mpart[7]) * eAcL;
            float atp[4] = {0.f, 0.f, 0.f, 0.f};  // four partial sums: no serial chain of S adds
#pragma unroll
            for (int i = 0; i < S; i++) atp[i % 4] += dphi[r * SP + i];
            const float at = (atp[0] + atp[1]) + (atp[2] + atp[3]);
            const float gs = s.dd[r] * s.qkdot[r] + s.ds[0][r];  // d gamma + d scale
            float dD_t = gs * lam + at, dl = gs * dtt;
            if (r < nrows) {
                dD_acc += s.dd[r];
                dadt[bh * T + t] = su + m + pw;
                if (r > 0) {
                    const float dsp = s.ds[0][r - 1];
                    dD_t += dsp * (1.f - lam); dl -= dsp * dtt;
                    ddt[bh * T + t] = dD_t; dtrap[bh * T + t] = dl * lam * (1.f - lam);
                } else {
                    float* pd = s.pend[c & 1];
                    pd[0] = dD_t; pd[1] = dl; pd[2] = lam; pd[3] = dtt;
                }
            }
            if (r == L - 1 && c + 1 < NC) {  // the next chunk's row 0 waited for ds of this row
                const float* pd = s.pend[(c + 1) & 1];
                const float dsp = s.ds[0][r], l2 = pd[2];
                ddt[bh * T + t + 1] = pd[0] + dsp * (1.f - l2);
                dtrap[bh * T + t + 1] = (pd[1] - dsp * pd[3]) * l2 * (1.f - l2);
            }
        }
    }
    __syncthreads();
    // ---- initial states (§5.5): dH' = d(H_init'); c0v = dt_0 (1 - lam_0)
    float dc0 = 0.f;
    if (init.ssm) {
        const float c0v = s.pend[0][3] * (1.f - s.pend[0][2]);
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int p = acc_row(r0, e), n = c0 + acc_col(j, e);
                dinit.ssm[(bh * PP + p) * NN + n] = dHacc[j][e];
                dc0 += dHacc[j][e] * init.v[bh * PP + p] * init.k[bh * NN + n];
            }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) dc0 += __shfl_xor_sync(0xffffffffu, dc0, o);
        if (lane == 0) s.mpart[warp] = dc0;
        // dv_{-1} = c0v dH' k_{-1}; dk_{-1} = c0v dH'^T v_{-1}: from the fp32 copy just written
        __syncthreads();
        if (tid < PP) {
            float a = 0.f;
            for (int n = 0; n < NN; n++) a += dinit.ssm[(bh * PP + tid) * NN + n] * init.k[bh * NN + n];
            dinit.v[bh * PP + tid] = c0v * a;
        } else if (tid < PP + NN) {
            const int n = tid - PP;
            float a = 0.f;
            for (int p = 0; p < PP; p++) a += dinit.ssm[(bh * PP + p) * NN + n] * init.v[bh * PP + p];
            dinit.k[bh * NN + n] = c0v * a;
        }
        if (tid < S) dinit.angle[bh * S + tid] = s.carry[tid];
        dc0 = s.mpart[0] + s.mpart[1] + s.mpart[2] + s.mpart[3] + s.mpart[4] + s.mpart[5] + s.mpart[6] + s.mpart[7];
    }
    if (tid == 0) {
        const float* pd = s.pend[0];
        const float l0 = pd[2];
        ddt[bh * T] = pd[0] + dc0 * (1.f - l0);
        dtrap[bh * T] = (pd[1] - dc0 * pd[3]) * l0 * (1.f - l0);
    }
    // ---- per-(b,h) partial sums of the bias and D gradients (fixed order); the row-block partials go
    // through the Q tile, dead after the walk
    float (*bpart_q)[NN] = reinterpret_cast<float(*)[NN]>(&s.Q[0][0]), (*bpart_k)[NN] = bpart_q + 4;
    static_assert(sizeof(Tile) >= 8 * NN * sizeof(float), "bias partials fit a tile");
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            float aq = bq_acc[j][q], ak = bk_acc[j][q];
#pragma unroll
            for (int o = 4; o < 32; o <<= 1) {
                aq += __shfl_xor_sync(0xffffffffu, aq, o);
                ak += __shfl_xor_sync(0xffffffffu, ak, o);
            }
            if (lane < 4) { bpart_q[rb][icol(ch, j, q)] = aq; bpart_k[rb][icol(ch, j, q)] = ak; }
        }
    if (tid < L) {
        float a = dD_acc;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
        if (lane == 0) s.dDpart[warp] = a;
    }
    __syncthreads();
    if (tid < NN) {
        bq_part[bh * NN + tid] = bpart_q[0][tid] + bpart_q[1][tid] + bpart_q[2][tid] + bpart_q[3][tid];
        bk_part[bh * NN + tid] = bpart_k[0][tid] + bpart_k[1][tid] + bpart_k[2][tid] + bpart_k[3][tid];
    }
    if (tid == 0) dD_part[bh] = s.dDpart[0] + s.dDpart[1];
}

// GQA and angle sums over heads, in head order: dq_raw[b,t,g,:] = sum_{h in g} dq_h[b,t,h,:], etc.
// A thread sums 8 columns of dq_raw, of dk_raw or of dtheta (one 16-byte bf16 piece per head), the
// piece's tensor, heads and column decoded inline: 118 us at the seed's shape, where dq and dk in one
// thread took 121 us and the same one-piece mapping through a summing helper 128 us (H100, ncu).
__global__ void mamba3_scan_head_sum_kernel(float* dq_raw, float* dk_raw, float* dtheta, const bf16* dq_h,
                                            const bf16* dk_h, const bf16* dth_h, int64_t BT, int H, int G, int S) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int nq = G * NN / 8, per = 2 * nq + S / 8;
    if (idx >= BT * per) return;
    const int64_t bt = idx / per;
    const int k = (int)(idx % per), HG = H / G;
    // piece k: dq (k < nq), dk (k < 2 nq) or dtheta; its heads, row stride, column and destination
    const bool isq = k < 2 * nq, isdq = k < nq;
    const int kk = isdq ? k : isq ? k - nq : k - 2 * nq, g = isq ? 8 * kk / NN : 0, col = isq ? 8 * kk % NN : 8 * kk;
    const int h0 = isq ? g * HG : 0, nh = isq ? HG : H, ld = isq ? NN : S;
    const bf16* src = isdq ? dq_h : isq ? dk_h : dth_h;
    float a[8] = {};
    for (int hh = 0; hh < nh; hh++) {
        const uint4 u = *reinterpret_cast<const uint4*>(src + (bt * H + h0 + hh) * ld + col);
        const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const float2 f = __bfloat1622float2(x[j]);
            a[2 * j] += f.x; a[2 * j + 1] += f.y;
        }
    }
    float* dst = isdq ? dq_raw + bt * G * NN + 8 * kk : isq ? dk_raw + bt * G * NN + 8 * kk : dtheta + bt * S + col;
    reinterpret_cast<float4*>(dst)[0] = make_float4(a[0], a[1], a[2], a[3]);
    reinterpret_cast<float4*>(dst)[1] = make_float4(a[4], a[5], a[6], a[7]);
}
// Parameter gradients ACCUMULATE: sum the per-(b,h) partials over b in order.
__global__ void mamba3_scan_param_sum_kernel(float* dq_bias, float* dk_bias, float* dD, const float* bq_part,
                                             const float* bk_part, const float* dD_part, int B, int H) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;  // (h, n)
    if (k < H * NN) {
        float aq = 0.f, ak = 0.f;
        for (int b = 0; b < B; b++) { aq += bq_part[(int64_t)b * H * NN + k]; ak += bk_part[(int64_t)b * H * NN + k]; }
        dq_bias[k] += aq; dk_bias[k] += ak;
    }
    if (k < H) {
        float a = 0.f;
        for (int b = 0; b < B; b++) a += dD_part[b * H + k];
        dD[k] += a;
    }
}

void check_dims(const Mamba3Dims& d, const char* who) {
    if (d.N != NN || d.P != PP || d.L != L) fatal("%s: needs N = P = L = 64 (got N %d, P %d, L %d)", who, d.N, d.P, d.L);
    // S: a template parameter of the kernels (one instance per value); a multiple of 8 because the
    // angle passes give each of the 8 warps S / 8 columns (and the backward copies phi rows as 16 bytes)
    if (d.S != 8 && d.S != 16 && d.S != 32) fatal("%s: angle pairs S = %d, the CUDA scan is built for 8, 16, 32", who, d.S);
    if (d.G < 1 || d.H % d.G) fatal("%s: heads %d not a multiple of groups %d", who, d.H, d.G);
    if (d.T < 1 || d.B < 1) fatal("%s: empty batch (B %d, T %d)", who, d.B, d.T);
    // The kernels index in 32-bit ints (64-bit index math was ~25 instructions per store, recomputed
    // under the register cap): every tensor of a launch must hold fewer than 2^31 elements.
    const int64_t nc = (d.T + L - 1) / L, most = std::max((int64_t)d.B * d.T * d.H * 64, (int64_t)d.B * d.H * nc * PP * NN);
    if (most >= INT32_MAX) fatal("%s: B %d x T %d x H %d is too large for 32-bit indexing; split the batch", who, d.B, d.T, d.H);
}
Mamba3States<float> states_or_null(const Mamba3States<float>* st) { return st ? *st : Mamba3States<float>{}; }
}  // namespace

void mamba3_scan_forward(bf16* out, const Mamba3States<float>* fin, float* phi, bf16* y, bf16* states,
                         const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt, const float* dt,
                         const float* trap, const float* theta, const float* q_bias, const float* k_bias,
                         const float* D, const bf16* z, const Mamba3States<float>* init, const Mamba3Dims& d,
                         cudaStream_t stream) {
    check_dims(d, "mamba3_scan_forward");
    const size_t smem = sizeof(FwdSmem);
    const int si = d.S / 16;  // 8, 16, 32 -> 0, 1, 2
    // pi tanh(theta) (B,T,S fp32) goes to the states buffer, which the walk writes only after the angle
    // kernel read it (it fits: B H nchunks P N bf16 >= B T S fp32 for S <= 32 H)
    const int nth = d.B * d.T * d.S;
    float* pth = reinterpret_cast<float*>(states);
    mamba3_scan_pitanh_kernel<<<(nth + 255) / 256, 256, 0, stream>>>(pth, theta, nth);
    cudaCheckLaunch();
    auto angles = si == 0 ? mamba3_scan_angle_kernel<8> : si == 1 ? mamba3_scan_angle_kernel<16> : mamba3_scan_angle_kernel<32>;
    angles<<<dim3(d.H, d.B), NTA, 0, stream>>>(phi, fin ? fin->angle : nullptr, pth, dt, init ? init->angle : nullptr, d.T, d.H);
    cudaCheckLaunch();
    auto kernel = si == 0 ? mamba3_scan_fwd_kernel<8> : si == 1 ? mamba3_scan_fwd_kernel<16> : mamba3_scan_fwd_kernel<32>;
    static bool attr[3] = {};
    if (!attr[si]) {
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr[si] = true;
    }
    kernel<<<dim3(d.H, d.B), NT, smem, stream>>>(out, states_or_null(fin), phi, y, states, q_raw, k_raw, v, adt, dt, trap,
                                                 q_bias, k_bias, D, z, states_or_null(init), d.T, d.H, d.G);
    cudaCheckLaunch();
}

size_t mamba3_scan_backward_scratch_bytes(const Mamba3Dims& d) {
    const size_t BTH = (size_t)d.B * d.T * d.H, BH = (size_t)d.B * d.H;
    return BTH * (2 * NN + d.S) * sizeof(bf16) + (2 * BH * NN + BH) * sizeof(float) + 256;
}

void mamba3_scan_backward(float* dq_raw, float* dk_raw, bf16* dv, float* dadt, float* ddt, float* dtrap, float* dtheta,
                          float* dq_bias, float* dk_bias, float* dD, bf16* dz, const Mamba3States<float>* dinit,
                          const bf16* dout, const Mamba3States<float>* dfin, const float* phi, const bf16* y,
                          const bf16* states, const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt,
                          const float* dt, const float* trap, const float* theta, const float* q_bias,
                          const float* k_bias, const float* D, const bf16* z, const Mamba3States<float>* init,
                          void* scratch, const Mamba3Dims& d, cudaStream_t stream) {
    check_dims(d, "mamba3_scan_backward");
    const bool has_init = init && init->angle, has_dinit = dinit && dinit->angle;
    if (has_init != has_dinit) fatal("mamba3_scan_backward: dinit must be given iff init is");
    const size_t BTH = (size_t)d.B * d.T * d.H;
    char* p = (char*)scratch;
    bf16* dq_h = (bf16*)p; p += BTH * NN * sizeof(bf16);
    bf16* dk_h = (bf16*)p; p += BTH * NN * sizeof(bf16);
    bf16* dth_h = (bf16*)p; p += BTH * d.S * sizeof(bf16);
    float* bq_part = (float*)p; p += (size_t)d.B * d.H * NN * sizeof(float);
    float* bk_part = (float*)p; p += (size_t)d.B * d.H * NN * sizeof(float);
    float* dD_part = (float*)p;
    const size_t smem = bwd_smem_bytes(d.S);
    const int si = d.S / 16;
    auto kernel = si == 0 ? mamba3_scan_bwd_kernel<8> : si == 1 ? mamba3_scan_bwd_kernel<16> : mamba3_scan_bwd_kernel<32>;
    static bool attr[3] = {};
    if (!attr[si]) {
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr[si] = true;
    }
    kernel<<<dim3(d.H, d.B), NT, smem, stream>>>(
        dq_h, dk_h, dth_h, bq_part, bk_part, dD_part, dv, dadt, ddt, dtrap, dz, states_or_null(dinit), dout,
        states_or_null(dfin), phi, y, states, q_raw, k_raw, v, adt, dt, trap, theta, q_bias, k_bias, D, z,
        states_or_null(init), d.T, d.H, d.G);
    cudaCheckLaunch();
    const int64_t BT = (int64_t)d.B * d.T, total = BT * (2 * d.G * NN / 8 + d.S / 8);
    mamba3_scan_head_sum_kernel<<<(unsigned)((total + 255) / 256), 256, 0, stream>>>(dq_raw, dk_raw, dtheta, dq_h, dk_h,
                                                                                      dth_h, BT, d.H, d.G, d.S);
    cudaCheckLaunch();
    mamba3_scan_param_sum_kernel<<<(d.H * NN + 255) / 256, 256, 0, stream>>>(dq_bias, dk_bias, dD, bq_part, bk_part,
                                                                             dD_part, d.B, d.H);
    cudaCheckLaunch();
}
