// Evaluation modes and score-first TTT on the GPU; see eval/eval.cuh (batching) and eval/eval.h
// (what is scored with which context: the CPU reference every line here follows).
#include "eval/eval.cuh"
#include "model/common.h"
#include <algorithm>
#include <chrono>
#include <cstring>

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// One window as a row of a micro-batch: runs tokens [ws, we) against targets [ws+1, we] and
// scores positions [s0, s1). fin_at > 0: the row's Mamba states after fin_at tokens go to its fin
// row; fin_at == 0 rows join any micro-batch (a fin written for them is garbage, never read).
// keep: the stream goes on from this window's init states (its next window starts where this
// one does, the CPU reference's fin_at == 0 case).
struct Row {
    int64_t ws = 0, we = 0, s0 = 0, s1 = 0;
    int fin_at = 0;
    bool keep = false;
};

struct Ctx {
    GpuModel* m;
    const Tokenizer& tok;
    const uint16_t* tokens;
    double tau;
    int rows;                    // windows per micro-batch
    std::vector<int32_t> win;    // (rows, n+1) staging
    std::vector<float> losses;   // (rows, n)
    int64_t forwards = 0;
};

// Windows of T per micro-batch: as many as the model's arenas hold.
int rows_for(const GpuModel* m, int T) {
    int rows = (int)std::min<int64_t>(m->max_tokens / T, 1 << 20);
    while (rows > 0 && gpu_acts_bytes(m->cfg, rows, T) > m->acts_bytes) rows--;
    if (rows < 1) fatal("eval: a window of %d tokens does not fit the model's arenas (%lld tokens)", T, (long long)m->max_tokens);
    return rows;
}

// The states of rows [r, ...) of a state arena.
ModelStates<float> states_from_row(const ModelStates<float>& s, const Config& c, int r) {
    const Mamba3Dims d = mamba3_dims(c, 1, 1);
    ModelStates<float> o = s;
    for (int l = 0; l < c.num_layers; l++) {
        Mamba3States<float>& x = o.layers[l];
        if (!x.angle) continue;
        x.angle += (int64_t)r * d.H * d.S;
        x.ssm += (int64_t)r * d.H * d.P * d.N;
        x.k += (int64_t)r * d.H * d.N;
        x.v += (int64_t)r * d.H * d.P;
    }
    return o;
}

// Row r of dst = row r of src (src nullptr: zero states).
void states_row_copy(const ModelStates<float>& dst, const ModelStates<float>* src, const Config& c, int r,
                     cudaStream_t s) {
    const Mamba3Dims d = mamba3_dims(c, 1, 1);
    const ModelStates<float> a = states_from_row(dst, c, r), b = states_from_row(src ? *src : dst, c, r);
    const size_t n[4] = {(size_t)d.H * d.S, (size_t)d.H * d.P * d.N, (size_t)d.H * d.N, (size_t)d.H * d.P};
    for (int l = 0; l < c.num_layers; l++) {
        const Mamba3States<float>&x = a.layers[l], &y = b.layers[l];
        if (!x.angle) continue;
        float* to[4] = {x.angle, x.ssm, x.k, x.v};
        const float* from[4] = {y.angle, y.ssm, y.k, y.v};
        for (int i = 0; i < 4; i++) {
            if (src) cudaCheck(cudaMemcpyAsync(to[i], from[i], n[i] * sizeof(float), cudaMemcpyDeviceToDevice, s));
            else cudaCheck(cudaMemsetAsync(to[i], 0, n[i] * sizeof(float), s));
        }
    }
}

