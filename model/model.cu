// The whole model on the GPU: arenas, forward, backward (see model/model.cuh). Every line of the
// forward and backward mirrors model_forward_cpu / model_backward_cpu in model/model.cpp; the
// comments quote the CPU line each group of launches replaces.
#include "model/model.cuh"
#include "model/attention.cuh"  // defines: attn_qkv_prep_*, attention_core_*
#include "model/embedding.cuh"  // defines: embedding_forward, embedding_backward
#include "model/gemm.cuh"       // defines: gemm, cast_f32_to_bf16
#include "model/loss.cuh"       // defines: softcap_ce_forward_backward, loss_mean
#include "model/mamba3.cuh"     // defines: mamba3_prep_forward, mamba3_prep_backward
#include "model/mamba3_scan.cuh"  // defines: mamba3_scan_forward, mamba3_scan_backward(_scratch_bytes)
#include "model/mlp.cuh"        // defines: mlp_act_forward, mlp_act_backward
#include "model/rmsnorm.cuh"    // defines: rmsnorm_forward, rmsnorm_backward
#include "model/wiring.cuh"     // defines: scale_add_*, mix_norm_*, mix_add_norm_forward, norm_scale_add_backward
#include <cstring>
#include <vector>

namespace {

// One walk lays out the arena: with base == nullptr it only sizes it.
struct Walker {
    char* base;
    size_t off = 0;
    template <typename X>
    X* take(int64_t n) {
        X* at = base ? (X*)(base + off) : nullptr;
        off += ((size_t)n * sizeof(X) + 255) / 256 * 256;
        return at;
    }
};

bool has_skip_in(const Config& c, int l) {  // decoder j = l - nenc adds skip_weight[j] * skips.pop()
    int j = l - c.num_encoder_layers();
    return j >= 0 && j < c.num_skips();
}

size_t acts_layout(const Config& c, int B, int T, char* base, GpuActs* out) {
    if (c.num_layers > kMaxLayers) fatal("config: num_layers %d > kMaxLayers %d", c.num_layers, kMaxLayers);
    Walker w{base};
    const int64_t N = (int64_t)B * T, C = c.model_dim, F = c.mlp_hidden(), V = c.vocab_size;
    const int NH = c.num_heads, NKV = c.num_kv_heads, HD = c.head_dim();
    GpuActs a;
    memset(&a, 0, sizeof(a));
    a.tokens = w.take<int32_t>(N);
    a.targets = w.take<int32_t>(N);
    a.emb = w.take<float>(N * C);
    a.x0 = w.take<float>(N * C);
    a.x0_rstd = w.take<float>(N);
    bool any_attn = false, any_mamba = false;
    for (int l = 0; l < c.num_layers; l++) {
        GpuLayerActs& L = a.layers[l];
        L.x_in = has_skip_in(c, l) ? w.take<float>(N * C) : (l == 0 ? a.x0 : a.layers[l - 1].x_out);
        L.n1 = w.take<bf16>(N * C);
        L.n1_rstd = w.take<float>(N);
        if (c.is_attn(l)) {
            any_attn = true;
            L.qkv = w.take<bf16>(N * c.qkv_rows());
            L.q = w.take<bf16>(N * NH * HD);
            L.k = w.take<bf16>(N * NKV * HD);
            L.v = w.take<bf16>(N * NKV * HD);
            L.y = w.take<bf16>(N * NH * HD);
            L.q_rstd = w.take<float>(N * NH);
            L.k_rstd = w.take<float>(N * NKV);
            L.lse = w.take<float>(N * NH);
        } else {
            any_mamba = true;
            Mamba3Dims d = mamba3_dims(c, B, T);
            const int64_t BHT = (int64_t)B * d.H * T;
            L.zxbcdt = w.take<bf16>(N * d.R);
            L.z = w.take<bf16>(N * d.DI);
            L.xs = w.take<bf16>(N * d.DI);
            L.q_raw = w.take<bf16>(N * d.G * d.N);
            L.k_raw = w.take<bf16>(N * d.G * d.N);
            L.adt = w.take<float>(BHT);
            L.dt = w.take<float>(BHT);
            L.trap = w.take<float>(BHT);
            L.theta = w.take<float>(N * d.S);
            L.rstd_q = w.take<float>(N * d.G);
            L.rstd_k = w.take<float>(N * d.G);
            L.phi = w.take<float>(BHT * d.S);
            L.ys = w.take<bf16>(N * d.DI);
            L.states = w.take<bf16>((int64_t)B * d.H * d.nchunks() * d.P * d.N);
            L.o = w.take<bf16>(N * d.DI);
        }
        L.mix_out = w.take<bf16>(N * C);
        L.x_mid = w.take<float>(N * C);
        L.n2 = w.take<bf16>(N * C);
        L.n2_rstd = w.take<float>(N);
        L.h = w.take<bf16>(N * F);
        L.a = w.take<bf16>(N * F);
        L.mlp_out = w.take<bf16>(N * C);
        L.x_out = w.take<float>(N * C);
    }
    a.xf = w.take<bf16>(N * C);
    a.xf_rstd = w.take<float>(N);
    a.logits = w.take<bf16>(N * V);
    a.losses = w.take<float>(N);
    a.loss = w.take<float>(1);
    // backward scratch
    a.dx = w.take<float>(N * C);
    a.dtmp = w.take<float>(N * C);
    a.dx0 = w.take<float>(N * C);
    a.dn = w.take<float>(N * C);
    a.dxf = w.take<float>(N * C);
    for (int l = 0; l < c.num_skips(); l++) a.dskip[l] = w.take<float>(N * C);
    a.emb_scratch = w.take<char>((int64_t)embedding_backward_scratch_bytes(N, (int)V));
    a.dres = w.take<bf16>(N * C);
    a.dhid = w.take<bf16>(N * F);
    if (any_attn) {
        a.dy = w.take<bf16>(N * NH * HD);
        a.dq = w.take<bf16>(N * NH * HD);
        a.dk = w.take<bf16>(N * NKV * HD);
        a.dv = w.take<bf16>(N * NKV * HD);
        a.dqkv = w.take<bf16>(N * c.qkv_rows());
        a.delta = w.take<float>(N * NH);
    }
    if (any_mamba) {
        Mamba3Dims d = mamba3_dims(c, B, T);
        const int64_t BHT = (int64_t)B * d.H * T;
        a.d_o = w.take<bf16>(N * d.DI);
        a.dxs = w.take<bf16>(N * d.DI);
        a.dz = w.take<bf16>(N * d.DI);
        a.dzx = w.take<bf16>(N * d.R);
        a.dq_raw = w.take<float>(N * d.G * d.N);
        a.dk_raw = w.take<float>(N * d.G * d.N);
        a.dadt = w.take<float>(BHT);
        a.ddt = w.take<float>(BHT);
        a.dtrap = w.take<float>(BHT);
        a.dtheta = w.take<float>(N * d.S);
        a.scan_scratch = w.take<char>((int64_t)mamba3_scan_backward_scratch_bytes(d));
    }
    if (out) *out = a;
    return w.off;
}

__global__ void scale_kernel(float* x, int64_t n, float s) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= s;
}
__global__ void add_kernel(float* x, const float* y, int64_t n) {  // x += y
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}
int grid_for(int64_t n) { return (int)std::min<int64_t>((n + 255) / 256, 132 * 16); }
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s) {
    add_kernel<<<grid_for(n), 256, 0, s>>>(x, y, n);
    cudaCheckLaunch();
}

}  // namespace

