// Mamba-3 SISO chunked scan, CUDA forward and backward (see model/mamba3_scan.cuh for the contract,
// spec/mamba3.md §3.4 and §5 for the math, model/mamba3.cpp for the CPU twin).
//
// Work split: one CTA of 4 warps per (b, h) walks the chunks (forward: in order, backward: in
// reverse), so the state H (P x N) and its gradient dH stay in registers in fp32: warp w owns the
// 16 rows p in [16w, 16w+16) of H, and the 16 rows (positions) [16w, 16w+16) of every L x * product.
// All 64 x 64 x 64 products are mma.sync m16n8k16 with bf16 operands from padded shared tiles.
// Per-position scalars (cumsums, exp weights, gates) are fp32 in shared memory; phi is fp32.
// The backward writes per-head dq/dk/dtheta (GQA needs a sum over the heads of a group) to scratch,
// then a second kernel sums them in fixed head order: deterministic, no atomics.
#include "model/mamba3_scan.cuh"
#include <cstdint>

namespace {
constexpr int L = 64, NN = 64, PP = 64, SMAX = 32, LD = 72;  // LD: tile row pitch (bf16), 144 B
constexpr int NT = 128;                                       // threads per CTA (4 warps)
constexpr float kPi = 3.14159265358979323846f, kTwoPi = 6.28318530717958647692f;
typedef __nv_bfloat16 bf16;
typedef bf16 Tile[L][LD];

// The kernels are bound by the latency of one warp per scheduler (see notes/scan.md), so the hot
// elementwise math uses the SFU forms: __expf (ex2.approx, ~2 ulp) and __sincosf on angles reduced
// to [-pi, pi) (absolute error ~5e-7), well under the bf16 rounding of the MMA operands.
__device__ __forceinline__ float sigmoidf_(float x) { return 1.f / (1.f + __expf(-x)); }
__device__ __forceinline__ void sincos_angle(float phi, float* sn, float* cs) {
    __sincosf(phi > kPi ? phi - kTwoPi : phi, sn, cs);
}
__device__ __forceinline__ float reduce_2pi(float a) { return a - kTwoPi * floorf(a / kTwoPi); }
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
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

// acc (16 x 64, rows r0..r0+15 of the warp) += A (rows r0.., k in [k0,k1)) * B (k x 64).
// AT: A is stored transposed ([k][m]); BT: B is stored [k][n] (else [n][k], the mma "col" layout).
// Accumulator element e of n-tile j sits at row r0 + lane/4 + 8*(e>=2), col 8j + 2*(lane%4) + (e&1).
template <bool AT, bool BT>
__device__ __forceinline__ void warp_gemm(float acc[8][4], const Tile& A, const Tile& B, int r0, int k0, int k1) {
    const int l = threadIdx.x & 31;
    for (int kk = k0; kk < k1; kk += 16) {
        uint32_t a[4];
        if (!AT) ldsm4(a, &A[r0 + (l & 15)][kk + (l >> 4) * 8]);
        else ldsm4t(a, &A[kk + (l & 7) + ((l >> 4) << 3)][r0 + ((l >> 3) & 1) * 8]);
#pragma unroll
        for (int nn = 0; nn < 4; nn++) {
            uint32_t b[4];
            if (!BT) ldsm4(b, &B[nn * 16 + (l & 7) + ((l >> 4) << 3)][kk + ((l >> 3) & 1) * 8]);
            else ldsm4t(b, &B[kk + (l & 7) + (((l >> 3) & 1) << 3)][nn * 16 + (l >> 4) * 8]);
            mma16816(acc[2 * nn], a, b[0], b[1]);
            mma16816(acc[2 * nn + 1], a, b[2], b[3]);
        }
    }
}
// acc += Areg (16 x 16*nk, the accumulator layout of a previous product, rounded to bf16) * B ([k][n]).
__device__ __forceinline__ void warp_gemm_regA(float acc[8][4], const float Ar[8][4], const Tile& B, int nk) {
    const int l = threadIdx.x & 31;
#pragma unroll
    for (int q = 0; q < 4; q++) {
        if (q >= nk) break;
        uint32_t a[4] = {pack_bf16(Ar[2 * q][0], Ar[2 * q][1]), pack_bf16(Ar[2 * q][2], Ar[2 * q][3]),
                         pack_bf16(Ar[2 * q + 1][0], Ar[2 * q + 1][1]), pack_bf16(Ar[2 * q + 1][2], Ar[2 * q + 1][3])};
        const int kk = q * 16;
#pragma unroll
        for (int nn = 0; nn < 4; nn++) {
            uint32_t b[4];
            ldsm4t(b, &B[kk + (l & 7) + (((l >> 3) & 1) << 3)][nn * 16 + (l >> 4) * 8]);
            mma16816(acc[2 * nn], a, b[0], b[1]);
            mma16816(acc[2 * nn + 1], a, b[2], b[3]);
        }
    }
}
__device__ __forceinline__ void zero_acc(float acc[8][4]) {
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = 0.f;
}
__device__ __forceinline__ int acc_row(int r0, int e) { return r0 + ((threadIdx.x & 31) >> 2) + ((e >> 1) << 3); }
__device__ __forceinline__ int acc_col(int j, int e) { return 8 * j + 2 * (threadIdx.x & 3) + (e & 1); }

// Global -> shared copies that do not wait (cp.async, 16 B each, zero-filled past the end): a chunk
// issues all of its tile loads at once, then waits once (cp_async_wait_all + __syncthreads).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    const uint32_t sa = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// 64 rows x 64 bf16 (row stride `ld` elements) into a tile; rows >= nrows are zero.
__device__ __forceinline__ void load_tile(Tile& dst, const bf16* src, int64_t ld, int nrows) {
#pragma unroll
    for (int k = threadIdx.x; k < L * 8; k += NT) {
        const int r = k >> 3, c8 = (k & 7) * 8;
        cp_async16(&dst[r][c8], src + (r < nrows ? r * ld + c8 : 0), r < nrows);
    }
}
// n16 16-byte pieces of contiguous floats, the first nvalid16 real, the rest zero.
__device__ __forceinline__ void load_floats(float* dst, const float* src, int n16, int nvalid16) {
    for (int k = threadIdx.x; k < n16; k += NT) cp_async16(dst + 4 * k, src + (k < nvalid16 ? 4 * k : 0), k < nvalid16);
}

// Per-chunk scalars shared by both directions (threads 0..63, one position each; padded rows get
// adt = dt = 0, so gamma = scale = 0 and they add nothing).
struct ChunkScalars {
    float acs[L], eacs[L], erev[L], lam[L], gam[L], scale[L], dtv[L];
    float wsum[2];
};
__device__ void chunk_scalars(ChunkScalars& s, const float* adt, const float* dt, const float* trap,
                              int64_t bh, int T, int t0) {
    const int tid = threadIdx.x, lane = tid & 31;
    float x = 0.f;
    if (tid < L) {
        const int t = t0 + tid;
        float a = 0.f, dtt = 0.f, lam = 0.5f, sg = 0.f;
        if (t < T) { a = adt[bh * T + t]; dtt = dt[bh * T + t]; lam = sigmoidf_(trap[bh * T + t]); }
        // look-ahead (§3.1): sigma~_t = dt_{t+1} (1 - lam_{t+1}), zero at the sequence end
        if (t + 1 < T) sg = dt[bh * T + t + 1] * (1.f - sigmoidf_(trap[bh * T + t + 1]));
        s.lam[tid] = lam; s.dtv[tid] = dtt; s.gam[tid] = dtt * lam; s.scale[tid] = dtt * lam + sg;
        x = a;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            float y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (lane == 31) s.wsum[tid >> 5] = x;
    }
    __syncthreads();
    if (tid < L) {
        if (tid >= 32) x += s.wsum[0];
        s.acs[tid] = x;
        s.eacs[tid] = __expf(x);
    }
    __syncthreads();
    if (tid < L) s.erev[tid] = __expf(s.acs[L - 1] - s.acs[tid]);
}

// ================================================================ forward
struct FwdSmem {
    Tile Q, K, Kd, Kl, V, Hc, Y, Z;  // q rot; k~ = s k rot; exp(A_c - Acs) k~ as bf16 hi + lo; v; H entering
                                     // (bf16); y; z -> o
    Tile Qr, Kr;                     // q_raw, k_raw
    float theta[L * SMAX];           // this chunk's theta rows (B,T,S), contiguous
    float phi[L][SMAX + 1];
    float carry[SMAX];
    float qkd[L];
    float qb[NN], kb[NN];
    ChunkScalars cs;
};

__global__ void __launch_bounds__(NT) mamba3_scan_fwd_kernel(
    bf16* out, Mamba3States<float> fin, float* phi_g, bf16* y_g, float* states,
    const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt, const float* dt,
    const float* trap, const float* theta, const float* q_bias, const float* k_bias, const float* Dp,
    const bf16* z, Mamba3States<float> init, int T, int H, int G, int S) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    FwdSmem& s = *reinterpret_cast<FwdSmem*>(smem_raw);
    const int h = blockIdx.x, b = blockIdx.y, g = h / (H / G);
    const int64_t bh = (int64_t)b * H + h;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, r0 = warp * 16;
    const int NC = (T + L - 1) / L;
    const float Dh = Dp[h];
    if (tid < NN) { s.qb[tid] = q_bias[h * NN + tid]; s.kb[tid] = k_bias[h * NN + tid]; }
    if (tid < SMAX) s.carry[tid] = (init.angle && tid < S) ? init.angle[bh * S + tid] : 0.f;