// Runs the windows `rw` (at most x.rows), padded to the longest, and adds their scored losses to
// acc. init / fin: state arenas bound for x.rows rows (row j = rw[j]), nullptr for none. Rows
// wanting their states at different fin_at run as separate micro-batches of consecutive rows.
void run_rows(Ctx& x, const std::vector<Row>& rw, BpbSum* acc, const ModelStates<float>* init,
              const ModelStates<float>* fin) {
    GpuModel* m = x.m;
    int n = 1;
    for (const Row& r : rw) {
        n = std::max<int>(n, (int)(r.we - r.ws));
        x.forwards += r.we > r.ws;
    }
    for (size_t r0 = 0, r1; r0 < rw.size(); r0 = r1) {
        int f = 0;
        bool any = false;
        for (r1 = r0; r1 < rw.size(); r1++) {
            const int g = rw[r1].fin_at;
            if (g && f && g != f) break;
            f = g ? g : f;
            any = any || rw[r1].we > rw[r1].ws;
        }
        if (!any) continue;  // only finished streams
        const int k = (int)(r1 - r0);
        gpu_model_reshape(m, k, n);
        x.win.assign((size_t)k * (n + 1), 0);  // padding: token 0, never scored
        for (int j = 0; j < k; j++) {
            const Row& r = rw[r0 + j];
            for (int64_t t = 0; r.we > r.ws && t <= r.we - r.ws; t++) x.win[(size_t)j * (n + 1) + t] = x.tokens[r.ws + t];
        }
        gpu_model_load_batch(m, x.win.data());
        ModelStates<float> in, out;
        if (init) in = states_from_row(*init, m->cfg, (int)r0);
        if (fin && f) out = states_from_row(*fin, m->cfg, (int)r0);
        gpu_model_forward_states(m, x.tau, init ? &in : nullptr, fin && f ? &out : nullptr, f);
        x.losses.resize((size_t)k * n);
        cudaCheck(cudaMemcpyAsync(x.losses.data(), m->a.losses, (size_t)k * n * sizeof(float), cudaMemcpyDeviceToHost,
                                  m->stream));
        cudaCheck(cudaStreamSynchronize(m->stream));
        for (int j = 0; j < k; j++) {
            const Row& r = rw[r0 + j];
            if (r.s1 <= r.s0) continue;
            double sum = 0;
            for (int64_t i = r.s0; i < r.s1; i++) sum += x.losses[(size_t)j * n + (i - r.ws)];
            bpb_add(acc, x.tok, sum, x.win.data() + (size_t)j * (n + 1) + (r.s0 - r.ws), r.s1 - r.s0);
        }
    }
}

// Independent windows (no states), x.rows at a time.
void run_windows(Ctx& x, const std::vector<Row>& all, BpbSum* acc) {
    for (size_t i = 0; i < all.size(); i += x.rows) {
        std::vector<Row> part(all.begin() + i, all.begin() + std::min(all.size(), i + x.rows));
        run_rows(x, part, acc, nullptr, nullptr);
    }
}

// Stateful-overlap over `span`: o.streams sub-spans side by side (eval_cpu's stateful branch per
// sub-span, row j = sub-span g0 + j).
void run_stateful(Ctx& x, EvalSpan span, const EvalOpts& o, BpbSum* acc) {
    const Config& c = x.m->cfg;
    const int64_t T = o.T, ov = o.overlap, S = T - ov;
    if (ov < 0 || ov >= T) fatal("eval: overlap %lld outside [0, %lld)", (long long)ov, (long long)T);
    auto start_of = [&](int64_t s0) { return std::max<int64_t>(s0 - ov, 0); };
    const bool carry = o.carry_states;
    float* mem = nullptr;
    ModelStates<float> cur, nxt;
    if (carry) {
        const int64_t n = model_states_size(c, x.rows);
        cudaCheck(cudaMalloc(&mem, 2 * n * sizeof(float)));
        cudaCheck(cudaMemsetAsync(mem, 0, 2 * n * sizeof(float), x.m->stream));  // idle rows read finite states
        model_states_bind(c, x.rows, mem, &cur);
        model_states_bind(c, x.rows, mem + n, &nxt);
    }
    for (int g0 = 0; g0 < o.streams; g0 += x.rows) {
        const int k = std::min(x.rows, o.streams - g0);
        std::vector<EvalSpan> sub(k);
        for (int j = 0; j < k; j++) sub[j] = eval_stream_span(span, (int)T, g0 + j, o.streams);
        if (carry) {  // prewarm: states after tokens [pw, ts) (zero states where there are none)
            std::vector<Row> pre(k);
            const int64_t W = o.prewarm < 0 ? T : o.prewarm;
            for (int j = 0; j < k; j++) {
                if (sub[j].begin >= sub[j].end) continue;
                const int64_t ts = o.seed_carry ? sub[j].begin : start_of(sub[j].begin), pw = std::max<int64_t>(ts - W, 0);
                if (ts > pw) pre[j] = Row{pw, ts, ts, ts, (int)(ts - pw), false};
            }
            run_rows(x, pre, acc, nullptr, &cur);
            for (int j = 0; j < k; j++)
                if (pre[j].fin_at == 0) states_row_copy(cur, nullptr, c, j, x.m->stream);
        }
        int64_t nwin = 0;
        for (const EvalSpan& s : sub) nwin = std::max(nwin, (s.end - s.begin + S - 1) / S);
        for (int64_t w = 0; w < nwin; w++) {
            std::vector<Row> rw(k);
            for (int j = 0; j < k; j++) {
                const int64_t s0 = sub[j].begin + w * S, e = sub[j].end;
                if (s0 >= e) continue;
                const int64_t s1 = std::min(s0 + S, e), ts = start_of(s0);
                const int fin_at = !carry || s1 >= e ? 0 : o.seed_carry ? (int)(s1 - ts) : (int)(start_of(s1) - ts);
                rw[j] = Row{ts, s1, s0, s1, fin_at, carry && s1 < e && fin_at == 0};
            }
            run_rows(x, rw, acc, carry ? &cur : nullptr, carry ? &nxt : nullptr);
            if (!carry) continue;
            for (int j = 0; j < k; j++)
                if (rw[j].keep) states_row_copy(nxt, &cur, c, j, x.m->stream);
            std::swap(cur, nxt);
        }
    }
    if (mem) {
        cudaCheck(cudaStreamSynchronize(x.m->stream));
        cudaCheck(cudaFree(mem));
    }
}

