// CPU reference of the whole model: arenas, forward, backward (see model.h).
#include "model/model.h"
#include "model/attention.h"
#include "model/common.h"
#include "model/embedding.h"
#include "model/linear.h"
#include "model/loss.h"
#include "model/mlp.h"
#include "model/rmsnorm.h"
#include <vector>

// The activation layout, walked once for sizing (base == nullptr) and once for binding.
template <typename F>
static int64_t acts_layout(const Config& c, int B, int T, F* base, ModelActs<F>* a) {
    int64_t off = 0;
    auto take = [&](int64_t n) -> F* {
        F* at = base ? base + off : nullptr;
        off += (n + 63) / 64 * 64;  // 256-byte aligned like the parameter arena
        return at;
    };
    int64_t N = (int64_t)B * T, C = c.model_dim;
    int NH = c.num_heads, NKV = c.num_kv_heads, HD = c.head_dim();
    ModelActs<F> m = ModelActs<F>();
    m.emb = take(N * C);
    m.x0 = take(N * C);
    m.x0_rstd = take(N);
    for (int l = 0; l < c.num_layers; l++) {
        LayerActs<F>& L = m.layers[l];
        L = LayerActs<F>();
        L.x_in = take(N * C);
        L.x_mix = take(N * C);
        L.n1 = take(N * C);
        L.n1_rstd = take(N);
        if (c.is_attn(l)) {
            L.qkv = take(N * c.qkv_rows());
            L.q = take(N * NH * HD);
            L.k = take(N * NKV * HD);
            L.v = take(N * NKV * HD);
            L.q_rstd = take(N * NH);
            L.k_rstd = take(N * NKV);
            L.y = take(N * NH * HD);
            L.lse = take(N * NH);
        } else {
            L.mamba = take(mamba3_block_act_size(c, B, T));
        }
        L.mix_out = take(N * C);
        L.x_mid = take(N * C);
        L.n2 = take(N * C);
        L.n2_rstd = take(N);
        L.h = take(N * c.mlp_hidden());
        L.a = take(N * c.mlp_hidden());
        L.mlp_out = take(N * C);
        L.x_out = take(N * C);
    }
    m.xf = take(N * C);
    m.xf_rstd = take(N);
    m.logits = take(N * c.vocab_size);
    m.losses = take(N);
    if (a) *a = m;
    return off;
}

int64_t model_acts_size(const Config& c, int B, int T) {
    if (c.num_layers > kMaxLayers) fatal("config: num_layers %d > kMaxLayers %d", c.num_layers, kMaxLayers);
    return acts_layout<float>(c, B, T, nullptr, nullptr);
}

template <typename F>
void model_acts_bind(const Config& c, int B, int T, F* base, ModelActs<F>* a) {
    if (c.num_layers > kMaxLayers) fatal("config: num_layers %d > kMaxLayers %d", c.num_layers, kMaxLayers);
    acts_layout<F>(c, B, T, base, a);
}

static AttnDims attn_dims(const Config& c, int B, int T) {
    return AttnDims{B, T, c.num_heads, c.num_kv_heads, c.head_dim(), c.rope_base, c.norm_eps};
}

// ---- elementwise wiring

template <typename F>
void resid_mix_forward_cpu(F* out, const F* x, const F* x0, const F* mix, int64_t N, int C) {
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[n * C + c] = (F)((double)mix[c] * x[n * C + c] + (double)mix[C + c] * x0[n * C + c]);
}

template <typename F>
void resid_mix_backward_cpu(F* dx, F* dx0, F* dmix, const F* dout, const F* x, const F* x0, const F* mix,
                            int64_t N, int C) {
    std::vector<double> dm0(C, 0.0), dm1(C, 0.0);
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double g = dout[n * C + c];
            dx[n * C + c] = (F)(g * mix[c]);
            dx0[n * C + c] = (F)(dx0[n * C + c] + g * mix[C + c]);
            dm0[c] += g * x[n * C + c];
            dm1[c] += g * x0[n * C + c];
        }
    for (int c = 0; c < C; c++) {
        dmix[c] = (F)(dmix[c] + dm0[c]);
        dmix[C + c] = (F)(dmix[C + c] + dm1[c]);
    }
}