size_t gpu_acts_bytes(const Config& c, int B, int T) { return acts_layout(c, B, T, nullptr, nullptr); }

void gpu_scale(float* x, int64_t n, float s, cudaStream_t stream) {
    scale_kernel<<<grid_for(n), 256, 0, stream>>>(x, n, s);
    cudaCheckLaunch();
}

void gpu_model_create(GpuModel* m, const Config& c, int B, int T, cudaStream_t stream) {
    *m = GpuModel();
    m->cfg = c;
    m->B = B;
    m->T = T;
    m->max_tokens = (int64_t)B * T;
    m->stream = stream;
    m->arena = param_arena_size(c);
    cudaCheck(cudaMalloc(&m->params, m->arena * sizeof(float)));
    cudaCheck(cudaMalloc(&m->params_bf16, m->arena * sizeof(bf16)));
    cudaCheck(cudaMalloc(&m->grads, m->arena * sizeof(float)));
    cudaCheck(cudaMemset(m->grads, 0, m->arena * sizeof(float)));
    // padding between tensors stays 0 in the bf16 arena too (cast copies whatever params holds)
    cudaCheck(cudaMemset(m->params, 0, m->arena * sizeof(float)));
    param_bind(c, m->params, &m->p);
    param_bind(c, m->grads, &m->g);
    m->acts_bytes = gpu_acts_bytes(c, B, T);
    cudaCheck(cudaMalloc(&m->acts_mem, m->acts_bytes));
    acts_layout(c, B, T, (char*)m->acts_mem, &m->a);
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaMallocHost(&m->host_io[i], 2 * (size_t)B * T * sizeof(int32_t)));
        cudaCheck(cudaEventCreateWithFlags(&m->copy_done[i], cudaEventDisableTiming));
    }
}

