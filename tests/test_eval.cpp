// Evaluation modes and score-first TTT (eval/eval.h) on a tiny hybrid model with random
// parameters, a synthetic token stream and a hand-made 64-piece tokenizer: the degenerate
// cases that must equal plain windows exactly, the byte count shared by every mode, the
// state carry against one forward over the whole stream (all-Mamba model), ranks against one
// rank, temperature, and the score-then-train order of TTT.
#include "data/bpb.h"
#include "data/tokenizer.h"
#include "eval/eval.h"
#include "model/common.h"
#include "model/loss.h"
#include "model/model.h"
#include "model/params.h"
#include "tests/expect_fatal.h"
#include "tests/fixture.h"
#include <doctest/doctest.h>
#include "tests/tiny_tokenizer.h"
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

Config tiny_config(int num_attn_layers) {
    Config c;
    c.vocab_size = 64; c.model_dim = 16; c.num_layers = 3; c.num_attn_layers = num_attn_layers;
    c.num_heads = 2; c.num_kv_heads = 1; c.mlp_mult = 2;
    c.d_state = 8; c.expand = 2; c.ssm_headdim = 8; c.ssm_ngroups = 1; c.chunk_size = 4;
    c.train_seq_len = 16; c.eval_overlap = 5; c.eval_stride = 5;
    c.validate();
    return c;
}

// Random parameters around each init's scale (no zero projections, so every path matters).
std::vector<float> random_params(const Config& c, uint64_t seed) {
    std::vector<float> w(param_arena_size(c), 0.f);
    Rng rng(seed);
    for (auto& s : param_specs(c))
        for (int64_t k = 0; k < s.numel(); k++) {
            double r = rng.normal();
            double v = s.init == ONE ? 1.0 + 0.2 * r : s.init == QGAIN ? 1.5 + 0.2 * r
                     : s.init == RESID_MIX ? (k < s.cols ? 1.0 + 0.2 * r : 0.3 * r)
                     : s.init == NORMAL_EMBED ? 0.5 * r
                     : s.init == DT_BIAS ? -2.0 + 0.5 * r : 1.5 * r / sqrt((double)s.cols);
            w[s.offset + k] = (float)v;
        }
    return w;
}

struct Model {
    Config c;
    std::vector<float> w;
    ModelTensors<float> p;
    Model(int attn, uint64_t seed) : c(tiny_config(attn)), w(random_params(c, seed)) { model_tensors_bind(c, w.data(), &p); }
};

EvalOpts opts(EvalMode m, int T, int stride_or_overlap) {
    EvalOpts o;
    o.mode = m;
    o.T = T;
    if (m == EvalMode::sliding) o.stride = stride_or_overlap;
    if (m == EvalMode::stateful) o.overlap = stride_or_overlap;
    return o;
}

bool same(const BpbSum& a, const BpbSum& b) { return a.loss_sum == b.loss_sum && a.tokens == b.tokens && a.bytes == b.bytes; }
double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

const int kT = 16;
const int64_t kSeqs = 8, kTokens = kSeqs * kT + 1;  // a val stream: whole sequences plus one token

}  // namespace

