// CPU reference of the token embedding (see embedding.h).
#include "model/embedding.h"
#include "model/common.h"

template <typename F>
void embedding_forward_cpu(F* out, const int32_t* tokens, const F* wte, int64_t N, int C, int V) {
    for (int64_t n = 0; n < N; n++) {
        int32_t tok = tokens[n];
        if (tok < 0 || tok >= V) fatal("embedding: token %d at position %lld outside [0, %d)", tok, (long long)n, V);
        const F* row = wte + (int64_t)tok * C;
        for (int c = 0; c < C; c++) out[n * C + c] = row[c];
    }
}

template <typename F>
void embedding_backward_cpu(F* dwte, const F* dout, const int32_t* tokens, int64_t N, int C, int V) {
    // out[n] = wte[tokens[n]]  =>  dwte[tokens[n]] += dout[n] (in order of n: deterministic)
    for (int64_t n = 0; n < N; n++) {
        int32_t tok = tokens[n];
        if (tok < 0 || tok >= V) fatal("embedding: token %d at position %lld outside [0, %d)", tok, (long long)n, V);
        F* row = dwte + (int64_t)tok * C;
        for (int c = 0; c < C; c++) row[c] += dout[n * C + c];
    }
}

template void embedding_forward_cpu<float>(float*, const int32_t*, const float*, int64_t, int, int);
template void embedding_forward_cpu<double>(double*, const int32_t*, const double*, int64_t, int, int);
template void embedding_backward_cpu<float>(float*, const float*, const int32_t*, int64_t, int, int);
template void embedding_backward_cpu<double>(double*, const double*, const int32_t*, int64_t, int, int);
