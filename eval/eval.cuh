// Evaluation modes and score-first TTT on the GPU: the CUDA twin of eval/eval.h, whose CPU
// reference defines which positions each mode scores with which context (same EvalOpts,
// EvalSpan, TttOpts, same sums). This file only batches that work on the GpuModel:
//   windows   each window is one row of a (rows, n) micro-batch (gpu_model_reshape inside the
//             model's arenas; rows = as many windows of T as the arenas hold), right-padded with
//             token 0 to the longest row (the model is causal: padding after a window's last
//             token changes none of its positions, and padded positions are not scored). A window
//             cut short at the stream's end is such a row.
//   plain / sliding: every window of the span, `rows` at a time.
//   stateful: the span's o.streams sub-spans (eval_stream_span) run side by side, one row each
//             (`rows` streams at a time): a prewarm micro-batch, then window w of every stream in
//             one micro-batch. Each row carries its own Mamba states (two device state arenas,
//             init and fin, swapped per step); rows needing the state at a different fin_at run
//             as separate micro-batches (only a stream's first windows and prewarms differ).
//   All losses at o.temperature (gpu_model_forward_states); sums in float64 on the host.
// Ranks: eval_gpu_span scores the span it is given (the caller passes eval_rank_span);
// eval_gpu and ttt_score_first_gpu all-reduce the three BpbSum fields (optim/dist).
// The model's micro-batch shape is restored before every function returns.
#pragma once
#include "eval/eval.h"
#include "model/model.cuh"
#include "optim/dist.cuh"
#include <string>
#include <vector>

// Mode o.mode over `span` at the model's current weights; this span's sums only (not reduced).
EvalOut eval_gpu_span(GpuModel* m, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens, EvalSpan span,
                      const EvalOpts& o);

// ---- score-first chunk TTT (the order of eval.h, enforced the same way)
// Ranks: rank r scores and trains on sequences [first + n*r/R, first + n*(r+1)/R) of each chunk
// of n; the training gradient is that of the whole chunk's mean loss (each rank's share scaled by
// its sequences, summed by an all-reduce), so every rank takes the same SGD step as one process.
class GpuScoredChunk;
// Scores this rank's share of sequences [first_seq, first_seq + nseq) with plain windows at the
// current weights into *acc (this rank's sums); returns the proof that training needs.
GpuScoredChunk ttt_score_chunk_gpu(BpbSum* acc, GpuModel* m, const Tokenizer& tok, const uint16_t* tokens,
                                   int64_t n_tokens, int64_t first_seq, int64_t nseq, const TttOpts& o,
                                   const Dist& d);

// A chunk already scored and counted; only ttt_score_chunk_gpu constructs one.
class GpuScoredChunk {
public:
    int64_t first_seq() const { return first_seq_; }
    int64_t num_seqs() const { return nseq_; }  // the whole chunk (all ranks)
    int64_t my_first() const { return my_first_; }
    int64_t my_num() const { return my_n_; }    // this rank's share
    const uint16_t* stream() const { return tokens_; }

private:
    GpuScoredChunk(const uint16_t* tokens, int64_t first_seq, int64_t nseq, int64_t my_first, int64_t my_n)
        : tokens_(tokens), first_seq_(first_seq), nseq_(nseq), my_first_(my_first), my_n_(my_n) {}
    friend GpuScoredChunk ttt_score_chunk_gpu(BpbSum*, GpuModel*, const Tokenizer&, const uint16_t*, int64_t,
                                              int64_t, int64_t, const TttOpts&, const Dist&);
    const uint16_t* tokens_;
    int64_t first_seq_, nseq_, my_first_, my_n_;
};

// o.epochs SGD-with-momentum steps (m = mu*m + g; w -= lr*m in double, rounded once, as the CPU
// twin) on the scored chunk's mean training loss (tau = 1), gradient accumulation over
// micro-batches of the model's rows; blocks [0, o.freeze_blocks) untouched; the bf16 copy
// refreshed after each step. momentum: (arena) device floats, zero before the first chunk.
void ttt_train_chunk_gpu(GpuModel* m, float* momentum, const GpuScoredChunk& chunk, const TttOpts& o,
                         const Dist& d);

// The whole pass (score, count, train per chunk; no training after the last), sums all-reduced.
// The weights are left TRAINED (eval_gpu restores them). per_chunk: each chunk's reduced sums.
EvalOut ttt_score_first_gpu(GpuModel* m, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens,
                            const TttOpts& o, const Dist& d, std::vector<BpbSum>* per_chunk);

// ---- the trainer's entry points
// One mode by name (plain | sliding | stateful | ttt; settings from c) over the whole stream
// (ValData's tokens: every rank passes the same stream), sums all-reduced; ttt runs on a copy of
// the weights and restores them.
EvalOut eval_gpu(GpuModel* m, const Config& c, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens,
                 const Dist& d, const std::string& mode);
// c.eval_mode, or all four for "all" (ttt last); rank 0 prints one line per mode:
//   eval mode=<m> val_loss X val_bpb Y tokens N bytes M seconds S windows W
void eval_gpu_report(GpuModel* m, const Config& c, const Tokenizer& tok, const uint16_t* tokens, int64_t n_tokens,
                     const Dist& d);