TEST_CASE("eval: temperature after the softcap; tau = 1 is exactly the training loss") {
    Model m(1, 3);
    const int B = 2, T = 7;
    std::vector<uint16_t> s = token_stream(B * T + 1, 5);
    std::vector<int32_t> x(B * T), y(B * T);
    for (int i = 0; i < B * T; i++) { x[i] = s[i]; y[i] = s[i + 1]; }
    std::vector<float> acts(model_acts_size(m.c, B, T));
    ModelActs<float> a;
    model_acts_bind(m.c, B, T, acts.data(), &a);
    double mean = model_forward_cpu(a, x.data(), y.data(), m.p, m.c, B, T);
    std::vector<float> train_losses(a.losses, a.losses + B * T);
    std::vector<double> l1(B * T), l9(B * T);
    double mean1 = model_forward_states_cpu(l1.data(), a, x.data(), y.data(), m.p, m.c, B, T, 1.0,
                                            (const ModelStates<float>*)nullptr, (const ModelStates<float>*)nullptr, 0);
    CHECK(mean1 == mean);
    for (int i = 0; i < B * T; i++) CHECK((float)l1[i] == train_losses[i]);
    double mean9 = model_forward_states_cpu(l9.data(), a, x.data(), y.data(), m.p, m.c, B, T, 0.9,
                                            (const ModelStates<float>*)nullptr, (const ModelStates<float>*)nullptr, 0);
    CHECK(mean9 != mean);
    // by hand from the raw logits: softcap, then / tau, then cross-entropy
    const int V = m.c.vocab_size;
    double cap = m.c.logit_softcap, worst = 0;
    for (int n = 0; n < B * T; n++) {
        double mx = -1e300, sum = 0;
        std::vector<double> sc(V);
        for (int v = 0; v < V; v++) { sc[v] = cap * tanh(a.logits[n * V + v] / cap) / 0.9; mx = fmax(mx, sc[v]); }
        for (int v = 0; v < V; v++) sum += exp(sc[v] - mx);
        worst = fmax(worst, rel(l9[n], mx + log(sum) - sc[y[n]]));
    }
    CHECK(worst < 1e-12);
    EXPECT_FATAL(softcap_ce_losses_cpu((double*)nullptr, a.logits, y.data(), 1, V, cap, 0.0), "temperature 0 must be > 0");
}

TEST_CASE("eval: states after fin_at tokens continue the sequence (two forwards == one), invisible to this window") {
    Model m(0, 7);  // all Mamba-3: the second forward needs no attention context
    const int T = 13;
    const ModelStates<float>* none = nullptr;
    for (int B : {1, 2}) {
        std::vector<uint16_t> s = token_stream(B * T + 1, 9);
        std::vector<int32_t> x(B * T), y(B * T);
        for (int i = 0; i < B * T; i++) { x[i] = s[i]; y[i] = s[i + 1]; }
        std::vector<float> acts(model_acts_size(m.c, B, T)), st(model_states_size(m.c, B));
        ModelActs<float> a;
        ModelStates<float> fin;
        model_states_bind(m.c, B, st.data(), &fin);
        std::vector<double> whole(B * T), split(B * T), part(B * T);
        model_acts_bind(m.c, B, T, acts.data(), &a);
        model_forward_states_cpu(whole.data(), a, x.data(), y.data(), m.p, m.c, B, T, 1.0, none, none, 0);
        for (int k : {1, 6, 8, 12, 13}) {
            model_acts_bind(m.c, B, T, acts.data(), &a);
            model_forward_states_cpu(split.data(), a, x.data(), y.data(), m.p, m.c, B, T, 1.0, none, &fin, k);
            double worst = 0;
            for (int i = 0; i < B * T; i++) worst = fmax(worst, rel(split[i], whole[i]));
            CHECK(worst < 1e-5);  // where the states are taken is not seen in the output
            if (k == T) continue;
            const int n = T - k;
            std::vector<int32_t> x2(B * n), y2(B * n);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < n; t++) { x2[b * n + t] = x[b * T + k + t]; y2[b * n + t] = y[b * T + k + t]; }
            model_acts_bind(m.c, B, n, acts.data(), &a);
            model_forward_states_cpu(part.data(), a, x2.data(), y2.data(), m.p, m.c, B, n, 1.0, &fin, none, 0);
            worst = 0;
            for (int b = 0; b < B; b++)
                for (int t = 0; t < n; t++) worst = fmax(worst, rel(part[b * n + t], whole[b * T + k + t]));
            INFO("B " << B << ", fin_at " << k);
            CHECK(worst < 1e-5);
        }
        if (B == 1)
            EXPECT_FATAL(model_forward_states_cpu(split.data(), a, x.data(), y.data(), m.p, m.c, 1, 3, 1.0, none, &fin, 4),
                         "fin_at 4 outside [1, 3]");
    }
}

