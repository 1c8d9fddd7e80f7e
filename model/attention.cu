// Causal GQA attention: CUDA kernels and launchers. See model/attention.cuh for layouts and the
// gradient contract; the math is that of model/attention.h (CPU reference).
//
// Flash core, FlashAttention-2 style on mma.sync (m16n8k16, bf16 operands, fp32 accumulators):
// 64-row tiles of queries and keys, 4 warps per CTA, each warp owning 16 rows, so every
// softmax row lives inside one warp (a quad of 4 lanes) and no cross-warp reduction is needed.
// Tiles are 64 x 64 bf16 in shared memory, 128-byte rows with the 16-byte chunks XOR-swizzled by
// (row & 7): ldmatrix reads 8 rows of one chunk column, which would otherwise hit one bank group.
// K/V (forward, dQ pass) or Q/dO (dK/dV pass) tiles are double-buffered with cp.async.
#include "model/attention.cuh"
#include <cmath>

namespace {

constexpr int kHD = 64;        // head dim the kernels are written for
constexpr int kTile = 64;      // query and key rows per tile
constexpr int kThreads = 128;  // 4 warps x 16 rows
constexpr int kTileElems = kTile * kHD;
constexpr float kLog2e = 1.4426950408889634f;

// ---- small PTX helpers

__device__ __forceinline__ int swz(int row, int col) {  // element offset in a 64x64 tile, col % 8 == 0
    return row * kHD + ((((col >> 3) ^ (row & 7))) << 3);
}
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    // src-size 0 zero-fills: rows past T read as zeros, so they add nothing and stay finite.
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Rows [row0, row0+ROWS) of a (T, stride) bf16 matrix into a swizzled tile of 16-byte chunks.
template <int ROWS = kTile, int NT = kThreads>
__device__ __forceinline__ void load_tile(__nv_bfloat16* tile, const __nv_bfloat16* base, int64_t stride,
                                          int row0, int T) {
#pragma unroll
    for (int k = 0; k < ROWS * kHD / 8 / NT; k++) {
        int id = threadIdx.x + k * NT;
        int r = id >> 3, c = (id & 7) << 3;
        bool valid = row0 + r < T;
        const __nv_bfloat16* src = base + (valid ? (int64_t)(row0 + r) * stride + c : 0);
        cp_async16(tile + swz(r, c), src, valid);
    }
}

__device__ __forceinline__ void ldsm_x4(uint32_t* r, const __nv_bfloat16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t* r, const __nv_bfloat16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
// c += a(16x16, row) * b(16x8, col)
__device__ __forceinline__ void mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

// Two ldmatrix address patterns over a tile, for the 16x16 block at (row0, col0):
//  A-pattern: the four 8x8 matrices in the order (r0,c0) (r8,c0) (r0,c8) (r8,c8): gives an A
//             operand fragment (non-transposed), or with .trans the B fragments of two n8 tiles
//             when the tile is stored k-major ([k][n], e.g. V[key][d] for P V).
//  B-pattern: (r0,c0) (r0,c8) (r8,c0) (r8,c8): B fragments of two n8 tiles when the tile is
//             stored n-major ([n][k], e.g. K[key][d] for Q K^T).
__device__ __forceinline__ const __nv_bfloat16* addr_a(const __nv_bfloat16* tile, int row0, int col0) {
    int l = threadIdx.x & 31;
    return tile + swz(row0 + (l & 7) + (((l >> 3) & 1) << 3), col0 + ((l >> 4) << 3));
}
__device__ __forceinline__ const __nv_bfloat16* addr_b(const __nv_bfloat16* tile, int row0, int col0) {
    int l = threadIdx.x & 31;
    return tile + swz(row0 + (l & 7) + ((l >> 4) << 3), col0 + (((l >> 3) & 1) << 3));
}

// acc[mt](16 x 64) += A[mt](16 x 64) * tile^T for MT row blocks of 16, tile stored [n][k]
// (64 x 64). Each B fragment is loaded once and used by all MT blocks: with 16 rows per warp the
// kernels are bound by ldmatrix traffic, so MT = 2 halves the shared-memory bytes per MMA.
// A comes from registers (a != nullptr) or, row block by row block, from a shared tile.
template <int MT>
__device__ __forceinline__ void mma_abt(float (*acc)[8][4], const uint32_t (*a)[4][4], const __nv_bfloat16* atile,
                                        int arow0, const __nv_bfloat16* tile) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            if (a) {
#pragma unroll
                for (int e = 0; e < 4; e++) af[mt][e] = a[mt][kk][e];
            } else {
                ldsm_x4(af[mt], addr_a(atile, arow0 + mt * 16, kk * 16));
            }
        }
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm_x4(b, addr_b(tile, np * 16, kk * 16));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma(acc[mt][2 * np], af[mt], b[0], b[1]);
                mma(acc[mt][2 * np + 1], af[mt], b[2], b[3]);
            }
        }
    }
}
// acc[mt](16 x 64) += P[mt](16 x 64, as C fragments p[mt][nt][4]) * tile, tile stored [k][n].
// The C fragment layout of two adjacent n8 tiles is exactly the A fragment of one k16 step.
template <int MT>
__device__ __forceinline__ void mma_pb(float (*acc)[8][4], const float (*p)[8][4], const __nv_bfloat16* tile) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            a[mt][0] = pack_bf16(p[mt][2 * kk][0], p[mt][2 * kk][1]);
            a[mt][1] = pack_bf16(p[mt][2 * kk][2], p[mt][2 * kk][3]);
            a[mt][2] = pack_bf16(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
            a[mt][3] = pack_bf16(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < 4; dp++) {
            uint32_t b[4];
            ldsm_x4_t(b, addr_a(tile, kk * 16, dp * 16));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma(acc[mt][2 * dp], a[mt], b[0], b[1]);
                mma(acc[mt][2 * dp + 1], a[mt], b[2], b[3]);
            }
        }
    }
}
template <int MT>
__device__ __forceinline__ void zero_acc(float (*acc)[8][4]) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][i][e] = 0.f;
}
// Store a warp's 16 x 64 fp32 accumulator (times `mul`) as bf16 rows [row0, row0+16) of a
// (T, stride) matrix; rows >= T are skipped.
__device__ __forceinline__ void store_rows(__nv_bfloat16* base, int64_t stride, int row0, int T,
                                           const float (*acc)[4], float mul) {
    int l = threadIdx.x & 31, g = l >> 2, tig = l & 3;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int row = row0 + g + 8 * half;
        if (row >= T) continue;
        __nv_bfloat16* dst = base + (int64_t)row * stride + 2 * tig;
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
            *reinterpret_cast<__nv_bfloat162*>(dst + nt * 8) =
                __floats2bfloat162_rn(acc[nt][2 * half] * mul, acc[nt][2 * half + 1] * mul);
    }
}

