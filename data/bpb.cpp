// Bits-per-byte accumulation; formula in bpb.h and spec/golf.md.
#include "data/bpb.h"
#include "model/common.h"

int64_t bpb_count_bytes(const Tokenizer& tok, const int32_t* tokens, int64_t n) {
    int64_t bytes = 0;
    for (int64_t i = 0; i < n; i++) bytes += tok.token_bytes(tokens[i], tokens[i + 1]);
    return bytes;
}

void bpb_add(BpbSum* acc, const Tokenizer& tok, double loss_sum, const int32_t* tokens, int64_t n) {
    acc->loss_sum += loss_sum;
    acc->tokens += (double)n;
    acc->bytes += (double)bpb_count_bytes(tok, tokens, n);
}

BpbResult bpb_result(const BpbSum& acc) {
    if (!(acc.tokens > 0) || !(acc.bytes > 0))
        fatal("bpb: nothing scored (%.0f tokens, %.0f bytes)", acc.tokens, acc.bytes);
    BpbResult r;
    r.val_loss = acc.loss_sum / acc.tokens;
    r.val_bpb = r.val_loss / log(2.0) * (acc.tokens / acc.bytes);
    return r;
}