    // H_init' = H_in + dt_0 (1 - lam_0) v_{-1} k_{-1}^T (no alpha_0: exp(Acs) applies it), in registers
    float accH[8][4];
    zero_acc(accH);
    if (init.ssm) {
        const float c0 = dt[bh * T] * (1.f - sigmoidf_(trap[bh * T]));
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int p = acc_row(r0, e), n = acc_col(j, e);
                accH[j][e] = init.ssm[(bh * PP + p) * NN + n] + c0 * init.v[bh * PP + p] * init.k[bh * NN + n];
            }
    }
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e += 2)
            *reinterpret_cast<uint32_t*>(&s.Hc[acc_row(r0, e)][acc_col(j, e)]) = pack_bf16(accH[j][e], accH[j][e + 1]);

    for (int c = 0; c < NC; c++) {
        const int t0 = c * L, nrows = min(L, T - t0);
        __syncthreads();  // previous chunk's readers of every tile are done
        const int64_t ldv = (int64_t)H * PP, ldq = (int64_t)G * NN;
        load_tile(s.V, v + ((int64_t)b * T + t0) * ldv + h * PP, ldv, nrows);
        load_tile(s.Z, z + ((int64_t)b * T + t0) * ldv + h * PP, ldv, nrows);
        load_tile(s.Qr, q_raw + ((int64_t)b * T + t0) * ldq + g * NN, ldq, nrows);
        load_tile(s.Kr, k_raw + ((int64_t)b * T + t0) * ldq + g * NN, ldq, nrows);
        load_floats(s.theta, theta + ((int64_t)b * T + t0) * S, L * S / 4, nrows * S / 4);
        chunk_scalars(s.cs, adt, dt, trap, bh, T, t0);
        cp_async_wait_all();
        __syncthreads();
        // ---- angles (§3.6): phi = carry + cumsum(pi tanh(theta) dt), mod 2pi; carry mod 2pi
        for (int i = warp; i < S; i += 4) {
            float w0 = 0.f, w1 = 0.f;
            if (lane < nrows) w0 = kPi * tanhf(s.theta[lane * S + i]) * s.cs.dtv[lane];
            if (lane + 32 < nrows) w1 = kPi * tanhf(s.theta[(lane + 32) * S + i]) * s.cs.dtv[lane + 32];
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                float y0 = __shfl_up_sync(0xffffffffu, w0, o), y1 = __shfl_up_sync(0xffffffffu, w1, o);
                if (lane >= o) { w0 += y0; w1 += y1; }
            }
            w1 += __shfl_sync(0xffffffffu, w0, 31);
            const float tot = __shfl_sync(0xffffffffu, w1, 31), carry = s.carry[i];
            const float p0 = reduce_2pi(carry + w0), p1 = reduce_2pi(carry + w1);
            s.phi[lane][i] = p0; s.phi[lane + 32][i] = p1;
            if (lane < nrows) phi_g[(bh * T + t0 + lane) * S + i] = p0;
            if (lane + 32 < nrows) phi_g[(bh * T + t0 + lane + 32) * S + i] = p1;
            __syncwarp();
            if (lane == 0) s.carry[i] = reduce_2pi(carry + tot);
        }
        __syncthreads();
        // ---- bias, rotation, scale (§3.1): thread = (row, half of N)
        {
            const int r = tid >> 1, hf = tid & 1, t = t0 + r;
            const bool ok = r < nrows;
            float qv[32], kv[32], dot = 0.f;
#pragma unroll
            for (int k = 0; k < 32; k++) {
                qv[k] = ok ? __bfloat162float(s.Qr[r][32 * hf + k]) + s.qb[32 * hf + k] : 0.f;
                kv[k] = ok ? __bfloat162float(s.Kr[r][32 * hf + k]) + s.kb[32 * hf + k] : 0.f;
                dot += qv[k] * kv[k];
            }
            dot += __shfl_xor_sync(0xffffffffu, dot, 1);
            if (hf == 0) s.qkd[r] = s.cs.gam[r] * dot;  // diagonal uses gamma, not scale
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int i = 16 * hf + j;
                if (i < S) {
                    float sn, cs;
                    sincos_angle(s.phi[r][i], &sn, &cs);
                    const float q0 = qv[2 * j], q1 = qv[2 * j + 1], k0 = kv[2 * j], k1 = kv[2 * j + 1];
                    qv[2 * j] = q0 * cs - q1 * sn; qv[2 * j + 1] = q0 * sn + q1 * cs;
                    kv[2 * j] = k0 * cs - k1 * sn; kv[2 * j + 1] = k0 * sn + k1 * cs;
                }
            }
            if (fin.k && t == T - 1)