// ---- CUDA kernels

// grid (num 128-query tiles, NH, B); heaviest (last) query tiles first so the causal tail
// balances. Each warp owns 32 query rows (MT = 2 row blocks of 16).
constexpr int kFwdMT = 2, kFwdRows = kFwdMT * 16 * 4;

__global__ void __launch_bounds__(kThreads) attn_fwd_kernel(__nv_bfloat16* out, float* lse,
                                                            const __nv_bfloat16* q, const __nv_bfloat16* k,
                                                            const __nv_bfloat16* v, int T, int NH, int NKV,
                                                            float scale_log2) {
    constexpr int MT = kFwdMT;
    __shared__ __align__(128) __nv_bfloat16 sQ[kFwdRows * kHD];
    __shared__ __align__(128) __nv_bfloat16 sK[2][kTileElems];
    __shared__ __align__(128) __nv_bfloat16 sV[2][kTileElems];
    const int mb = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    const int64_t qs = (int64_t)NH * kHD, ks = (int64_t)NKV * kHD;
    const __nv_bfloat16* qb = q + (int64_t)b * T * qs + h * kHD;
    const __nv_bfloat16* kb = k + (int64_t)b * T * ks + hk * kHD;
    const __nv_bfloat16* vb = v + (int64_t)b * T * ks + hk * kHD;
    const int q0 = mb * kFwdRows;         // first query of the CTA
    const int wrow = warp * MT * 16;      // first row of this warp inside the CTA's tile

    load_tile<kFwdRows>(sQ, qb, qs, q0, T);
    load_tile(sK[0], kb, ks, 0, T);
    load_tile(sV[0], vb, ks, 0, T);
    cp_async_commit();

    float o[MT][8][4];
    zero_acc<MT>(o);
    float m[MT][2], lsum[MT][2];  // m in log2 units of the scaled score
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, lsum[mt][0] = lsum[mt][1] = 0.f;
    uint32_t qf[MT][4][4];
    const int nblocks = min((q0 + kFwdRows + kTile - 1) / kTile, (T + kTile - 1) / kTile);
    for (int j = 0; j < nblocks; j++) {
        if (j + 1 < nblocks) {
            load_tile(sK[(j + 1) & 1], kb, ks, (j + 1) * kTile, T);
            load_tile(sV[(j + 1) & 1], vb, ks, (j + 1) * kTile, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < 4; kk++) ldsm_x4(qf[mt][kk], addr_a(sQ, wrow + mt * 16, kk * 16));
        }

        float s[MT][8][4];
        zero_acc<MT>(s);
        mma_abt<MT>(s, qf, nullptr, 0, sK[j & 1]);

        if ((j + 1) * kTile > q0) {  // tiles reaching the diagonal: keys after the query are masked
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int key = j * kTile + nt * 8 + 2 * tig + (e & 1);
                        int qr = q0 + wrow + mt * 16 + g + 8 * (e >> 1);
                        if (key > qr) s[mt][nt][e] = -INFINITY;
                    }
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < 8; nt++) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
                // finite from tile 0 on: key 0 is never masked (a fully masked later tile keeps m)
                const float m_new = fmaxf(m[mt][r], mx * scale_log2);
                const float alpha = exp2f(m[mt][r] - m_new);
                m[mt][r] = m_new;
                float rs = 0.f;
#pragma unroll
                for (int nt = 0; nt < 8; nt++) {
                    s[mt][nt][2 * r] = exp2f(s[mt][nt][2 * r] * scale_log2 - m_new);
                    s[mt][nt][2 * r + 1] = exp2f(s[mt][nt][2 * r + 1] * scale_log2 - m_new);
                    rs += s[mt][nt][2 * r] + s[mt][nt][2 * r + 1];
                }
                lsum[mt][r] = lsum[mt][r] * alpha + rs;  // this lane's columns; quad-reduced at the end
#pragma unroll
                for (int dt = 0; dt < 8; dt++) {
                    o[mt][dt][2 * r] *= alpha;
                    o[mt][dt][2 * r + 1] *= alpha;
                }
            }
        mma_pb<MT>(o, s, sV[j & 1]);
        __syncthreads();  // the next iteration's prefetch overwrites the buffer just read
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int row0 = q0 + wrow + mt * 16;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float l = lsum[mt][r];
            l += __shfl_xor_sync(0xffffffff, l, 1);
            l += __shfl_xor_sync(0xffffffff, l, 2);
            const float inv = 1.f / l;