TEST_CASE("eval: sliding with stride T and stateful with overlap 0 and no state carry equal plain windows exactly") {
    Model m(1, 11);
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 13);
    for (int world : {1, 3}) {
        for (int r = 0; r < world; r++) {
            EvalSpan sp = eval_rank_span(kTokens, kT, r, world);
            EvalOut plain = eval_cpu(m.p, m.c, tok, s.data(), kTokens, sp, opts(EvalMode::plain, kT, 0));
            EvalOut slide = eval_cpu(m.p, m.c, tok, s.data(), kTokens, sp, opts(EvalMode::sliding, kT, kT));
            EvalOpts so = opts(EvalMode::stateful, kT, 0);
            so.carry_states = false;
            EvalOut stf = eval_cpu(m.p, m.c, tok, s.data(), kTokens, sp, so);
            INFO("rank " << r << " of " << world);
            CHECK(plain.sum.tokens == (double)(sp.end - sp.begin));
            CHECK(same(slide.sum, plain.sum));
            CHECK(same(stf.sum, plain.sum));
            CHECK(plain.forwards == slide.forwards);
        }
    }
}

TEST_CASE("eval: every mode scores every position once: identical token and byte counts, different losses") {
    Model m(1, 17);
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 19);
    std::vector<int32_t> s32(s.begin(), s.end());
    const double bytes = (double)bpb_count_bytes(tok, s32.data(), kTokens - 1);
    EvalSpan all = eval_rank_span(kTokens, kT, 0, 1);
    EvalOut plain = eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, opts(EvalMode::plain, kT, 0));
    CHECK(plain.sum.tokens == kTokens - 1);
    CHECK(plain.sum.bytes == bytes);
    CHECK(plain.forwards == kSeqs);
    std::vector<EvalOpts> modes = {opts(EvalMode::sliding, kT, 5), opts(EvalMode::sliding, kT, 1),
                                   opts(EvalMode::stateful, kT, 5), opts(EvalMode::stateful, kT, 0),
                                   opts(EvalMode::stateful, kT, 15)};
    modes.push_back(modes[2]);
    modes.back().temperature = 0.9;
    for (size_t i = 0; i < modes.size(); i++) {
        EvalOut o = eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, modes[i]);
        INFO("mode " << i);
        CHECK(o.sum.tokens == plain.sum.tokens);
        CHECK(o.sum.bytes == plain.sum.bytes);
        CHECK(o.sum.loss_sum != plain.sum.loss_sum);
        CHECK(std::isfinite(o.sum.loss_sum));
    }
    // windows: sliding s=5 over 128 positions = 1 + ceil((128-16)/5); stateful o=5: ceil(128/11)
    CHECK(eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, modes[0]).forwards == 1 + 23);
    CHECK(eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, modes[2]).forwards == 12);
    // a stream not a multiple of T: the cut-short last window still scores every position
    const int64_t n = kTokens - 6;
    std::vector<int32_t> head(s32.begin(), s32.begin() + n);
    EvalSpan sp = eval_rank_span(n, kT, 0, 1);
    for (EvalOpts o : {opts(EvalMode::plain, kT, 0), opts(EvalMode::sliding, kT, 3), opts(EvalMode::stateful, kT, 4)}) {
        EvalOut r = eval_cpu(m.p, m.c, tok, s.data(), n, sp, o);
        CHECK(r.sum.tokens == n - 1);
        CHECK(r.sum.bytes == (double)bpb_count_bytes(tok, head.data(), n - 1));
    }
}