template <typename F>
void scale_add_forward_cpu(F* out, const F* x, const F* y, const F* scale, int64_t N, int C) {
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) out[n * C + c] = (F)(x[n * C + c] + (double)scale[c] * y[n * C + c]);
}

template <typename F>
void scale_add_backward_cpu(F* dy, F* dscale, const F* dout, const F* y, const F* scale, int64_t N, int C) {
    std::vector<double> ds(C, 0.0);
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double g = dout[n * C + c];
            dy[n * C + c] = (F)(g * scale[c]);
            ds[c] += g * y[n * C + c];
        }
    for (int c = 0; c < C; c++) dscale[c] = (F)(dscale[c] + ds[c]);
}

// ---- forward

// ---- Mamba-3 states (evaluation)

int64_t model_states_size(const Config& c, int B) {
    Mamba3Dims d = mamba3_dims(c, B, 1);
    int64_t per = (int64_t)B * d.H * (d.S + d.P * d.N + d.N + d.P);
    int64_t n = 0;
    for (int l = 0; l < c.num_layers; l++)
        if (!c.is_attn(l)) n += per;
    return n;
}

template <typename F>
void model_states_bind(const Config& c, int B, F* base, ModelStates<F>* s) {
    if (c.num_layers > kMaxLayers) fatal("config: num_layers %d > kMaxLayers %d", c.num_layers, kMaxLayers);
    *s = ModelStates<F>();
    Mamba3Dims d = mamba3_dims(c, B, 1);
    F* at = base;
    for (int l = 0; l < c.num_layers; l++) {
        if (c.is_attn(l)) continue;
        Mamba3States<F>& m = s->layers[l];
        m.angle = at; at += (int64_t)B * d.H * d.S;
        m.ssm = at;   at += (int64_t)B * d.H * d.P * d.N;
        m.k = at;     at += (int64_t)B * d.H * d.N;
        m.v = at;     at += (int64_t)B * d.H * d.P;
    }
}

// A Mamba-3 mixer with states: one layer call when the final state is wanted after all T
// tokens, else two (tokens [0, fin_at) ending in *fin, then [fin_at, T) starting from it).
// in_proj/out_proj act row by row, so the split changes nothing but where the scan stops.
template <typename F>
static void mamba3_block_forward_states(F* out, F* acts, const F* inp, const BlockTensors<F>& W, const Config& c,
                                        int B, int T, const Mamba3States<F>* init, const Mamba3States<F>* fin,
                                        int fin_at) {
    Mamba3Weights<F> w = {W.in_proj, W.out_proj, W.dt_bias, W.B_bias, W.C_bias, W.B_norm_w, W.C_norm_w, W.D};
    Mamba3Acts<F> ma;
    if (!fin || fin_at == T) {
        Mamba3Dims d = mamba3_dims(c, B, T);
        mamba3_acts_bind(&ma, acts, d);
        mamba3_forward_cpu(out, fin, ma, inp, w, init, d);
        return;
    }
    int C = c.model_dim;
    for (int piece = 0; piece < 2; piece++) {
        int t0 = piece ? fin_at : 0, n = piece ? T - fin_at : fin_at;
        Mamba3Dims d = mamba3_dims(c, B, n);
        std::vector<F> pin((int64_t)B * n * C), pout((int64_t)B * n * C);
        for (int b = 0; b < B; b++)
            for (int64_t i = 0; i < (int64_t)n * C; i++) pin[(int64_t)b * n * C + i] = inp[((int64_t)b * T + t0) * C + i];
        mamba3_acts_bind(&ma, acts, d);  // fits: the region is sized for T tokens
        mamba3_forward_cpu(pout.data(), piece ? (const Mamba3States<F>*)nullptr : fin, ma, (const F*)pin.data(), w,
                           piece ? fin : init, d);
        for (int b = 0; b < B; b++)
            for (int64_t i = 0; i < (int64_t)n * C; i++) out[((int64_t)b * T + t0) * C + i] = pout[(int64_t)b * n * C + i];
    }
}

