// Evaluation modes (spec/golf.md "Evaluation modes"), CPU reference: what the GPU evaluator is
// tested against, and the definition of which positions each mode scores with which context.
//
// Positions: in a stream of n tokens, position i (0 <= i < n-1) is the prediction of tokens[i+1]
// from tokens[..i]. A window over positions [ws, we) runs the model on tokens[ws, we) against
// targets tokens[ws+1, we]; its losses are -ln p at temperature tau (model_forward_states_cpu:
// softcap, then / tau). Every mode scores every position of its span exactly once, so tokens and
// bytes (data/bpb.h) are the same in every mode; only the context of each position differs:
//   plain     windows [kT, kT+T): position i sees tokens [T*floor(i/T), i].
//   sliding   stride s (1..T): window k covers [ks, ks+T) and scores its last s positions
//             [ks+T-s, ks+T) (window 0 scores all of [0, T)); at the stream's end a window is cut
//             short. Position i >= T sees T-s+1 .. T tokens. s = T is plain.
//   stateful  overlap o (0..T-1), S = T-o new positions per window: window w of a span [b, e)
//             scores [b+wS, b+(w+1)S) and runs on [b+wS-o, b+(w+1)S) (cut at 0), so attention
//             sees o tokens before the first scored one. Mamba-3 layers start from the state after
//             the tokens before the window's FIRST token (its first overlap token), taken from
//             the previous window at fin_at = (this start - previous start) (model.h): every
//             token enters the SSM exactly once and in order, so an all-Mamba model scores
//             exactly as one forward over the whole span, for any o. (The seed instead carried
//             the state after the previous window's last token, which feeds the o overlap tokens
//             through the SSM twice: EvalOpts::seed_carry, kept to compare; see notes/eval.md.)
//             A span's first window starts from the states of one forward over the `prewarm`
//             tokens before its first token (zero states at 0). With streams > 1 the span is
//             scored as eval_stream_span's sub-spans, each a span of its own (the GPU runs them
//             side by side: eval/eval.cuh).
// Ranks: rank r scores eval_rank_span(): whole sequences [num_seqs*r/R, num_seqs*(r+1)/R) of T,
// the split of data/loader.h, the remainder of a stream not a multiple of T on the last rank.
// Each rank sums its BpbSum in float64; the trainer all-reduces the three fields
// (bpb_sum_merge is that sum here). Plain and sliding windows lie on one global grid, so R ranks
// score exactly what one rank scores; stateful windows start at each rank's span.
//
// Score-first chunk TTT (spec/golf.md): the stream is cut into chunks of chunk_seqs sequences of
// T; each chunk is scored with plain windows at the current weights and counted, and only then
// trained on: `epochs` steps of SGD with momentum (torch.optim.SGD: m = mu*m + g; w -= lr*m) on
// the chunk's mean training loss (tau = 1), blocks [0, freeze_blocks) frozen. The order is
// enforced by types: ttt_train_chunk needs a ScoredChunk, which only ttt_score_chunk makes,
// after adding the chunk's scores. Nothing is trained after the last chunk (nothing follows).
#pragma once
#include "data/bpb.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/model.h"
#include <cstdint>
#include <vector>

enum class EvalMode { plain, sliding, stateful };

struct EvalOpts {
    EvalMode mode = EvalMode::plain;
    int T = 0;                 // window length (cfg.train_seq_len)
    int stride = 0;            // sliding: scored positions per window, 1..T
    int overlap = 0;           // stateful: context positions repeated from the previous window, 0..T-1
    bool carry_states = true;  // stateful: false runs every window from zero states
    bool seed_carry = false;   // stateful: the seed's carry (state after the previous window's last
                               // token; overlap tokens enter the SSM twice); same as ours at o = 0
    int64_t prewarm = -1;      // stateful: tokens before a span's first window that warm its states; -1 = T (seed)
    int streams = 1;           // stateful: the span is scored as this many sub-spans (eval_stream_span), each
                               // with its own prewarm and carry (the GPU runs them side by side)
    double temperature = 1.0;  // logits / tau after the softcap
};
// From eval_mode / train_seq_len / eval_stride / eval_overlap / eval_streams / eval_temperature;
// "ttt" and "all" are fatal here (ttt_score_first_cpu is that mode).
EvalOpts eval_opts_from_config(const Config& c);

