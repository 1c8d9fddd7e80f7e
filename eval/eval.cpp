// Evaluation modes and score-first TTT, CPU reference (see eval.h).
#include "eval/eval.h"
#include "model/common.h"
#include <algorithm>
#include <chrono>

EvalOpts eval_opts_from_config(const Config& c) {
    EvalOpts o;
    if (c.eval_mode == "plain") o.mode = EvalMode::plain;
    else if (c.eval_mode == "sliding") o.mode = EvalMode::sliding;
    else if (c.eval_mode == "stateful") o.mode = EvalMode::stateful;
    else fatal("eval: eval_mode '%s' is not a window mode (ttt runs ttt_score_first)", c.eval_mode.c_str());
    o.T = c.train_seq_len;
    o.stride = c.eval_stride;
    o.overlap = c.eval_overlap;
    o.streams = c.eval_streams;
    o.temperature = c.eval_temperature;
    return o;
}

TttOpts ttt_opts_from_config(const Config& c) {
    TttOpts o;
    o.T = c.train_seq_len;
    o.chunk_seqs = c.ttt_chunk_seqs;
    o.epochs = c.ttt_epochs;
    o.lr = c.ttt_lr;
    o.momentum = c.ttt_momentum;
    o.freeze_blocks = c.ttt_freeze_blocks;
    o.temperature = c.eval_temperature;
    return o;
}

EvalSpan eval_rank_span(int64_t n_tokens, int T, int rank, int world) {
    if (T <= 0 || world <= 0 || rank < 0 || rank >= world || n_tokens < 2)
        fatal("eval: bad split (%lld tokens, T=%d, rank %d of %d)", (long long)n_tokens, T, rank, world);
    int64_t npos = n_tokens - 1, nseq = npos / T;
    EvalSpan s;
    s.begin = (int64_t)T * (nseq * rank / world);
    s.end = rank == world - 1 ? npos : (int64_t)T * (nseq * (rank + 1) / world);
    return s;
}

EvalSpan eval_stream_span(EvalSpan span, int T, int j, int streams) {
    if (T <= 0 || streams <= 0 || j < 0 || j >= streams || span.begin > span.end)
        fatal("eval: bad stream split (T=%d, stream %d of %d)", T, j, streams);
    int64_t nseq = (span.end - span.begin) / T;
    EvalSpan s;
    s.begin = span.begin + (int64_t)T * (nseq * j / streams);
    s.end = j == streams - 1 ? span.end : span.begin + (int64_t)T * (nseq * (j + 1) / streams);
    return s;
}

void bpb_sum_merge(BpbSum* into, const BpbSum& s) {
    into->loss_sum += s.loss_sum;
    into->tokens += s.tokens;
    into->bytes += s.bytes;
}

// ---- one window

struct Workspace {
    std::vector<float> acts;
    std::vector<double> losses;
    std::vector<int32_t> buf;  // tokens[ws, we]: inputs buf[0, n), targets buf[1, n]
};

// Runs the model on positions [ws, we) and adds the losses of positions [s0, s1) (inside it).
static void score_window(BpbSum* acc, Workspace* w, const ModelTensors<float>& p, const Config& c,
                         const Tokenizer& tok, const uint16_t* tokens, int64_t ws, int64_t we, int64_t s0,
                         int64_t s1, double temperature, const ModelStates<float>* init,
                         const ModelStates<float>* fin, int fin_at) {
    const int n = (int)(we - ws);
    int64_t need = model_acts_size(c, 1, n);
    if ((int64_t)w->acts.size() < need) w->acts.resize(need);
    w->losses.resize(n);
    w->buf.resize(n + 1);
    for (int t = 0; t <= n; t++) w->buf[t] = tokens[ws + t];
    ModelActs<float> a;
    model_acts_bind(c, 1, n, w->acts.data(), &a);
    model_forward_states_cpu(w->losses.data(), a, w->buf.data(), w->buf.data() + 1, p, c, 1, n, temperature, init,
                             fin, fin_at);
    if (s1 <= s0) return;
    double sum = 0;
    for (int64_t i = s0; i < s1; i++) sum += w->losses[i - ws];
    bpb_add(acc, tok, sum, w->buf.data() + (s0 - ws), s1 - s0);
}

// ---- the three window modes