void gpu_model_destroy(GpuModel* m) {
    cudaCheck(cudaFree(m->params));
    cudaCheck(cudaFree(m->params_bf16));
    cudaCheck(cudaFree(m->grads));
    cudaCheck(cudaFree(m->acts_mem));
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaFreeHost(m->host_io[i]));
        cudaCheck(cudaEventDestroy(m->copy_done[i]));
    }
    *m = GpuModel();
}

void gpu_model_reshape(GpuModel* m, int B, int T) {
    if (B < 1 || T < 1 || (int64_t)B * T > m->max_tokens || gpu_acts_bytes(m->cfg, B, T) > m->acts_bytes)
        fatal("gpu_model_reshape: (%d, %d) does not fit the arenas made for %lld tokens, %zu bytes", B, T,
              (long long)m->max_tokens, m->acts_bytes);
    m->B = B;
    m->T = T;
    acts_layout(m->cfg, B, T, (char*)m->acts_mem, &m->a);
}

void gpu_model_upload_params(GpuModel* m, const float* host_params) {
    cudaCheck(cudaMemcpyAsync(m->params, host_params, m->arena * sizeof(float), cudaMemcpyHostToDevice, m->stream));
    gpu_model_refresh_bf16(m);
    cudaCheck(cudaStreamSynchronize(m->stream));
}

void gpu_model_refresh_bf16(GpuModel* m) { cast_f32_to_bf16(m->params_bf16, m->params, m->arena, m->stream); }

void gpu_model_zero_grads(GpuModel* m) {
    cudaCheck(cudaMemsetAsync(m->grads, 0, m->arena * sizeof(float), m->stream));
}

void gpu_model_load_batch(GpuModel* m, const int32_t* windows) {
    const int64_t N = (int64_t)m->B * m->T;
    // the staging buffer's previous copy (two batches ago) must have left it
    const int i = m->io_next;
    m->io_next ^= 1;
    cudaCheck(cudaEventSynchronize(m->copy_done[i]));
    int32_t* io = m->host_io[i];
    for (int b = 0; b < m->B; b++) {
        const int32_t* w = windows + (int64_t)b * (m->T + 1);
        memcpy(io + (int64_t)b * m->T, w, m->T * sizeof(int32_t));
        memcpy(io + N + (int64_t)b * m->T, w + 1, m->T * sizeof(int32_t));
    }
    // stream order: the copy runs after every launch already queued (which may still read the
    // previous batch's tokens), so the device buffers are never overwritten under a kernel
    cudaCheck(cudaMemcpyAsync(m->a.tokens, io, N * sizeof(int32_t), cudaMemcpyHostToDevice, m->stream));
    cudaCheck(cudaMemcpyAsync(m->a.targets, io + N, N * sizeof(int32_t), cudaMemcpyHostToDevice, m->stream));
    cudaCheck(cudaEventRecord(m->copy_done[i], m->stream));
}