struct EvalSpan {
    int64_t begin = 0, end = 0;  // positions [begin, end)
};
// Rank r's positions of a stream of n_tokens tokens, windows of T.
EvalSpan eval_rank_span(int64_t n_tokens, int T, int rank, int world);
// Sub-span j of `streams` of a span: its whole sequences of T split as eval_rank_span splits the
// stream (the span's tail beyond whole sequences on the last one); empty when there are fewer
// sequences than streams.
EvalSpan eval_stream_span(EvalSpan span, int T, int j, int streams);

struct EvalOut {
    BpbSum sum;            // this span's loss_sum, tokens, bytes (float64)
    double seconds = 0;    // wall time of the call
    int64_t forwards = 0;  // model forwards (windows, prewarm included)
};

// Scores span of the stream (tokens, n_tokens) with the float model (p, c) in mode o.mode.
EvalOut eval_cpu(const ModelTensors<float>& p, const Config& c, const Tokenizer& tok, const uint16_t* tokens,
                 int64_t n_tokens, EvalSpan span, const EvalOpts& o);

// The all-reduce of BpbSum, on one machine: into += s, field by field.
void bpb_sum_merge(BpbSum* into, const BpbSum& s);

// ---- score-first chunk TTT
struct TttOpts {
    int T = 0;                 // sequence length (cfg.train_seq_len)
    int chunk_seqs = 32;
    int epochs = 2;
    double lr = 0.01, momentum = 0.9;
    int freeze_blocks = 0;
    double temperature = 1.0;  // scoring only; training uses the training loss (tau = 1)
};
TttOpts ttt_opts_from_config(const Config& c);

struct TttState;  // workspace: momentum and gradient arenas, activations
class ScoredChunk;
// Scores sequences [first_seq, first_seq + nseq) of the stream with plain windows at the current
// weights (params, the arena of param_specs(c)), adding them to *acc; returns the proof that they
// were scored, which is what training on them takes.
ScoredChunk ttt_score_chunk(BpbSum* acc, TttState* st, const float* params, const Config& c, const Tokenizer& tok,
                            const uint16_t* tokens, int64_t n_tokens, int64_t first_seq, int64_t nseq,
                            const TttOpts& o);

// A chunk already scored and counted; only ttt_score_chunk constructs one.
class ScoredChunk {
public:
    int64_t first_seq() const { return first_seq_; }
    int64_t num_seqs() const { return nseq_; }
    int seq_len() const { return T_; }
    const uint16_t* stream() const { return tokens_; }

private:
    ScoredChunk(const uint16_t* tokens, int64_t first_seq, int64_t nseq, int T)
        : tokens_(tokens), first_seq_(first_seq), nseq_(nseq), T_(T) {}
    friend ScoredChunk ttt_score_chunk(BpbSum*, TttState*, const float*, const Config&, const Tokenizer&,
                                       const uint16_t*, int64_t, int64_t, int64_t, const TttOpts&);
    const uint16_t* tokens_;
    int64_t first_seq_, nseq_;
    int T_;
};

struct TttState {
    std::vector<float> momentum;  // (param arena) SGD momentum buffers, zero at the start
    std::vector<float> grads;     // (param arena)
    std::vector<float> acts;      // model activations, sized on use
    explicit TttState(const Config& c);
};

// o.epochs SGD-with-momentum steps on the scored chunk's sequences (one step per epoch on the
// whole chunk's mean loss, the sequences as scored); params updated in place, blocks
// [0, o.freeze_blocks) untouched. The update m = mu*m + g, w -= lr*m is computed in double and
// rounded to float once per buffer.
void ttt_train_chunk(TttState* st, float* params, const ScoredChunk& chunk, const Config& c, const TttOpts& o);

// The whole pass, left to right: for each chunk, score (counted) then train. The stream must
// hold a whole number of sequences plus one token (ValData). per_chunk (may be nullptr) receives
// each chunk's own sums. Single process: see notes/eval.md for the multi-GPU split.
EvalOut ttt_score_first_cpu(float* params, const Config& c, const Tokenizer& tok, const uint16_t* tokens,
                            int64_t n_tokens, const TttOpts& o, std::vector<BpbSum>* per_chunk);
