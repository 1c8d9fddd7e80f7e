// The small model the quantization tests use: every tensor kind and every in_proj row group,
// quick to compress.
#pragma once
#include "model/config.h"

inline Config quant_test_config() {
    Config c;
    c.vocab_size = 256;
    c.model_dim = 64;
    c.num_layers = 3;
    c.num_attn_layers = 1;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.d_state = 16;
    c.ssm_headdim = 16;
    c.validate();
    return c;
}