// The three BpbSum fields (and a count) summed over ranks.
void all_reduce_sums(BpbSum* s, int64_t* forwards, const Dist& d, cudaStream_t stream) {
    if (d.world == 1) return;
    double h[4] = {s->loss_sum, s->tokens, s->bytes, forwards ? (double)*forwards : 0.0}, *dev;
    cudaCheck(cudaMalloc(&dev, sizeof(h)));
    cudaCheck(cudaMemcpyAsync(dev, h, sizeof(h), cudaMemcpyHostToDevice, stream));
    dist_all_reduce(d, dev, 4, ncclFloat64, ncclSum, stream);
    cudaCheck(cudaMemcpyAsync(h, dev, sizeof(h), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    cudaCheck(cudaFree(dev));
    s->loss_sum = h[0];
    s->tokens = h[1];
    s->bytes = h[2];
    if (forwards) *forwards = (int64_t)h[3];
}

// torch.optim.SGD with momentum (no dampening, Nesterov or decay), in double as the CPU twin.
__global__ void sgd_momentum_kernel(float* w, float* mom, const float* g, int64_t n, double lr, double mu) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float m = (float)(mu * mom[i] + g[i]);
        mom[i] = m;
        w[i] = (float)(w[i] - lr * m);
    }
}

}  // namespace

// ---- window modes

EvalOut eval_gpu_span(GpuModel* m, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens, EvalSpan span,
                      const EvalOpts& o) {
    const double t_start = now_s();
    const int64_t npos = n_tokens - 1, T = o.T;
    if (T <= 0) fatal("eval: window length %lld must be > 0", (long long)T);
    if (span.begin < 0 || span.end > npos || span.begin > span.end)
        fatal("eval: positions [%lld, %lld) outside the stream's [0, %lld)", (long long)span.begin,
              (long long)span.end, (long long)npos);
    const int B0 = m->B, T0 = m->T;
    Ctx x{m, tok, tokens, o.temperature, rows_for(m, (int)T), {}, {}, 0};
    EvalOut out;
    const int64_t b = span.begin, e = span.end;
    std::vector<Row> all;
    if (o.mode == EvalMode::plain) {
        for (int64_t ws = b / T * T; ws < e; ws += T) {
            const int64_t we = std::min(ws + T, npos);
            all.push_back(Row{ws, we, std::max(ws, b), std::min(we, e), 0, false});
        }
        run_windows(x, all, &out.sum);
    } else if (o.mode == EvalMode::sliding) {
        const int64_t s = o.stride;
        if (s < 1 || s > T) fatal("eval: sliding stride %lld outside [1, %lld]", (long long)s, (long long)T);
        auto first = [&](int64_t k) { return k == 0 ? 0 : k * s + T - s; };
        for (int64_t k = b < T ? 0 : (b - T) / s + 1; first(k) < e; k++) {
            const int64_t ws = k * s, we = std::min(ws + T, npos);
            all.push_back(Row{ws, we, std::max(first(k), b), std::min(we, e), 0, false});
        }
        run_windows(x, all, &out.sum);
    } else {
        run_stateful(x, span, o, &out.sum);
    }
    gpu_model_reshape(m, B0, T0);
    out.forwards = x.forwards;
    out.seconds = now_s() - t_start;
    return out;
}