#pragma unroll
                for (int k = 0; k < 32; k++) fin.k[bh * NN + 32 * hf + k] = kv[k];
            const float sc = s.cs.scale[r], kd = sc * s.cs.erev[r];
#pragma unroll
            for (int k = 0; k < 32; k += 2) {
                *reinterpret_cast<uint32_t*>(&s.Q[r][32 * hf + k]) = pack_bf16(qv[k], qv[k + 1]);
                *reinterpret_cast<uint32_t*>(&s.K[r][32 * hf + k]) = pack_bf16(sc * kv[k], sc * kv[k + 1]);
                // the state update takes k~ as hi + lo bf16 parts: the state stays fp32-accurate
                const float a0 = kd * kv[k], a1 = kd * kv[k + 1];
                const __nv_bfloat162 hi = __floats2bfloat162_rn(a0, a1);
                *reinterpret_cast<__nv_bfloat162*>(&s.Kd[r][32 * hf + k]) = hi;
                *reinterpret_cast<uint32_t*>(&s.Kl[r][32 * hf + k]) =
                    pack_bf16(a0 - __bfloat162float(hi.x), a1 - __bfloat162float(hi.y));
            }
        }
        if (fin.v && c == NC - 1 && tid < PP)
            fin.v[bh * PP + tid] = __bfloat162float(v[((int64_t)b * T + T - 1) * ldv + h * PP + tid]);
        __syncthreads();
        // ---- y_i = exp(Acs_i) Hc q_i + sum_{j<i} (q_i.k~_j) exp(Acs_i - Acs_j) v_j + (D + d_i) v_i
        {
            float accS[8][4], accY[8][4];
            zero_acc(accS);
            warp_gemm<false, false>(accS, s.Q, s.K, r0, 0, NN);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = acc_row(r0, e), jj = acc_col(j, e);
                    accS[j][e] = i > jj ? accS[j][e] * __expf(s.cs.acs[i] - s.cs.acs[jj]) : 0.f;
                }
            zero_acc(accY);
            warp_gemm<false, false>(accY, s.Q, s.Hc, r0, 0, NN);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) accY[j][e] *= s.cs.eacs[acc_row(r0, e)];
            warp_gemm_regA(accY, accS, s.V, warp + 1);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e), p = acc_col(j, e);
                    const float dg = Dh + s.qkd[i];
                    const float y0 = accY[j][e] + dg * __bfloat162float(s.V[i][p]);
                    const float y1 = accY[j][e + 1] + dg * __bfloat162float(s.V[i][p + 1]);
                    const float z0 = __bfloat162float(s.Z[i][p]), z1 = __bfloat162float(s.Z[i][p + 1]);
                    *reinterpret_cast<uint32_t*>(&s.Y[i][p]) = pack_bf16(y0, y1);
                    *reinterpret_cast<uint32_t*>(&s.Z[i][p]) =
                        pack_bf16(y0 * z0 * sigmoidf_(z0), y1 * z1 * sigmoidf_(z1));
                }
        }
        __syncthreads();
        // ---- write y, out (coalesced); save the state entering this chunk; update the state
        for (int k = tid; k < L * 8; k += NT) {
            const int r = k >> 3, c8 = (k & 7) * 8;
            if (r < nrows) {
                const int64_t o = ((int64_t)b * T + t0 + r) * ldv + h * PP + c8;
                *reinterpret_cast<uint4*>(y_g + o) = *reinterpret_cast<const uint4*>(&s.Y[r][c8]);
                *reinterpret_cast<uint4*>(out + o) = *reinterpret_cast<const uint4*>(&s.Z[r][c8]);
            }
        }
        float* st = states + (bh * NC + c) * PP * NN;
        const float eAc = expf(s.cs.acs[L - 1]);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e += 2) {
                *reinterpret_cast<float2*>(&st[acc_row(r0, e) * NN + acc_col(j, e)]) = make_float2(accH[j][e], accH[j][e + 1]);
                accH[j][e] *= eAc; accH[j][e + 1] *= eAc;
            }
        // Hc <- exp(A_c) Hc + sum_j v_j (exp(A_c - Acs_j) k~_j)^T
        warp_gemm<true, true>(accH, s.V, s.Kd, r0, 0, L);
        warp_gemm<true, true>(accH, s.V, s.Kl, r0, 0, L);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e += 2)
                *reinterpret_cast<uint32_t*>(&s.Hc[acc_row(r0, e)][acc_col(j, e)]) = pack_bf16(accH[j][e], accH[j][e + 1]);
    }
    __syncthreads();
    if (fin.ssm) {
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) fin.ssm[(bh * PP + acc_row(r0, e)) * NN + acc_col(j, e)] = accH[j][e];
    }
    if (fin.angle && tid < S) fin.angle[bh * S + tid] = s.carry[tid];
}