#pragma unroll
            for (int dt = 0; dt < 8; dt++) {
                o[mt][dt][2 * r] *= inv;
                o[mt][dt][2 * r + 1] *= inv;
            }
            const int row = row0 + g + 8 * r;
            if (tig == 0 && row < T) lse[((int64_t)b * NH + h) * T + row] = (m[mt][r] + log2f(l)) / kLog2e;
        }
        store_rows(out + (int64_t)b * T * qs + h * kHD, qs, row0, T, o[mt], 1.f);
    }
}

// delta[b, h, t] = sum_d dout * out (fp32), one warp per (b, t, h) row of 64.
__global__ void attn_delta_kernel(float* delta, const __nv_bfloat16* dout, const __nv_bfloat16* out, int64_t rows,
                                  int T, int NH) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    __nv_bfloat162 a = reinterpret_cast<const __nv_bfloat162*>(dout + row * kHD)[lane];
    __nv_bfloat162 c = reinterpret_cast<const __nv_bfloat162*>(out + row * kHD)[lane];
    float s = __low2float(a) * __low2float(c) + __high2float(a) * __high2float(c);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if (lane == 0) {  // row = (b*T + t)*NH + h  ->  (b, h, t)
        const int h = (int)(row % NH);
        const int64_t bt = row / NH;
        const int64_t b = bt / T, t = bt % T;
        delta[(b * NH + h) * T + t] = s;
    }
}

