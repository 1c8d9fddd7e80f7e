// Mamba-3 prep CUDA kernels and launchers; see model/mamba3.cuh.
#include "model/mamba3.cuh"
#include "model/reduce.cuh"

namespace {
constexpr int kThreads = 256;
constexpr int kTokBwd = 8;  // tokens per backward CTA: fewer partial rows to reduce

struct PrepArgs {  // the dims the kernels need, by value
    int T, R, H, P, N, G, S;
    int ip_z, ip_x, ip_B, ip_C, ip_dd_dt, ip_dd_A, ip_trap, ip_angles;
    int heavytail;
    float a_floor, eps;
};
PrepArgs prep_args(const Mamba3Dims& d) {
    if (d.N > 64 * 32) fatal("mamba3 prep: d_state %d too large", d.N);
    return {d.T, d.R, d.H, d.P, d.N, d.G, d.S, d.ip_z, d.ip_x, d.ip_B, d.ip_C, d.ip_dd_dt, d.ip_dd_A, d.ip_trap,
            d.ip_angles, d.act == AAct::heavytail, (float)d.a_floor, (float)kMamba3NormEps};
}

// torch softplus (threshold 20) and the two A activations, fp32
__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float a_act(bool ht, float x) { return ht ? (x >= 0.f ? 1.f + x : 1.f / (1.f - x)) : softplus(x); }
__device__ __forceinline__ float a_act_grad(bool ht, float x) {
    return ht ? (x >= 0.f ? 1.f : 1.f / ((1.f - x) * (1.f - x))) : (x > 20.f ? 1.f : sigmoid(x));
}
__device__ __forceinline__ float warp_sum(float s) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    return s;
}

// ---- CUDA kernels

// grid (B*T). Warps 0 .. 2G-1 normalize B (even) and C (odd) of group w/2; all threads copy z, x;
// threads < H do the per-head scalars; threads < S copy the angles.
__global__ void __launch_bounds__(kThreads) mamba3_prep_forward_kernel(
    __nv_bfloat16* z, __nv_bfloat16* x, __nv_bfloat16* q_raw, __nv_bfloat16* k_raw, float* adt, float* dt,
    float* trap, float* theta, float* rstd_q, float* rstd_k, const __nv_bfloat16* zxbcdt, const float* dt_bias,
    const float* B_norm_w, const float* C_norm_w, PrepArgs a) {
    const int64_t bt = blockIdx.x;
    const int b = (int)(bt / a.T), t = (int)(bt % a.T);
    const __nv_bfloat16* row = zxbcdt + bt * a.R;
    const int HP = a.H * a.P;
    for (int i = threadIdx.x; i < HP; i += blockDim.x) {
        z[bt * HP + i] = row[a.ip_z + i];
        x[bt * HP + i] = row[a.ip_x + i];
    }
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int job = w; job < 2 * a.G; job += blockDim.x / 32) {
        const bool isC = job & 1;
        const int g = job >> 1;
        const __nv_bfloat16* src = row + (isC ? a.ip_C : a.ip_B) + g * a.N;
        const float* wt = isC ? C_norm_w : B_norm_w;
        float ss = 0.f;
        for (int n = lane; n < a.N; n += 32) {
            const float u = __bfloat162float(src[n]);
            ss += u * u;
        }
        const float r = rsqrtf(warp_sum(ss) / a.N + a.eps);
        __nv_bfloat16* dst = (isC ? q_raw : k_raw) + (bt * a.G + g) * a.N;
        for (int n = lane; n < a.N; n += 32) dst[n] = __float2bfloat16(__bfloat162float(src[n]) * r * wt[n]);
        if (lane == 0) (isC ? rstd_q : rstd_k)[bt * a.G + g] = r;
    }
    if (threadIdx.x < a.H) {
        const int h = threadIdx.x;
        const int64_t bht = ((int64_t)b * a.H + h) * a.T + t;
        const float A = -fmaxf(a_act(a.heavytail, __bfloat162float(row[a.ip_dd_A + h])), a.a_floor);
        const float delta = softplus(__bfloat162float(row[a.ip_dd_dt + h]) + dt_bias[h]);
        dt[bht] = delta;
        adt[bht] = A * delta;
        trap[bht] = __bfloat162float(row[a.ip_trap + h]);
    }
    if (threadIdx.x < a.S) theta[bt * a.S + threadIdx.x] = __bfloat162float(row[a.ip_angles + threadIdx.x]);
}