// ================================================================ backward
struct BwdSmem {
    Tile Q, K, V, dY, Hc, dH, P1, P2, Qr, Kr;  // q rot; k~; v; dy; H entering; dH leaving; M.G' (later
                                               // exp(Acs) q); M.SK; q_raw; k_raw
    float colpart[4][L];                       // per-warp column sums of G (dADT part 1)
    float urow[L], u2[L], wv[L];               // dADT pieces per position
    float qkdot[L], ds[L], dd[L];              // qbar.kbar, d scale, dy.v per position
    float mpart[4], carry[SMAX], bpart_q[4][NN], bpart_k[4][NN], dDpart[2];
    float pend[2][4];                          // row 0 of a chunk waits for ds of the previous position
    float qb[NN], kb[NN];
    ChunkScalars cs;
    alignas(16) float tabs[4];                 // phi (L*S), theta (L*S), dphi (L x (S+1)), sized at launch
};
size_t bwd_smem_bytes(int S) { return sizeof(BwdSmem) + (size_t)(3 * L * S + L) * sizeof(float); }

__global__ void __launch_bounds__(NT, 2) mamba3_scan_bwd_kernel(
    bf16* dq_h, bf16* dk_h, float* dth_h,                    // scratch: (B,T,H,N) (B,T,H,N) (B,T,H,S)
    float* bq_part, float* bk_part, float* dD_part,          // scratch: (B,H,N) (B,H,N) (B,H)
    bf16* dv, float* dadt, float* ddt, float* dtrap, bf16* dz, Mamba3States<float> dinit,
    const bf16* dout, Mamba3States<float> dfin, const float* phi_g, const bf16* y_g, const float* states,
    const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt, const float* dt,
    const float* trap, const float* theta, const float* q_bias, const float* k_bias, const float* Dp,
    const bf16* z, Mamba3States<float> init, int T, int H, int G, int S) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    BwdSmem& s = *reinterpret_cast<BwdSmem*>(smem_raw);
    const int SP = S + 1;
    float* phi = s.tabs;                // [L][S]
    float* th_s = s.tabs + L * S;       // [L][S]
    float* dphi = s.tabs + 2 * L * S;   // [L][SP]
    const int h = blockIdx.x, b = blockIdx.y, g = h / (H / G);
    const int64_t bh = (int64_t)b * H + h;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, r0 = warp * 16, t4 = lane & 3;
    const int NC = (T + L - 1) / L;
    const float Dh = Dp[h];
    const int64_t ldv = (int64_t)H * PP, ldq = (int64_t)G * NN;
    if (tid < NN) { s.qb[tid] = q_bias[h * NN + tid]; s.kb[tid] = k_bias[h * NN + tid]; }
    if (tid < SMAX) s.carry[tid] = (dfin.angle && tid < S) ? dfin.angle[bh * S + tid] : 0.f;

    float dHacc[8][4];  // d(state leaving the chunk), rows p of this warp
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dHacc[j][e] = dfin.ssm ? dfin.ssm[(bh * PP + acc_row(r0, e)) * NN + acc_col(j, e)] : 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e += 2)
            *reinterpret_cast<uint32_t*>(&s.dH[acc_row(r0, e)][acc_col(j, e)]) = pack_bf16(dHacc[j][e], dHacc[j][e + 1]);
    float bq_acc[8][2], bk_acc[8][2], dD_acc = 0.f;  // bias partials for this thread's column pairs
#pragma unroll
    for (int j = 0; j < 8; j++) bq_acc[j][0] = bq_acc[j][1] = bk_acc[j][0] = bk_acc[j][1] = 0.f;

    for (int c = NC - 1; c >= 0; c--) {
        const int t0 = c * L, nrows = min(L, T - t0);
        __syncthreads();
        // saved phi, theta, v, q_raw, k_raw (async), the state entering the chunk (fp32 -> bf16 tile), dzdo (§5.2)
        load_floats(phi, phi_g + (bh * T + t0) * S, L * S / 4, nrows * S / 4);
        load_floats(th_s, theta + ((int64_t)b * T + t0) * S, L * S / 4, nrows * S / 4);
        load_tile(s.V, v + ((int64_t)b * T + t0) * ldv + h * PP, ldv, nrows);
        load_tile(s.Qr, q_raw + ((int64_t)b * T + t0) * ldq + g * NN, ldq, nrows);
        load_tile(s.Kr, k_raw + ((int64_t)b * T + t0) * ldq + g * NN, ldq, nrows);
        chunk_scalars(s.cs, adt, dt, trap, bh, T, t0);
        for (int k = tid; k < L * SP; k += NT) dphi[k] = 0.f;
        const float* Hg = states + (bh * NC + c) * PP * NN;
#pragma unroll
        for (int k = tid; k < PP * NN / 4; k += NT) {
            const int p = (4 * k) / NN, n = (4 * k) % NN;
            const float4 hv = *reinterpret_cast<const float4*>(Hg + 4 * k);
            *reinterpret_cast<uint32_t*>(&s.Hc[p][n]) = pack_bf16(hv.x, hv.y);
            *reinterpret_cast<uint32_t*>(&s.Hc[p][n + 2]) = pack_bf16(hv.z, hv.w);
        }
#pragma unroll
        for (int k = tid; k < L * 8; k += NT) {
            const int r = k >> 3, c8 = (k & 7) * 8;
            uint4 dyv = make_uint4(0, 0, 0, 0);
            if (r < nrows) {
                const int64_t o = ((int64_t)b * T + t0 + r) * ldv + h * PP + c8;
                const uint4 go4 = *reinterpret_cast<const uint4*>(dout + o), z4 = *reinterpret_cast<const uint4*>(z + o),
                            y4 = *reinterpret_cast<const uint4*>(y_g + o);
                const bf16 *go = reinterpret_cast<const bf16*>(&go4), *zz = reinterpret_cast<const bf16*>(&z4),
                           *yy = reinterpret_cast<const bf16*>(&y4);
                uint4 dz4;
                bf16* dzz = reinterpret_cast<bf16*>(&dz4);
                bf16* dyy = reinterpret_cast<bf16*>(&dyv);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const float zf = __bfloat162float(zz[j]), sg = sigmoidf_(zf), gof = __bfloat162float(go[j]);
                    dyy[j] = __float2bfloat16(gof * zf * sg);
                    dzz[j] = __float2bfloat16(gof * __bfloat162float(yy[j]) * sg * (1.f + zf * (1.f - sg)));
                }
                *reinterpret_cast<uint4*>(dz + o) = dz4;
            }
            *reinterpret_cast<uint4*>(&s.dY[r][c8]) = dyv;
        }
        cp_async_wait_all();
        __syncthreads();
        // ---- recompute q, k~; qbar.kbar and dd = dy.v per position. Thread = (row, half of N).
        {
            const int r = tid >> 1, hf = tid & 1;
            const bool ok = r < nrows;
            float qv[32], kv[32], dot = 0.f, ddp = 0.f;
#pragma unroll
            for (int k = 0; k < 32; k++) {
                qv[k] = ok ? __bfloat162float(s.Qr[r][32 * hf + k]) + s.qb[32 * hf + k] : 0.f;
                kv[k] = ok ? __bfloat162float(s.Kr[r][32 * hf + k]) + s.kb[32 * hf + k] : 0.f;
                dot += qv[k] * kv[k];
                ddp += __bfloat162float(s.dY[r][32 * hf + k]) * __bfloat162float(s.V[r][32 * hf + k]);
            }
            dot += __shfl_xor_sync(0xffffffffu, dot, 1);
            ddp += __shfl_xor_sync(0xffffffffu, ddp, 1);
            if (hf == 0) { s.qkdot[r] = dot; s.dd[r] = ddp; }
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int i = 16 * hf + j;
                if (i < S) {
                    float sn, cs;
                    sincos_angle(phi[r * S + i], &sn, &cs);
                    const float q0 = qv[2 * j], q1 = qv[2 * j + 1], k0 = kv[2 * j], k1 = kv[2 * j + 1];
                    qv[2 * j] = q0 * cs - q1 * sn; qv[2 * j + 1] = q0 * sn + q1 * cs;
                    kv[2 * j] = k0 * cs - k1 * sn; kv[2 * j + 1] = k0 * sn + k1 * cs;
                }
            }
            const float sc = s.cs.scale[r];