// dQ pass: grid (num 128-query tiles, NH, B). Recomputes P = exp(S - lse) and dP = dO V^T per
// key tile; dS = P (dP - delta); dQ = scale * sum over key tiles of dS K. Each warp owns 32 query
// rows (MT = 2); their Q and dO fragments are re-read from shared memory (registers are full).
constexpr int kDqMT = 2, kDqRows = kDqMT * 16 * 4;
constexpr int kDqSmem = (2 * kDqRows * kHD + 4 * kTileElems) * 2;

__global__ void __launch_bounds__(kThreads) attn_bwd_dq_kernel(__nv_bfloat16* dq, const __nv_bfloat16* dout,
                                                               const __nv_bfloat16* q, const __nv_bfloat16* k,
                                                               const __nv_bfloat16* v, const float* lse,
                                                               const float* delta, int T, int NH, int NKV,
                                                               float scale_log2, float scale) {
    constexpr int MT = kDqMT;
    extern __shared__ __align__(128) unsigned char smem[];
    __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem);
    __nv_bfloat16* sdO = sQ + kDqRows * kHD;
    __nv_bfloat16* sK = sdO + kDqRows * kHD;  // [2][tile]
    __nv_bfloat16* sV = sK + 2 * kTileElems;  // [2][tile]
    const int mb = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    const int64_t qs = (int64_t)NH * kHD, ks = (int64_t)NKV * kHD;
    const __nv_bfloat16* kb = k + (int64_t)b * T * ks + hk * kHD;
    const __nv_bfloat16* vb = v + (int64_t)b * T * ks + hk * kHD;
    const int q0 = mb * kDqRows, wrow = warp * MT * 16;

    load_tile<kDqRows>(sQ, q + (int64_t)b * T * qs + h * kHD, qs, q0, T);
    load_tile<kDqRows>(sdO, dout + (int64_t)b * T * qs + h * kHD, qs, q0, T);
    load_tile(sK, kb, ks, 0, T);
    load_tile(sV, vb, ks, 0, T);
    cp_async_commit();

    // Per thread: rows g and g+8 of each 16-row block; lse in log2 units. Rows past T: lse = +inf
    // makes P = 0 there (their Q and dO rows are zero-filled, so nothing else is touched).
    float lse2[MT][2], dl[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = q0 + wrow + mt * 16 + g + 8 * r;
            const int64_t i = ((int64_t)b * NH + h) * T + row;
            lse2[mt][r] = row < T ? lse[i] * kLog2e : INFINITY;
            dl[mt][r] = row < T ? delta[i] : 0.f;
        }
    float acc[MT][8][4];
    zero_acc<MT>(acc);
    const int nblocks = min((q0 + kDqRows + kTile - 1) / kTile, (T + kTile - 1) / kTile);
    for (int j = 0; j < nblocks; j++) {
        const __nv_bfloat16* tk = sK + (j & 1) * kTileElems;
        const __nv_bfloat16* tv = sV + (j & 1) * kTileElems;
        if (j + 1 < nblocks) {
            load_tile(sK + ((j + 1) & 1) * kTileElems, kb, ks, (j + 1) * kTile, T);
            load_tile(sV + ((j + 1) & 1) * kTileElems, vb, ks, (j + 1) * kTile, T);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        float s[MT][8][4], dp[MT][8][4];
        zero_acc<MT>(s);
        zero_acc<MT>(dp);
        mma_abt<MT>(s, nullptr, sQ, wrow, tk);
        mma_abt<MT>(dp, nullptr, sdO, wrow, tv);
        const bool diag = (j + 1) * kTile > q0;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = e >> 1;
                    float p = exp2f(s[mt][nt][e] * scale_log2 - lse2[mt][r]);
                    if (diag && j * kTile + nt * 8 + 2 * tig + (e & 1) > q0 + wrow + mt * 16 + g + 8 * r) p = 0.f;
                    s[mt][nt][e] = p * (dp[mt][nt][e] - dl[mt][r]);  // dS
                }
        mma_pb<MT>(acc, s, tk);
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        store_rows(dq + (int64_t)b * T * qs + h * kHD, qs, q0 + wrow + mt * 16, T, acc[mt], scale);
}