TEST_CASE("eval: stateful carry on an all-Mamba model equals one forward over the whole stream, any overlap") {
    Model m(0, 23);
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 29);
    const int n = (int)kTokens - 1;
    std::vector<int32_t> x(s.begin(), s.end() - 1), y(s.begin() + 1, s.end());
    std::vector<float> acts(model_acts_size(m.c, 1, n));
    ModelActs<float> a;
    model_acts_bind(m.c, 1, n, acts.data(), &a);
    std::vector<double> l(n);
    model_forward_states_cpu(l.data(), a, x.data(), y.data(), m.p, m.c, 1, n, 1.0, (const ModelStates<float>*)nullptr,
                             (const ModelStates<float>*)nullptr, 0);
    double whole = 0;
    for (double v : l) whole += v;
    EvalSpan all = eval_rank_span(kTokens, kT, 0, 1);
    for (int ov : {0, 5, 11, 15}) {
        EvalOut o = eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, opts(EvalMode::stateful, kT, ov));
        INFO("overlap " << ov << ": windows " << o.sum.loss_sum << " whole " << whole);
        CHECK(rel(o.sum.loss_sum, whole) < 1e-7);
    }
    // the test can tell: windows without the carry are far off
    EvalOpts nc = opts(EvalMode::stateful, kT, 0);
    nc.carry_states = false;
    CHECK(rel(eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, nc).sum.loss_sum, whole) > 1e-3);
    // the seed's carry: identical at overlap 0 (nothing is fed twice), off the whole-stream
    // forward at overlap > 0 (the overlap enters the SSM twice)
    EvalOpts seed = opts(EvalMode::stateful, kT, 0);
    seed.seed_carry = true;
    CHECK(same(eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, seed).sum,
               eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, opts(EvalMode::stateful, kT, 0)).sum));
    seed.overlap = 5;
    EvalOut so = eval_cpu(m.p, m.c, tok, s.data(), kTokens, all, seed);
    MESSAGE("all-Mamba, overlap 5: seed's carry " << so.sum.loss_sum << " vs exact " << whole);
    CHECK(rel(so.sum.loss_sum, whole) > 1e-3);
    CHECK(so.sum.tokens == kTokens - 1);
}

TEST_CASE("eval: ranks' float64 sums add up to one rank's") {
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 31);
    Model hybrid(1, 37), mamba(0, 41);
    struct Case { const char* name; Model* m; EvalOpts o; double tol; };
    EvalOpts pw = opts(EvalMode::stateful, kT, 5);
    pw.prewarm = kTokens;  // the whole prefix: exact states at every rank's start
    std::vector<Case> cases = {{"plain", &hybrid, opts(EvalMode::plain, kT, 0), 1e-13},
                               {"sliding 5", &hybrid, opts(EvalMode::sliding, kT, 5), 1e-13},
                               {"sliding 3", &mamba, opts(EvalMode::sliding, kT, 3), 1e-13},
                               {"stateful all-Mamba, whole-prefix prewarm", &mamba, pw, 1e-6},
                               {"stateful hybrid", &hybrid, opts(EvalMode::stateful, kT, 5), 1e-2}};
    for (auto& cs : cases) {
        EvalOut one = eval_cpu(cs.m->p, cs.m->c, tok, s.data(), kTokens, eval_rank_span(kTokens, kT, 0, 1), cs.o);
        for (int world : {2, 3, 5}) {
            BpbSum sum;
            for (int r = 0; r < world; r++)
                bpb_sum_merge(&sum, eval_cpu(cs.m->p, cs.m->c, tok, s.data(), kTokens, eval_rank_span(kTokens, kT, r, world), cs.o).sum);
            INFO(std::string(cs.name) << ", " << world << " ranks: " << sum.loss_sum << " vs " << one.sum.loss_sum);
            CHECK(sum.tokens == one.sum.tokens);
            CHECK(sum.bytes == one.sum.bytes);
            CHECK(rel(sum.loss_sum, one.sum.loss_sum) < cs.tol);
        }
    }
    // the default prewarm (T tokens) on the all-Mamba model: close to, not equal to, one rank
    BpbSum sum;
    EvalOpts dflt = opts(EvalMode::stateful, kT, 5);
    for (int r = 0; r < 3; r++)
        bpb_sum_merge(&sum, eval_cpu(mamba.p, mamba.c, tok, s.data(), kTokens, eval_rank_span(kTokens, kT, r, 3), dflt).sum);
    EvalOut one = eval_cpu(mamba.p, mamba.c, tok, s.data(), kTokens, eval_rank_span(kTokens, kT, 0, 1), dflt);
    CHECK(rel(sum.loss_sum, one.sum.loss_sum) < 1e-2);
}