#pragma unroll
            for (int k = 0; k < 32; k += 2) {
                *reinterpret_cast<uint32_t*>(&s.Q[r][32 * hf + k]) = pack_bf16(qv[k], qv[k + 1]);
                *reinterpret_cast<uint32_t*>(&s.K[r][32 * hf + k]) = pack_bf16(sc * kv[k], sc * kv[k + 1]);
            }
        }
        __syncthreads();
        // ---- intra-chunk score matrices: SK = Q K~^T, G' = dY V^T, M = exp(Acs_i - Acs_j)[i>j]
        {
            float accA[8][4], accB[8][4];
            zero_acc(accA); zero_acc(accB);
            warp_gemm<false, false>(accA, s.Q, s.K, r0, 0, NN);
            warp_gemm<false, false>(accB, s.dY, s.V, r0, 0, PP);
            float rs[2] = {0.f, 0.f}, csum[8][2];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                csum[j][0] = csum[j][1] = 0.f;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = acc_row(r0, e), jj = acc_col(j, e);
                    const float M = i > jj ? __expf(s.cs.acs[i] - s.cs.acs[jj]) : 0.f;
                    const float p1 = M * accB[j][e], p2 = M * accA[j][e], gg = p1 * accA[j][e];
                    rs[e >> 1] += gg; csum[j][e & 1] += gg;
                    accB[j][e] = p1; accA[j][e] = p2;
                }
                *reinterpret_cast<uint32_t*>(&s.P1[acc_row(r0, 0)][acc_col(j, 0)]) = pack_bf16(accB[j][0], accB[j][1]);
                *reinterpret_cast<uint32_t*>(&s.P1[acc_row(r0, 2)][acc_col(j, 2)]) = pack_bf16(accB[j][2], accB[j][3]);
                *reinterpret_cast<uint32_t*>(&s.P2[acc_row(r0, 0)][acc_col(j, 0)]) = pack_bf16(accA[j][0], accA[j][1]);
                *reinterpret_cast<uint32_t*>(&s.P2[acc_row(r0, 2)][acc_col(j, 2)]) = pack_bf16(accA[j][2], accA[j][3]);
            }
            // row sums over the 4 lanes of a row; column sums over the 8 row-groups of the warp
#pragma unroll
            for (int q = 0; q < 2; q++) {
                rs[q] += __shfl_xor_sync(0xffffffffu, rs[q], 1);
                rs[q] += __shfl_xor_sync(0xffffffffu, rs[q], 2);
            }
            if (t4 == 0) { s.urow[acc_row(r0, 0)] = rs[0]; s.urow[acc_row(r0, 2)] = rs[1]; }
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    float x = csum[j][q];
                    x += __shfl_xor_sync(0xffffffffu, x, 4);
                    x += __shfl_xor_sync(0xffffffffu, x, 8);
                    x += __shfl_xor_sync(0xffffffffu, x, 16);
                    if (lane < 4) s.colpart[warp][acc_col(j, q)] = x;
                }
            // dADT part 3: exp(A_c) sum(Hc . dH) (Hc from the bf16 tile: a sum of 4096 products)
            float m = 0.f;
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) m += __bfloat162float(s.Hc[acc_row(r0, e)][acc_col(j, e)]) * dHacc[j][e];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) m += __shfl_xor_sync(0xffffffffu, m, o);
            if (lane == 0) s.mpart[warp] = m;
        }
        __syncthreads();
        {
            float accQ[8][4], accK[8][4];
            // dq_i = exp(Acs_i) Hc^T dy_i + sum_{j<i} P1_ij k~_j;  u2_i = q_i . (exp(Acs_i) Hc^T dy_i)
            zero_acc(accQ);
            warp_gemm<false, true>(accQ, s.dY, s.Hc, r0, 0, PP);
            float u2[2] = {0.f, 0.f};
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = acc_row(r0, e);
                    accQ[j][e] *= s.cs.eacs[i];
                    u2[e >> 1] += accQ[j][e] * __bfloat162float(s.Q[i][acc_col(j, e)]);
                }
#pragma unroll
            for (int q = 0; q < 2; q++) {
                u2[q] += __shfl_xor_sync(0xffffffffu, u2[q], 1);
                u2[q] += __shfl_xor_sync(0xffffffffu, u2[q], 2);
            }
            if (t4 == 0) { s.u2[acc_row(r0, 0)] = u2[0]; s.u2[acc_row(r0, 2)] = u2[1]; }
            warp_gemm<false, true>(accQ, s.P1, s.K, r0, 0, r0 + 16);
            // dk~_j = exp(A_c - Acs_j) dH^T v_j + sum_{i>j} P1_ij q_i
            zero_acc(accK);
            warp_gemm<false, true>(accK, s.V, s.dH, r0, 0, PP);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) accK[j][e] *= s.cs.erev[acc_row(r0, e)];
            warp_gemm<true, true>(accK, s.P1, s.Q, r0, r0, L);
            // ---- per position and rotation pair (§5.4), in the accumulator layout: element pair
            // (row i, cols 2m, 2m+1) with m = 4j + lane%4 is one rotation pair of one position.
            float dsr[2] = {0.f, 0.f};