// grid (ceil(B*T / kTokBwd)). Per token: copies dz, dx, dtrap, dtheta into the row; the B/C
// norm backward  dsrc = r (dout w) - src r^3 / N sum(dout w src),  dw += dout src r  (warps
// 0 .. 2G-1, lane-owned channels accumulated over the CTA's tokens); the per-head chain
// dA = dadt dt, d dd_A = -dA act'(dd_A) (0 at the floor), d dd_dt = (ddt + dadt A) softplus'.
// Partials: [cta][N] for dB_norm_w, [cta][N] for dC_norm_w, [cta][H] for ddt_bias.
__global__ void __launch_bounds__(kThreads) mamba3_prep_backward_kernel(
    __nv_bfloat16* dzxbcdt, float* part_b, float* part_c, float* part_dtb, const __nv_bfloat16* dz,
    const __nv_bfloat16* dx, const float* dq_raw, const float* dk_raw, const float* dadt, const float* ddt,
    const float* dtrap, const float* dtheta, const __nv_bfloat16* zxbcdt, const float* rstd_q, const float* rstd_k,
    const float* dt_bias, const float* B_norm_w, const float* C_norm_w, PrepArgs a, int64_t rows) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int HP = a.H * a.P;
    float dw_acc[2] = {0.f, 0.f};  // this lane's channels n = lane, lane + 32 (N <= 64, G = 1)
    float dtb = 0.f;
    for (int k = 0; k < kTokBwd; k++) {
        const int64_t bt = (int64_t)blockIdx.x * kTokBwd + k;
        if (bt >= rows) break;
        const int b = (int)(bt / a.T), t = (int)(bt % a.T);
        const __nv_bfloat16* row = zxbcdt + bt * a.R;
        __nv_bfloat16* drow = dzxbcdt + bt * a.R;
        for (int i = threadIdx.x; i < HP; i += blockDim.x) {
            drow[a.ip_z + i] = dz[bt * HP + i];
            drow[a.ip_x + i] = dx[bt * HP + i];
        }
        for (int job = w; job < 2 * a.G; job += blockDim.x / 32) {
            const bool isC = job & 1;
            const int g = job >> 1;
            const __nv_bfloat16* src = row + (isC ? a.ip_C : a.ip_B) + g * a.N;
            const float* wt = isC ? C_norm_w : B_norm_w;
            const float* dout = (isC ? dq_raw : dk_raw) + (bt * a.G + g) * a.N;
            const float r = (isC ? rstd_q : rstd_k)[bt * a.G + g];
            float dot = 0.f;
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int n = lane + 32 * j;
                if (n >= a.N) continue;
                const float s = __bfloat162float(src[n]);
                dot += dout[n] * wt[n] * s;
                dw_acc[j] += dout[n] * s * r;
            }
            dot = warp_sum(dot);
            __nv_bfloat16* dsrc = drow + (isC ? a.ip_C : a.ip_B) + g * a.N;
            for (int n = lane; n < a.N; n += 32) {
                const float s = __bfloat162float(src[n]);
                dsrc[n] = __float2bfloat16(r * dout[n] * wt[n] - s * r * r * r / a.N * dot);
            }
        }
        if (threadIdx.x < a.H) {
            const int h = threadIdx.x;
            const int64_t bht = ((int64_t)b * a.H + h) * a.T + t;
            const float ddA = __bfloat162float(row[a.ip_dd_A + h]);
            const float pre = __bfloat162float(row[a.ip_dd_dt + h]) + dt_bias[h];
            const float act = a_act(a.heavytail, ddA);
            const float A = -fmaxf(act, a.a_floor), delta = softplus(pre);
            const float dA = dadt[bht] * delta;
            drow[a.ip_dd_A + h] = __float2bfloat16(act > a.a_floor ? -dA * a_act_grad(a.heavytail, ddA) : 0.f);
            const float dpre = (ddt[bht] + dadt[bht] * A) * (pre > 20.f ? 1.f : sigmoid(pre));
            drow[a.ip_dd_dt + h] = __float2bfloat16(dpre);
            dtb += dpre;
            drow[a.ip_trap + h] = __float2bfloat16(dtrap[bht]);
        }
        if (threadIdx.x < a.S) drow[a.ip_angles + threadIdx.x] = __float2bfloat16(dtheta[bt * a.S + threadIdx.x]);
    }
    // norm-weight partials: warp 0 holds B's sums, warp 1 C's
    if (w < 2) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int n = lane + 32 * j;
            if (n < a.N) (w ? part_c : part_b)[(int64_t)blockIdx.x * a.N + n] = dw_acc[j];
        }
    }
    if (threadIdx.x < a.H) part_dtb[(int64_t)blockIdx.x * a.H + threadIdx.x] = dtb;
}
}  // namespace