TEST_CASE("eval: stateful streams: sub-spans split like ranks, each scored on its own") {
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 61);
    Model hybrid(1, 67), mamba(0, 71);
    // the split: disjoint, in order, covering the span; empty streams when sequences run out
    for (EvalSpan sp : {EvalSpan{0, kTokens - 1}, EvalSpan{2 * kT, 7 * kT + 3}})
        for (int k : {1, 2, 3, 8}) {
            int64_t at = sp.begin;
            for (int j = 0; j < k; j++) {
                EvalSpan u = eval_stream_span(sp, kT, j, k);
                CHECK(u.begin == at);
                CHECK((u.begin - sp.begin) % kT == 0);
                at = u.end;
            }
            CHECK(at == sp.end);
        }
    CHECK(eval_stream_span(EvalSpan{0, 2 * kT}, kT, 0, 3).end == 0);  // 2 sequences, 3 streams
    EvalSpan all = eval_rank_span(kTokens, kT, 0, 1);
    EvalOpts o = opts(EvalMode::stateful, kT, 5);
    EvalOut one = eval_cpu(hybrid.p, hybrid.c, tok, s.data(), kTokens, all, o);
    for (int k : {2, 3, 5}) {
        EvalOpts ok = o;
        ok.streams = k;
        EvalOut r = eval_cpu(hybrid.p, hybrid.c, tok, s.data(), kTokens, all, ok);
        BpbSum parts;
        int64_t fw = 0;
        for (int j = 0; j < k; j++) {
            EvalOut q = eval_cpu(hybrid.p, hybrid.c, tok, s.data(), kTokens, eval_stream_span(all, kT, j, k), o);
            bpb_sum_merge(&parts, q.sum);
            fw += q.forwards;
        }
        INFO(k << " streams");
        CHECK(same(r.sum, parts));
        CHECK(r.forwards == fw);
        CHECK(r.sum.tokens == one.sum.tokens);
        CHECK(r.sum.bytes == one.sum.bytes);
        CHECK(rel(r.sum.loss_sum, one.sum.loss_sum) < 1e-2);  // only the streams' starts differ
    }
    // all-Mamba with a whole-prefix prewarm: streams change nothing
    EvalOpts pw = o;
    pw.prewarm = kTokens;
    EvalOut m1 = eval_cpu(mamba.p, mamba.c, tok, s.data(), kTokens, all, pw);
    pw.streams = 3;
    CHECK(rel(eval_cpu(mamba.p, mamba.c, tok, s.data(), kTokens, all, pw).sum.loss_sum, m1.sum.loss_sum) < 1e-6);
}