#pragma unroll
            for (int e = 0; e < 4; e += 2) {
                const int i = acc_row(r0, e), t = t0 + i;
                const bool ok = i < nrows;
                const float sc = s.cs.scale[i], ga = s.cs.gam[i], ddg = s.dd[i] * ga;
                const bool last = dfin.k && t == T - 1;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const int m = 4 * j + t4, n0 = 2 * m;
                    const float qb0 = ok ? __bfloat162float(s.Qr[i][n0]) + s.qb[n0] : 0.f;
                    const float qb1 = ok ? __bfloat162float(s.Qr[i][n0 + 1]) + s.qb[n0 + 1] : 0.f;
                    const float kb0 = ok ? __bfloat162float(s.Kr[i][n0]) + s.kb[n0] : 0.f;
                    const float kb1 = ok ? __bfloat162float(s.Kr[i][n0 + 1]) + s.kb[n0 + 1] : 0.f;
                    float sn = 0.f, cs = 1.f;
                    if (m < S) sincos_angle(phi[i * S + m], &sn, &cs);
                    const float dq0 = accQ[j][e], dq1 = accQ[j][e + 1], dk0 = accK[j][e], dk1 = accK[j][e + 1];
                    dsr[e >> 1] += dk0 * (kb0 * cs - kb1 * sn) + dk1 * (kb0 * sn + kb1 * cs);
                    float gk0 = sc * dk0, gk1 = sc * dk1;
                    if (last) { gk0 += dfin.k[bh * NN + n0]; gk1 += dfin.k[bh * NN + n0 + 1]; }
                    const float dqb0 = dq0 * cs + dq1 * sn + ddg * kb0, dqb1 = -dq0 * sn + dq1 * cs + ddg * kb1;
                    const float dkb0 = gk0 * cs + gk1 * sn + ddg * qb0, dkb1 = -gk0 * sn + gk1 * cs + ddg * qb1;
                    // d phi = dq . J q + dk~ . J k~ (J = d/dphi of the rotation), taken with the very bf16
                    // q and k~ the products used: then the intra-chunk pair terms, which cancel in the
                    // reverse cumsum of d phi (q.k~ is rotation invariant), cancel in our sums too.
                    if (m < S) {
                        const float q0 = __bfloat162float(s.Q[i][n0]), q1 = __bfloat162float(s.Q[i][n0 + 1]);
                        const float k0 = __bfloat162float(s.K[i][n0]), k1 = __bfloat162float(s.K[i][n0 + 1]);
                        float dp = -dq0 * q1 + dq1 * q0 - dk0 * k1 + dk1 * k0;
                        if (last) {
                            const float fk0 = dfin.k[bh * NN + n0], fk1 = dfin.k[bh * NN + n0 + 1];
                            dp += fk0 * (-kb0 * sn - kb1 * cs) + fk1 * (kb0 * cs - kb1 * sn);
                        }
                        dphi[i * SP + m] = dp;
                    }
                    if (ok) {
                        const int64_t ho = (((int64_t)b * T + t) * H + h) * NN + n0;
                        *reinterpret_cast<uint32_t*>(dq_h + ho) = pack_bf16(dqb0, dqb1);
                        *reinterpret_cast<uint32_t*>(dk_h + ho) = pack_bf16(dkb0, dkb1);
                        bq_acc[j][0] += dqb0; bq_acc[j][1] += dqb1; bk_acc[j][0] += dkb0; bk_acc[j][1] += dkb1;
                    }
                }
            }
#pragma unroll
            for (int q = 0; q < 2; q++) {
                dsr[q] += __shfl_xor_sync(0xffffffffu, dsr[q], 1);
                dsr[q] += __shfl_xor_sync(0xffffffffu, dsr[q], 2);
            }
            if (t4 == 0) { s.ds[acc_row(r0, 0)] = dsr[0]; s.ds[acc_row(r0, 2)] = dsr[1]; }
        }
        {
            // dv_j = exp(A_c - Acs_j) dH k~_j + sum_{i>j} P2_ij dy_i + (D + d_j) dy_j;  w_j = v_j . (first term)
            float acc[8][4];
            zero_acc(acc);
            warp_gemm<false, false>(acc, s.K, s.dH, r0, 0, NN);
            float wv[2] = {0.f, 0.f};
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = acc_row(r0, e);
                    acc[j][e] *= s.cs.erev[i];
                    wv[e >> 1] += acc[j][e] * __bfloat162float(s.V[i][acc_col(j, e)]);
                }