float gpu_model_read_loss(GpuModel* m) {
    float loss;
    cudaCheck(cudaMemcpyAsync(&loss, m->a.loss, sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
    return loss;
}

// ---- forward

namespace {

// Rows [t0, t0 + n) of every one of `outer` (T, inner-byte) rows: src -> dst (gather, dst is
// (outer, n)) or dst -> src (scatter back into the (outer, T) layout).
void time_rows(void* piece, void* whole, int64_t outer, int T, int t0, int n, size_t inner, bool gather,
               cudaStream_t s) {
    char* w = (char*)whole + (size_t)t0 * inner;
    if (gather) cudaCheck(cudaMemcpy2DAsync(piece, n * inner, w, T * inner, n * inner, outer, cudaMemcpyDeviceToDevice, s));
    else cudaCheck(cudaMemcpy2DAsync(w, T * inner, piece, n * inner, n * inner, outer, cudaMemcpyDeviceToDevice, s));
}

// The scan of one Mamba layer in two pieces, [0, fin_at) ending in *fin and [fin_at, T) starting
// from it (as mamba3_block_forward_states in model/model.cpp): each piece's inputs are gathered
// into the backward's scratch (same shapes there), its gated output scattered back into L.o.
void scan_two_pieces(const GpuActs& a, const GpuLayerActs& L, const BlockParams& W, const Config& c, int B, int T,
                     const Mamba3States<float>* init, const Mamba3States<float>* fin, int fin_at, cudaStream_t s) {
    const Mamba3Dims d0 = mamba3_dims(c, B, T);
    bf16 *q = a.dzx, *k = a.dzx + (int64_t)B * T * d0.G * d0.N;  // dzx (N, R) holds both: R > 2 G N
    for (int piece = 0; piece < 2; piece++) {
        const int t0 = piece ? fin_at : 0, n = piece ? T - fin_at : fin_at;
        const Mamba3Dims d = mamba3_dims(c, B, n);
        const size_t b16 = sizeof(bf16), f32 = sizeof(float);
        time_rows(q, L.q_raw, B, T, t0, n, d.G * d.N * b16, true, s);
        time_rows(k, L.k_raw, B, T, t0, n, d.G * d.N * b16, true, s);
        time_rows(a.dxs, L.xs, B, T, t0, n, d.DI * b16, true, s);
        time_rows(a.dz, L.z, B, T, t0, n, d.DI * b16, true, s);
        time_rows(a.dadt, L.adt, (int64_t)B * d.H, T, t0, n, f32, true, s);
        time_rows(a.ddt, L.dt, (int64_t)B * d.H, T, t0, n, f32, true, s);
        time_rows(a.dtrap, L.trap, (int64_t)B * d.H, T, t0, n, f32, true, s);
        time_rows(a.dtheta, L.theta, B, T, t0, n, d.S * f32, true, s);
        mamba3_scan_forward(a.d_o, piece ? nullptr : fin, L.phi, L.ys, L.states, q, k, a.dxs, a.dadt, a.ddt, a.dtrap,
                            a.dtheta, W.C_bias, W.B_bias, W.D, a.dz, piece ? fin : init, d, s);
        time_rows(a.d_o, L.o, B, T, t0, n, d.DI * b16, false, s);
    }
}

// The forward of gpu_model_forward (grad, tau = 1, no states) and gpu_model_forward_states.
void forward(GpuModel* m, bool grad, double temperature, const ModelStates<float>* init,
             const ModelStates<float>* fin, int fin_at) {
    const Config& c = m->cfg;
    const GpuActs& a = m->a;
    const ModelParams& p = m->p;
    cudaStream_t s = m->stream;
    const int B = m->B, T = m->T;
    const int64_t N = (int64_t)B * T;
    const int C = c.model_dim, V = c.vocab_size, F = c.mlp_hidden();
    const int NH = c.num_heads, NKV = c.num_kv_heads, HD = c.head_dim(), AC = NH * HD;
    const int nenc = c.num_encoder_layers();
    const float eps = (float)c.norm_eps;
    const Mamba3Dims d = mamba3_dims(c, B, T);

    // x = rmsnorm(wte[tokens]); x0 = x
    embedding_forward(a.emb, a.tokens, p.wte, N, C, V, s);
    rmsnorm_forward(a.x0, nullptr, a.x0_rstd, a.emb, N, C, eps, s);
    const float* x = a.x0;
    std::vector<const float*> skips;
    for (int l = 0; l < c.num_layers; l++) {
        const GpuLayerActs& L = a.layers[l];
        const BlockParams& W = p.blocks[l];
        if (has_skip_in(c, l)) {  // x = x + skip_weight[j] * skips.pop()
            scale_add_forward(L.x_in, x, skips.back(), nullptr, p.skip_weight + (int64_t)(l - nenc) * C, N, C, s);
            skips.pop_back();
        }  // else L.x_in aliases x (the layout bound it so)
        // x = resid_mix[0] * x + resid_mix[1] * x0; the mixer's input rmsnorm(x) (x itself is not
        // stored: mix_add_norm_forward and the backward recompute it from x_in and x0)
        mix_norm_forward(L.n1, L.n1_rstd, L.x_in, a.x0, W.resid_mix, N, C, eps, s);
        if (c.is_attn(l)) {
            gemm(L.qkv, GemmOut::bf16, L.n1, m->w16(W.attn_qkv), (int)N, c.qkv_rows(), C, false, true, false, s);
            attn_qkv_prep_forward(L.q, L.k, L.v, L.q_rstd, L.k_rstd, L.qkv, W.q_gain, B, T, NH, NKV, HD,
                                  (float)c.rope_base, eps, s);
            attention_core_forward(L.y, L.lse, L.q, L.k, L.v, B, T, NH, NKV, HD, s);
            gemm(L.mix_out, GemmOut::bf16, L.y, m->w16(W.attn_proj), (int)N, C, AC, false, true, false, s);
        } else {  // in_proj -> prep -> chunked scan (gated) -> out_proj
            gemm(L.zxbcdt, GemmOut::bf16, L.n1, m->w16(W.in_proj), (int)N, d.R, C, false, true, false, s);
            mamba3_prep_forward(L.z, L.xs, L.q_raw, L.k_raw, L.adt, L.dt, L.trap, L.theta, L.rstd_q, L.rstd_k,
                                L.zxbcdt, W.dt_bias, W.B_norm_w, W.C_norm_w, d, s);
            const Mamba3States<float>* li = init ? &init->layers[l] : nullptr;
            const Mamba3States<float>* lf = fin ? &fin->layers[l] : nullptr;
            if (lf && fin_at < T)
                scan_two_pieces(a, L, W, c, B, T, li, lf, fin_at, s);
            else
                mamba3_scan_forward(L.o, lf, L.phi, L.ys, L.states, L.q_raw, L.k_raw, L.xs, L.adt, L.dt, L.trap,
                                    L.theta, W.C_bias, W.B_bias, W.D, L.z, li, d, s);
            gemm(L.mix_out, GemmOut::bf16, L.o, m->w16(W.out_proj), (int)N, C, d.DI, false, true, false, s);
        }
        // x = x + mixer_scale * Mixer(rmsnorm(x)); the MLP's input rmsnorm(x)
        mix_add_norm_forward(L.x_mid, L.n2, L.n2_rstd, L.x_in, a.x0, W.resid_mix, L.mix_out, W.mixer_scale, N, C, eps, s);
        // x = x + mlp_scale * proj(leaky_relu(fc(rmsnorm(x)), 0.5)^2)
        gemm(L.h, GemmOut::bf16, L.n2, m->w16(W.mlp_fc), (int)N, F, C, false, true, false, s);
        mlp_act_forward(L.a, L.h, N * F, s);
        gemm(L.mlp_out, GemmOut::bf16, L.a, m->w16(W.mlp_proj), (int)N, C, F, false, true, false, s);
        scale_add_forward(L.x_out, L.x_mid, nullptr, L.mlp_out, W.mlp_scale, N, C, s);
        x = L.x_out;
        if (l < nenc) skips.push_back(x);
    }
    // logits = rmsnorm(x) @ wte^T; loss = mean CE(30 tanh(logits / 30), targets)
    rmsnorm_forward(nullptr, a.xf, a.xf_rstd, x, N, C, eps, s);
    gemm(a.logits, GemmOut::bf16, a.xf, m->w16(p.wte), (int)N, V, C, false, true, false, s);
    if (temperature == 1.0) {
        softcap_ce_forward_backward(a.losses, grad ? a.logits : nullptr, a.logits, a.targets, N, V,
                                    (float)c.logit_softcap, s);
        loss_mean(a.loss, a.losses, N, s);
    } else {
        softcap_ce_losses(a.losses, a.logits, a.targets, N, V, (float)c.logit_softcap, (float)temperature, s);
    }
}

}  // namespace

void gpu_model_forward(GpuModel* m, bool grad) { forward(m, grad, 1.0, nullptr, nullptr, m->T); }

void gpu_model_forward_states(GpuModel* m, double temperature, const ModelStates<float>* init,
                              const ModelStates<float>* fin, int fin_at) {
    if (fin && (fin_at < 1 || fin_at > m->T)) fatal("gpu_model_forward_states: fin_at %d outside [1, %d]", fin_at, m->T);
    for (int l = 0; fin && init && l < m->cfg.num_layers; l++)
        if (fin->layers[l].angle && fin->layers[l].angle == init->layers[l].angle)
            fatal("gpu_model_forward_states: fin may not alias init");
    forward(m, false, temperature, init, fin, fin_at);
}

// ---- backward

void gpu_model_backward(GpuModel* m) {
    const Config& c = m->cfg;
    const GpuActs& a = m->a;
    const ModelParams& p = m->p;
    const ModelParams& g = m->g;
    cudaStream_t s = m->stream;
    const int B = m->B, T = m->T;
    const int64_t N = (int64_t)B * T, NC = N * c.model_dim;
    const int C = c.model_dim, V = c.vocab_size, F = c.mlp_hidden();
    const int NH = c.num_heads, NKV = c.num_kv_heads, HD = c.head_dim(), AC = NH * HD;
    const int nenc = c.num_encoder_layers();
    const Mamba3Dims d = mamba3_dims(c, B, T);
    const int n = (int)N;

    // head: dlogits (bf16, in a.logits) from the forward; logits = xf wte^T
    gemm(g.wte, GemmOut::f32, a.logits, a.xf, V, C, n, true, false, true, s);
    gemm(a.dxf, GemmOut::f32, a.logits, m->w16(p.wte), n, C, V, false, false, false, s);
    const float* x_last = c.num_layers ? a.layers[c.num_layers - 1].x_out : a.x0;
    rmsnorm_backward(a.dx, a.dxf, x_last, a.xf_rstd, N, C, s);  // dx = d x_out[last]
    cudaCheck(cudaMemsetAsync(a.dx0, 0, NC * sizeof(float), s));

    float* dx = a.dx;   // the residual stream's gradient, fp32
    float* tmp = a.dtmp;
    for (int l = c.num_layers - 1; l >= 0; l--) {
        const GpuLayerActs& L = a.layers[l];
        const BlockParams& W = p.blocks[l];
        const BlockParams& G = g.blocks[l];
        if (l < nenc && l < c.num_skips()) add_inplace(dx, a.dskip[l], NC, s);  // skips.append(x)'s gradient

        // x_out = x_mid + mlp_scale * proj(act(fc(n2)))
        scale_add_backward(nullptr, a.dres, G.mlp_scale, dx, nullptr, L.mlp_out, W.mlp_scale, N, C, s);
        gemm(G.mlp_proj, GemmOut::f32, a.dres, L.a, C, F, n, true, false, true, s);
        gemm(a.dhid, GemmOut::bf16, a.dres, m->w16(W.mlp_proj), n, F, C, false, false, false, s);
        mlp_act_backward(a.dhid, a.dhid, L.h, N * F, s);
        gemm(G.mlp_fc, GemmOut::f32, a.dhid, L.n2, F, C, n, true, false, true, s);
        gemm(a.dn, GemmOut::f32, a.dhid, m->w16(W.mlp_fc), n, C, F, false, false, false, s);
        // dx = d x_mid (the norm's branch added), and x_mid = x_mix + mixer_scale * Mixer(n1)'s
        // backward in the same pass: dres = mixer_scale * dx, d mixer_scale
        norm_scale_add_backward(dx, a.dres, G.mixer_scale, a.dn, L.x_mid, L.n2_rstd, L.mix_out, W.mixer_scale, N, C, s);
        if (c.is_attn(l)) {
            gemm(G.attn_proj, GemmOut::f32, a.dres, L.y, C, AC, n, true, false, true, s);
            gemm(a.dy, GemmOut::bf16, a.dres, m->w16(W.attn_proj), n, AC, C, false, false, false, s);
            attention_core_backward(a.dq, a.dk, a.dv, a.delta, a.dy, L.q, L.k, L.v, L.y, L.lse, B, T, NH, NKV, HD, s);
            attn_qkv_prep_backward(a.dqkv, G.q_gain, a.dq, a.dk, a.dv, L.qkv, L.q_rstd, L.k_rstd, W.q_gain, B, T, NH,
                                   NKV, HD, (float)c.rope_base, s);
            gemm(G.attn_qkv, GemmOut::f32, a.dqkv, L.n1, c.qkv_rows(), C, n, true, false, true, s);
            gemm(a.dn, GemmOut::f32, a.dqkv, m->w16(W.attn_qkv), n, C, c.qkv_rows(), false, false, false, s);
        } else {
            gemm(G.out_proj, GemmOut::f32, a.dres, L.o, C, d.DI, n, true, false, true, s);
            gemm(a.d_o, GemmOut::bf16, a.dres, m->w16(W.out_proj), n, d.DI, C, false, false, false, s);
            mamba3_scan_backward(a.dq_raw, a.dk_raw, a.dxs, a.dadt, a.ddt, a.dtrap, a.dtheta, G.C_bias, G.B_bias, G.D,
                                 a.dz, nullptr, a.d_o, nullptr, L.phi, L.ys, L.states, L.q_raw, L.k_raw, L.xs, L.adt,
                                 L.dt, L.trap, L.theta, W.C_bias, W.B_bias, W.D, L.z, nullptr, a.scan_scratch, d, s);
            mamba3_prep_backward(a.dzx, G.dt_bias, G.B_norm_w, G.C_norm_w, a.dz, a.dxs, a.dq_raw, a.dk_raw, a.dadt,
                                 a.ddt, a.dtrap, a.dtheta, L.zxbcdt, L.rstd_q, L.rstd_k, W.dt_bias, W.B_norm_w,
                                 W.C_norm_w, d, s);
            gemm(G.in_proj, GemmOut::f32, a.dzx, L.n1, d.R, C, n, true, false, true, s);
            gemm(a.dn, GemmOut::f32, a.dzx, m->w16(W.in_proj), n, C, d.R, false, false, false, s);
        }
        // d x_mix = dx + the norm's branch, then x_mix = resid_mix[0] * x_in + resid_mix[1] * x0
        mix_norm_backward(tmp, a.dx0, G.resid_mix, a.dn, dx, L.x_in, a.x0, W.resid_mix, L.n1_rstd, N, C, s);
        std::swap(dx, tmp);  // dx = d x_in

        // decoder j: x_in = x + skip_weight[j] * x_out[nenc - 1 - j]; dx passes through to x
        if (has_skip_in(c, l)) {
            int j = l - nenc, src = nenc - 1 - j;
            scale_add_backward(a.dskip[src], nullptr, g.skip_weight + (int64_t)j * C, dx, a.layers[src].x_out,
                               nullptr, p.skip_weight + (int64_t)j * C, N, C, s);
        }
    }
    add_inplace(dx, a.dx0, NC, s);  // x0: the first block's input and every block's resid_mix input
    rmsnorm_backward(tmp, dx, a.emb, a.x0_rstd, N, C, s);
    embedding_backward(g.wte, tmp, a.tokens, N, C, V, a.emb_scratch, s);
}
