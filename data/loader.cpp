// Training and validation loaders; behaviour in loader.h.
#include "data/loader.h"
#include "model/common.h"

namespace {

// Fisher-Yates under splitmix64 seeded from (seed, epoch): the same order on every rank and
// every machine, and after a restore.
void make_perm(std::vector<int64_t>* perm, int64_t n, uint64_t seed, int64_t epoch) {
    perm->resize(n);
    for (int64_t i = 0; i < n; i++) (*perm)[i] = i;
    Rng rng(seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch * 0xD1B54A32D192ED03ull + 1);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng.next() % (uint64_t)(i + 1));
        int64_t t = (*perm)[i];
        (*perm)[i] = (*perm)[j];
        (*perm)[j] = t;
    }
}

}  // namespace

void train_loader_init(TrainLoader* L, const std::string& dir, int B, int T, int rank, int world,
                       uint64_t seed, int vocab_size) {
    if (B <= 0 || T <= 0 || world <= 0 || rank < 0 || rank >= world)
        fatal("train loader: bad shape B=%d T=%d rank=%d world=%d", B, T, rank, world);
    *L = TrainLoader{};
    L->B = B;
    L->T = T;
    L->rank = rank;
    L->world = world;
    L->vocab_size = vocab_size;
    std::vector<std::string> paths = shard_list(dir, "train");
    L->shards.resize(paths.size());
    L->first_window.assign(1, 0);
    for (size_t s = 0; s < paths.size(); s++) {
        shard_open(&L->shards[s], paths[s], 0);
        L->first_window.push_back(L->first_window.back() + L->shards[s].num_tokens / (T + 1));
    }
    L->st.seed = seed;
    L->st.num_windows = L->first_window.back();
    L->st.B = B;
    L->st.T = T;
    L->st.world = world;
    if (L->draws_per_epoch() == 0)
        fatal("data folder '%s': %lld training windows of T+1 = %d tokens, fewer than B*world = %d per draw",
              dir.c_str(), (long long)L->st.num_windows, T + 1, B * world);
    train_loader_reset(L);
}

void train_loader_reset(TrainLoader* L) {
    L->st.epoch = 0;
    L->st.draw = 0;
    make_perm(&L->perm, L->st.num_windows, L->st.seed, 0);
}

void train_loader_next(TrainLoader* L, int32_t* out) {
    if (L->st.draw >= L->draws_per_epoch()) {
        L->st.epoch++;
        L->st.draw = 0;
        make_perm(&L->perm, L->st.num_windows, L->st.seed, L->st.epoch);
    }
    const int64_t W = L->T + 1;
    for (int b = 0; b < L->B; b++) {
        int64_t w = L->perm[(L->st.draw * L->world + L->rank) * L->B + b];
        size_t s = 0;  // shard holding window w: the last s with first_window[s] <= w
        size_t lo = 0, hi = L->shards.size();
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (L->first_window[mid] <= w) lo = mid; else hi = mid;
        }
        s = lo;
        const Shard& sh = L->shards[s];
        int64_t off = (w - L->first_window[s]) * W;
        if (L->vocab_size > 0) shard_check_range(sh, off, W, L->vocab_size);
        for (int64_t t = 0; t < W; t++) out[b * W + t] = sh.tokens[off + t];
    }
    L->st.draw++;
}

LoaderState train_loader_state(const TrainLoader& L) { return L.st; }

void train_loader_restore(TrainLoader* L, const LoaderState& s) {
    const LoaderState& c = L->st;
    if (s.seed != c.seed || s.num_windows != c.num_windows || s.B != c.B || s.T != c.T || s.world != c.world)
        fatal("train loader: checkpoint state (seed %llu, %lld windows, B=%d T=%d world=%d) does not match this run "
              "(seed %llu, %lld windows, B=%d T=%d world=%d)",
              (unsigned long long)s.seed, (long long)s.num_windows, s.B, s.T, s.world, (unsigned long long)c.seed,
              (long long)c.num_windows, c.B, c.T, c.world);
    if (s.epoch < 0 || s.draw < 0 || s.draw > L->draws_per_epoch())
        fatal("train loader: checkpoint state has bad position epoch %lld draw %lld", (long long)s.epoch,
              (long long)s.draw);
    L->st = s;
    make_perm(&L->perm, L->st.num_windows, L->st.seed, L->st.epoch);
}

void train_loader_free(TrainLoader* L) {
    for (auto& s : L->shards) shard_close(&s);
    *L = TrainLoader{};
}

void val_load(ValData* V, const std::string& dir, int T, int rank, int world, int vocab_size) {
    if (T <= 0 || world <= 0 || rank < 0 || rank >= world)
        fatal("val loader: bad shape T=%d rank=%d world=%d", T, rank, world);
    *V = ValData{};
    for (const std::string& p : shard_list(dir, "val")) {
        Shard s;
        shard_open(&s, p, vocab_size);
        V->tokens.insert(V->tokens.end(), s.tokens, s.tokens + s.num_tokens);
        shard_close(&s);
    }
    int64_t n = (int64_t)V->tokens.size();
    V->T = T;
    V->num_seqs = n > 0 ? (n - 1) / T : 0;
    if (V->num_seqs < world)
        fatal("data folder '%s': %lld validation tokens make %lld sequences of %d, fewer than %d ranks", dir.c_str(),
              (long long)n, (long long)V->num_seqs, T, world);
    V->tokens.resize(V->num_seqs * T + 1);
    V->seq_begin = V->num_seqs * rank / world;
    V->seq_end = V->num_seqs * (rank + 1) / world;
}

void val_batch(const ValData& V, int32_t* out, int64_t first_seq, int64_t nseq) {
    if (first_seq < 0 || nseq < 0 || first_seq + nseq > V.num_seqs)
        fatal("val loader: sequences [%lld, %lld) outside [0, %lld)", (long long)first_seq,
              (long long)(first_seq + nseq), (long long)V.num_seqs);
    for (int64_t q = 0; q < nseq; q++)
        for (int64_t t = 0; t <= V.T; t++) out[q * (V.T + 1) + t] = V.tokens[(first_seq + q) * V.T + t];
}