#pragma unroll
            for (int q = 0; q < 2; q++) {
                wv[q] += __shfl_xor_sync(0xffffffffu, wv[q], 1);
                wv[q] += __shfl_xor_sync(0xffffffffu, wv[q], 2);
            }
            if (t4 == 0) { s.wv[acc_row(r0, 0)] = wv[0]; s.wv[acc_row(r0, 2)] = wv[1]; }
            warp_gemm<true, true>(acc, s.P2, s.dY, r0, r0, L);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2) {
                    const int i = acc_row(r0, e), p = acc_col(j, e);
                    if (i < nrows) {
                        const float dg = Dh + s.cs.gam[i] * s.qkdot[i];
                        float v0 = acc[j][e] + dg * __bfloat162float(s.dY[i][p]);
                        float v1 = acc[j][e + 1] + dg * __bfloat162float(s.dY[i][p + 1]);
                        if (dfin.v && t0 + i == T - 1) { v0 += dfin.v[bh * PP + p]; v1 += dfin.v[bh * PP + p + 1]; }
                        *reinterpret_cast<uint32_t*>(dv + ((int64_t)b * T + t0 + i) * ldv + h * PP + p) = pack_bf16(v0, v1);
                    }
                }
        }
        __syncthreads();  // every reader of the dH, P1, P2 tiles is done
        // exp(Acs_i) q_i into the P1 tile for the dH update
        for (int k = tid; k < L * NN / 2; k += NT) {
            const int r = k / (NN / 2), n = 2 * (k % (NN / 2));
            const float ea = s.cs.eacs[r];
            *reinterpret_cast<uint32_t*>(&s.P1[r][n]) =
                pack_bf16(ea * __bfloat162float(s.Q[r][n]), ea * __bfloat162float(s.Q[r][n + 1]));
        }
        __syncthreads();
        {
            // dH <- exp(A_c) dH + sum_i dy_i (exp(Acs_i) q_i)^T
            const float eAc = expf(s.cs.acs[L - 1]);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) dHacc[j][e] *= eAc;
            warp_gemm<true, true>(dHacc, s.dY, s.P1, r0, 0, L);
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e += 2)
                    *reinterpret_cast<uint32_t*>(&s.dH[acc_row(r0, e)][acc_col(j, e)]) = pack_bf16(dHacc[j][e], dHacc[j][e + 1]);
        }
        // ---- angles (§5.6): g_t = carry + sum_{r>=t} dphi_r; dtheta = g dt pi sech^2; dDT += g pi tanh
        for (int i = warp; i < S; i += 4) {
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
                const int t = t0 + lane;
                const float th = tanhf(th_s[lane * S + i]);
                dth_h[(((int64_t)b * T + t) * H + h) * S + i] = g0 * s.cs.dtv[lane] * kPi * (1.f - th * th);
                a0 = g0 * kPi * th;
            }
            if (lane + 32 < nrows) {
                const int t = t0 + lane + 32;
                const float th = tanhf(th_s[(lane + 32) * S + i]);
                dth_h[(((int64_t)b * T + t) * H + h) * S + i] = g1 * s.cs.dtv[lane + 32] * kPi * (1.f - th * th);
                a1 = g1 * kPi * th;
            }
            __syncwarp();
            dphi[lane * SP + i] = a0; dphi[(lane + 32) * SP + i] = a1;
            const float tot0 = __shfl_sync(0xffffffffu, x0, 0);
            if (lane == 0) s.carry[i] = carry + tot0 + tot1;
        }
        // ---- dADT (§5.3) scans within each half of the chunk (threads 0..63)
        if (tid < L) {
            const int r = tid;
            float su = s.urow[r] - (s.colpart[0][r] + s.colpart[1][r] + s.colpart[2][r] + s.colpart[3][r]) + s.u2[r];
            float pw = s.wv[r];
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                float a = __shfl_down_sync(0xffffffffu, su, o), bb = __shfl_up_sync(0xffffffffu, pw, o);
                if (lane + o < 32) su += a;
                if (lane >= o) pw += bb;
            }
            __syncwarp();
            s.urow[r] = su; s.u2[r] = pw;  // suffix sums of u, inclusive prefix sums of w (per half)
        }
        __syncthreads();
        // ---- dADT_t = sum_{r>=t} u_r + m + sum_{r<t} w_r; dDT, dTrap (§5.5) per position
        if (tid < L) {
            const int r = tid, t = t0 + r;
            float su = s.urow[r], pw = s.u2[r] - s.wv[r];
            if (r < 32) su += s.urow[32];
            else pw += s.u2[31];
            const float m = (s.mpart[0] + s.mpart[1] + s.mpart[2] + s.mpart[3]) * expf(s.cs.acs[L - 1]);
            const float lam = s.cs.lam[r], dtt = s.cs.dtv[r];
            float at = 0.f;
            for (int i = 0; i < S; i++) at += dphi[r * SP + i];
            const float gs = s.dd[r] * s.qkdot[r] + s.ds[r];  // d gamma + d scale
            float dD_t = gs * lam + at, dl = gs * dtt;
            if (r < nrows) {
                dD_acc += s.dd[r];
                dadt[bh * T + t] = su + m + pw;
                if (r > 0) {
                    const float dsp = s.ds[r - 1];
                    dD_t += dsp * (1.f - lam); dl -= dsp * dtt;
                    ddt[bh * T + t] = dD_t; dtrap[bh * T + t] = dl * lam * (1.f - lam);
                } else {
                    float* pd = s.pend[c & 1];
                    pd[0] = dD_t; pd[1] = dl; pd[2] = lam; pd[3] = dtt;
                }
            }
            if (r == L - 1 && c + 1 < NC) {  // the next chunk's row 0 waited for ds of this row
                const float* pd = s.pend[(c + 1) & 1];
                const float dsp = s.ds[r], l2 = pd[2];
                ddt[bh * T + t + 1] = pd[0] + dsp * (1.f - l2);
                dtrap[bh * T + t + 1] = (pd[1] - dsp * pd[3]) * l2 * (1.f - l2);
            }
        }
    }
    __syncthreads();
    // ---- initial states (§5.5): dH' = d(H_init'); c0 = dt_0 (1 - lam_0)
    float dc0 = 0.f;
    if (init.ssm) {
        const float c0 = s.pend[0][3] * (1.f - s.pend[0][2]);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int p = acc_row(r0, e), n = acc_col(j, e);
                dinit.ssm[(bh * PP + p) * NN + n] = dHacc[j][e];
                dc0 += dHacc[j][e] * init.v[bh * PP + p] * init.k[bh * NN + n];
            }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) dc0 += __shfl_xor_sync(0xffffffffu, dc0, o);
        if (lane == 0) s.mpart[warp] = dc0;
        // dv_{-1} = c0 dH' k_{-1}; dk_{-1} = c0 dH'^T v_{-1}: from the fp32 copy just written
        __syncthreads();
        if (tid < PP) {
            float a = 0.f;
            for (int n = 0; n < NN; n++) a += dinit.ssm[(bh * PP + tid) * NN + n] * init.k[bh * NN + n];
            dinit.v[bh * PP + tid] = c0 * a;
        } else if (tid < PP + NN) {
            const int n = tid - PP;
            float a = 0.f;
            for (int p = 0; p < PP; p++) a += dinit.ssm[(bh * PP + p) * NN + n] * init.v[bh * PP + p];
            dinit.k[bh * NN + n] = c0 * a;
        }
        if (tid < S) dinit.angle[bh * S + tid] = s.carry[tid];
        dc0 = s.mpart[0] + s.mpart[1] + s.mpart[2] + s.mpart[3];
    }
    if (tid == 0) {
        const float* pd = s.pend[0];
        const float l0 = pd[2];
        ddt[bh * T] = pd[0] + dc0 * (1.f - l0);
        dtrap[bh * T] = (pd[1] - dc0 * pd[3]) * l0 * (1.f - l0);
    }
    // ---- per-(b,h) partial sums of the bias and D gradients (fixed order)
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            float aq = bq_acc[j][q], ak = bk_acc[j][q];
#pragma unroll
            for (int o = 4; o < 32; o <<= 1) {
                aq += __shfl_xor_sync(0xffffffffu, aq, o);
                ak += __shfl_xor_sync(0xffffffffu, ak, o);
            }
            if (lane < 4) { s.bpart_q[warp][acc_col(j, q)] = aq; s.bpart_k[warp][acc_col(j, q)] = ak; }
        }
    if (tid < L) {
        float a = dD_acc;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
        if (lane == 0) s.dDpart[warp] = a;
    }
    __syncthreads();
    if (tid < NN) {
        bq_part[bh * NN + tid] = s.bpart_q[0][tid] + s.bpart_q[1][tid] + s.bpart_q[2][tid] + s.bpart_q[3][tid];
        bk_part[bh * NN + tid] = s.bpart_k[0][tid] + s.bpart_k[1][tid] + s.bpart_k[2][tid] + s.bpart_k[3][tid];
    }
    if (tid == 0) dD_part[bh] = s.dDpart[0] + s.dDpart[1];
}

