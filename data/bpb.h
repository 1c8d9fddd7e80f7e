// Bits per byte (spec/golf.md): val_loss = mean natural-log cross-entropy over the scored tokens,
// val_bpb = (val_loss / ln 2) * (tokens scored / bytes scored), where a scored target t after
// token p covers tok.token_bytes(p, t) bytes of the decoded text. Sums are float64; each rank
// accumulates its own BpbSum and the trainer all-reduces the three fields before bpb_result().
#pragma once
#include "data/tokenizer.h"
#include <cstdint>

struct BpbSum {
    double loss_sum = 0;  // sum of -ln p(target) over scored tokens
    double tokens = 0;    // scored tokens
    double bytes = 0;     // decoded-text bytes of the scored targets
};

// Bytes covered by targets tokens[1..n] (previous tokens tokens[0..n-1]): tokens is (n+1,).
int64_t bpb_count_bytes(const Tokenizer& tok, const int32_t* tokens, int64_t n);
// Adds a scored span: the summed loss of targets tokens[1..n] and their byte count.
void bpb_add(BpbSum* acc, const Tokenizer& tok, double loss_sum, const int32_t* tokens, int64_t n);

struct BpbResult {
    double val_loss;  // nats per token
    double val_bpb;   // bits per byte
};
// fatal() if nothing was scored (no tokens or no bytes).
BpbResult bpb_result(const BpbSum& acc);