// dK/dV pass: grid (num key tiles, NKV, B). One CTA owns 64 keys of one KV head and
// walks every (query head of the group, 64-query tile reaching its keys), so dK and dV are
// complete sums in registers. Each warp owns 16 keys: S^T = K Q^T, P^T, dP^T = V dO^T, dS^T,
// then dV += P^T dO and dK += dS^T Q, all inside the warp. (8 warps, 128 keys per CTA, sharing
// each Q/dO tile among more keys, measured slower: 3.72 vs 3.37 ms at B 16, T 4096; notes/gpu.md.)
constexpr int kDkdvWarps = 4;
constexpr int kDkdvSmem = (2 * 2 * kTileElems + 2 * kDkdvWarps * 16 * kHD) * 2 + 2 * 2 * kTile * 4;

__global__ void __launch_bounds__(kDkdvWarps * 32) attn_bwd_dkdv_kernel(__nv_bfloat16* dk, __nv_bfloat16* dv,
                                                                   const __nv_bfloat16* dout, const __nv_bfloat16* q,
                                                                   const __nv_bfloat16* k, const __nv_bfloat16* v,
                                                                   const float* lse, const float* delta, int T, int NH,
                                                                   int NKV, float scale_log2, float scale) {
    constexpr int NT = kDkdvWarps * 32, KEYS = kDkdvWarps * 16;
    extern __shared__ __align__(128) unsigned char smem[];
    __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem);  // [2][tile]
    __nv_bfloat16* sdO = sQ + 2 * kTileElems;                    // [2][tile]
    __nv_bfloat16* sK = sdO + 2 * kTileElems;                    // (KEYS, HD)
    __nv_bfloat16* sV = sK + KEYS * kHD;
    float* sL = reinterpret_cast<float*>(sV + KEYS * kHD);  // [2][64] lse * log2e (inf past T)
    float* sD = sL + 2 * kTile;                              // [2][64] delta

    const int nb = gridDim.x - 1 - blockIdx.x, hk = blockIdx.y, b = blockIdx.z;
    const int group = NH / NKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    const int64_t qs = (int64_t)NH * kHD, ks = (int64_t)NKV * kHD;
    const int k0 = nb * KEYS;
    const int nqt = (T + kTile - 1) / kTile, first = k0 / kTile;
    const int per_head = nqt - first;  // query tiles first .. nqt-1
    const int iters = group * per_head;

    auto issue = [&](int it, int buf) {
        const int h = hk * group + it / per_head, mb = first + it % per_head;
        load_tile<kTile, NT>(sQ + buf * kTileElems, q + (int64_t)b * T * qs + h * kHD, qs, mb * kTile, T);
        load_tile<kTile, NT>(sdO + buf * kTileElems, dout + (int64_t)b * T * qs + h * kHD, qs, mb * kTile, T);
        if (threadIdx.x < kTile) {
            const int row = mb * kTile + threadIdx.x;
            const int64_t i = ((int64_t)b * NH + h) * T + row;
            sL[buf * kTile + threadIdx.x] = row < T ? lse[i] * kLog2e : INFINITY;
            sD[buf * kTile + threadIdx.x] = row < T ? delta[i] : 0.f;
        }
    };

    load_tile<KEYS, NT>(sK, k + (int64_t)b * T * ks + hk * kHD, ks, k0, T);
    load_tile<KEYS, NT>(sV, v + (int64_t)b * T * ks + hk * kHD, ks, k0, T);
    issue(0, 0);
    cp_async_commit();

    float dK[1][8][4], dV[1][8][4];
    zero_acc<1>(dK);
    zero_acc<1>(dV);
    uint32_t kf[1][4][4], vf[1][4][4];
    for (int it = 0; it < iters; it++) {
        const int buf = it & 1;
        if (it + 1 < iters) {
            issue(it + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                ldsm_x4(kf[0][kk], addr_a(sK, warp * 16, kk * 16));
                ldsm_x4(vf[0][kk], addr_a(sV, warp * 16, kk * 16));
            }
        }
        const __nv_bfloat16* tq = sQ + buf * kTileElems;
        const __nv_bfloat16* tdo = sdO + buf * kTileElems;
        const float* L = sL + buf * kTile;
        const float* Dl = sD + buf * kTile;
        const int q0 = (first + it % per_head) * kTile;
        const bool diag = q0 < k0 + KEYS - 1;  // some key of the CTA lies after some query of the tile

        float st[1][8][4], dpt[1][8][4];  // rows: this warp's 16 keys; cols: the tile's 64 queries
        zero_acc<1>(st);
        zero_acc<1>(dpt);
        mma_abt<1>(st, kf, nullptr, 0, tq);
        mma_abt<1>(dpt, vf, nullptr, 0, tdo);
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int qc = nt * 8 + 2 * tig + (e & 1), kr = warp * 16 + g + 8 * (e >> 1);
                float p = exp2f(st[0][nt][e] * scale_log2 - L[qc]);
                if (diag && k0 + kr > q0 + qc) p = 0.f;
                st[0][nt][e] = p;
                dpt[0][nt][e] = p * (dpt[0][nt][e] - Dl[qc]);  // dS^T
            }
        mma_pb<1>(dV, st, tdo);
        mma_pb<1>(dK, dpt, tq);
        __syncthreads();
    }
    const int row0 = k0 + warp * 16;
    store_rows(dk + (int64_t)b * T * ks + hk * kHD, ks, row0, T, dK[0], scale);
    store_rows(dv + (int64_t)b * T * ks + hk * kHD, ks, row0, T, dV[0], 1.f);
}