// ---- kernel launchers
void mamba3_prep_forward(__nv_bfloat16* z, __nv_bfloat16* x, __nv_bfloat16* q_raw, __nv_bfloat16* k_raw, float* adt,
                         float* dt, float* trap, float* theta, float* rstd_q, float* rstd_k,
                         const __nv_bfloat16* zxbcdt, const float* dt_bias, const float* B_norm_w,
                         const float* C_norm_w, const Mamba3Dims& d, cudaStream_t stream) {
    PrepArgs a = prep_args(d);
    if (a.H > kThreads || a.S > kThreads) fatal("mamba3 prep: %d heads / %d angles above %d", a.H, a.S, kThreads);
    mamba3_prep_forward_kernel<<<(unsigned)((int64_t)d.B * d.T), kThreads, 0, stream>>>(
        z, x, q_raw, k_raw, adt, dt, trap, theta, rstd_q, rstd_k, zxbcdt, dt_bias, B_norm_w, C_norm_w, a);
    cudaCheckLaunch();
}

void mamba3_prep_backward(__nv_bfloat16* dzxbcdt, float* ddt_bias, float* dB_norm_w, float* dC_norm_w,
                          const __nv_bfloat16* dz, const __nv_bfloat16* dx, const float* dq_raw, const float* dk_raw,
                          const float* dadt, const float* ddt, const float* dtrap, const float* dtheta,
                          const __nv_bfloat16* zxbcdt, const float* rstd_q, const float* rstd_k, const float* dt_bias,
                          const float* B_norm_w, const float* C_norm_w, const Mamba3Dims& d, cudaStream_t stream) {
    PrepArgs a = prep_args(d);
    if (a.H > kThreads || a.S > kThreads) fatal("mamba3 prep: %d heads / %d angles above %d", a.H, a.S, kThreads);
    // The norm-weight sums are kept per lane for group 0 only: the seed (and every config we run)
    // has G = 1; larger G would need per-group accumulators.
    if (a.G != 1) fatal("mamba3_prep_backward: ngroups %d, the kernel supports 1", a.G);
    if (a.N > 64) fatal("mamba3_prep_backward: d_state %d above 64", a.N);
    const int64_t rows = (int64_t)d.B * d.T;
    const int parts = ceil_div(rows, kTokBwd);
    float* scratch = reduce_scratch((int64_t)parts * (2 * a.N + a.H));
    float *pb = scratch, *pc = pb + (int64_t)parts * a.N, *pd = pc + (int64_t)parts * a.N;
    mamba3_prep_backward_kernel<<<parts, kThreads, 0, stream>>>(dzxbcdt, pb, pc, pd, dz, dx, dq_raw, dk_raw, dadt, ddt,
                                                                dtrap, dtheta, zxbcdt, rstd_q, rstd_k, dt_bias,
                                                                B_norm_w, C_norm_w, a, rows);
    cudaCheckLaunch();
    reduce_partials(dB_norm_w, pb, parts, a.N, true, stream);
    reduce_partials(dC_norm_w, pc, parts, a.N, true, stream);
    reduce_partials(ddt_bias, pd, parts, a.H, true, stream);
}