// ---- score-first chunk TTT

GpuScoredChunk ttt_score_chunk_gpu(BpbSum* acc, GpuModel* m, const Tokenizer& tok, const uint16_t* tokens,
                                   int64_t n_tokens, int64_t first_seq, int64_t nseq, const TttOpts& o,
                                   const Dist& d) {
    const int64_t T = o.T;
    if (T <= 0 || first_seq < 0 || nseq < 1 || (first_seq + nseq) * T > n_tokens - 1)
        fatal("ttt: sequences [%lld, %lld) of %lld outside the stream of %lld tokens", (long long)first_seq,
              (long long)(first_seq + nseq), (long long)T, (long long)n_tokens);
    const int64_t my_first = first_seq + nseq * d.rank / d.world, my_end = first_seq + nseq * (d.rank + 1) / d.world;
    const int B0 = m->B, T0 = m->T;
    Ctx x{m, tok, tokens, o.temperature, rows_for(m, (int)T), {}, {}, 0};
    std::vector<Row> all;
    for (int64_t q = my_first; q < my_end; q++) all.push_back(Row{q * T, q * T + T, q * T, q * T + T, 0, false});
    run_windows(x, all, acc);
    gpu_model_reshape(m, B0, T0);
    return GpuScoredChunk(tokens, first_seq, nseq, my_first, my_end - my_first);
}

void ttt_train_chunk_gpu(GpuModel* m, float* momentum, const GpuScoredChunk& chunk, const TttOpts& o,
                         const Dist& d) {
    const int T = o.T, B0 = m->B, T0 = m->T, rows = rows_for(m, T);
    const int64_t my_end = chunk.my_first() + chunk.my_num();
    const cudaStream_t s = m->stream;
    std::vector<int32_t> win((size_t)rows * (T + 1));
    for (int e = 0; e < o.epochs; e++) {
        gpu_model_zero_grads(m);
        // micro-batch i (k_i rows) leaves the gradient g_i of its mean loss; keep grads =
        // sum_j (k_j / k_i) g_j, then scale by k_last / K: the whole chunk's mean-loss gradient
        int prev = 0;
        for (int64_t q = chunk.my_first(); q < my_end; q += rows) {
            const int k = (int)std::min<int64_t>(rows, my_end - q);
            if (prev && prev != k) gpu_scale(m->grads, m->arena, (float)prev / (float)k, s);
            gpu_model_reshape(m, k, T);
            const uint16_t* src = chunk.stream() + q * T;
            for (int b = 0; b < k; b++)
                for (int t = 0; t <= T; t++) win[(size_t)b * (T + 1) + t] = src[(int64_t)b * T + t];
            gpu_model_load_batch(m, win.data());
            gpu_model_forward(m, true);
            gpu_model_backward(m);
            prev = k;
        }
        if (prev) gpu_scale(m->grads, m->arena, (float)prev / (float)chunk.num_seqs(), s);
        dist_all_reduce(d, m->grads, m->arena, ncclFloat, ncclSum, s);
        for (const TensorSpec& t : param_specs(m->cfg)) {
            if (t.layer >= 0 && t.layer < o.freeze_blocks) continue;
            const int64_t n = t.numel();
            sgd_momentum_kernel<<<(unsigned)std::min<int64_t>((n + 255) / 256, 1024), 256, 0, s>>>(
                m->params + t.offset, momentum + t.offset, m->grads + t.offset, n, o.lr, o.momentum);
            cudaCheckLaunch();
        }
        gpu_model_refresh_bf16(m);
    }
    gpu_model_reshape(m, B0, T0);
    cudaCheck(cudaStreamSynchronize(s));
}