TEST_CASE("ttt: score first: the first chunk equals scoring without TTT; training first (cheating) scores lower") {
    static_assert(!std::is_constructible<ScoredChunk, const uint16_t*, int64_t, int64_t, int>::value,
                  "only ttt_score_chunk makes a ScoredChunk");
    Model m(1, 43);
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 47);
    TttOpts o;
    o.T = kT;
    o.chunk_seqs = 3;  // chunks of 3, 3, 2 sequences
    o.temperature = 0.9;
    const std::vector<float> w0 = m.w;

    std::vector<BpbSum> chunks;
    std::vector<float> w = w0;
    EvalOut legal = ttt_score_first_cpu(w.data(), m.c, tok, s.data(), kTokens, o, &chunks);
    REQUIRE(chunks.size() == 3);
    CHECK(legal.forwards == kSeqs);
    EvalOpts plain = opts(EvalMode::plain, kT, 0);
    plain.temperature = o.temperature;
    EvalOut first = eval_cpu(m.p, m.c, tok, s.data(), kTokens, EvalSpan{0, 3 * kT}, plain);
    CHECK(same(chunks[0], first.sum));  // scored before any update: exactly the no-TTT number
    EvalOut rest = eval_cpu(m.p, m.c, tok, s.data(), kTokens, EvalSpan{3 * kT, 6 * kT}, plain);
    CHECK(chunks[1].tokens == rest.sum.tokens);
    CHECK(chunks[1].bytes == rest.sum.bytes);
    CHECK(chunks[1].loss_sum != rest.sum.loss_sum);  // the weights did change after chunk 0
    EvalOut all = eval_cpu(m.p, m.c, tok, s.data(), kTokens, eval_rank_span(kTokens, kT, 0, 1), plain);
    CHECK(legal.sum.tokens == all.sum.tokens);
    CHECK(legal.sum.bytes == all.sum.bytes);

    // cheating: train on chunk 0, then score it again
    std::vector<float> wc = w0;
    TttState st(m.c);
    BpbSum before, after;
    ScoredChunk sc = ttt_score_chunk(&before, &st, wc.data(), m.c, tok, s.data(), kTokens, 0, 3, o);
    CHECK(same(before, chunks[0]));
    ttt_train_chunk(&st, wc.data(), sc, m.c, o);
    ttt_score_chunk(&after, &st, wc.data(), m.c, tok, s.data(), kTokens, 0, 3, o);
    MESSAGE("chunk 0 loss sum: scored first " << before.loss_sum << ", trained on first " << after.loss_sum);
    CHECK(after.loss_sum < before.loss_sum);
    CHECK(after.tokens == before.tokens);

    // lr 0: TTT changes nothing, the pass is plain eval
    TttOpts z = o;
    z.lr = 0;
    std::vector<float> wz = w0;
    EvalOut zero = ttt_score_first_cpu(wz.data(), m.c, tok, s.data(), kTokens, z, nullptr);
    CHECK(memcmp(wz.data(), w0.data(), w0.size() * sizeof(float)) == 0);
    CHECK(rel(zero.sum.loss_sum, all.sum.loss_sum) < 1e-13);
    CHECK(zero.sum.tokens == all.sum.tokens);
}

TEST_CASE("ttt: one epoch is one SGD step w -= lr * grad of the chunk's mean loss; frozen blocks stay") {
    Model m(1, 53);
    Tokenizer tok = tiny_tokenizer();
    std::vector<uint16_t> s = token_stream(kTokens, 59);
    TttOpts o;
    o.T = kT;
    o.epochs = 1;
    o.lr = 0.05;
    o.freeze_blocks = 1;
    const int B = 2;
    // the gradient at the starting weights, chunk = sequences 2, 3
    std::vector<int32_t> x(B * kT), y(B * kT);
    for (int i = 0; i < B * kT; i++) { x[i] = s[2 * kT + i]; y[i] = s[2 * kT + i + 1]; }
    std::vector<float> g(m.w.size(), 0.f), acts(model_acts_size(m.c, B, kT));
    ModelTensors<float> gt;
    ModelActs<float> a;
    model_tensors_bind(m.c, g.data(), &gt);
    model_acts_bind(m.c, B, kT, acts.data(), &a);
    model_forward_cpu(a, x.data(), y.data(), m.p, m.c, B, kT);
    model_backward_cpu(gt, a, x.data(), y.data(), m.p, m.c, B, kT);

    std::vector<float> w = m.w;
    TttState st(m.c);
    BpbSum acc;
    ScoredChunk sc = ttt_score_chunk(&acc, &st, w.data(), m.c, tok, s.data(), kTokens, 2, B, o);
    ttt_train_chunk(&st, w.data(), sc, m.c, o);
    int64_t frozen = 0, moved = 0, bad = 0;
    for (auto& sp : param_specs(m.c))
        for (int64_t k = sp.offset; k < sp.offset + sp.numel(); k++) {
            float want = sp.layer == 0 ? m.w[k] : (float)(m.w[k] - o.lr * g[k]);
            bad += w[k] != want;
            if (sp.layer == 0) frozen++;
            else moved += w[k] != m.w[k];
        }
    CHECK(bad == 0);
    CHECK(frozen > 0);
    CHECK(moved > 1000);
    // a second epoch uses the momentum: m = mu * g1 + g2
    o.epochs = 2;
    o.freeze_blocks = 0;
    std::vector<float> w2 = m.w;
    TttState st2(m.c);
    ScoredChunk sc2 = ttt_score_chunk(&acc, &st2, w2.data(), m.c, tok, s.data(), kTokens, 2, B, o);
    ttt_train_chunk(&st2, w2.data(), sc2, m.c, o);
    CHECK(st2.momentum[param_specs(m.c)[0].offset] != (float)(g[param_specs(m.c)[0].offset]));
}