// GQA and angle sums over heads, in head order: dq_raw[b,t,g,:] = sum_{h in g} dq_h[b,t,h,:], etc.
__global__ void mamba3_scan_head_sum_kernel(float* dq_raw, float* dk_raw, float* dtheta, const bf16* dq_h,
                                            const bf16* dk_h, const float* dth_h, int64_t BT, int H, int G, int S) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int per = G * NN + S;
    if (idx >= BT * per) return;
    const int64_t bt = idx / per;
    const int k = (int)(idx % per), HG = H / G;
    if (k < G * NN) {
        const int g = k / NN, n = k % NN;
        float aq = 0.f, ak = 0.f;
        for (int hh = 0; hh < HG; hh++) {
            const int64_t o = (bt * H + g * HG + hh) * NN + n;
            aq += __bfloat162float(dq_h[o]);
            ak += __bfloat162float(dk_h[o]);
        }
        dq_raw[bt * G * NN + k] = aq;
        dk_raw[bt * G * NN + k] = ak;
    } else {
        const int i = k - G * NN;
        float a = 0.f;
        for (int hh = 0; hh < H; hh++) a += dth_h[(bt * H + hh) * S + i];
        dtheta[bt * S + i] = a;
    }
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
    // S % 4: theta and phi rows of a chunk move as 16-byte pieces
    if (d.S < 4 || d.S > SMAX || d.S % 4) fatal("%s: angle pairs S = %d not a multiple of 4 in 4..%d", who, d.S, SMAX);
    if (d.G < 1 || d.H % d.G) fatal("%s: heads %d not a multiple of groups %d", who, d.H, d.G);
    if (d.T < 1 || d.B < 1) fatal("%s: empty batch (B %d, T %d)", who, d.B, d.T);
}
Mamba3States<float> states_or_null(const Mamba3States<float>* st) { return st ? *st : Mamba3States<float>{}; }
}  // namespace

void mamba3_scan_forward(bf16* out, const Mamba3States<float>* fin, float* phi, bf16* y, float* states,
                         const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt, const float* dt,
                         const float* trap, const float* theta, const float* q_bias, const float* k_bias,
                         const float* D, const bf16* z, const Mamba3States<float>* init, const Mamba3Dims& d,
                         cudaStream_t stream) {
    check_dims(d, "mamba3_scan_forward");
    const size_t smem = sizeof(FwdSmem);
    static bool attr = false;
    if (!attr) {
        cudaCheck(cudaFuncSetAttribute(mamba3_scan_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr = true;
    }
    mamba3_scan_fwd_kernel<<<dim3(d.H, d.B), NT, smem, stream>>>(out, states_or_null(fin), phi, y, states, q_raw, k_raw, v,
                                                                  adt, dt, trap, theta, q_bias, k_bias, D, z,
                                                                  states_or_null(init), d.T, d.H, d.G, d.S);
    cudaCheckLaunch();
}

size_t mamba3_scan_backward_scratch_bytes(const Mamba3Dims& d) {
    const size_t BTH = (size_t)d.B * d.T * d.H;
    return 2 * BTH * NN * sizeof(bf16) + BTH * d.S * sizeof(float) + (2 * (size_t)d.B * d.H * NN + (size_t)d.B * d.H) * sizeof(float) + 256;
}

void mamba3_scan_backward(float* dq_raw, float* dk_raw, bf16* dv, float* dadt, float* ddt, float* dtrap, float* dtheta,
                          float* dq_bias, float* dk_bias, float* dD, bf16* dz, const Mamba3States<float>* dinit,
                          const bf16* dout, const Mamba3States<float>* dfin, const float* phi, const bf16* y,
                          const float* states, const bf16* q_raw, const bf16* k_raw, const bf16* v, const float* adt,
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
    float* dth_h = (float*)p; p += BTH * d.S * sizeof(float);
    float* bq_part = (float*)p; p += (size_t)d.B * d.H * NN * sizeof(float);
    float* bk_part = (float*)p; p += (size_t)d.B * d.H * NN * sizeof(float);
    float* dD_part = (float*)p;
    const size_t smem = bwd_smem_bytes(d.S);
    static bool attr = false;
    if (!attr) {
        cudaCheck(cudaFuncSetAttribute(mamba3_scan_bwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)bwd_smem_bytes(SMAX)));
        attr = true;
    }
    mamba3_scan_bwd_kernel<<<dim3(d.H, d.B), NT, smem, stream>>>(
        dq_h, dk_h, dth_h, bq_part, bk_part, dD_part, dv, dadt, ddt, dtrap, dz, states_or_null(dinit), dout,
        states_or_null(dfin), phi, y, states, q_raw, k_raw, v, adt, dt, trap, theta, q_bias, k_bias, D, z,
        states_or_null(init), d.T, d.H, d.G, d.S);
    cudaCheckLaunch();
    const int64_t BT = (int64_t)d.B * d.T, total = BT * (d.G * NN + d.S);
    mamba3_scan_head_sum_kernel<<<(unsigned)((total + 255) / 256), 256, 0, stream>>>(dq_raw, dk_raw, dtheta, dq_h, dk_h,
                                                                                      dth_h, BT, d.H, d.G, d.S);
    cudaCheckLaunch();
    mamba3_scan_param_sum_kernel<<<(d.H * NN + 255) / 256, 256, 0, stream>>>(dq_bias, dk_bias, dD, bq_part, bk_part,
                                                                             dD_part, d.B, d.H);
    cudaCheckLaunch();
}