EvalOut ttt_score_first_gpu(GpuModel* m, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens,
                            const TttOpts& o, const Dist& d, std::vector<BpbSum>* per_chunk) {
    const double t_start = now_s();
    if (o.T <= 0 || o.chunk_seqs < 1 || n_tokens < 2 || (n_tokens - 1) % o.T != 0)
        fatal("ttt: the stream of %lld tokens is not a whole number of sequences of %d plus one",
              (long long)n_tokens, o.T);
    const int64_t nseq = (n_tokens - 1) / o.T;
    EvalOut out;
    float* momentum;
    cudaCheck(cudaMalloc(&momentum, m->arena * sizeof(float)));
    cudaCheck(cudaMemsetAsync(momentum, 0, m->arena * sizeof(float), m->stream));
    for (int64_t first = 0; first < nseq; first += o.chunk_seqs) {
        const int64_t n = std::min<int64_t>(o.chunk_seqs, nseq - first);
        BpbSum chunk_sum;
        GpuScoredChunk sc = ttt_score_chunk_gpu(&chunk_sum, m, tok, tokens, n_tokens, first, n, o, d);
        bpb_sum_merge(&out.sum, chunk_sum);
        out.forwards += sc.my_num();
        if (per_chunk) {
            all_reduce_sums(&chunk_sum, nullptr, d, m->stream);
            per_chunk->push_back(chunk_sum);
        }
        if (first + n < nseq) ttt_train_chunk_gpu(m, momentum, sc, o, d);
    }
    cudaCheck(cudaStreamSynchronize(m->stream));
    cudaCheck(cudaFree(momentum));
    all_reduce_sums(&out.sum, &out.forwards, d, m->stream);
    out.seconds = now_s() - t_start;
    return out;
}

// ---- entry points

EvalOut eval_gpu(GpuModel* m, const Config& c, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens,
                 const Dist& d, const std::string& mode) {
    dist_barrier(d, m->stream);
    const double t_start = now_s();
    EvalOut out;
    if (mode == "ttt") {  // on a copy of the weights: restored below
        float* backup;
        cudaCheck(cudaMalloc(&backup, m->arena * sizeof(float)));
        cudaCheck(cudaMemcpyAsync(backup, m->params, m->arena * sizeof(float), cudaMemcpyDeviceToDevice, m->stream));
        out = ttt_score_first_gpu(m, tok, tokens, n_tokens, ttt_opts_from_config(c), d, nullptr);
        cudaCheck(cudaMemcpyAsync(m->params, backup, m->arena * sizeof(float), cudaMemcpyDeviceToDevice, m->stream));
        gpu_model_refresh_bf16(m);
        cudaCheck(cudaStreamSynchronize(m->stream));
        cudaCheck(cudaFree(backup));
    } else {
        Config one = c;
        one.eval_mode = mode;
        const EvalOpts o = eval_opts_from_config(one);
        out = eval_gpu_span(m, tok, tokens, n_tokens, eval_rank_span(n_tokens, o.T, d.rank, d.world), o);
        all_reduce_sums(&out.sum, &out.forwards, d, m->stream);
    }
    out.seconds = now_s() - t_start;
    return out;
}

void eval_gpu_report(GpuModel* m, const Config& c, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens,
                     const Dist& d) {
    std::vector<std::string> modes = {c.eval_mode};
    if (c.eval_mode == "all") modes = {"plain", "sliding", "stateful", "ttt"};
    if (d.rank == 0)
        printf("eval: T %d, stride %d, overlap %d, streams %d, temperature %g; ttt chunk %d seqs, %d epochs, lr %g, "
               "momentum %g, frozen blocks %d; %d GPU(s)\n",
               c.train_seq_len, c.eval_stride, c.eval_overlap, c.eval_streams, c.eval_temperature, c.ttt_chunk_seqs,
               c.ttt_epochs, c.ttt_lr, c.ttt_momentum, c.ttt_freeze_blocks, d.world);
    for (const std::string& mode : modes) {
        const EvalOut r = eval_gpu(m, c, tok, tokens, n_tokens, d, mode);
        const BpbResult b = bpb_result(r.sum);
        if (d.rank == 0) {
            printf("eval mode=%s val_loss %.6f val_bpb %.6f tokens %.0f bytes %.0f seconds %.2f windows %lld\n",
                   mode.c_str(), b.val_loss, b.val_bpb, r.sum.tokens, r.sum.bytes, r.seconds, (long long)r.forwards);
            fflush(stdout);
        }
    }
}