void check_shapes(int T, int NH, int NKV, int HD) {
    if (HD != kHD) fatal("attention: head dim %d, the kernels need %d", HD, kHD);
    if (NKV <= 0 || NH % NKV != 0) fatal("attention: %d query heads not a multiple of %d kv heads", NH, NKV);
    if (T <= 0) fatal("attention: T = %d", T);
}

}  // namespace

// ---- kernel launchers


void attention_core_forward(__nv_bfloat16* out, float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                            const __nv_bfloat16* v, int B, int T, int NH, int NKV, int HD, cudaStream_t stream) {
    check_shapes(T, NH, NKV, HD);
    const float scale = 1.f / sqrtf((float)HD);
    dim3 grid(ceil_div(T, kFwdRows), NH, B);
    attn_fwd_kernel<<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, T, NH, NKV, scale * kLog2e);
    cudaCheckLaunch();
}

void attention_core_backward(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float* delta,
                             const __nv_bfloat16* dout, const __nv_bfloat16* q, const __nv_bfloat16* k,
                             const __nv_bfloat16* v, const __nv_bfloat16* out, const float* lse, int B, int T, int NH,
                             int NKV, int HD, cudaStream_t stream) {
    check_shapes(T, NH, NKV, HD);
    const float scale = 1.f / sqrtf((float)HD);
    const int64_t rows = (int64_t)B * T * NH;
    attn_delta_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(delta, dout, out, rows, T, NH);
    cudaCheckLaunch();
    static bool attr_set = false;  // the backward kernels' shared memory (> 48 KB) needs the opt-in
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attn_bwd_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kDkdvSmem));
        cudaCheck(cudaFuncSetAttribute(attn_bwd_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kDqSmem));
        attr_set = true;
    }
    dim3 gq(ceil_div(T, kDqRows), NH, B);
    attn_bwd_dq_kernel<<<gq, kThreads, kDqSmem, stream>>>(dq, dout, q, k, v, lse, delta, T, NH, NKV, scale * kLog2e, scale);
    cudaCheckLaunch();
    dim3 gk(ceil_div(T, kDkdvWarps * 16), NKV, B);
    attn_bwd_dkdv_kernel<<<gk, kDkdvWarps * 32, kDkdvSmem, stream>>>(dk, dv, dout, q, k, v, lse, delta, T, NH, NKV,
                                                                    scale * kLog2e, scale);
    cudaCheckLaunch();
}

// ---- qkv prep: silu(v), per-head RMSNorm, RoPE, q gain

#include "model/reduce.cuh"
#include <map>
#include <tuple>
#include <vector>