TEST_CASE("eval: loss sums of every mode match PyTorch float64 (tools/ref/ref_eval.py: its own windows and states)") {
    Fixture fx = load_fixture("eval_hybrid");
    Config c = tiny_config(1);
    REQUIRE(fx.get("arena_params").numel() == param_arena_size(c));
    std::vector<float> w(fx.f("arena_params"), fx.f("arena_params") + param_arena_size(c));
    ModelTensors<float> p;
    model_tensors_bind(c, w.data(), &p);
    const int64_t n = fx.get("tokens").numel();
    REQUIRE(n == kTokens);
    std::vector<uint16_t> s(fx.i("tokens"), fx.i("tokens") + n);
    Tokenizer tok = tiny_tokenizer();
    EvalSpan all = eval_rank_span(n, kT, 0, 1);
    auto run = [&](EvalOpts o, double tau) { o.temperature = tau; return eval_cpu(p, c, tok, s.data(), n, all, o).sum.loss_sum; };
    EvalOpts seed = opts(EvalMode::stateful, kT, 5);
    seed.seed_carry = true;
    double ranks = 0;
    for (int r = 0; r < 3; r++)
        ranks += eval_cpu(p, c, tok, s.data(), n, eval_rank_span(n, kT, r, 3), opts(EvalMode::stateful, kT, 5)).sum.loss_sum;
    struct { const char* name; double got; } got[] = {
        {"plain", run(opts(EvalMode::plain, kT, 0), 1.0)},
        {"plain_t09", run(opts(EvalMode::plain, kT, 0), 0.9)},
        {"sliding5", run(opts(EvalMode::sliding, kT, 5), 1.0)},
        {"stateful5", run(opts(EvalMode::stateful, kT, 5), 1.0)},
        {"stateful11_t09", run(opts(EvalMode::stateful, kT, 11), 0.9)},
        {"stateful5_seed", run(seed, 1.0)},
        {"stateful5_ranks3", ranks}};
    for (auto& g : got) {
        double want = fx.get(g.name).d[0];
        INFO(std::string(g.name) << ": C++ " << g.got << ", PyTorch " << want);
        CHECK(rel(g.got, want) < 1e-6);  // seen 6e-9
    }
}

TEST_CASE("eval: config knobs") {
    Config c;
    c.validate();
    CHECK(c.eval_temperature == 1.0);
    CHECK(c.ttt_chunk_seqs == 32);
    EvalOpts o = eval_opts_from_config(c);
    CHECK(o.mode == EvalMode::stateful);
    CHECK(o.overlap == 1024);
    CHECK(o.T == 4096);
    TttOpts t = ttt_opts_from_config(c);
    CHECK(t.epochs == 2);
    CHECK(t.lr == 0.01);
    CHECK(t.momentum == 0.9);
    EXPECT_FATAL({ Config b; b.eval_mode = "window"; b.validate(); }, "eval_mode must be");
    EXPECT_FATAL({ Config b; b.eval_overlap = 4096; b.validate(); }, "eval_overlap");
    EXPECT_FATAL({ Config b; b.eval_mode = "ttt"; eval_opts_from_config(b); }, "not a window mode");
    CHECK(o.streams == 1);
    Config all;
    all.eval_mode = "all";
    all.validate();
    EXPECT_FATAL(eval_opts_from_config(all), "not a window mode");
    EXPECT_FATAL({ Config b; b.eval_streams = 0; b.validate(); }, "eval_streams");
}