EvalOut eval_cpu(const ModelTensors<float>& p, const Config& c, const Tokenizer& tok, const uint16_t* tokens,
                 int64_t n_tokens, EvalSpan span, const EvalOpts& o) {
    auto t_start = std::chrono::steady_clock::now();
    const int64_t npos = n_tokens - 1, T = o.T;
    if (T <= 0) fatal("eval: window length %lld must be > 0", (long long)T);
    if (span.begin < 0 || span.end > npos || span.begin > span.end)
        fatal("eval: positions [%lld, %lld) outside the stream's [0, %lld)", (long long)span.begin,
              (long long)span.end, (long long)npos);
    EvalOut out;
    Workspace w;
    const int64_t b = span.begin, e = span.end;
    if (o.mode == EvalMode::plain) {
        for (int64_t ws = b / T * T; ws < e; ws += T) {
            int64_t we = std::min(ws + T, npos);
            score_window(&out.sum, &w, p, c, tok, tokens, ws, we, std::max(ws, b), std::min(we, e), o.temperature,
                         nullptr, nullptr, 0);
            out.forwards++;
        }
    } else if (o.mode == EvalMode::sliding) {
        const int64_t s = o.stride;
        if (s < 1 || s > T) fatal("eval: sliding stride %lld outside [1, %lld]", (long long)s, (long long)T);
        // window k covers [ks, ks+T) and scores from first(k); position i >= T is in window (i-T)/s + 1
        auto first = [&](int64_t k) { return k == 0 ? 0 : k * s + T - s; };
        for (int64_t k = b < T ? 0 : (b - T) / s + 1; first(k) < e; k++) {
            int64_t ws = k * s, we = std::min(ws + T, npos);
            score_window(&out.sum, &w, p, c, tok, tokens, ws, we, std::max(first(k), b), std::min(we, e),
                         o.temperature, nullptr, nullptr, 0);
            out.forwards++;
        }
    } else if (o.streams > 1) {  // each sub-span on its own
        EvalOpts one = o;
        one.streams = 1;
        for (int j = 0; j < o.streams; j++) {
            EvalOut r = eval_cpu(p, c, tok, tokens, n_tokens, eval_stream_span(span, (int)T, j, o.streams), one);
            bpb_sum_merge(&out.sum, r.sum);
            out.forwards += r.forwards;
        }
    } else {
        const int64_t ov = o.overlap, S = T - ov;
        if (ov < 0 || ov >= T) fatal("eval: overlap %lld outside [0, %lld)", (long long)ov, (long long)T);
        // two state buffers: the window's initial states and the ones it hands to the next window
        std::vector<float> sbuf(2 * model_states_size(c, 1));
        ModelStates<float> cur, nxt;
        model_states_bind(c, 1, sbuf.data(), &cur);
        model_states_bind(c, 1, sbuf.data() + sbuf.size() / 2, &nxt);
        bool have = false;  // cur holds states (else zero states)
        auto start_of = [&](int64_t s0) { return std::max<int64_t>(s0 - ov, 0); };
        if (o.carry_states && b < e) {
            int64_t ts = o.seed_carry ? b : start_of(b), W = o.prewarm < 0 ? T : o.prewarm;
            int64_t pw = std::max<int64_t>(ts - W, 0);
            if (ts > pw) {  // prewarm: states after tokens [pw, ts), nothing scored
                score_window(&out.sum, &w, p, c, tok, tokens, pw, ts, ts, ts, o.temperature, nullptr, &cur,
                             (int)(ts - pw));
                have = true;
                out.forwards++;
            }
        }
        for (int64_t s0 = b; s0 < e; s0 += S) {
            int64_t s1 = std::min(s0 + S, e), ts = start_of(s0);
            // states for the next window: after the tokens before its first token (seed: after
            // this window's last token, which is the next window's last overlap token)
            int fin_at = !o.carry_states || s1 >= e ? 0 : o.seed_carry ? (int)(s1 - ts) : (int)(start_of(s1) - ts);
            score_window(&out.sum, &w, p, c, tok, tokens, ts, s1, s0, s1, o.temperature, have ? &cur : nullptr,
                         fin_at > 0 ? &nxt : nullptr, fin_at);
            out.forwards++;
            if (fin_at > 0) {  // fin_at == 0: the next window starts where this one did, same states
                std::swap(cur, nxt);
                have = true;
            }
        }
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return out;
}

// ---- score-first chunk TTT

TttState::TttState(const Config& c) : momentum(param_arena_size(c), 0.f), grads(param_arena_size(c), 0.f) {}

ScoredChunk ttt_score_chunk(BpbSum* acc, TttState* st, const float* params, const Config& c, const Tokenizer& tok,
                            const uint16_t* tokens, int64_t n_tokens, int64_t first_seq, int64_t nseq,
                            const TttOpts& o) {
    const int64_t T = o.T;
    if (first_seq < 0 || nseq < 1 || (first_seq + nseq) * T > n_tokens - 1)
        fatal("ttt: sequences [%lld, %lld) of %lld outside the stream of %lld tokens", (long long)first_seq,
              (long long)(first_seq + nseq), (long long)T, (long long)n_tokens);
    ModelTensors<float> p;
    model_tensors_bind(c, const_cast<float*>(params), &p);  // read only here
    Workspace w;
    w.acts.swap(st->acts);
    for (int64_t q = first_seq; q < first_seq + nseq; q++)
        score_window(acc, &w, p, c, tok, tokens, q * T, q * T + T, q * T, q * T + T, o.temperature, nullptr, nullptr,
                     0);
    w.acts.swap(st->acts);
    return ScoredChunk(tokens, first_seq, nseq, o.T);
}

void ttt_train_chunk(TttState* st, float* params, const ScoredChunk& chunk, const Config& c, const TttOpts& o) {
    const int B = (int)chunk.num_seqs(), T = chunk.seq_len();
    std::vector<int32_t> x((int64_t)B * T), y((int64_t)B * T);
    const uint16_t* src = chunk.stream() + chunk.first_seq() * T;
    for (int64_t i = 0; i < (int64_t)B * T; i++) {
        x[i] = src[i];
        y[i] = src[i + 1];
    }
    int64_t need = model_acts_size(c, B, T);
    if ((int64_t)st->acts.size() < need) st->acts.resize(need);
    ModelTensors<float> p, g;
    ModelActs<float> a;
    model_tensors_bind(c, params, &p);
    model_tensors_bind(c, st->grads.data(), &g);
    model_acts_bind(c, B, T, st->acts.data(), &a);
    auto specs = param_specs(c);
    for (int e = 0; e < o.epochs; e++) {
        std::fill(st->grads.begin(), st->grads.end(), 0.f);
        model_forward_cpu(a, x.data(), y.data(), p, c, B, T);
        model_backward_cpu(g, a, x.data(), y.data(), p, c, B, T);
        for (const TensorSpec& s : specs) {
            if (s.layer >= 0 && s.layer < o.freeze_blocks) continue;
            for (int64_t k = s.offset; k < s.offset + s.numel(); k++) {
                float m = (float)(o.momentum * st->momentum[k] + st->grads[k]);
                st->momentum[k] = m;
                params[k] = (float)(params[k] - o.lr * m);
            }
        }
    }
}

EvalOut ttt_score_first_cpu(float* params, const Config& c, const Tokenizer& tok, const uint16_t* tokens,
                            int64_t n_tokens, const TttOpts& o, std::vector<BpbSum>* per_chunk) {
    auto t_start = std::chrono::steady_clock::now();
    if (o.T <= 0 || o.chunk_seqs < 1 || n_tokens < 2 || (n_tokens - 1) % o.T != 0)
        fatal("ttt: the stream of %lld tokens is not a whole number of sequences of %d plus one",
              (long long)n_tokens, o.T);
    const int64_t nseq = (n_tokens - 1) / o.T;
    EvalOut out;
    TttState st(c);
    for (int64_t first = 0; first < nseq; first += o.chunk_seqs) {
        int64_t n = std::min<int64_t>(o.chunk_seqs, nseq - first);
        BpbSum chunk_sum;
        ScoredChunk sc = ttt_score_chunk(&chunk_sum, &st, params, c, tok, tokens, n_tokens, first, n, o);
        bpb_sum_merge(&out.sum, chunk_sum);
        if (per_chunk) per_chunk->push_back(chunk_sum);
        out.forwards += n;
        if (first + n < nseq) ttt_train_chunk(&st, params, sc, c, o);
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return out;
}