// ---- forward

// Embedding to raw logits. With states (init or fin non-null) the Mamba layers run
// mamba3_block_forward_states, else the training path mamba3_block_forward_cpu.
template <typename F>
static void forward_logits(const ModelActs<F>& a, const int32_t* tokens, const ModelTensors<F>& p, const Config& c,
                           int B, int T, const ModelStates<F>* init, const ModelStates<F>* fin, int fin_at) {
    int64_t N = (int64_t)B * T;
    int C = c.model_dim, V = c.vocab_size, FH = c.mlp_hidden();
    int nenc = c.num_encoder_layers();
    double eps = c.norm_eps;
    AttnDims ad = attn_dims(c, B, T);
    int AC = c.num_heads * c.head_dim();

    embedding_forward_cpu(a.emb, tokens, p.wte, N, C, V);
    rmsnorm_forward_cpu(a.x0, a.x0_rstd, a.emb, N, C, eps);
    const F* x = a.x0;
    std::vector<const F*> skips;
    for (int l = 0; l < c.num_layers; l++) {
        const LayerActs<F>& L = a.layers[l];
        const BlockTensors<F>& W = p.blocks[l];
        if (l >= nenc && !skips.empty()) {  // decoder j = l - nenc: x = x + skip_weight[j] * skips.pop()
            scale_add_forward_cpu(L.x_in, x, skips.back(), p.skip_weight + (int64_t)(l - nenc) * C, N, C);
            skips.pop_back();
        } else {
            for (int64_t i = 0; i < N * C; i++) L.x_in[i] = x[i];
        }
        resid_mix_forward_cpu(L.x_mix, L.x_in, a.x0, W.resid_mix, N, C);
        rmsnorm_forward_cpu(L.n1, L.n1_rstd, L.x_mix, N, C, eps);
        if (c.is_attn(l)) {
            linear_forward_cpu(L.qkv, L.n1, W.attn_qkv, N, C, c.qkv_rows());
            attn_qkv_prep_forward_cpu(L.q, L.k, L.v, L.q_rstd, L.k_rstd, L.qkv, W.q_gain, ad);
            attention_forward_cpu(L.y, L.lse, L.q, L.k, L.v, ad);
            linear_forward_cpu(L.mix_out, L.y, W.attn_proj, N, AC, C);
        } else {
            if (init || fin)
                mamba3_block_forward_states(L.mix_out, L.mamba, L.n1, W, c, B, T, init ? &init->layers[l] : nullptr,
                                            fin ? &fin->layers[l] : nullptr, fin_at);
            else
                mamba3_block_forward_cpu(L.mix_out, L.mamba, L.n1, W, c, B, T);
        }
        scale_add_forward_cpu(L.x_mid, L.x_mix, L.mix_out, W.mixer_scale, N, C);
        rmsnorm_forward_cpu(L.n2, L.n2_rstd, L.x_mid, N, C, eps);
        mlp_forward_cpu(L.mlp_out, L.h, L.a, L.n2, W.mlp_fc, W.mlp_proj, N, C, FH);
        scale_add_forward_cpu(L.x_out, L.x_mid, L.mlp_out, W.mlp_scale, N, C);
        x = L.x_out;
        if (l < nenc) skips.push_back(x);
    }
    rmsnorm_forward_cpu(a.xf, a.xf_rstd, x, N, C, eps);
    linear_forward_cpu(a.logits, a.xf, p.wte, N, C, V);  // tied head
}

