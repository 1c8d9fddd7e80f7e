// Step phase timing and floors; see optim/phases.cuh.
#include "optim/phases.cuh"
#include "model/params.h"
#include "optim/muon.cuh"
#include <algorithm>

void phase_timer_create(PhaseTimer* t, int max_marks, cudaStream_t stream) {
    *t = PhaseTimer();
    t->ev.resize(max_marks + 1);
    t->phase.resize(max_marks);
    for (auto& e : t->ev) cudaCheck(cudaEventCreate(&e));
    t->stream = stream;
}

void phase_timer_destroy(PhaseTimer* t) {
    for (auto& e : t->ev) cudaCheck(cudaEventDestroy(e));
    *t = PhaseTimer();
}

void phase_start(PhaseTimer* t, bool on) {
    t->used = 0;
    if (!on) return;
    cudaCheck(cudaEventRecord(t->ev[0], t->stream));
    t->used = 1;
}

void phase_mark(PhaseTimer* t, int phase) {
    if (t->used == 0) return;
    if (t->used >= (int)t->ev.size()) fatal("phase_mark: more than %d marks in one step", (int)t->phase.size());
    t->phase[t->used - 1] = phase;
    cudaCheck(cudaEventRecord(t->ev[t->used], t->stream));
    t->used++;
}

bool phase_sums(PhaseTimer* t, double* ms) {
    for (int p = 0; p < PH_COUNT; p++) ms[p] = 0;
    if (t->used == 0) return false;
    for (int i = 1; i < t->used; i++) {
        float x;
        cudaCheck(cudaEventElapsedTime(&x, t->ev[i - 1], t->ev[i]));
        ms[t->phase[i - 1]] += x;
    }
    t->used = 0;
    return true;
}

void phase_floors(const Config& c, int64_t tokens, int world, double flops_per_s, double bytes_per_s, double* ms) {
    double matrix = 0, adam = 0;  // parameters
    for (auto& s : param_specs(c)) (s.group == Group::matrix ? matrix : adam) += (double)s.numel();
    const double all = matrix + adam;
    const double T = c.train_seq_len, C = c.model_dim, L = c.chunk_size, N = c.d_state, P = c.ssm_headdim;
    double per_token = 2.0 * (matrix + (double)c.vocab_size * C);  // every weight once, the tied head
    for (int l = 0; l < c.num_layers; l++)
        per_token += c.is_attn(l) ? 2.0 * T * c.num_heads * c.head_dim()                   // causal QK^T + PV
                                  : c.ssm_heads() * (2 * L * N + 2 * L * P + 4 * N * P);   // chunk scores, values, states in/out
    double ns = 0;  // Newton-Schulz FLOPs of the matrices this rank owns (i % world == rank 0)
    auto mats = muon_matrices(c);
    for (size_t i = 0; i < mats.size(); i += world) {
        const double r = std::min(mats[i].rows, mats[i].cols), q = std::max(mats[i].rows, mats[i].cols);
        ns += c.muon_backend_steps * (4 * r * r * q + 2 * r * r * r);  // X X^T, A A, B X
    }
    for (int p = 0; p < PH_COUNT; p++) ms[p] = 0;
    ms[PH_FWD] = 1e3 * per_token * tokens / flops_per_s;
    ms[PH_BWD] = 2 * ms[PH_FWD];
    // + momentum (read g, buf; write buf, u), normalization (read u, write bf16), apply (read p, bf16 update; write p)
    ms[PH_MUON] = 1e3 * ns / flops_per_s + 1e3 * matrix * (16 + 6 + 10) / bytes_per_s;
    ms[PH_ADAM] = 1e3 * adam * 7 * 4 / bytes_per_s;  // read p, m, v, g; write p, m, v (fp32)
    // EMA (read 2, write 1 fp32), bf16 refresh (read 4, write 2 bytes), NaN check (read 4)
    ms[PH_OTHER] = 1e3 * all * (12 + 6 + 4) / bytes_per_s;
}

void phase_print(FILE* f, const char* label, const double* ms) {
    fprintf(f, "%s fwd %.2f bwd %.2f allreduce %.2f muon %.2f adam %.2f other %.2f ms\n", label, ms[PH_FWD], ms[PH_BWD],
            ms[PH_ALLREDUCE], ms[PH_MUON], ms[PH_ADAM], ms[PH_OTHER]);
}
