// Late-QAT fake quantization (quant/fake_quant.h), CPU: the grid training sees is exactly the
// artifact's round-to-nearest grid, matrices only.
#include "model/params.h"      // defines: param_specs, param_arena_size, param_init
#include "quant/fake_quant.h"  // defines: fake_quant_cpu, fake_quant_rows
#include "quant/plan.h"        // defines: quant_plan, quantize_model, dequantize_model
#include "tests/quant_config.h"
#include "tests/fixture.h"
#include <cmath>
#include <vector>

TEST_CASE("fake quant: matrices land on the artifact's RTN grid, scalars untouched") {
  for (double step : {1.0, 1.84}) {
    CAPTURE(step);
    Config c = quant_test_config();
    c.quant_matrix_step = step;  // QAT on the grid quant_fit's step gives the artifact
    const int64_t n = param_arena_size(c);
    std::vector<float> arena(n);
    param_init(c, arena.data(), 11);
    Rng rng(5);
    for (float& v : arena) v += 0.02f * (float)rng.normal();  // move every tensor off its init
    std::vector<float> fq(n, NAN), deq(n, NAN);
    fake_quant_cpu(fq.data(), arena.data(), c);
    QuantModel qm;
    GptqOptions opt;
    opt.clip_search = false;  // absmax scales: what the training grid uses
    quantize_model(&qm, c, arena.data(), nullptr, opt);
    dequantize_model(deq.data(), c, qm);
    int64_t matrix_vals = 0, moved = 0;
    for (const TensorPlan& p : quant_plan(c)) {
        const int64_t o = p.spec.offset, m = p.spec.numel();
        for (int64_t i = 0; i < m; i++) {
            if (p.is_matrix()) {
                REQUIRE(fq[o + i] == deq[o + i]);  // bit-exact: the same scales and codes
                matrix_vals++;
                moved += fq[o + i] != arena[o + i];
            } else {
                REQUIRE(fq[o + i] == arena[o + i]);
            }
        }
    }
    CHECK(moved > matrix_vals / 2);  // the grid really moves the weights
    // the row table covers each matrix row once, with the plan's bits (INT8 dd rows in in_proj)
    FakeQuantRows rows = fake_quant_rows(c);
    int64_t want = 0, eight = 0;
    for (const TensorPlan& p : quant_plan(c))
        if (p.is_matrix()) want += p.spec.rows;
    for (int32_t b : rows.bits) eight += b == 8;
    CHECK((int64_t)rows.offset.size() == want);
    CHECK(eight == c.vocab_size + 2 * c.ssm_heads() * (c.num_layers - c.num_attn_layers));
  }
}
