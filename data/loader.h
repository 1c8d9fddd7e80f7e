// Data loaders over a folder of shards (shard.h).
//
// Training: every shard is cut into disjoint windows of T+1 tokens (a window never crosses a
// shard; a shard's last n mod (T+1) tokens are unused). Each epoch visits the windows in a
// permutation drawn from (seed, epoch); draw d of the epoch gives rank r the B windows
// perm[(d*world + r)*B + b], b < B, so the ranks' windows are disjoint within a draw and no window
// repeats within an epoch (the last num_windows mod (B*world) windows of an epoch are skipped).
// The whole position is (epoch, draw): LoaderState, identical on every rank, is what a
// checkpoint stores to resume the data order bit-exactly.
//
// Validation (spec/golf.md): all `*_val_*` shards in name order, concatenated, cut to a whole
// number of sequences of T plus one token; rank r of R scores sequences
// [num_seqs*r/R, num_seqs*(r+1)/R), as the challenge splits them.
#pragma once
#include "data/shard.h"
#include <cstdint>
#include <string>
#include <vector>

// Plain old data: a checkpoint writes it as bytes. The fields after `draw` are checked on restore.
struct LoaderState {
    int64_t epoch = 0;
    int64_t draw = 0;          // next draw within the epoch
    uint64_t seed = 0;
    int64_t num_windows = 0;   // of the whole training set
    int32_t B = 0, T = 0, world = 0, pad = 0;
};

struct TrainLoader {
    std::vector<Shard> shards;
    std::vector<int64_t> first_window;  // (num shards + 1,) cumulative window counts
    int B = 0, T = 0, rank = 0, world = 1, vocab_size = 0;
    LoaderState st;
    std::vector<int64_t> perm;  // (num_windows,) window order of epoch st.epoch
    int64_t draws_per_epoch() const { return st.num_windows / ((int64_t)B * world); }
};

// Maps every `*_train_*.bin` in dir. vocab_size > 0: every window handed out is checked (< vocab).
void train_loader_init(TrainLoader* L, const std::string& dir, int B, int T, int rank, int world,
                       uint64_t seed, int vocab_size);
// Next draw: out is (B, T+1) token ids; inputs are out[:, :T], targets out[:, 1:].
void train_loader_next(TrainLoader* L, int32_t* out);
// Back to epoch 0, draw 0 (after the warm-up steps, the challenge resets the loader).
void train_loader_reset(TrainLoader* L);
LoaderState train_loader_state(const TrainLoader& L);
// fatal() if the state belongs to another data set, seed or batch shape.
void train_loader_restore(TrainLoader* L, const LoaderState& s);
void train_loader_free(TrainLoader* L);

struct ValData {
    std::vector<uint16_t> tokens;  // (num_seqs*T + 1,) the whole validation stream
    int64_t T = 0, num_seqs = 0;
    int64_t seq_begin = 0, seq_end = 0;  // this rank's sequences
};
void val_load(ValData* V, const std::string& dir, int T, int rank, int world, int vocab_size);
// Sequences [first_seq, first_seq + nseq) as (nseq, T+1) token ids (each sequence's T+1 tokens).
void val_batch(const ValData& V, int32_t* out, int64_t first_seq, int64_t nseq);