namespace {

// cos/sin of t * base^(-2i/HD), (T, HD/2) each, built in float64 on the host once per shape.
struct RopeTable { float *cs, *sn; };
RopeTable rope_table(int T, int HD, float base) {
    static std::map<std::tuple<int, int, float>, RopeTable> cache;
    auto key = std::make_tuple(T, HD, base);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    const int half = HD / 2;
    std::vector<float> cs((size_t)T * half), sn((size_t)T * half);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow((double)base, -2.0 * i / HD);
            cs[(size_t)t * half + i] = (float)cos(ang);
            sn[(size_t)t * half + i] = (float)sin(ang);
        }
    RopeTable r;
    cudaCheck(cudaMalloc(&r.cs, cs.size() * sizeof(float)));
    cudaCheck(cudaMalloc(&r.sn, sn.size() * sizeof(float)));
    cudaCheck(cudaMemcpy(r.cs, cs.data(), cs.size() * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(r.sn, sn.data(), sn.size() * sizeof(float), cudaMemcpyHostToDevice));
    return cache.emplace(key, r).first->second;
}

__device__ __forceinline__ float warp_sum(float s) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    return s;
}

// grid (B*T), block (NH + 2 NKV) warps: warp w < NH is query head w, then the NKV key heads,
// then the NKV value heads. Lane owns the rotation pairs (i, i + HD/2) for i = lane, lane + 32..
__global__ void attn_prep_forward_kernel(__nv_bfloat16* q, __nv_bfloat16* k, __nv_bfloat16* v, float* q_rstd,
                                         float* k_rstd, const __nv_bfloat16* qkv, const float* q_gain,
                                         const float* cs, const float* sn, int T, int NH, int NKV, int HD,
                                         float eps) {
    const int64_t bt = blockIdx.x;
    const int t = (int)(bt % T), w = threadIdx.x >> 5, lane = threadIdx.x & 31, half = HD / 2;
    const int cols = (NH + 2 * NKV) * HD;
    const __nv_bfloat16* x = qkv + bt * cols + (int64_t)w * HD;
    if (w >= NH + NKV) {  // value head: silu
        __nv_bfloat16* o = v + (bt * NKV + (w - NH - NKV)) * HD;
        for (int i = lane; i < HD; i += 32) {
            const float u = __bfloat162float(x[i]);
            o[i] = __float2bfloat16(u / (1.f + __expf(-u)));
        }
        return;
    }
    float ss = 0.f;
    for (int i = lane; i < HD; i += 32) {
        const float u = __bfloat162float(x[i]);
        ss += u * u;
    }
    const float r = rsqrtf(warp_sum(ss) / HD + eps);
    const bool isq = w < NH;
    const float gain = isq ? q_gain[w] : 1.f;
    __nv_bfloat16* o = isq ? q + (bt * NH + w) * HD : k + (bt * NKV + (w - NH)) * HD;
    for (int i = lane; i < half; i += 32) {
        const float x1 = __bfloat162float(x[i]) * r, x2 = __bfloat162float(x[i + half]) * r;
        const float c = cs[(int64_t)t * half + i], s = sn[(int64_t)t * half + i];
        o[i] = __float2bfloat16(gain * (x1 * c + x2 * s));
        o[i + half] = __float2bfloat16(gain * (-x1 * s + x2 * c));
    }
    if (lane == 0) {
        if (isq) q_rstd[bt * NH + w] = r;
        else k_rstd[bt * NKV + (w - NH)] = r;
    }
}