template <typename F>
double model_forward_cpu(const ModelActs<F>& a, const int32_t* tokens, const int32_t* targets,
                         const ModelTensors<F>& p, const Config& c, int B, int T) {
    forward_logits(a, tokens, p, c, B, T, (const ModelStates<F>*)nullptr, (const ModelStates<F>*)nullptr, T);
    return softcap_ce_forward_backward_cpu(a.losses, (F*)nullptr, a.logits, targets, (int64_t)B * T, c.vocab_size,
                                           c.logit_softcap);
}

template <typename F>
double model_forward_states_cpu(double* losses, const ModelActs<F>& a, const int32_t* tokens, const int32_t* targets,
                                const ModelTensors<F>& p, const Config& c, int B, int T, double temperature,
                                const ModelStates<F>* init, const ModelStates<F>* fin, int fin_at) {
    if (fin && (fin_at < 1 || fin_at > T)) fatal("model_forward_states_cpu: fin_at %d outside [1, %d]", fin_at, T);
    if (fin && fin == init) fatal("model_forward_states_cpu: fin may not alias init");
    forward_logits(a, tokens, p, c, B, T, init, fin, fin_at);
    return softcap_ce_losses_cpu(losses, a.logits, targets, (int64_t)B * T, c.vocab_size, c.logit_softcap,
                                 temperature);
}

// ---- backward

template <typename F>
void model_backward_cpu(const ModelTensors<F>& g, const ModelActs<F>& a, const int32_t* tokens,
                        const int32_t* targets, const ModelTensors<F>& p, const Config& c, int B, int T) {
    int64_t N = (int64_t)B * T;
    int C = c.model_dim, V = c.vocab_size, FH = c.mlp_hidden();
    int nenc = c.num_encoder_layers();
    AttnDims ad = attn_dims(c, B, T);
    int AC = c.num_heads * c.head_dim();
    int NKVHD = c.num_kv_heads * c.head_dim();
    int64_t NC = N * C;

    // loss = mean CE(softcap(xf @ wte^T))
    std::vector<F> dlogits(N * V), dxf(NC), dx(NC), dx0(NC, F(0)), t1(NC), t2(NC), t3(NC);
    softcap_ce_forward_backward_cpu((F*)nullptr, dlogits.data(), a.logits, targets, N, V, c.logit_softcap);
    linear_backward_cpu(dxf.data(), g.wte, dlogits.data(), a.xf, p.wte, N, C, V);
    const F* x_last = c.num_layers ? a.layers[c.num_layers - 1].x_out : a.x0;
    rmsnorm_backward_cpu(dx.data(), dxf.data(), x_last, a.xf_rstd, N, C);  // dx = d x_out[last]

    // gradient reaching each encoder output through its U-Net skip
    std::vector<std::vector<F>> dskip(nenc, std::vector<F>(NC, F(0)));
    std::vector<F> scratch(N * FH);
    std::vector<F> dqkv(N * c.qkv_rows()), dq(N * AC), dk(N * NKVHD), dv(N * NKVHD), dy(N * AC);
    auto add_into = [&](std::vector<F>& acc, const std::vector<F>& v) {
        for (int64_t i = 0; i < NC; i++) acc[i] += v[i];
    };

    for (int l = c.num_layers - 1; l >= 0; l--) {
        const LayerActs<F>& L = a.layers[l];
        const BlockTensors<F>& W = p.blocks[l];
        const BlockTensors<F>& G = g.blocks[l];
        if (l < nenc) add_into(dx, dskip[l]);  // skips.append(x): the encoder output's second use

        // x_out = x_mid + mlp_scale * MLP(rmsnorm(x_mid))
        scale_add_backward_cpu(t1.data(), G.mlp_scale, dx.data(), L.mlp_out, W.mlp_scale, N, C);
        mlp_backward_cpu(t2.data(), G.mlp_fc, G.mlp_proj, t1.data(), L.n2, L.h, L.a, W.mlp_fc, W.mlp_proj,
                         scratch.data(), N, C, FH);
        rmsnorm_backward_cpu(t3.data(), t2.data(), L.x_mid, L.n2_rstd, N, C);
        add_into(dx, t3);  // dx = d x_mid

        // x_mid = x_mix + mixer_scale * Mixer(rmsnorm(x_mix))
        scale_add_backward_cpu(t1.data(), G.mixer_scale, dx.data(), L.mix_out, W.mixer_scale, N, C);
        if (c.is_attn(l)) {
            linear_backward_cpu(dy.data(), G.attn_proj, t1.data(), L.y, W.attn_proj, N, AC, C);
            attention_backward_cpu(dq.data(), dk.data(), dv.data(), dy.data(), L.q, L.k, L.v, L.y, L.lse, ad);
            attn_qkv_prep_backward_cpu(dqkv.data(), G.q_gain, dq.data(), dk.data(), dv.data(), L.qkv, L.q_rstd,
                                       L.k_rstd, W.q_gain, ad);
            linear_backward_cpu(t2.data(), G.attn_qkv, dqkv.data(), L.n1, W.attn_qkv, N, C, c.qkv_rows());
        } else {
            mamba3_block_backward_cpu(t2.data(), G, t1.data(), L.mamba, L.n1, W, c, B, T);
        }
        rmsnorm_backward_cpu(t3.data(), t2.data(), L.x_mix, L.n1_rstd, N, C);
        add_into(dx, t3);  // dx = d x_mix

        // x_mix = resid_mix[0] * x_in + resid_mix[1] * x0
        resid_mix_backward_cpu(t1.data(), dx0.data(), G.resid_mix, dx.data(), L.x_in, a.x0, W.resid_mix, N, C);
        dx.swap(t1);  // dx = d x_in

        // decoder j: x_in = x + skip_weight[j] * x_out[nenc - 1 - j]; dx passes through to x
        int j = l - nenc;
        if (j >= 0 && j < nenc) {
            int src = nenc - 1 - j;
            scale_add_backward_cpu(t1.data(), g.skip_weight + (int64_t)j * C, dx.data(), a.layers[src].x_out,
                                   p.skip_weight + (int64_t)j * C, N, C);
            add_into(dskip[src], t1);
        }
    }
    add_into(dx, dx0);  // x0 is the first block's input and every block's resid_mix input
    rmsnorm_backward_cpu(t1.data(), dx.data(), a.emb, a.x0_rstd, N, C);
    embedding_backward_cpu(g.wte, t1.data(), tokens, N, C, V);
}