// Backward, same grid. For a q/k head: u = x r, w = R u, out = g w:
//   dgain = sum(dout . w);  du = R^T (g dout);  dx = r (du - u mean(du . u)).
// For a value head: dx = dv * (s + u s (1 - s)), s = sigmoid(u).
// dq_gain partials: one row of NH per CTA (token), reduced afterwards in a fixed order.
__global__ void attn_prep_backward_kernel(__nv_bfloat16* dqkv, float* gain_partials, const __nv_bfloat16* dq,
                                          const __nv_bfloat16* dk, const __nv_bfloat16* dv,
                                          const __nv_bfloat16* qkv, const float* q_rstd, const float* k_rstd,
                                          const float* q_gain, const float* cs, const float* sn, int T, int NH,
                                          int NKV, int HD) {
    const int64_t bt = blockIdx.x;
    const int t = (int)(bt % T), w = threadIdx.x >> 5, lane = threadIdx.x & 31, half = HD / 2;
    const int cols = (NH + 2 * NKV) * HD;
    const __nv_bfloat16* x = qkv + bt * cols + (int64_t)w * HD;
    __nv_bfloat16* dx = dqkv + bt * cols + (int64_t)w * HD;
    if (w >= NH + NKV) {
        const __nv_bfloat16* g = dv + (bt * NKV + (w - NH - NKV)) * HD;
        for (int i = lane; i < HD; i += 32) {
            const float u = __bfloat162float(x[i]), s = 1.f / (1.f + __expf(-u));
            dx[i] = __float2bfloat16(__bfloat162float(g[i]) * (s + u * s * (1.f - s)));
        }
        return;
    }
    const bool isq = w < NH;
    const float r = isq ? q_rstd[bt * NH + w] : k_rstd[bt * NKV + (w - NH)];
    const float gain = isq ? q_gain[w] : 1.f;
    const __nv_bfloat16* go = isq ? dq + (bt * NH + w) * HD : dk + (bt * NKV + (w - NH)) * HD;
    float dgain = 0.f, dot = 0.f;
    float du1[2], du2[2], u1[2], u2[2];  // HD <= 128: at most two pairs per lane
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int i = lane + 32 * j;
        du1[j] = du2[j] = u1[j] = u2[j] = 0.f;
        if (i >= half) continue;
        const float c = cs[(int64_t)t * half + i], s = sn[(int64_t)t * half + i];
        u1[j] = __bfloat162float(x[i]) * r;
        u2[j] = __bfloat162float(x[i + half]) * r;
        const float d1 = __bfloat162float(go[i]), d2 = __bfloat162float(go[i + half]);
        dgain += d1 * (u1[j] * c + u2[j] * s) + d2 * (-u1[j] * s + u2[j] * c);
        du1[j] = gain * (d1 * c - d2 * s);
        du2[j] = gain * (d1 * s + d2 * c);
        dot += du1[j] * u1[j] + du2[j] * u2[j];
    }
    const float mean = warp_sum(dot) / HD;
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int i = lane + 32 * j;
        if (i >= half) continue;
        dx[i] = __float2bfloat16(r * (du1[j] - u1[j] * mean));
        dx[i + half] = __float2bfloat16(r * (du2[j] - u2[j] * mean));
    }
    if (isq) {
        dgain = warp_sum(dgain);
        if (lane == 0) gain_partials[bt * NH + w] = dgain;
    }
}

}  // namespace

void attn_qkv_prep_forward(__nv_bfloat16* q, __nv_bfloat16* k, __nv_bfloat16* v, float* q_rstd, float* k_rstd,
                           const __nv_bfloat16* qkv, const float* q_gain, int B, int T, int NH, int NKV, int HD,
                           float rope_base, float eps, cudaStream_t stream) {
    if (HD % 2 || HD > 128 || (NH + 2 * NKV) > 32) fatal("attn_qkv_prep: HD %d / heads %d+2*%d unsupported", HD, NH, NKV);
    RopeTable rt = rope_table(T, HD, rope_base);
    attn_prep_forward_kernel<<<(unsigned)((int64_t)B * T), (NH + 2 * NKV) * 32, 0, stream>>>(
        q, k, v, q_rstd, k_rstd, qkv, q_gain, rt.cs, rt.sn, T, NH, NKV, HD, eps);
    cudaCheckLaunch();
}

void attn_qkv_prep_backward(__nv_bfloat16* dqkv, float* dq_gain, const __nv_bfloat16* dq, const __nv_bfloat16* dk,
                            const __nv_bfloat16* dv, const __nv_bfloat16* qkv, const float* q_rstd,
                            const float* k_rstd, const float* q_gain, int B, int T, int NH, int NKV, int HD,
                            float rope_base, cudaStream_t stream) {
    if (HD % 2 || HD > 128 || (NH + 2 * NKV) > 32) fatal("attn_qkv_prep: HD %d / heads %d+2*%d unsupported", HD, NH, NKV);
    RopeTable rt = rope_table(T, HD, rope_base);
    const int64_t rows = (int64_t)B * T;
    float* partials = reduce_scratch(rows * NH);
    attn_prep_backward_kernel<<<(unsigned)rows, (NH + 2 * NKV) * 32, 0, stream>>>(
        dqkv, partials, dq, dk, dv, qkv, q_rstd, k_rstd, q_gain, rt.cs, rt.sn, T, NH, NKV, HD);
    cudaCheckLaunch();
    reduce_partials(dq_gain, partials, (int)rows, NH, true, stream);
}