#define MODEL_INST(F)                                                                                         \
    template void model_acts_bind<F>(const Config&, int, int, F*, ModelActs<F>*);                             \
    template void resid_mix_forward_cpu<F>(F*, const F*, const F*, const F*, int64_t, int);                   \
    template void resid_mix_backward_cpu<F>(F*, F*, F*, const F*, const F*, const F*, const F*, int64_t, int); \
    template void scale_add_forward_cpu<F>(F*, const F*, const F*, const F*, int64_t, int);                   \
    template void scale_add_backward_cpu<F>(F*, F*, const F*, const F*, const F*, int64_t, int);              \
    template void model_states_bind<F>(const Config&, int, F*, ModelStates<F>*);                              \
    template double model_forward_states_cpu<F>(double*, const ModelActs<F>&, const int32_t*, const int32_t*, \
                                                const ModelTensors<F>&, const Config&, int, int, double,       \
                                                const ModelStates<F>*, const ModelStates<F>*, int);            \
    template double model_forward_cpu<F>(const ModelActs<F>&, const int32_t*, const int32_t*,                 \
                                         const ModelTensors<F>&, const Config&, int, int);                    \
    template void model_backward_cpu<F>(const ModelTensors<F>&, const ModelActs<F>&, const int32_t*,           \
                                        const int32_t*, const ModelTensors<F>&, const Config&, int, int);
MODEL_INST(float)
MODEL_INST(double)
